#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod crypto;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod open;
mod shared;
mod store;

pub use connection_store;
/// The sqlx this crate is built on, for [`SqlPool`] and [`SqlConnection`].
pub use sqlx;

pub use crate::crypto::{EncryptionKey, KeyId, KeyRing, KeyRingBuilder};
pub use crate::error::SqlStoreError;
pub use crate::open::{
    SCHEMA_VERSION, SqlStoreBuilder, sqlite_connect_options, sqlite_pool_options,
};
pub use crate::shared::{SealedSecret, SqlConnection, SqlPool};
pub use crate::store::SqlStore;
