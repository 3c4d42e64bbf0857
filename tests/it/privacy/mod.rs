//! The GDPR lifecycle: erasure, its proof, suppression, export.

mod erase;
mod export;
mod faults;
