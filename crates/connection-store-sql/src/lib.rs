//! connection-store-sql (work in progress).
