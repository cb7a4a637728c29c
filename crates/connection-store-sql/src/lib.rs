#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod crypto;
mod error;
mod open;
mod store;

pub use connection_store;

pub use crate::crypto::{EncryptionKey, KeyId, KeyRing, KeyRingBuilder};
pub use crate::error::SqlStoreError;
pub use crate::open::{SCHEMA_VERSION, SqlStoreBuilder};
pub use crate::store::SqlStore;
