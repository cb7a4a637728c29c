#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod clock;
mod error;
mod memory;
mod model;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_trait::async_trait;
pub use secrecy::{self, ExposeSecret, SecretString};

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::error::{BoxError, InvalidNameReason, StoreError};
pub use crate::memory::MemoryStore;
pub use crate::model::{
    AdminAccount, Backoff, Claim, Claims, Cloud, Connection, ConnectionId, ConnectionName,
    ConnectionStatus, CursorKey, Lease, LeaseHolder, MAX_NAME_CHARS, NewConnection, OwnerId,
    Reconnect, StoredToken, TenantId, TokenVersion,
};
pub use crate::store::ConnectionStore;
