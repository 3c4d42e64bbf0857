//! The SQL layer, end to end through the embedded `Database`.

mod cli;
mod engine_api;
mod morsels;
mod pushdown_diff;
mod slt;
