//! Erasure test: rows holding a marker string are deleted and the store is
//! compacted; afterwards no byte of any file under the database directory
//! contains the marker (segments, WAL, manifests, deletion vectors).

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use tessera_storage::{CmpOp, Options, OsVfs, Predicate, Store, TableOptions, Value};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn files_with(dir: &std::path::Path, marker: &[u8]) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| contains(&std::fs::read(e.path()).unwrap_or_default(), marker))
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect()
}

#[test]
fn deleted_rows_are_physically_gone_after_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "marie.curie+secret@example.org";
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("channel", DataType::Utf8, true),
    ]));
    let store = Store::open_with(
        dir.path(),
        Options {
            background: false,
            ..Options::default()
        },
        Arc::new(OsVfs),
    )
    .unwrap();
    store
        .create_table(
            "contacts",
            Arc::clone(&schema),
            TableOptions {
                indexed_columns: vec!["email".into()],
                auto_index: true,
            },
        )
        .unwrap();
    // The marker lands in a flushed segment (dictionary and index included),
    // in a second segment, and in the log.
    for round in 0..3 {
        let ids: Vec<i64> = (0..300).map(|i| round * 1000 + i).collect();
        let emails: Vec<String> = ids
            .iter()
            .map(|i| {
                if i % 50 == 7 {
                    marker.to_string()
                } else {
                    format!("person{i}@example.com")
                }
            })
            .collect();
        let channels: Vec<&str> = ids
            .iter()
            .map(|i| ["web", "app"][(*i % 2) as usize])
            .collect();
        let b = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(emails)),
                Arc::new(StringArray::from(channels)),
            ],
        )
        .unwrap();
        store.append("contacts", &b).unwrap();
        if round < 2 {
            store.checkpoint().unwrap();
        }
    }
    assert!(
        !files_with(dir.path(), marker.as_bytes()).is_empty(),
        "the marker was written"
    );
    let before = store.table("contacts").unwrap().row_count();
    let n = store
        .delete_where(
            "contacts",
            &Predicate::cmp("email", CmpOp::Eq, Value::Str(marker.into())),
        )
        .unwrap();
    assert_eq!(n, 18);
    assert_eq!(
        store.table("contacts").unwrap().row_count(),
        before - 18,
        "deleted rows vanish from reads at once"
    );
    let report = store.compact().unwrap();
    assert_eq!(report.rows_purged, 18);
    assert_eq!(
        files_with(dir.path(), marker.as_bytes()),
        Vec::<String>::new(),
        "marker survives in files"
    );
    assert!(store.verify().unwrap().is_ok());
    drop(store);
    // Still gone, and the rest still there, after a reopen.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.table("contacts").unwrap().row_count(), before - 18);
    assert_eq!(
        files_with(dir.path(), marker.as_bytes()),
        Vec::<String>::new()
    );
}
