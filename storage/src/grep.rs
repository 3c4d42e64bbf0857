//! Looking for byte strings in every file of a database directory
//! ([`Store::find_bytes`]): the proof that erased data is gone. It reads
//! the raw bytes of every file (segments, deletion vectors, logs,
//! manifests, and whatever else lies in the directory), not what a scan
//! would decode, so nothing a reader skips can hide a value.

use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;

use crate::error::{Error, Result};
use crate::io::Vfs;
use crate::store::Store;

/// Bytes read at a time.
const CHUNK: u64 = 8 << 20;

/// One occurrence of a looked-for value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file, relative to the database directory.
    pub file: PathBuf,
    /// Which of the values (its index in the list given).
    pub value: usize,
    /// Where in the file.
    pub offset: u64,
}

/// What a search read and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindReport {
    /// Files read.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Occurrences (at most 100 per value).
    pub found: Vec<Found>,
}

impl Store {
    /// Searches the raw bytes of every file under the database directory
    /// for `values` (ASCII letters compared without case). Rows written
    /// meanwhile may or may not be read.
    pub fn find_bytes(&self, values: &[Vec<u8>]) -> Result<FindReport> {
        let mut report = FindReport::default();
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        if values.is_empty() {
            return Ok(report);
        }
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(&values)
            .map_err(|e| Error::InvalidInput(format!("the values cannot be searched for: {e}")))?;
        let overlap = values.iter().map(|v| v.len()).max().unwrap_or(1) as u64;
        let sh = self.shared();
        let mut files = Vec::new();
        walk(sh.vfs.as_ref(), &sh.dir, &mut files)?;
        let mut per_value = vec![0usize; values.len()];
        for path in files {
            let Ok(len) = sh.vfs.len(&path) else { continue };
            let rel = path.strip_prefix(&sh.dir).unwrap_or(&path).to_path_buf();
            report.files += 1;
            let mut offset = 0u64;
            // End of the bytes already searched: a match wholly before it
            // was found with the previous chunk.
            let mut searched = 0u64;
            while offset < len {
                let n = CHUNK.min(len - offset);
                let Ok(buf) = sh.vfs.read_at(&path, offset, n) else {
                    // Gone meanwhile (a compaction removed it), or a directory.
                    break;
                };
                report.bytes += n;
                for m in matcher.find_overlapping_iter(&buf[..]) {
                    let at = offset + m.start() as u64;
                    if offset + (m.end() as u64) <= searched {
                        continue;
                    }
                    let v = m.pattern().as_usize();
                    if per_value[v] < 100 {
                        per_value[v] += 1;
                        report.found.push(Found {
                            file: rel.clone(),
                            value: v,
                            offset: at,
                        });
                    }
                }
                searched = offset + n;
                if searched >= len {
                    break;
                }
                // Re-read the last bytes so a value across chunks is seen.
                offset += n - (overlap - 1).min(n - 1);
            }
        }
        Ok(report)
    }
}

/// Every file under `dir`.
fn walk(vfs: &dyn Vfs, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for name in vfs.list(dir)? {
        let path = dir.join(&name);
        match vfs.list(&path) {
            Ok(children) if !children.is_empty() => walk(vfs, &path, out)?,
            _ => out.push(path),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use crate::sim::SimVfs;
    use crate::{Options, Predicate, Store, TableOptions, Value};

    #[test]
    fn finds_values_until_compaction_purges_them() {
        let store = Store::open_with("/db", Options::default(), Arc::new(SimVfs::new())).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("email", DataType::Utf8, true)]));
        store
            .create_table("t", Arc::clone(&schema), TableOptions::default())
            .unwrap();
        let emails = StringArray::from(vec!["Marie.Dupont@Example.com", "paul@example.com"]);
        store
            .append(
                "t",
                &RecordBatch::try_new(schema, vec![Arc::new(emails)]).unwrap(),
            )
            .unwrap();
        let needles = vec![
            b"marie.dupont@example.com".to_vec(),
            b"nobody@x.org".to_vec(),
        ];
        let before = store.find_bytes(&needles).unwrap();
        assert!(before.found.iter().any(|f| f.value == 0), "{before:?}");
        assert!(before.found.iter().all(|f| f.value == 0));
        store.checkpoint().unwrap();
        assert!(!store.find_bytes(&needles).unwrap().found.is_empty());
        store
            .delete_where(
                "t",
                &Predicate::eq("email", Value::Str("Marie.Dupont@Example.com".into())),
            )
            .unwrap();
        store.compact().unwrap();
        let after = store.find_bytes(&needles).unwrap();
        assert!(after.found.is_empty(), "{after:?}");
        assert!(after.files > 0 && after.bytes > 0);
    }
}
