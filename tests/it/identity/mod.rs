//! Identity resolution: quality against the generator's ground truth, and
//! the incremental path against a full run and a plain union-find.

mod datagen;
mod faults;
mod incremental;
mod quality;
