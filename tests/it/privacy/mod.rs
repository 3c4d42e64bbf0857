//! The GDPR lifecycle: consent, erasure, its proof, suppression, export.

mod archive;
mod consent;
mod encryption;
mod erase;
mod export;
mod faults;
mod pii;
mod retention;
