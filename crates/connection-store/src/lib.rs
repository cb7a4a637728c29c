//! connection-store (work in progress).
