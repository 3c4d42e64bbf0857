//! # Tessera's server and command line
//!
//! The `tessera` binary (`src/main.rs`): `tessera serve` (the PostgreSQL
//! wire server, [`wire`]), `tessera sql` (an interactive shell or
//! scripts), `tessera verify`, `tessera compact`, `tessera gen`,
//! `tessera export-segment`, `tessera rekey`, `tessera bench` ([`mod@bench`])
//! and `tessera demo`, all on top of
//! [`tessera_engine::Database`] only.
//!
//! ## A query, from psql to the rows on its screen
//!
//! 1. `tessera serve` opens the [`Database`](tessera_engine::Database) and
//!    [`wire::Server::bind`]s a loopback port; pgwire decodes each
//!    connection's messages.
//! 2. [`wire::scram`] admits the connection: TLS policy, SCRAM-SHA-256
//!    against the verifier stored for the role, the connection limit; it
//!    gives the connection a [`wire::session::Session`] with its own
//!    DataFusion session (settings such as `search_path` stay in it).
//! 3. [`wire::handler`] parses `SELECT …` with Tessera's parser, applies the
//!    PostgreSQL-compatibility rewrites, checks the role's `SELECT`
//!    privileges on the tables the plan reads, and starts the plan.
//! 4. [`wire::encode`] encodes each Arrow batch into rows (text or binary)
//!    as psql reads them, stopping at a cancel request or the statement
//!    timeout.
//!
//! `tessera sql` does the same without a socket: [`shell`] reads statements,
//! runs each with `Database::execute`, and prints the rows with
//! [`print::table`] or the error with its SQLSTATE.

pub mod bench;
pub mod demo;
pub mod export;
pub mod keys;
pub mod print;
pub mod serve;
pub mod shell;
pub mod wire;

pub use tessera_engine as engine;
