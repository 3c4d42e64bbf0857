//! Deletion vectors: the persisted set of deleted row positions of a segment.
//!
//! ```text
//! [ "TESSDV01" ][ format u32 ][ CRC-32C of bitmap u32 ][ segment id u64 ][ bitmap length u64 ][ portable Roaring bitmap ]
//! ```
//! A deletion vector is never modified: a new delete writes a new version
//! (`dv-<segment>-<version>.tdv`) and the manifest switches to it atomically.

use std::path::Path;

use roaring::RoaringBitmap;

use crate::codec::{LeReader, PutLe, crc};
use crate::error::{Error, Result};
use crate::index::{bitmap_bytes, parse_bitmap};
use crate::io::Vfs;

/// Magic bytes opening a deletion-vector file.
pub const DV_MAGIC: &[u8; 8] = b"TESSDV01";
/// Current deletion-vector format version.
pub const DV_FORMAT: u32 = 1;

/// File name of version `version` of the deletion vector of segment `segment`.
pub fn file_name(segment: u64, version: u64) -> String {
    format!("dv-{segment:020}-{version:020}.tdv")
}

/// Parses a deletion-vector file name into (segment, version).
pub fn parse_file_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("dv-")?.strip_suffix(".tdv")?;
    let (s, v) = rest.split_once('-')?;
    Some((s.parse().ok()?, v.parse().ok()?))
}

/// Encodes a deletion vector file.
pub fn encode(segment: u64, rows: &RoaringBitmap) -> Result<Vec<u8>> {
    let bm = bitmap_bytes(rows)?;
    let mut out = Vec::with_capacity(bm.len() + 32);
    out.extend_from_slice(DV_MAGIC);
    out.put_u32(DV_FORMAT);
    out.put_u32(crc(&bm));
    out.put_u64(segment);
    out.put_u64(bm.len() as u64);
    out.extend_from_slice(&bm);
    Ok(out)
}

/// Decodes a deletion vector file of segment `segment` with `rows` rows.
pub fn decode(bytes: &[u8], path: &Path, segment: u64, rows: u64) -> Result<RoaringBitmap> {
    let mut r = LeReader::new(bytes, path);
    if r.bytes(8)? != DV_MAGIC {
        return Err(Error::corrupt(path, "deletion vector magic is missing"));
    }
    let format = r.u32()?;
    if format != DV_FORMAT {
        return Err(Error::corrupt(
            path,
            format!("unsupported deletion vector format {format}"),
        ));
    }
    let sum = r.u32()?;
    let seg = r.u64()?;
    let len = r.u64()?;
    if seg != segment {
        return Err(Error::corrupt(
            path,
            format!("deletion vector belongs to segment {seg}, expected {segment}"),
        ));
    }
    if len != r.remaining() as u64 {
        return Err(Error::corrupt(
            path,
            "deletion vector length does not match the file",
        ));
    }
    let body = r.bytes(r.remaining())?;
    if crc(body) != sum {
        return Err(Error::corrupt(path, "deletion vector checksum mismatch"));
    }
    let bm = parse_bitmap(body, path)?;
    if bm.max().is_some_and(|m| u64::from(m) >= rows) {
        return Err(Error::corrupt(
            path,
            "deletion vector names rows past the end of its segment",
        ));
    }
    Ok(bm)
}

/// Writes a deletion vector file durably (temporary file, fsync, rename;
/// the caller syncs the directory before publishing the manifest).
pub fn write(
    vfs: &dyn Vfs,
    dir: &Path,
    segment: u64,
    version: u64,
    rows: &RoaringBitmap,
) -> Result<()> {
    let bytes = encode(segment, rows)?;
    let name = file_name(segment, version);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = vfs.create(&tmp)?;
    f.append(&bytes)?;
    f.sync()?;
    drop(f);
    vfs.rename(&tmp, &dir.join(name))
}
