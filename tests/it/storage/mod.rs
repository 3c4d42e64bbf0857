//! The storage engine, end to end.

mod corruption;
mod crash;
mod erasure;
mod faults;
mod index_diff;
mod roundtrip;
mod snapshots;
