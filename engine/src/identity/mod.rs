//! Identity resolution: the records of one person, across channels, linked
//! into one profile through the identifiers they share.
//!
//! - [`normalize`]: the canonical forms identifiers are matched by;
//! - [`graph`]: the identity graph, an incremental union-find over
//!   identifier values with per-kind limits, priorities and stable profile ids;
//! - [`quality`]: pairwise precision / recall / F1 of a clustering against a
//!   ground truth, from contingency counts.

pub mod graph;
pub mod normalize;
pub mod quality;
