//! # Tessera's engine
//!
//! This crate will hold the customer-data domain (identity graph, profiles,
//! segments, governance) and the embeddable `Database` API, registering its
//! statements and functions into [`tessera_sql`].
//!
//! Status: not built yet (tracked by the SQL-layer, UNIFY and SEGMENT issues).

pub use tessera_sql as sql;
