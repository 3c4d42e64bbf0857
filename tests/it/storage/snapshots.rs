//! Snapshots stay consistent while appends and compactions go on; segment
//! files are unlinked only after the last reader lets go; concurrent appends
//! share fsyncs and all land.

use std::sync::Arc;

use tessera_storage::{Options, OsVfs, ScanOptions, Store, TableOptions};
use tessera_tests::{BATCH_ROWS, batch_counts, log_batch, log_schema};

fn seg_files(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("seg-"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_snapshot_outlives_compaction_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
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
        .create_table("log", log_schema(), TableOptions::default())
        .unwrap();
    for k in 0..4 {
        store.append("log", &log_batch(k)).unwrap();
        store.checkpoint().unwrap();
    }
    let snap = store.snapshot();
    let old_files = seg_files(dir.path());
    assert_eq!(old_files.len(), 4);
    // Changes after the snapshot: more rows, a delete, a compaction.
    store.append("log", &log_batch(10)).unwrap();
    store
        .delete_where(
            "log",
            &tessera_storage::Predicate::eq("batch", tessera_storage::Value::Int(0)),
        )
        .unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.segments_removed, 5);
    // The snapshot still reads exactly what it saw, from the old files.
    let t = snap.table("log").unwrap();
    let rows: usize = t
        .scan(&ScanOptions::default())
        .unwrap()
        .collect()
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 4 * BATCH_ROWS);
    for f in &old_files {
        assert!(
            dir.path().join(f).exists(),
            "{f} was unlinked while a snapshot held it"
        );
    }
    drop(t);
    drop(snap);
    for f in &old_files {
        assert!(!dir.path().join(f).exists(), "{f} outlived its last reader");
    }
    let counts = batch_counts(&store, "log");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        vec![1, 2, 3, 10]
    );
}

#[test]
fn concurrent_appends_all_land_and_readers_never_see_a_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        flush_threshold_batches: 16,
        compaction_min_small_segments: 3,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), opts, Arc::new(OsVfs)).unwrap();
    store
        .create_table("log", log_schema(), TableOptions::default())
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..40 {
                    store.append("log", &log_batch(t * 1000 + i)).unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || {
            for i in 0..30 {
                for (k, n) in batch_counts(&store, "log") {
                    assert_eq!(n, BATCH_ROWS, "batch {k} seen in part");
                }
                if i % 10 == 0 {
                    // verify reads the live log: a commit being written is not damage.
                    let report = store.verify().unwrap();
                    assert!(report.is_ok(), "{:?}", report.problems);
                }
            }
        })
    };
    for t in threads {
        t.join().unwrap();
    }
    reader.join().unwrap();
    let counts = batch_counts(&store, "log");
    assert_eq!(counts.len(), 160);
    assert!(store.background_error().is_none());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(batch_counts(&store, "log").len(), 160);
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn store_and_snapshots_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<tessera_storage::Snapshot>();
    assert_send_sync::<tessera_storage::TableSnapshot>();
    fn assert_send<T: Send>() {}
    assert_send::<tessera_storage::ScanPartition>();
}

#[test]
fn background_compaction_merges_small_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        compaction_min_small_segments: 4,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), opts, Arc::new(OsVfs)).unwrap();
    store
        .create_table("log", log_schema(), TableOptions::default())
        .unwrap();
    for k in 0..6 {
        store.append("log", &log_batch(k)).unwrap();
        store.checkpoint().unwrap();
    }
    // The background thread wakes every 2 s; give it up to a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.table("log").unwrap().segment_count().0 > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "background compaction never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(batch_counts(&store, "log").len(), 6);
    assert!(store.background_error().is_none());
}

/// A segment's text and binary columns stay under Arrow IPC's 2 GiB of
/// 32-bit offsets: a bulk load of a few huge values (the graph log of 10 M
/// persons, ~2.4 GB, failed to encode) is cut into segments by bytes as
/// well as by rows, and reads back whole.
#[test]
fn huge_values_are_cut_into_segments_by_bytes() {
    use arrow::array::{Array, AsArray, BinaryArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_value_bytes: 10_000,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), opts, Arc::new(OsVfs)).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("seq", DataType::Int64, false),
        Field::new("blob", DataType::Binary, false),
    ]));
    let blobs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3_000 + usize::from(i)]).collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..40)),
            Arc::new(BinaryArray::from_iter_values(blobs.iter())),
        ],
    )
    .unwrap();
    let mut load = store.bulk();
    let target = load
        .create("blobs", Arc::clone(&schema), TableOptions::default())
        .unwrap();
    load.push(target, &batch).unwrap();
    load.publish().unwrap();
    // 40 values of ~3 KB, at most 10 000 bytes a segment: 3 a segment.
    assert!(
        seg_files(dir.path()).len() >= 13,
        "{:?}",
        seg_files(dir.path())
    );
    let snap = store.snapshot();
    let mut got: Vec<(i64, Vec<u8>)> = Vec::new();
    for part in snap
        .table("blobs")
        .unwrap()
        .scan(&ScanOptions::default())
        .unwrap()
        .partitions
    {
        for b in part {
            let b = b.unwrap();
            let seqs = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let values = b.column(1).as_binary::<i32>();
            for i in 0..b.num_rows() {
                got.push((seqs.value(i), values.value(i).to_vec()));
            }
            assert!(values.len() <= 3);
        }
    }
    got.sort();
    let want: Vec<(i64, Vec<u8>)> = (0..40).zip(blobs).collect();
    assert_eq!(got, want);
}

/// A bulk load that produces its rows while it writes them (UNIFY's
/// rewrite of its sources) writes half-size segments, which compaction
/// leaves as they are, and can write a table's last segment before
/// publication; the rows read back whole and in order.
#[test]
fn a_bulk_load_writes_early_and_flushes_on_request() {
    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        target_segment_rows: 100,
        background: false,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), opts, Arc::new(OsVfs)).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    let rows = |from: i64, to: i64| {
        RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from_iter_values(from..to))],
        )
        .unwrap()
    };
    let layout = |table: &str| -> (Vec<u64>, Vec<u64>, Vec<i64>) {
        let snap = store.snapshot();
        let scan = snap
            .table(table)
            .unwrap()
            .scan(&ScanOptions::default())
            .unwrap();
        let mut ids = Vec::new();
        let mut sizes = Vec::new();
        let mut values = Vec::new();
        for part in scan.partitions {
            ids.push(part.segment_id());
            sizes.push(part.source_rows());
            for b in part {
                let b = b.unwrap();
                values.extend(b.column(0).as_primitive::<Int64Type>().values().iter());
            }
        }
        (ids, sizes, values)
    };

    let mut load = store.bulk();
    let early = load
        .create("early", Arc::clone(&schema), TableOptions::default())
        .unwrap();
    let other = load
        .create("other", Arc::clone(&schema), TableOptions::default())
        .unwrap();
    load.write_early(early).unwrap();
    for from in (0..245).step_by(35) {
        load.push(early, &rows(from, (from + 35).min(245))).unwrap();
    }
    // Four files of 50 rows so far; the flush writes the 45 left now.
    assert_eq!(seg_files(dir.path()).len(), 4);
    load.flush(early).unwrap();
    assert_eq!(seg_files(dir.path()).len(), 5);
    load.flush(early).unwrap(); // nothing left: no empty file
    assert_eq!(seg_files(dir.path()).len(), 5);
    load.push(other, &rows(1000, 1040)).unwrap();
    load.push(early, &rows(245, 255)).unwrap();
    load.publish().unwrap();

    let (ids, sizes, values) = layout("early");
    assert_eq!(sizes, vec![50, 50, 50, 50, 45, 10]);
    assert_eq!(values, (0..255).collect::<Vec<i64>>());
    assert_eq!(layout("other").1, vec![40]);

    // Half-size segments are not small: compaction merges only the last two.
    store.compact().unwrap();
    let (after, sizes, values) = layout("early");
    assert_eq!(&after[..4], &ids[..4]);
    assert_eq!(sizes, vec![50, 50, 50, 50, 55]);
    assert_eq!(values, (0..255).collect::<Vec<i64>>());
}
