//! The GDPR lifecycle: consent, erasure, its proof, suppression, export.

mod archive;
mod consent;
mod erase;
mod export;
mod faults;
mod pii;
mod retention;
