//! Identity resolution against the generator's ground truth.

mod datagen;
mod quality;
