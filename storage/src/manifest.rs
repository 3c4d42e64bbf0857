//! The manifest: the durable description of the whole store.
//!
//! Each version is a file `MANIFEST-<version>`; the file `CURRENT` names the
//! live one. Publishing a version writes and fsyncs the new manifest, writes
//! `CURRENT.tmp`, fsyncs it, renames it over `CURRENT` and fsyncs the
//! directory: after a crash `CURRENT` names either the old or the new version,
//! both complete.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::codec::{LeReader, PutLe, crc, from_postcard, to_postcard};
use crate::error::{Error, Result};
use crate::io::Vfs;
use crate::table::TableOptions;

/// Magic bytes opening a manifest file.
pub const MANIFEST_MAGIC: &[u8; 8] = b"TESSMAN1";
/// Current manifest format version.
pub const MANIFEST_FORMAT: u32 = 1;
/// Name of the pointer file.
pub const CURRENT: &str = "CURRENT";

/// File name of manifest version `v`.
pub fn file_name(v: u64) -> String {
    format!("MANIFEST-{v:020}")
}

/// Parses a manifest file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("MANIFEST-")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())?
}

/// A persisted deletion vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DvEntry {
    /// Version of the deletion-vector file (in its name).
    pub version: u64,
    /// Number of deleted rows it holds.
    pub count: u64,
}

/// A segment as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Segment id.
    pub id: u64,
    /// Rows in the file (deleted ones included).
    pub rows: u64,
    /// File length in bytes.
    pub file_len: u64,
    /// Its deletion vector, if any row is deleted.
    pub dv: Option<DvEntry>,
}

/// A table as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Table id.
    pub id: u64,
    /// Table name.
    pub name: String,
    /// Arrow IPC-encoded schema.
    pub schema_ipc: Vec<u8>,
    /// Storage options.
    pub options: TableOptions,
    /// The sealed segments, in order.
    pub segments: Vec<SegmentEntry>,
}

/// One version of the store's description.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Manifest {
    /// Version number (in the file name too).
    pub version: u64,
    /// Next segment id to allocate.
    pub next_segment_id: u64,
    /// Next table id to allocate.
    pub next_table_id: u64,
    /// Every log record up to this sequence number is in the segments.
    pub flushed_lsn: u64,
    /// The oldest WAL file still needed.
    pub wal_first_seq: u64,
    /// The tables.
    pub tables: Vec<TableEntry>,
    /// Opaque catalog bytes owned by the layers above (views, schemas, …).
    pub catalog: Vec<u8>,
}

impl Manifest {
    /// Encodes the manifest file.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let payload = to_postcard(self, "manifest")?;
        let mut out = Vec::with_capacity(payload.len() + 24);
        out.extend_from_slice(MANIFEST_MAGIC);
        out.put_u32(MANIFEST_FORMAT);
        out.put_u32(crc(&payload));
        out.put_u64(payload.len() as u64);
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Decodes a manifest file.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let mut r = LeReader::new(bytes, path);
        if r.bytes(8)? != MANIFEST_MAGIC {
            return Err(Error::corrupt(path, "manifest magic is missing"));
        }
        let format = r.u32()?;
        if format != MANIFEST_FORMAT {
            return Err(Error::corrupt(
                path,
                format!("unsupported manifest format version {format}"),
            ));
        }
        let sum = r.u32()?;
        let len = r.u64()?;
        if len != r.remaining() as u64 {
            return Err(Error::corrupt(
                path,
                format!(
                    "manifest says {len} bytes of payload, file has {}",
                    r.remaining()
                ),
            ));
        }
        let payload = r.bytes(r.remaining())?;
        if crc(payload) != sum {
            return Err(Error::corrupt(path, "manifest checksum mismatch"));
        }
        from_postcard(payload, path, "manifest")
    }
}

/// Writes manifest `m` and points `CURRENT` at it, durably.
pub fn publish(vfs: &dyn Vfs, dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join(file_name(m.version));
    let bytes = m.encode()?;
    let mut f = vfs.create(&path)?;
    f.append(&bytes)?;
    f.sync()?;
    drop(f);
    let tmp = dir.join("CURRENT.tmp");
    let mut c = vfs.create(&tmp)?;
    c.append(format!("{}\n", file_name(m.version)).as_bytes())?;
    c.sync()?;
    drop(c);
    vfs.rename(&tmp, &dir.join(CURRENT))?;
    vfs.sync_dir(dir)
}

/// Reads the manifest `CURRENT` names; `None` for a directory without `CURRENT`.
pub fn load_current(vfs: &dyn Vfs, dir: &Path) -> Result<Option<(u64, Manifest)>> {
    let current = dir.join(CURRENT);
    if !vfs.exists(&current)? {
        return Ok(None);
    }
    let text = vfs.read(&current)?;
    let name = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_suffix('\n'))
        .filter(|n| parse_file_name(n).is_some())
        .ok_or_else(|| Error::corrupt(&current, "CURRENT does not name a manifest file"))?;
    let version = parse_file_name(name).unwrap_or_default();
    let path = dir.join(name);
    if !vfs.exists(&path)? {
        return Err(Error::corrupt(
            &current,
            format!("CURRENT names {name}, which does not exist"),
        ));
    }
    let m = Manifest::decode(&vfs.read(&path)?, &path)?;
    if m.version != version {
        return Err(Error::corrupt(
            &path,
            format!(
                "manifest file holds version {}, its name says {version}",
                m.version
            ),
        ));
    }
    Ok(Some((version, m)))
}
