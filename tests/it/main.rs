//! Tessera's integration tests: one binary, one module per topic.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod identity;
mod privacy;
mod segment;
mod sql;
mod storage;
mod wire;
