//! # Tessera's server
//!
//! This crate will hold the PostgreSQL wire protocol server and the `tessera`
//! binary, on top of [`tessera_engine`]'s `Database` API only.
//!
//! Status: not built yet (tracked by the wire-server issue).

pub use tessera_engine as engine;
