//! Reading a segment back equals what was written, for every Arrow type the
//! SQL layer uses, with nulls everywhere; in memory, after a flush, after a reopen.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int16Array, Int32Array,
    Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use tessera_storage::{ScanOptions, Store, TableOptions};

fn all_types_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("b", DataType::Boolean, true),
        Field::new("i16", DataType::Int16, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i64", DataType::Int64, true),
        Field::new("f64", DataType::Float64, true),
        Field::new("dec", DataType::Decimal128(12, 2), true),
        Field::new("s", DataType::Utf8, true),
        Field::new("low_card", DataType::Utf8, true),
        Field::new("d", DataType::Date32, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        Field::new(
            "tstz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
    ]))
}

/// `n` rows starting at `start`, every column null on some rows.
fn all_types_batch(start: i64, n: usize) -> RecordBatch {
    let idx: Vec<i64> = (start..start + n as i64).collect();
    let null = |i: &i64, k: i64| i % k == 0;
    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in &idx {
        if null(i, 9) {
            tags.append_null();
        } else {
            for t in 0..(i % 3) {
                if t == 1 && i % 5 == 0 {
                    tags.values().append_null();
                } else {
                    tags.values().append_value(format!("tag{t}"));
                }
            }
            tags.append(true);
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 7)).then_some(i % 2 == 0))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 6)).then_some((i % 30000) as i16 - 15000))
                .collect::<Int16Array>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 5)).then_some(*i as i32 * 7))
                .collect::<Int32Array>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 4)).then_some(i * 1_000_003))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 3)).then_some(*i as f64 / 3.0))
                .collect::<Float64Array>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 8)).then_some(i128::from(*i) * 101))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(12, 2)
                .unwrap(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 10)).then(|| format!("person-{i}@example.com")))
                .collect::<StringArray>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 11)).then(|| ["web", "app", "store"][(*i % 3) as usize]))
                .collect::<StringArray>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 12)).then_some(19000 + (*i % 400) as i32))
                .collect::<Date32Array>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 13)).then_some(1_700_000_000_000_000 + i))
                .collect::<TimestampMicrosecondArray>(),
        ),
        Arc::new(
            idx.iter()
                .map(|i| (!null(i, 14)).then_some(1_600_000_000_000_000 + i * 3))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        ),
        Arc::new(tags.finish()),
    ];
    RecordBatch::try_new(all_types_schema(), cols).unwrap()
}

fn read_all(store: &Store, table: &str) -> RecordBatch {
    let snap = store.table(table).unwrap();
    let batches = snap
        .scan(&ScanOptions::default())
        .unwrap()
        .collect()
        .unwrap();
    concat_batches(&snap.schema(), &batches).unwrap()
}

#[test]
fn every_type_round_trips_through_memory_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let schema = all_types_schema();
    let written: Vec<RecordBatch> = (0..5).map(|k| all_types_batch(k * 1000, 1000)).collect();
    let expected = concat_batches(&schema, &written).unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .create_table("t", Arc::clone(&schema), TableOptions::default())
            .unwrap();
        for b in &written {
            store.append("t", b).unwrap();
        }
        assert_eq!(read_all(&store, "t"), expected, "read from memory");
        store.checkpoint().unwrap();
        assert_eq!(store.table("t").unwrap().segment_count(), (1, 0));
        assert_eq!(
            read_all(&store, "t"),
            expected,
            "read from a mapped segment"
        );
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, "t"), expected, "read after reopen");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(
        report.indexes >= 2,
        "low-cardinality columns are indexed automatically: {report:?}"
    );
}

#[test]
fn low_cardinality_strings_are_dictionary_encoded_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let schema = all_types_schema();
    store
        .create_table("t", schema, TableOptions::default())
        .unwrap();
    store.append("t", &all_types_batch(0, 5000)).unwrap();
    store.checkpoint().unwrap();
    // The segment's metadata block says how each column is stored.
    let (seg_meta, rows) = tessera_storage_meta(&store);
    assert_eq!(rows, 5000);
    let low_card = seg_meta.iter().find(|c| c.name == "low_card").unwrap();
    assert!(
        low_card.dictionary,
        "3 distinct values in 5000 rows should be dictionary-encoded"
    );
    assert!(low_card.index.is_some(), "and indexed automatically");
    let email = seg_meta.iter().find(|c| c.name == "s").unwrap();
    assert!(
        !email.dictionary && email.index.is_none(),
        "unique emails are neither"
    );
}

/// The path and bytes of the store's first segment file.
fn first_segment_file(store: &Store) -> (std::path::PathBuf, Vec<u8>) {
    let dir = store.dir();
    let name = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with("seg-"))
        .unwrap();
    let bytes = std::fs::read(dir.join(&name)).unwrap();
    (dir.join(name), bytes)
}

/// The column metadata of the store's first segment file.
fn tessera_storage_meta(store: &Store) -> (Vec<tessera_storage::segment::ColumnMeta>, u64) {
    let (path, bytes) = first_segment_file(store);
    let meta = tessera_storage::segment::read_meta(&bytes, &path).unwrap();
    (meta.columns, meta.rows)
}

#[test]
fn added_columns_read_as_null_in_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    store
        .create_table("t", schema, TableOptions::default())
        .unwrap();
    store
        .append(
            "t",
            &RecordBatch::try_new(
                store.table("t").unwrap().schema(),
                vec![Arc::new(Int64Array::from(vec![1, 2]))],
            )
            .unwrap(),
        )
        .unwrap();
    store
        .add_column("t", Field::new("email", DataType::Utf8, true))
        .unwrap();
    let b = RecordBatch::try_new(
        store.table("t").unwrap().schema(),
        vec![
            Arc::new(Int64Array::from(vec![3])),
            Arc::new(StringArray::from(vec!["a@b.c"])),
        ],
    )
    .unwrap();
    store.append("t", &b).unwrap();
    let all = read_all(&store, "t");
    assert_eq!(all.num_rows(), 3);
    let email = all.column_by_name("email").unwrap();
    assert_eq!(email.null_count(), 2);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, "t").num_rows(), 3);
    assert!(
        store
            .add_column("t", Field::new("x", DataType::Utf8, false))
            .is_err(),
        "NOT NULL column without default is refused"
    );
}

#[test]
fn bad_batches_are_refused_with_their_sqlstate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    store
        .create_table("t", Arc::clone(&schema), TableOptions::default())
        .unwrap();
    let wrong = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
    let b = RecordBatch::try_new(wrong, vec![Arc::new(StringArray::from(vec!["x"]))]).unwrap();
    assert_eq!(store.append("t", &b).unwrap_err().sqlstate(), "42804");
    let nullable = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
    let b = RecordBatch::try_new(
        nullable,
        vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
    )
    .unwrap();
    assert_eq!(store.append("t", &b).unwrap_err().sqlstate(), "23502");
    assert_eq!(store.append("nope", &b).unwrap_err().sqlstate(), "42P01");
    assert_eq!(
        store
            .create_table("t", schema, TableOptions::default())
            .unwrap_err()
            .sqlstate(),
        "42P07"
    );
    assert_eq!(
        store.table("t").unwrap().row_count(),
        0,
        "nothing of a refused batch is kept"
    );
    let locked = Store::open(dir.path()).unwrap_err();
    assert_eq!(locked.sqlstate(), "55006", "{locked}");
}

#[test]
fn segments_of_several_batches_read_filter_and_delete_across_batch_boundaries() {
    use tessera_storage::{CmpOp, Predicate, Value};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
    ]));
    store
        .create_table("t", Arc::clone(&schema), TableOptions::default())
        .unwrap();
    let n = 3 * tessera_storage::segment::BATCH_ROWS + 123;
    let kinds = ["a", "b", "c", "d"];
    let b = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| kinds[i % 4]))),
        ],
    )
    .unwrap();
    store.append("t", &b).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(
        read_all(&store, "t"),
        b,
        "a multi-batch segment reads back whole"
    );
    let (meta, rows) = tessera_storage_meta(&store);
    assert_eq!(rows as usize, n);
    assert!(meta.iter().find(|c| c.name == "kind").unwrap().dictionary);
    // Rows around each batch boundary, through the index and through a range.
    let edge = tessera_storage::segment::BATCH_ROWS as i64;
    let pred = Predicate::And(vec![
        Predicate::eq("kind", Value::Str("b".into())),
        Predicate::cmp("id", CmpOp::GtEq, Value::Int(edge - 10)),
        Predicate::cmp("id", CmpOp::Lt, Value::Int(edge + 10)),
    ]);
    let scan = store
        .table("t")
        .unwrap()
        .scan(&ScanOptions {
            predicate: Some(pred.clone()),
            ..ScanOptions::default()
        })
        .unwrap();
    assert_eq!(scan.report.index_lookups.len(), 1);
    let got = concat_batches(&schema, &scan.collect().unwrap()).unwrap();
    let ids = got.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    let expected: Vec<i64> = (edge - 10..edge + 10).filter(|i| i % 4 == 1).collect();
    assert_eq!(ids.values().to_vec(), expected);
    // Delete across the boundary; the rest stays.
    let deleted = store.delete_where("t", &pred).unwrap();
    assert_eq!(deleted as usize, expected.len());
    assert_eq!(
        store.table("t").unwrap().row_count() as usize,
        n - expected.len()
    );
    store.compact().unwrap();
    assert_eq!(
        store.table("t").unwrap().row_count() as usize,
        n - expected.len()
    );
    assert!(store.verify().unwrap().is_ok());
}

/// The Arrow types of the IPC schema of the store's first segment file (its
/// physical columns), by name.
fn stored_types(store: &Store) -> Vec<(String, DataType)> {
    let (_, bytes) = first_segment_file(store);
    // The footer's `ipc_len` (docs/storage.md): the IPC file is a prefix.
    let footer = &bytes[bytes.len() - 64..];
    assert_eq!(&footer[8..12], &2u32.to_le_bytes(), "format version 2");
    let ipc_len = u64::from_le_bytes(footer[16..24].try_into().unwrap()) as usize;
    let reader =
        arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(&bytes[..ipc_len]), None)
            .unwrap();
    reader
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect()
}

#[test]
fn integer_columns_are_stored_narrow_and_read_in_their_type() {
    use roaring::RoaringBitmap;
    use tessera_storage::{CmpOp, IdSet, Predicate, Value};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tiny", DataType::Int64, true),
        Field::new("small", DataType::Int64, true),
        Field::new("mid", DataType::Int64, true),
        Field::new("wide", DataType::Int64, true),
        Field::new("i32", DataType::Int32, true),
        Field::new("i16", DataType::Int16, true),
    ]));
    store
        .create_table("t", Arc::clone(&schema), TableOptions::default())
        .unwrap();
    // Two batches and a bit; each column at the very edges of a narrower
    // type (or just past them), with NULLs.
    let n = tessera_storage::segment::BATCH_ROWS + 1000;
    let pick = |i: usize, edges: [i64; 3]| -> Option<i64> {
        (i % 11 != 3).then_some(edges[i % 3] - (i % 2) as i64)
    };
    let col = |edges: [i64; 3]| -> Int64Array { (0..n).map(|i| pick(i, edges)).collect() };
    let tiny = col([i64::from(i8::MIN) + 1, 0, i64::from(i8::MAX)]);
    let small = col([i64::from(i16::MIN) + 1, 200, i64::from(i16::MAX)]);
    let mid = col([i64::from(i32::MIN) + 1, -5, i64::from(i32::MAX)]);
    let wide = col([i64::from(i32::MIN), 7, i64::from(i32::MAX) + 1]);
    let b = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(tiny),
            Arc::new(small),
            Arc::new(mid),
            Arc::new(wide),
            Arc::new(
                (0..n)
                    .map(|i| (i % 5 != 0).then_some((i % 100) as i32))
                    .collect::<Int32Array>(),
            ),
            Arc::new(
                (0..n)
                    .map(|i| Some((i % 7) as i16 - 3))
                    .collect::<Int16Array>(),
            ),
        ],
    )
    .unwrap();
    store.append("t", &b).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(
        stored_types(&store),
        [
            ("id", DataType::Int32),
            ("tiny", DataType::Int8),
            ("small", DataType::Int16),
            ("mid", DataType::Int32),
            ("wide", DataType::Int64),
            ("i32", DataType::Int8),
            ("i16", DataType::Int8),
        ]
        .map(|(n, t)| (n.to_string(), t))
        .to_vec(),
        "each column in the narrowest type holding its values"
    );
    assert_eq!(read_all(&store, "t"), b, "read back in the table's types");

    // Filters on narrow columns: literals inside, at and past the stored
    // type's range, then a set of ids; the answer is the same as over the
    // rows as written.
    let scan = |pred: Predicate, projection: &[&str]| -> RecordBatch {
        let snap = store.table("t").unwrap();
        let s = snap
            .scan(&ScanOptions {
                predicate: Some(pred),
                projection: Some(projection.iter().map(|s| s.to_string()).collect()),
                ..ScanOptions::default()
            })
            .unwrap();
        let out_schema = Arc::clone(&s.schema);
        concat_batches(&out_schema, &s.collect().unwrap()).unwrap()
    };
    let count_where = |c: usize, keep: &dyn Fn(i64) -> bool| {
        let a = b.column(c).as_any().downcast_ref::<Int64Array>().unwrap();
        a.iter().flatten().filter(|v| keep(*v)).count()
    };
    for (c, name) in [(1, "tiny"), (2, "small"), (3, "mid"), (4, "wide")] {
        for v in [
            -1_000_000_000_000i64,
            i64::from(i32::MIN),
            i64::from(i16::MIN),
            -129,
            -5,
            0,
            127,
            200,
            i64::from(i16::MAX) + 1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
        ] {
            for (op, keep) in [
                (CmpOp::Eq, &(|x: i64| x == v) as &dyn Fn(i64) -> bool),
                (CmpOp::Gt, &|x: i64| x > v),
                (CmpOp::LtEq, &|x: i64| x <= v),
            ] {
                let got = scan(Predicate::cmp(name, op, Value::Int(v)), &[name, "id"]);
                assert_eq!(got.num_rows(), count_where(c, keep), "{name} {op:?} {v}");
                assert_eq!(got.schema().field(0).data_type(), &DataType::Int64);
            }
        }
    }
    let ids: RoaringBitmap = (0..n as u32).filter(|i| i % 3 == 1).collect();
    let set = IdSet::new(Arc::new(ids));
    let in_set = Predicate::InSet {
        column: "id".into(),
        set: set.clone(),
    };
    let first = scan(in_set.clone(), &["small"]);
    assert_eq!(first.num_rows(), (0..n).filter(|i| i % 3 == 1).count());
    assert_eq!(first.schema().field(0).data_type(), &DataType::Int64);
    assert!(set.kept_batches() > 0, "answers over 32-bit ids are kept");
    assert_eq!(scan(in_set, &["small"]), first, "and answer the same again");
    let not_in = scan(
        Predicate::Not(Box::new(Predicate::InSet {
            column: "tiny".into(),
            set: IdSet::new(Arc::new([0u32, 127].into_iter().collect())),
        })),
        &["tiny"],
    );
    assert_eq!(
        not_in.num_rows(),
        count_where(1, &|x| x != 0 && x != 127),
        "NOT IN a set over 8-bit values: NULLs and negatives as for 64 bits"
    );

    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, "t"), b, "and after a reopen");
    assert!(store.verify().unwrap().is_ok());
}

/// A segment of several MiB is streamed to its file in pieces, and a string
/// column with too many distinct values for an index (1 000, with NULLs)
/// is still dictionary-encoded, in the same pass that counts its values;
/// both read back as written, before and after a reopen, and VERIFY
/// finds every checksum right.
#[test]
fn a_large_segment_streams_and_unindexed_dictionaries_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("city", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, false),
    ]));
    let n = 200_000i64;
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from_iter_values(0..n)),
            Arc::new(StringArray::from_iter((0..n).map(|i| {
                (i % 7 != 0).then(|| format!("city-{}", (i * 31) % 1000))
            }))),
            Arc::new(StringArray::from_iter_values(
                (0..n).map(|i| format!("note number {i} of a long enough text")),
            )),
        ],
    )
    .unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .create_table("t", Arc::clone(&schema), TableOptions::default())
            .unwrap();
        store.append("t", &batch).unwrap();
        store.checkpoint().unwrap();
        let (path, bytes) = first_segment_file(&store);
        assert!(bytes.len() > 4 << 20, "{path:?}: {} bytes", bytes.len());
        let (meta, rows) = tessera_storage_meta(&store);
        assert_eq!(rows, n as u64);
        let city = meta.iter().find(|c| c.name == "city").unwrap();
        assert!(city.dictionary, "1 000 distinct values in 200 000 rows");
        assert!(
            city.index.is_none(),
            "too many distinct values for an index"
        );
        let note = meta.iter().find(|c| c.name == "note").unwrap();
        assert!(!note.dictionary);
        assert_eq!(read_all(&store, "t"), batch, "read from the segment");
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_all(&store, "t"), batch, "read after reopen");
    let report = store.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
