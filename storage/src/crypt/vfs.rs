//! [`EncryptedVfs`]: a [`Vfs`] that encrypts every file of a database on its
//! way to the file system underneath and decrypts it on the way back, so the
//! rest of the storage engine reads and writes plaintext as before.
//!
//! Reads address plaintext offsets. To find the frames of a range without
//! decrypting the file, the wrapper keeps a [`FrameIndex`] per file, built
//! by reading each frame's length field and checked against the file's
//! length on every use (a file that grew is indexed further).
//! Segments cannot be memory-mapped as they lie on disk: [`Vfs::map`]
//! decrypts the whole file into an aligned buffer in memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::buffer::{Buffer, MutableBuffer};
use parking_lot::Mutex;
use ring::aead::{LessSafeKey, NONCE_LEN};

use super::file::{self, FRAME_PLAIN, FrameIndex, HEADER_LEN};
use super::key::{KEY_CHECK_FILE, KEY_CHECK_TMP, random};
use crate::error::{Error, Result};
use crate::io::{DirLock, Vfs, WritableFile};

/// A file system whose files are encrypted with the database's data key.
/// The lock file and the key-check file (itself sealed under the user's
/// key) are the only files it passes through as they are.
pub struct EncryptedVfs {
    inner: Arc<dyn Vfs>,
    key: Arc<LessSafeKey>,
    plain: [PathBuf; 3],
    index: Mutex<HashMap<PathBuf, Arc<FrameIndex>>>,
}

impl std::fmt::Debug for EncryptedVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedVfs")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl EncryptedVfs {
    /// Wraps `inner` for the database in `dir` with data key `key`.
    pub(crate) fn new(inner: Arc<dyn Vfs>, dir: &Path, key: LessSafeKey) -> EncryptedVfs {
        EncryptedVfs {
            inner,
            key: Arc::new(key),
            plain: [
                dir.join("LOCK"),
                dir.join(KEY_CHECK_FILE),
                dir.join(KEY_CHECK_TMP),
            ],
            index: Mutex::new(HashMap::new()),
        }
    }

    fn is_plain(&self, path: &Path) -> bool {
        self.plain.iter().any(|p| p == path)
    }

    /// The frames of `path` as the file stands now.
    fn frames(&self, path: &Path) -> Result<Arc<FrameIndex>> {
        let raw_len = self.inner.len(path)?;
        let cached = self.index.lock().get(path).cloned();
        if let Some(ix) = &cached
            && ix.raw_len == raw_len
        {
            return Ok(Arc::clone(ix));
        }
        let mut ix = match cached {
            Some(ix) if ix.raw_len < raw_len && ix.base.is_some() => (*ix).clone(),
            _ => {
                let head = self.inner.read_at(path, 0, raw_len.min(HEADER_LEN))?;
                FrameIndex {
                    base: file::parse_header(path, &head)?,
                    ..FrameIndex::default()
                }
            }
        };
        let Some(base) = ix.base else {
            ix.raw_len = raw_len;
            return Ok(Arc::new(ix));
        };
        let inner = &self.inner;
        ix.extend(raw_len, |at| {
            let b = inner.read_at(path, at, 4)?;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        })?;
        // A last frame that does not open is the torn tail of a write the
        // crash interrupted: it was never synced, so never acknowledged.
        if let Some(last) = ix.frames.last().copied() {
            let (at, n) = last.sealed_range();
            let mut sealed = self.inner.read_at(path, at, n)?;
            if file::open(&self.key, &base, ix.frames.len() as u64 - 1, &mut sealed).is_none() {
                ix.frames.pop();
            }
        }
        let ix = Arc::new(ix);
        self.index
            .lock()
            .insert(path.to_path_buf(), Arc::clone(&ix));
        Ok(ix)
    }

    /// Decrypts frames `range` of `ix`, whose bytes in the file start at
    /// `raw_start` in `raw`, appending the plaintext to `out`.
    fn decrypt_frames(
        &self,
        path: &Path,
        ix: &FrameIndex,
        range: std::ops::Range<usize>,
        raw: &mut [u8],
        raw_start: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let Some(base) = ix.base else { return Ok(()) };
        for i in range {
            let f = ix.frames[i];
            let (at, n) = f.sealed_range();
            let lo = usize::try_from(at - raw_start).unwrap_or(usize::MAX);
            let hi = lo.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
            let sealed = raw
                .get_mut(lo..hi)
                .ok_or_else(|| Error::corrupt(path, "encrypted frame lies outside the file"))?;
            let plain = file::open(&self.key, &base, i as u64, sealed).ok_or_else(|| {
                Error::corrupt(
                    path,
                    format!(
                        "encrypted frame {i} (at byte {}) fails authentication: the file is damaged",
                        f.raw_offset
                    ),
                )
            })?;
            sink(plain);
        }
        Ok(())
    }

    fn forget(&self, path: &Path) {
        self.index.lock().remove(path);
    }
}

/// A file being written: plaintext gathers until a frame is full or the
/// caller syncs.
struct EncryptedFile {
    inner: Box<dyn WritableFile>,
    key: Arc<LessSafeKey>,
    base: [u8; NONCE_LEN],
    next_frame: u64,
    pending: Vec<u8>,
    /// Set by a failed write: nothing more is written, not even on drop.
    failed: bool,
}

impl std::fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFile")
            .field("inner", &self.inner)
            .field("next_frame", &self.next_frame)
            .finish_non_exhaustive()
    }
}

impl EncryptedFile {
    /// Seals up to `n` pending bytes per frame and writes the frames.
    fn write_frames(&mut self, all: bool) -> Result<()> {
        if self.failed {
            return Err(Error::Poisoned(
                "an earlier write to this file failed".into(),
            ));
        }
        let mut out = Vec::new();
        let mut done = 0;
        while self.pending.len() - done >= FRAME_PLAIN || (all && done < self.pending.len()) {
            let n = FRAME_PLAIN.min(self.pending.len() - done);
            file::seal(
                &self.key,
                &self.base,
                self.next_frame,
                &self.pending[done..done + n],
                &mut out,
            )?;
            self.next_frame += 1;
            done += n;
        }
        if out.is_empty() {
            return Ok(());
        }
        self.pending.drain(..done);
        self.inner.append(&out).inspect_err(|_| self.failed = true)
    }
}

impl WritableFile for EncryptedFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(data);
        self.write_frames(false)
    }

    fn sync(&mut self) -> Result<()> {
        self.write_frames(true)?;
        self.inner.sync().inspect_err(|_| self.failed = true)
    }
}

impl Drop for EncryptedFile {
    fn drop(&mut self) {
        // What a plain file would have handed to the kernel already; it is
        // not durable, as it would not be there either.
        if !self.failed && !self.pending.is_empty() {
            let _ = self.write_frames(true);
        }
    }
}

impl Vfs for EncryptedVfs {
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        self.inner.exists(path)
    }

    fn len(&self, path: &Path) -> Result<u64> {
        if self.is_plain(path) {
            return self.inner.len(path);
        }
        Ok(self.frames(path)?.plain_len())
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        if self.is_plain(path) {
            return self.inner.create(path);
        }
        self.forget(path);
        let base = random::<NONCE_LEN>()?;
        let mut inner = self.inner.create(path)?;
        inner.append(&file::header(&base))?;
        Ok(Box::new(EncryptedFile {
            inner,
            key: Arc::clone(&self.key),
            base,
            next_frame: 0,
            pending: Vec::new(),
            failed: false,
        }))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        if self.is_plain(path) {
            return self.inner.read(path);
        }
        let mut raw = self.inner.read(path)?;
        let mut ix = FrameIndex {
            base: file::parse_header(path, &raw)?,
            ..FrameIndex::default()
        };
        if ix.base.is_none() {
            return Ok(Vec::new());
        }
        ix.extend(raw.len() as u64, |at| {
            let at = usize::try_from(at).unwrap_or(usize::MAX);
            raw.get(at..at.saturating_add(4))
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| Error::corrupt(path, "frame length past the end"))
        })?;
        let mut out = Vec::with_capacity(usize::try_from(ix.plain_len()).unwrap_or(0));
        let n = ix.frames.len();
        if n > 0 {
            let mut sink = |p: &[u8]| out.extend_from_slice(p);
            self.decrypt_frames(path, &ix, 0..n - 1, &mut raw, 0, &mut sink)?;
            // The last frame failing to open is a torn tail (see `frames`):
            // it adds nothing.
            let _ = self.decrypt_frames(path, &ix, n - 1..n, &mut raw, 0, &mut sink);
        }
        Ok(out)
    }

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
        if self.is_plain(path) {
            return self.inner.read_at(path, offset, len);
        }
        let ix = self.frames(path)?;
        let end = offset.checked_add(len).filter(|e| *e <= ix.plain_len());
        if end.is_none() {
            return Err(Error::corrupt(
                path,
                format!(
                    "expected {len} bytes at offset {offset}, file ends after {}",
                    ix.plain_len().saturating_sub(offset)
                ),
            ));
        }
        let range = ix.covering(offset, len);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let first = ix.frames[range.start];
        let last = ix.frames[range.end - 1];
        let raw_start = first.raw_offset;
        let mut raw = self.inner.read_at(
            path,
            raw_start,
            last.raw_offset + last.raw_len() - raw_start,
        )?;
        let mut plain = Vec::new();
        let mut sink = |p: &[u8]| plain.extend_from_slice(p);
        self.decrypt_frames(path, &ix, range, &mut raw, raw_start, &mut sink)?;
        let skip = usize::try_from(offset - first.plain_offset).unwrap_or(usize::MAX);
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        plain
            .get(skip..skip.saturating_add(want))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::corrupt(path, "decrypted range shorter than its frames"))
    }

    fn map(&self, path: &Path) -> Result<Buffer> {
        let ix = self.frames(path)?;
        let mut raw = self.inner.read_at(path, 0, ix.end().min(ix.raw_len))?;
        let cap = usize::try_from(ix.plain_len())
            .map_err(|_| Error::corrupt(path, "file too large for memory"))?;
        // 64-byte aligned, as Arrow wants its buffers.
        let mut out = MutableBuffer::with_capacity(cap);
        let mut sink = |p: &[u8]| out.extend_from_slice(p);
        self.decrypt_frames(path, &ix, 0..ix.frames.len(), &mut raw, 0, &mut sink)?;
        Ok(out.into())
    }

    fn maps_to_memory(&self) -> bool {
        true
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)?;
        let mut index = self.index.lock();
        index.remove(to);
        if let Some(ix) = index.remove(from) {
            index.insert(to.to_path_buf(), ix);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.forget(path);
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.inner.sync_dir(dir)
    }

    fn set_read_only(&self, path: &Path) -> Result<()> {
        self.inner.set_read_only(path)
    }

    fn lock(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        self.inner.lock(dir)
    }
}
