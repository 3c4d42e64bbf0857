//! The one place where Tessera maps files into memory.
//!
//! Only sealed segment files are mapped, read-only. The invariants that make
//! the mapping sound, upheld by the rest of the crate:
//!
//! 1. A segment file is written in full, fsynced and renamed into place before
//!    it is ever mapped; after that Tessera never opens it for writing again,
//!    and marks it read-only (mode 0444).
//! 2. A file is never truncated or rewritten. Compaction writes new files and
//!    unlinks old ones only after the last snapshot holding them is dropped;
//!    an unlinked inode stays valid for the maps that still point at it.
//! 3. The caller checks the file's length and checksum with ordinary reads
//!    before mapping it, so a short or damaged file is reported as corruption
//!    instead of faulting.
//! 4. The database directory is locked against other Tessera processes.
//!
//! What no code can exclude is another program truncating the file behind
//! Tessera's back, or a media error: those raise SIGBUS, as they do for every
//! mmap-based engine (see the reliability guide and redb#536 for why redb gave
//! mmap up). Keep the database directory private to the Tessera process.

#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::MetadataVersion;
use arrow::ipc::reader::FileDecoder;
use memmap2::Mmap;

use crate::error::{Error, Result};

/// Maps `path` read-only and returns it as an Arrow [`Buffer`] that keeps the
/// mapping alive for as long as any array slices it.
pub(crate) fn map_read_only(path: &Path) -> Result<Buffer> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    if len == 0 {
        return Ok(Buffer::from_vec(Vec::<u8>::new()));
    }
    // SAFETY: memmap2 requires that the file not be modified while mapped.
    // `path` is a sealed segment (invariant 1 above): complete, fsynced,
    // read-only and never written, truncated or rewritten by Tessera again
    // (invariant 2); the directory lock keeps other Tessera processes out
    // (invariant 4). The mapping is read-only, so no page is ever dirtied.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
    let map = Arc::new(map);
    let ptr = NonNull::new(map.as_ptr().cast_mut())
        .ok_or_else(|| Error::corrupt(path, "mapping returned a null pointer"))?;
    let map_len = map.len();
    // SAFETY: `ptr` points at `map_len` readable bytes owned by `map`; the Arc
    // passed as the owner keeps the mapping alive for as long as the Buffer
    // and every slice of it exist, and nothing writes through the pointer.
    Ok(unsafe { Buffer::from_custom_allocation(ptr, map_len, map) })
}

/// An Arrow IPC decoder for the data region of a segment whose checksum has
/// been verified, with per-array validation turned off when `trusted`.
///
/// Validation (UTF-8 checks, offset checks, recounting every null bitmap)
/// costs time proportional to the rows of each decoded batch, which would
/// make a bitmap-index lookup of a few rows as slow as a scan. Scans pass
/// `trusted = true`; `verify` passes `false` and validates everything.
pub(crate) fn segment_decoder(
    schema: SchemaRef,
    version: MetadataVersion,
    projection: Vec<usize>,
    trusted: bool,
) -> FileDecoder {
    let decoder = FileDecoder::new(schema, version).with_projection(projection);
    if !trusted {
        return decoder;
    }
    // SAFETY: `with_skip_validation` requires that the bytes be a valid Arrow
    // IPC file. The caller only decodes the data region of a sealed segment
    // after `Segment::mapped` checked it against the CRC-32C stored in the
    // footer (itself under a checksum), and that region was produced by
    // arrow-rs's `FileWriter` from arrays that passed validation when they
    // were built. The file is immutable while mapped (invariants 1-4 above),
    // so the bytes decoded are the bytes the writer produced. The residual
    // risk is damage that CRC-32C misses (every 1-, 2- and 3-bit error is
    // caught; other damage with probability 1 - 2^-32); `verify` decodes with
    // full validation to catch even that.
    unsafe { decoder.with_skip_validation(true) }
}
