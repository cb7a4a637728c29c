//! The application code the examples in `examples/` and the end-to-end tests in `tests/`
//! share: the glue between the workspace's crates, the connect and sync flows, and the
//! web app.
//!
//! This is the model for composing the crates in your own service: the library crates
//! never depend on each other, so each one defines a small trait and [`glue`] implements
//! it in a few lines.
//!
//! - [`connect`]: sign in as a tenant's admin, consent, and save the connection.
//! - [`glue`]: the store's refresh token as entra-auth's token source, Graph clients.
//! - [`mirror`]: the directory mirror, a SQL `DirectorySink` beside the connection store.
//! - [`present`]: connections as a table.
//! - [`store`]: the connection store and its mirror the examples open (`SQLite` or `PostgreSQL`).
//! - [`sync`]: one sync of a stored connection into a sink (the mirror), under its lease.
//! - [`web`]: the web app of the product flow (axum, maud).
//! - [`worker`]: syncs every due connection of a store, many at once, sharing the work
//!   with other workers and web app instances on the same database.

pub mod admin;
pub mod connect;
pub mod glue;
pub mod mirror;
pub mod present;
pub mod store;
pub mod sync;
pub mod web;
pub mod worker;
