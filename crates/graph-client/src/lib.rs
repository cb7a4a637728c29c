//! graph-client (work in progress).
