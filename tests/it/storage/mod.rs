//! The storage engine, end to end.

mod corruption;
pub(crate) mod crash;
mod erasure;
mod faults;
mod index_diff;
mod roundtrip;
mod snapshots;
