//! The GDPR lifecycle: consent, erasure, its proof, suppression, export.

mod consent;
mod erase;
mod export;
mod faults;
mod retention;
