//! Side files: whole files the layers above keep with the store (the
//! Parquet archive of expired rows), under `<dir>/archive/`. The store
//! writes them atomically (a temporary name, fsync, rename, fsync of the
//! folder) through its [`Vfs`](crate::Vfs), never reads their contents
//! itself, and `VERIFY` does not count the folder as an orphan. Which of
//! them are live is for the caller to record (in a table, in the same
//! commit as the change they stand for) and to clean up at open.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::Store;

/// The folder of side files inside the store's directory.
pub const SIDE_DIR: &str = "archive";

impl Store {
    /// The path of side file `rel` (a relative path without `..`).
    fn side_path(&self, rel: &str) -> Result<PathBuf> {
        let r = Path::new(rel);
        if rel.is_empty() || !r.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(Error::InvalidInput(format!(
                "side file \"{rel}\" must be a relative path inside the store"
            )));
        }
        Ok(self.shared().dir.join(SIDE_DIR).join(r))
    }

    /// Writes side file `rel` whole and durably: after a crash it holds
    /// all of `bytes` or does not exist.
    pub fn write_side_file(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.side_path(rel)?;
        let vfs = &self.shared().vfs;
        let parent = path.parent().unwrap_or(&path).to_path_buf();
        vfs.create_dir_all(&parent)?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = vfs.create(&tmp)?;
        f.append(bytes)?;
        f.sync()?;
        drop(f);
        vfs.rename(&tmp, &path)?;
        vfs.sync_dir(&parent)
    }

    /// The contents of side file `rel`.
    pub fn read_side_file(&self, rel: &str) -> Result<Vec<u8>> {
        self.shared().vfs.read(&self.side_path(rel)?)
    }

    /// Removes side file `rel` (no error if it is gone already).
    pub fn remove_side_file(&self, rel: &str) -> Result<()> {
        let path = self.side_path(rel)?;
        let vfs = &self.shared().vfs;
        if vfs.exists(&path)? {
            vfs.remove(&path)?;
        }
        Ok(())
    }

    /// The names of the side files in folder `rel` (`""`: the side
    /// folder itself; none if it does not exist).
    pub fn list_side_files(&self, rel: &str) -> Result<Vec<String>> {
        let path = if rel.is_empty() {
            self.shared().dir.join(SIDE_DIR)
        } else {
            self.side_path(rel)?
        };
        let vfs = &self.shared().vfs;
        match vfs.list(&path) {
            Ok(names) => Ok(names),
            Err(_) if !vfs.exists(&path)? => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::sim::SimVfs;
    use crate::{Options, Store};

    #[test]
    fn side_files_round_trip_and_stay_inside_the_store() {
        let store = Store::open_with("/db", Options::default(), Arc::new(SimVfs::new())).unwrap();
        store.write_side_file("t/a.parquet", b"hello").unwrap();
        assert_eq!(store.read_side_file("t/a.parquet").unwrap(), b"hello");
        assert_eq!(store.list_side_files("t").unwrap(), ["a.parquet"]);
        store.remove_side_file("t/a.parquet").unwrap();
        assert!(store.list_side_files("t").unwrap().is_empty());
        assert!(store.list_side_files("nope").unwrap().is_empty());
        for bad in ["../x", "/etc/passwd", "", "t/../../x"] {
            assert!(store.write_side_file(bad, b"x").is_err(), "{bad}");
        }
        assert!(store.verify().unwrap().orphans.is_empty());
    }
}
