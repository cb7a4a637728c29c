//! Placeholder until the examples land: makes the common folder compile.
mod common;
fn main() {}
