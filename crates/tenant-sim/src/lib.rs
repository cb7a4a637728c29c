//! tenant-sim (work in progress).
