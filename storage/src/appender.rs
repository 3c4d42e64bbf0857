//! [`CrcAppender`]: writes a file through a buffer, counting its bytes and
//! keeping their CRC-32C, so that a segment is streamed to its file instead
//! of being built whole in memory first.

use crate::error::{Error, Result};
use crate::io::WritableFile;

/// Bytes gathered before one append to the file.
const BUFFER: usize = 1 << 20;

/// Appends to a file in pieces of [`BUFFER`] bytes; [`std::io::Write`] for
/// encoders that write to one (Arrow's IPC writer).
pub(crate) struct CrcAppender<'a> {
    file: &'a mut dyn WritableFile,
    buf: Vec<u8>,
    len: u64,
    crc: u32,
    /// The file's error behind the last failed `std::io::Write` call.
    error: Option<Error>,
}

impl<'a> CrcAppender<'a> {
    pub(crate) fn new(file: &'a mut dyn WritableFile) -> Self {
        Self {
            file,
            buf: Vec::with_capacity(BUFFER),
            len: 0,
            crc: 0,
            error: None,
        }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// CRC-32C of every byte written so far.
    pub(crate) fn crc(&self) -> u32 {
        self.crc
    }

    pub(crate) fn put(&mut self, data: &[u8]) -> Result<()> {
        self.len += data.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, data);
        if self.buf.len() + data.len() > BUFFER {
            self.drain()?;
        }
        if data.len() >= BUFFER {
            return self.file.append(data);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// Zero bytes up to the next multiple of 8.
    pub(crate) fn pad8(&mut self) -> Result<()> {
        let pad = (8 - self.len % 8) % 8;
        self.put(&[0u8; 8][..pad as usize])
    }

    /// Hands what is buffered to the file.
    pub(crate) fn drain(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.file.append(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// The file's error behind a failed `std::io::Write` call, if that is
    /// what failed.
    pub(crate) fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }
}

impl std::io::Write for CrcAppender<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self.put(data) {
            Ok(()) => Ok(data.len()),
            Err(e) => {
                let io = std::io::Error::other(e.to_string());
                self.error = Some(e);
                Err(io)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
