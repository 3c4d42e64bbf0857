//! Encrypted files: a header, then frames of at most [`FRAME_PLAIN`] bytes,
//! each sealed with AES-256-GCM.
//!
//! ```text
//! header  magic "TSRENC01" (8) · nonce base (12)
//! frame   plaintext length u32 LE · ciphertext · GCM tag (16)
//! ```
//!
//! Frame `i` is sealed under the nonce `base XOR (0⁴ · i as u64 LE)`: unique
//! within the file, and the base is drawn at random for every file created,
//! so no nonce repeats under the data key. A frame moved to another place or
//! file fails to open. A writer seals a frame when it holds
//! [`FRAME_PLAIN`] bytes and on every `sync`, so what was synced is whole
//! frames and a crash can only tear the last one; readers treat a last frame
//! that is cut short or fails to open as the torn tail of an unsynced write,
//! and any other frame that fails to open as corruption.

use std::path::Path;

use ring::aead::{Aad, LessSafeKey, NONCE_LEN, Nonce, Tag};

use crate::error::{Error, Result};

/// Magic of an encrypted file.
pub(crate) const MAGIC: &[u8; 8] = b"TSRENC01";
/// Bytes before the first frame.
pub(crate) const HEADER_LEN: u64 = 8 + NONCE_LEN as u64;
/// Plaintext bytes per full frame.
pub(crate) const FRAME_PLAIN: usize = 256 << 10;
/// Bytes a frame adds to its plaintext: the length and the tag.
pub(crate) const FRAME_OVERHEAD: u64 = 4 + TAG_LEN as u64;
const TAG_LEN: usize = 16;

/// The header of a new file with nonce base `base`.
pub(crate) fn header(base: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(base);
    h
}

/// The nonce base of a file whose first bytes are `head`; `None` for a file
/// too short to hold a header (created, then cut short by a crash).
pub(crate) fn parse_header(path: &Path, head: &[u8]) -> Result<Option<[u8; NONCE_LEN]>> {
    if (head.len() as u64) < HEADER_LEN {
        return Ok(None);
    }
    if &head[..8] != MAGIC {
        return Err(Error::corrupt(
            path,
            "not an encrypted Tessera file (the database is encrypted; was the file copied in from elsewhere?)",
        ));
    }
    let mut base = [0u8; NONCE_LEN];
    base.copy_from_slice(&head[8..HEADER_LEN as usize]);
    Ok(Some(base))
}

fn nonce(base: &[u8; NONCE_LEN], index: u64) -> Nonce {
    let mut n = *base;
    for (slot, b) in n[4..].iter_mut().zip(index.to_le_bytes()) {
        *slot ^= b;
    }
    Nonce::assume_unique_for_key(n)
}

/// Seals `plain` as frame `index` and appends the frame to `out`.
pub(crate) fn seal(
    key: &LessSafeKey,
    base: &[u8; NONCE_LEN],
    index: u64,
    plain: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let len = u32::try_from(plain.len())
        .map_err(|_| Error::InvalidInput("frame larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    let start = out.len();
    out.extend_from_slice(plain);
    let tag = key
        .seal_in_place_separate_tag(nonce(base, index), Aad::empty(), &mut out[start..])
        .map_err(|_| Error::InvalidInput("cannot encrypt".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens frame `index` whose ciphertext and tag are `sealed`, in place;
/// `None` when it fails to authenticate.
pub(crate) fn open<'a>(
    key: &LessSafeKey,
    base: &[u8; NONCE_LEN],
    index: u64,
    sealed: &'a mut [u8],
) -> Option<&'a mut [u8]> {
    let split = sealed.len().checked_sub(TAG_LEN)?;
    let (body, tag) = sealed.split_at_mut(split);
    let tag = Tag::try_from(&*tag).ok()?;
    key.open_in_place_separate_tag(nonce(base, index), Aad::empty(), tag, body, 0..)
        .ok()
}

/// One frame of a file: where it is, and which plaintext it holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    /// Offset of the frame's length field in the file.
    pub raw_offset: u64,
    /// Offset of its first plaintext byte in the decrypted file.
    pub plain_offset: u64,
    /// Plaintext bytes.
    pub plain_len: u32,
}

impl Frame {
    /// Where its ciphertext and tag lie in the file.
    pub fn sealed_range(&self) -> (u64, u64) {
        (
            self.raw_offset + 4,
            u64::from(self.plain_len) + TAG_LEN as u64,
        )
    }

    /// Bytes the frame takes in the file.
    pub fn raw_len(&self) -> u64 {
        u64::from(self.plain_len) + FRAME_OVERHEAD
    }
}

/// The frames of one file, as far as they are whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct FrameIndex {
    /// The nonce base; `None` for a file without a whole header.
    pub base: Option<[u8; NONCE_LEN]>,
    /// Whole frames, in order.
    pub frames: Vec<Frame>,
    /// The file's length on disk when indexed.
    pub raw_len: u64,
}

impl FrameIndex {
    /// Plaintext length.
    pub fn plain_len(&self) -> u64 {
        self.frames
            .last()
            .map_or(0, |f| f.plain_offset + u64::from(f.plain_len))
    }

    /// Offset just past the last whole frame.
    pub fn end(&self) -> u64 {
        self.frames
            .last()
            .map_or(HEADER_LEN, |f| f.raw_offset + f.raw_len())
    }

    /// Adds the whole frames whose length fields `read_len(offset)` gives,
    /// from `end()` to `raw_len`.
    pub fn extend(
        &mut self,
        raw_len: u64,
        mut read_len: impl FnMut(u64) -> Result<u32>,
    ) -> Result<()> {
        self.raw_len = raw_len;
        let mut at = self.end();
        let mut plain = self.plain_len();
        while at + FRAME_OVERHEAD <= raw_len {
            let len = read_len(at)?;
            let frame = Frame {
                raw_offset: at,
                plain_offset: plain,
                plain_len: len,
            };
            if at + frame.raw_len() > raw_len {
                break; // cut short by a crash
            }
            self.frames.push(frame);
            at += frame.raw_len();
            plain += u64::from(len);
        }
        Ok(())
    }

    /// The frames holding plaintext bytes `offset .. offset + len`, as a
    /// range of indexes into `frames`.
    pub fn covering(&self, offset: u64, len: u64) -> std::ops::Range<usize> {
        let first = self
            .frames
            .partition_point(|f| f.plain_offset + u64::from(f.plain_len) <= offset);
        let end = offset + len;
        let last = self.frames.partition_point(|f| f.plain_offset < end);
        first..last.max(first)
    }
}
