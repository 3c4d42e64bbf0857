//! `verify`: checks every file of a store against its checksums and against
//! each other, like SQLite's `PRAGMA integrity_check`.
//!
//! It reads each segment anew (not through the caches of the open store),
//! checks the footer, metadata and data checksums, decodes every batch,
//! recomputes the zone maps and rebuilds every bitmap index to compare them
//! with what the file holds, checks each deletion vector, and reads every log
//! record. Problems are collected, not stopped at.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::Schema;

use crate::error::{Error, Result};
use crate::index::ColumnIndex;
use crate::io::Vfs;
use crate::manifest::{self, Manifest};
use crate::segment::{self, Segment};
use crate::zonemap::ColumnStats;
use crate::{dv, wal};

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file concerned.
    pub path: PathBuf,
    /// What is wrong.
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.detail)
    }
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Files read.
    pub files_checked: usize,
    /// Segments checked.
    pub segments: usize,
    /// Rows in those segments (deleted ones included).
    pub rows: u64,
    /// Bitmap indexes rebuilt and compared.
    pub indexes: usize,
    /// Log records read.
    pub wal_records: usize,
    /// Problems found; empty means the store is sound.
    pub problems: Vec<Problem>,
    /// Files in the directory that no manifest references (left by a crash;
    /// the next open removes them). Not a problem.
    pub orphans: Vec<PathBuf>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the store in `dir`, whose live manifest is `expected_version`.
/// `pause_commits` runs its argument while no commit writes to the log.
pub(crate) fn verify(
    vfs_arc: &Arc<dyn Vfs>,
    dir: &Path,
    expected_version: u64,
    pause_commits: &dyn Fn(&mut dyn FnMut()),
) -> Result<VerifyReport> {
    let vfs = vfs_arc.as_ref();
    let mut r = VerifyReport::default();
    let m = match manifest::load_current(vfs, dir) {
        Ok(Some((_, m))) => m,
        Ok(None) => {
            r.problems.push(Problem {
                path: dir.join(manifest::CURRENT),
                detail: "missing".into(),
            });
            return Ok(r);
        }
        Err(e) => {
            r.problems.push(problem(dir, e));
            return Ok(r);
        }
    };
    r.files_checked += 2;
    if m.version != expected_version {
        r.problems.push(Problem {
            path: dir.join(manifest::file_name(m.version)),
            detail: format!(
                "CURRENT names version {}, the open store published {expected_version}",
                m.version
            ),
        });
    }
    let mut referenced: HashSet<String> = [
        manifest::CURRENT.to_string(),
        manifest::file_name(m.version),
        "LOCK".into(),
        crate::crypt::KEY_CHECK_FILE.to_string(),
        crate::side::SIDE_DIR.to_string(),
    ]
    .into();
    check_segments(vfs_arc, dir, &m, &mut r, &mut referenced);
    let mut wal_result = Ok(());
    pause_commits(&mut || wal_result = check_wal(vfs, dir, &m, &mut r, &mut referenced));
    wal_result?;
    for name in vfs.list(dir)? {
        if !referenced.contains(&name) {
            r.orphans.push(dir.join(name));
        }
    }
    Ok(r)
}

fn problem(dir: &Path, e: Error) -> Problem {
    match e {
        Error::Corruption { path, detail } => Problem { path, detail },
        Error::Io { path, op, source } => Problem {
            path,
            detail: format!("{op}: {source}"),
        },
        other => Problem {
            path: dir.to_path_buf(),
            detail: other.to_string(),
        },
    }
}

fn check_segments(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    m: &Manifest,
    r: &mut VerifyReport,
    referenced: &mut HashSet<String>,
) {
    for t in &m.tables {
        for s in &t.segments {
            referenced.insert(segment::file_name(s.id));
            r.files_checked += 1;
            r.segments += 1;
            r.rows += s.rows;
            if let Err(e) = check_segment(vfs, dir, s.id, s.rows, s.file_len, r) {
                r.problems.push(problem(dir, e));
            }
            if let Some(d) = s.dv {
                let name = dv::file_name(s.id, d.version);
                referenced.insert(name.clone());
                r.files_checked += 1;
                let path = dir.join(name);
                match vfs
                    .read(&path)
                    .and_then(|b| dv::decode(&b, &path, s.id, s.rows))
                {
                    Ok(bm) if bm.len() != d.count => r.problems.push(Problem {
                        path,
                        detail: format!(
                            "holds {} deleted rows, the manifest says {}",
                            bm.len(),
                            d.count
                        ),
                    }),
                    Ok(_) => {}
                    Err(e) => r.problems.push(problem(dir, e)),
                }
            }
        }
    }
}

fn check_segment(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    id: u64,
    rows: u64,
    file_len: u64,
    r: &mut VerifyReport,
) -> Result<()> {
    let seg = Segment::open(Arc::clone(vfs), dir, id, rows)?;
    let path = seg.path().to_path_buf();
    if seg.file_len() != file_len {
        return Err(Error::corrupt(
            &path,
            format!(
                "file is {} bytes, the manifest says {file_len}",
                seg.file_len()
            ),
        ));
    }
    let mapped = seg.mapped()?;
    let all: Vec<usize> = (0..seg.meta().columns.len()).collect();
    let decoder = seg.decoder(&mapped, &all, false)?;
    let mut batches = Vec::new();
    for i in 0..seg.meta().batch_rows.len() {
        batches.push(seg.read_batch(&decoder, &mapped, i)?);
    }
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    let whole = concat_batches(&schema, &batches)
        .map_err(|e| Error::corrupt(&path, format!("cannot join batches: {e}")))?;
    if whole.num_rows() as u64 != rows {
        return Err(Error::corrupt(
            &path,
            format!("holds {} rows, expected {rows}", whole.num_rows()),
        ));
    }
    for (i, c) in seg.meta().columns.iter().enumerate() {
        let Some(col) = whole.columns().get(i) else {
            return Err(Error::corrupt(
                &path,
                format!("column \"{}\" is missing from the data", c.name),
            ));
        };
        if ColumnStats::compute(col) != c.stats {
            r.problems.push(Problem {
                path: path.clone(),
                detail: format!("zone map of column \"{}\" does not match its data", c.name),
            });
        }
        if c.index.is_some() {
            r.indexes += 1;
            let stored = seg.index(&c.name)?;
            let rebuilt = ColumnIndex::build(col, None);
            if stored.as_deref() != rebuilt.as_ref() {
                r.problems.push(Problem {
                    path: path.clone(),
                    detail: format!(
                        "bitmap index of column \"{}\" does not match its data",
                        c.name
                    ),
                });
            }
        }
    }
    Ok(())
}

fn check_wal(
    vfs: &dyn Vfs,
    dir: &Path,
    m: &Manifest,
    r: &mut VerifyReport,
    referenced: &mut HashSet<String>,
) -> Result<()> {
    let mut seqs: Vec<u64> = vfs
        .list(dir)?
        .iter()
        .filter_map(|n| wal::parse_file_name(n))
        .filter(|s| *s >= m.wal_first_seq)
        .collect();
    seqs.sort_unstable();
    let mut prev = None;
    for seq in seqs {
        let name = wal::file_name(seq);
        referenced.insert(name.clone());
        r.files_checked += 1;
        let path = dir.join(name);
        match wal::read_file(vfs, &path, false, prev) {
            Ok(scan) => {
                r.wal_records += scan.records.len();
                prev = scan.records.last().map(|x| x.lsn).or(prev);
            }
            Err(e) => r.problems.push(problem(dir, e)),
        }
    }
    Ok(())
}
