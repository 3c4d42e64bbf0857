//! Corruption test: flip bytes in and truncate every kind of file (segment,
//! bitmap index, deletion vector, WAL, manifest, CURRENT); opening, reading
//! or verifying must report corruption naming the damaged file. No panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use tessera_storage::{
    CmpOp, Error, Options, OsVfs, Predicate, ScanOptions, Store, TableOptions, Value,
};
use tessera_tests::{batch_counts, log_batch, log_schema};

fn options() -> Options {
    Options {
        background: false,
        ..Options::default()
    }
}

/// A database with two segments (one with a deletion vector and an explicit
/// index), and three log records not yet flushed, the last one small.
fn build(dir: &Path) {
    let store = Store::open_with(dir, options(), Arc::new(OsVfs)).unwrap();
    let opts = TableOptions {
        indexed_columns: vec!["pos".into()],
        auto_index: true,
    };
    store.create_table("log", log_schema(), opts).unwrap();
    for k in 0..4 {
        store.append("log", &log_batch(k)).unwrap();
    }
    store.checkpoint().unwrap();
    store
        .delete_where("log", &Predicate::cmp("batch", CmpOp::Eq, Value::Int(2)))
        .unwrap();
    store.append("log", &log_batch(4)).unwrap();
    store.checkpoint().unwrap();
    store.append("log", &log_batch(5)).unwrap();
    store.append("log", &log_batch(6)).unwrap();
    let tiny = RecordBatch::try_new(
        log_schema(),
        vec![
            Arc::new(Int64Array::from(vec![999])),
            Arc::new(Int64Array::from(vec![0])),
            Arc::new(StringArray::from(vec!["last"])),
        ],
    )
    .unwrap();
    store.append("log", &tiny).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        std::fs::copy(e.path(), &target).unwrap();
        let mut perms = std::fs::metadata(&target).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&target, perms).unwrap();
    }
}

/// Opens, reads everything (plain and through the indexes) and verifies.
fn exercise(dir: &Path) -> Result<Vec<tessera_storage::Problem>, Error> {
    let store = Store::open_with(dir, options(), Arc::new(OsVfs))?;
    let t = store.table("log")?;
    t.scan(&ScanOptions::default())?.collect()?;
    for col in ["pos", "batch"] {
        let pred = Predicate::cmp(col, CmpOp::Eq, Value::Int(3));
        t.scan(&ScanOptions {
            predicate: Some(pred),
            ..ScanOptions::default()
        })?
        .collect()?;
    }
    Ok(store.verify()?.problems)
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip(usize),
    Truncate(usize),
}

#[test]
fn damaged_files_are_reported_as_corruption_of_that_file() {
    let root = tempfile::tempdir().unwrap();
    let pristine = root.path().join("pristine");
    build(&pristine);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&pristine)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.retain(|p| p.file_name().is_some_and(|n| n != "LOCK"));
    files.sort();
    let kinds: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    for prefix in ["seg-", "dv-", "wal-", "MANIFEST-", "CURRENT"] {
        assert!(
            kinds.iter().any(|k| k.starts_with(prefix)),
            "the fixture has a {prefix} file: {kinds:?}"
        );
    }
    let mut cases = 0;
    for (fi, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let len = std::fs::metadata(file).unwrap().len() as usize;
        let mut damages: Vec<Damage> = [
            0,
            9,
            len / 5,
            len / 3,
            len / 2,
            2 * len / 3,
            len.saturating_sub(70),
            len.saturating_sub(5),
            len - 1,
        ]
        .into_iter()
        .map(Damage::Flip)
        .collect();
        damages.extend([
            Damage::Truncate(len / 2),
            Damage::Truncate(len - 1),
            Damage::Truncate(0),
        ]);
        for (di, damage) in damages.into_iter().enumerate() {
            let case = root.path().join(format!("case-{fi}-{di}"));
            copy_dir(&pristine, &case);
            let target = case.join(&name);
            let mut bytes = std::fs::read(&target).unwrap();
            match damage {
                Damage::Flip(at) => bytes[at.min(len - 1)] ^= 0x5a,
                Damage::Truncate(to) => bytes.truncate(to),
            }
            std::fs::write(&target, &bytes).unwrap();
            cases += 1;
            let label = format!("{name} {damage:?}");
            match exercise(&case) {
                Err(Error::Corruption { path, detail }) => {
                    assert_eq!(
                        path.file_name(),
                        target.file_name(),
                        "{label}: blamed {} ({detail})",
                        path.display()
                    );
                }
                Err(other) => panic!("{label}: expected corruption, got {other}"),
                Ok(problems) if !problems.is_empty() => {
                    assert!(
                        problems
                            .iter()
                            .all(|p| p.path.file_name() == target.file_name()),
                        "{label}: {problems:?}"
                    );
                }
                Ok(_) => {
                    // Only the log's tail may be damaged without a report: it is
                    // indistinguishable from a write torn by a crash and is
                    // dropped. Then exactly the last (tiny) record is gone.
                    assert!(name.starts_with("wal-"), "{label}: damage went unnoticed");
                    let tail_hit = match damage {
                        Damage::Flip(at) => at >= len - 70,
                        Damage::Truncate(to) => to >= 16,
                    };
                    assert!(
                        tail_hit,
                        "{label}: damage before the last record went unnoticed"
                    );
                    let store = Store::open_with(&case, options(), Arc::new(OsVfs)).unwrap();
                    let counts = batch_counts(&store, "log");
                    assert!(!counts.contains_key(&999), "{label}");
                }
            }
        }
    }
    assert!(cases > 50);
}
