//! A simulated file system for crash and fault-injection tests.
//!
//! [`SimVfs`] keeps files in memory and tracks, for each one, what would be on
//! the disk after a power cut: a file's bytes are durable up to its last
//! `sync`, and a directory's entries (creations, renames, deletions) only after
//! a `sync_dir` of that directory. [`SimVfs::crash`] throws everything else
//! away, optionally keeping a torn prefix of unsynced appends, as a kernel may.
//! [`SimVfs::fail_at`] makes the Nth mutating operation (create, write, fsync,
//! rename, delete, directory sync) fail, once or from then on.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::buffer::Buffer;
use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::io::{DirLock, Vfs, WritableFile};

/// How a planned fault behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Only the Nth operation fails.
    Once,
    /// The Nth operation and every mutating operation after it fail, as when a
    /// disk goes away.
    Persistent,
}

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    next_inode: u64,
    ops: u64,
    fail_at: Option<(u64, FaultMode)>,
    injected: Vec<&'static str>,
}

impl State {
    /// Counts one mutating operation and decides whether it fails.
    fn tick(&mut self, op: &'static str, path: &Path) -> Result<()> {
        self.ops += 1;
        if let Some((n, mode)) = self.fail_at {
            let fails = match mode {
                FaultMode::Once => self.ops == n,
                FaultMode::Persistent => self.ops >= n,
            };
            if fails {
                self.injected.push(op);
                return Err(Error::io(op, path, std::io::Error::other("injected fault")));
            }
        }
        Ok(())
    }

    fn inode(&self, path: &Path) -> Result<u64> {
        self.names.get(path).copied().ok_or_else(|| {
            Error::io(
                "open",
                path,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })
    }
}

/// An in-memory file system that can crash and fail on purpose.
#[derive(Debug, Default, Clone)]
pub struct SimVfs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct SimLock;

impl DirLock for SimLock {}

impl SimVfs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the `n`th mutating operation from now on fail (1 = the next one).
    pub fn fail_at(&self, n: u64, mode: FaultMode) {
        let mut s = self.state.lock();
        let at = s.ops + n;
        s.fail_at = Some((at, mode));
    }

    /// Removes any planned fault.
    pub fn clear_faults(&self) {
        self.state.lock().fail_at = None;
    }

    /// How many mutating operations have run so far.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// The operations that were made to fail so far (`write`, `fsync`,
    /// `rename`, `unlink`, `create`, `fsync directory`).
    pub fn injected_faults(&self) -> Vec<&'static str> {
        self.state.lock().injected.clone()
    }

    /// Simulates a power cut: files fall back to their durable contents and
    /// directories to their durable entries. With `torn = Some(seed)`, each
    /// file keeps a pseudo-random prefix of the bytes appended since its last
    /// sync, as a torn write would. Planned faults are cleared.
    pub fn crash(&self, torn: Option<u64>) {
        let mut s = self.state.lock();
        let mut rng = torn.map(|seed| seed | 1);
        for inode in s.inodes.values_mut() {
            let mut keep = inode.durable.clone();
            if let Some(x) = rng.as_mut()
                && inode.data.len() > keep.len()
                && inode.data.starts_with(&keep)
            {
                // xorshift: a deterministic choice of how much of the tail survived.
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                let extra = inode.data.len() - keep.len();
                let n = usize::try_from(*x % (extra as u64 + 1)).unwrap_or(0);
                keep.extend_from_slice(&inode.data[inode.durable.len()..inode.durable.len() + n]);
            }
            inode.data = keep.clone();
            inode.durable = keep;
        }
        s.names = s.durable_names.clone();
        let live: std::collections::HashSet<u64> = s.names.values().copied().collect();
        s.inodes.retain(|id, _| live.contains(id));
        s.fail_at = None;
    }

    /// Overwrites bytes of a file in place, durably (for corruption tests).
    pub fn corrupt(&self, path: &Path, offset: usize, bytes: &[u8]) -> Result<()> {
        let mut s = self.state.lock();
        let id = s.inode(path)?;
        let inode = s
            .inodes
            .get_mut(&id)
            .ok_or_else(|| Error::corrupt(path, "no inode"))?;
        for (i, b) in bytes.iter().enumerate() {
            if let Some(slot) = inode.data.get_mut(offset + i) {
                *slot = *b;
            }
        }
        inode.durable = inode.data.clone();
        Ok(())
    }

    /// Every file's path and current contents (for tests that scan the bytes).
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let s = self.state.lock();
        s.names
            .iter()
            .filter_map(|(p, id)| s.inodes.get(id).map(|i| (p.clone(), i.data.clone())))
            .collect()
    }
}

impl WritableFile for SimFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let mut s = self.state.lock();
        s.tick("write", &self.path)?;
        if let Some(inode) = s.inodes.get_mut(&self.inode) {
            inode.data.extend_from_slice(data);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        let mut s = self.state.lock();
        s.tick("fsync", &self.path)?;
        if let Some(inode) = s.inodes.get_mut(&self.inode) {
            inode.durable = inode.data.clone();
        }
        Ok(())
    }
}

impl Vfs for SimVfs {
    fn create_dir_all(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let s = self.state.lock();
        let mut out: Vec<String> = s
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        out.sort();
        Ok(out)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        Ok(self.state.lock().names.contains_key(path))
    }

    fn len(&self, path: &Path) -> Result<u64> {
        let s = self.state.lock();
        let id = s.inode(path)?;
        Ok(s.inodes.get(&id).map_or(0, |i| i.data.len() as u64))
    }

    fn create(&self, path: &Path) -> Result<Box<dyn WritableFile>> {
        let mut s = self.state.lock();
        s.tick("create", path)?;
        let id = s.next_inode;
        s.next_inode += 1;
        s.inodes.insert(id, Inode::default());
        s.names.insert(path.to_path_buf(), id);
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            inode: id,
            path: path.into(),
        }))
    }

    fn read(&self, path: &Path) -> Result<Vec<u8>> {
        let s = self.state.lock();
        let id = s.inode(path)?;
        Ok(s.inodes
            .get(&id)
            .map(|i| i.data.clone())
            .unwrap_or_default())
    }

    fn read_at(&self, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
        let data = self.read(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        data.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
            Error::corrupt(
                path,
                format!(
                    "expected {len} bytes at offset {offset}, file has {}",
                    data.len()
                ),
            )
        })
    }

    fn map(&self, path: &Path) -> Result<Buffer> {
        Ok(Buffer::from_vec(self.read(path)?))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut s = self.state.lock();
        s.tick("rename", from)?;
        let id = s.inode(from)?;
        s.names.remove(from);
        s.names.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<()> {
        let mut s = self.state.lock();
        s.tick("unlink", path)?;
        s.inode(path)?;
        s.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut s = self.state.lock();
        s.tick("fsync directory", dir)?;
        let State {
            names,
            durable_names,
            ..
        } = &mut *s;
        durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, id) in names.iter() {
            if p.parent() == Some(dir) {
                durable_names.insert(p.clone(), *id);
            }
        }
        Ok(())
    }

    fn set_read_only(&self, _path: &Path) -> Result<()> {
        Ok(())
    }

    fn lock(&self, _dir: &Path) -> Result<Box<dyn DirLock>> {
        Ok(Box::new(SimLock))
    }
}
