//! File I/O behind one trait.
//!
//! Every write, fsync, rename and delete the storage engine performs goes
//! through [`Vfs`], so tests can swap the operating system for
//! [`SimVfs`](crate::sim::SimVfs), which simulates a crash (everything not yet
//! fsynced is lost) or fails the Nth operation. [`OsVfs`] is the real thing.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use arrow::buffer::Buffer;

use crate::error::{Error, Result};

/// A file opened for appending.
pub trait WritableFile: Send + Debug {
    /// Appends `data` at the end of the file.
    fn append(&mut self, data: &[u8]) -> Result<()>;
    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&mut self) -> Result<()>;
}

/// A held lock on a database directory; released when dropped.
pub trait DirLock: Send + Sync + Debug {}

/// The file system as the storage engine sees it.
pub trait Vfs: Send + Sync + Debug + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// Names of the entries of a directory (not their paths), sorted.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// Whether a file exists.
    fn exists(&self, path: &Path) -> Result<bool>;
    /// The length of a file in bytes.
    fn len(&self, path: &Path) -> Result<u64>;
    /// Creates (or truncates) a file for appending.
    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> Result<Vec<u8>>;
    /// Reads `len` bytes at `offset`; fewer bytes than asked is corruption.
    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Maps a sealed, read-only file into memory (or loads it, for a simulated
    /// file system). The caller has verified its checksum.
    fn map(&self, path: &Path) -> Result<Buffer>;
    /// Whether [`Vfs::map`] gives a copy in memory rather than a mapping
    /// (a damaged or short file then cannot fault, so it may be mapped
    /// before its checksum is checked, and read only once).
    fn maps_to_memory(&self) -> bool {
        false
    }
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> Result<()>;
    /// Makes the directory's entries (creations, renames, deletions) durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Marks a sealed file read-only (mode 0444).
    fn set_read_only(&self, path: &Path) -> Result<()>;
    /// Takes an exclusive lock on the database directory, or fails with
    /// [`Error::Locked`] when another process holds it.
    fn lock(&self, dir: &Path) -> Result<Box<dyn DirLock>>;
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

#[derive(Debug)]
struct OsFile {
    file: File,
    path: PathBuf,
}

impl WritableFile for OsFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fsync", &self.path, e))
    }
}

/// How long opening waits for a directory lock that is being let go
/// before it says the database is in use.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

#[derive(Debug)]
struct OsLock {
    _file: File,
}

impl DirLock for OsLock {}

impl Vfs for OsVfs {
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| Error::io("mkdir", dir, e))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io("readdir", dir, e))? {
            let entry = entry.map_err(|e| Error::io("readdir", dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        path.try_exists().map_err(|e| Error::io("stat", path, e))
    }

    fn len(&self, path: &Path) -> Result<u64> {
        fs::metadata(path)
            .map(|m| m.len())
            .map_err(|e| Error::io("stat", path, e))
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io("create", path, e))?;
        Ok(Box::new(OsFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        fs::read(path).map_err(|e| Error::io("read", path, e))
    }

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", path, e))?;
        let want = usize::try_from(len)
            .map_err(|_| Error::corrupt(path, format!("region of {len} bytes is too large")))?;
        let mut buf = Vec::with_capacity(want);
        file.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if buf.len() != want {
            return Err(Error::corrupt(
                path,
                format!(
                    "expected {len} bytes at offset {offset}, file ends after {}",
                    buf.len()
                ),
            ));
        }
        Ok(buf)
    }

    fn map(&self, path: &Path) -> Result<Buffer> {
        crate::mmap::map_read_only(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| Error::io("unlink", path, e))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("fsync directory", dir, e))
    }

    fn set_read_only(&self, path: &Path) -> Result<()> {
        let mut perms = fs::metadata(path)
            .map_err(|e| Error::io("stat", path, e))?
            .permissions();
        perms.set_readonly(true);
        fs::set_permissions(path, perms).map_err(|e| Error::io("chmod", path, e))
    }

    /// Takes `LOCK` with `flock`, waiting up to 250 ms (`LOCK_WAIT`) for a holder
    /// that is letting go. A process that spawns another one while it
    /// closes a database keeps the lock for an instant after the close:
    /// between fork and exec the child holds a copy of every descriptor
    /// (close-on-exec acts at exec), and with it the lock; reopening right
    /// away then finds the lock held though no one uses the database.
    fn lock(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Box::new(OsLock { _file: file })),
                Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(Error::Locked(dir.to_path_buf()));
                }
                Err(fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_being_let_go_is_waited_for_and_a_held_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let held = OsVfs.lock(dir.path()).unwrap();
        let e = OsVfs.lock(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Locked(_)), "{e}");
        // Let go while another open is waiting: it gets the lock.
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(held);
        });
        let taken = OsVfs.lock(dir.path());
        release.join().unwrap();
        assert!(taken.is_ok());
    }
}
