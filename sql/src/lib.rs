//! # Tessera's SQL layer
//!
//! This crate will put Apache DataFusion on top of [`tessera_storage`]: table
//! providers with filter pushdown into zone maps and bitmap indexes, UDFs,
//! and Tessera's own statement parser (UNIFY, SEGMENT, …). It depends only on
//! the storage crate; see `docs/architecture.md` for the layering.
//!
//! Status: not built yet (tracked by the SQL-layer issue). It holds no code
//! so that nothing here pretends to work.

pub use tessera_storage as storage;
