//! Little-endian encoding helpers shared by the on-disk formats.
//!
//! Every fixed-width field on disk is little-endian; checksums are CRC-32C
//! (Castagnoli), as in LevelDB, RocksDB and PostgreSQL. Layouts: `docs/storage.md`.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// CRC-32C of `data`.
pub(crate) fn crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Appends fixed-width little-endian fields to a buffer.
pub(crate) trait PutLe {
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
}

impl PutLe for Vec<u8> {
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// A bounds-checked little-endian reader over a byte slice; running past the
/// end is corruption of the named file, never a panic.
pub(crate) struct LeReader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> LeReader<'a> {
    pub(crate) fn new(buf: &'a [u8], path: &'a Path) -> Self {
        Self { buf, pos: 0, path }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| {
                Error::corrupt(
                    self.path,
                    format!(
                        "needs {n} bytes at offset {}, only {} left",
                        self.pos,
                        self.remaining()
                    ),
                )
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Encodes metadata with postcard (see `docs/storage.md` for why postcard).
pub(crate) fn to_postcard<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    postcard::to_allocvec(value)
        .map_err(|e| Error::InvalidInput(format!("cannot encode {what}: {e}")))
}

/// Decodes postcard metadata, reporting failure as corruption of `path`.
pub(crate) fn from_postcard<T: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    what: &str,
) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::corrupt(path, format!("cannot decode {what}: {e}")))
}

/// Converts a u64 from disk to usize, or reports corruption.
pub(crate) fn to_usize(v: u64, path: &Path, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::corrupt(path, format!("{what} {v} out of range")))
}
