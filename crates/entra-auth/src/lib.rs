//! entra-auth (work in progress).
