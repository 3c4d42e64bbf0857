//! # Tessera's server and command line
//!
//! The `tessera` binary (`src/main.rs`): `tessera sql` (an interactive shell
//! or scripts), `tessera verify`, `tessera compact`, `tessera gen`,
//! `tessera export-segment` and `tessera demo`, all on
//! top of [`tessera_engine::Database`] only. The PostgreSQL wire server
//! (`tessera serve`) will live here too.
//!
//! ## A command, from the shell to the database
//!
//! 1. `main.rs` parses the arguments and opens the [`Database`](tessera_engine::Database).
//! 2. [`shell`] reads statements (from `-c`, `-f` or the terminal, with
//!    history), runs each with `Database::execute`, and prints the rows with
//!    [`print::table`] or the error with its SQLSTATE.

pub mod demo;
pub mod export;
pub mod print;
pub mod shell;

pub use tessera_engine as engine;
