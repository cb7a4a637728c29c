//! The glue between the workspace's crates, shared by every example and by the
//! end-to-end tests in `tests/` (which include this folder with `#[path]`).
//!
//! This is the model for composing the crates in your own service: the library crates
//! never depend on each other, so each one defines a small trait and this folder
//! implements it in a few lines.

// Each example uses a part of this folder; what one leaves unused another uses.
#![allow(dead_code, unused_imports)]

pub mod connect;
pub mod glue;
pub mod present;
pub mod store;
pub mod sync;
