//! UNIFY's incremental path, differentially: rows appended in many small
//! batches in random order (SQL INSERT, the append API, COPY, restarts in
//! between) give the same partition of records as one UNIFY over all the
//! data, and as a plain union-find written here; and in the full run's
//! order, with limits and weak kinds, the very same profile ids.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tessera_engine::Database;
use tessera_engine::engine_arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use tessera_engine::engine_arrow::datatypes::{DataType, Field, Int64Type, Schema};

/// Tables: name, then its identifier columns (also their kinds).
const TABLES: &[(&str, &[&str])] = &[
    ("a", &["email", "cid"]),
    ("b", &["email", "phone"]),
    ("c", &["phone", "cid"]),
];

/// One source row: table, key, identifier values (raw, as written).
#[derive(Debug, Clone)]
struct Row {
    table: usize,
    key: i64,
    values: Vec<Option<String>>,
}

/// A person's value of a kind, written with the noise normalisation removes.
fn written(kind: &str, person: u32, rng: &mut impl Rng) -> String {
    match kind {
        "email" => {
            let e = format!("p{person}@x{}.fr", person % 7);
            match rng.random_range(0..3) {
                0 => e,
                1 => format!("  {}", e.to_uppercase()),
                _ => format!("P{person}@X{}.fr ", person % 7),
            }
        }
        "phone" => {
            let digits = format!("06{:08}", 10_000_000 + person * 7);
            if rng.random_bool(0.5) {
                digits
            } else {
                let d = digits.as_bytes();
                d.chunks(2)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        }
        _ => format!("C{person}"),
    }
}

/// What the test itself takes as equal: trimmed, lower case, no spaces.
fn plain(v: &str) -> String {
    v.trim().to_lowercase().replace(' ', "")
}

/// Rows of about `persons` people, some of whom share a value by mistake
/// (which merges them, the same way on every path).
fn rows(seed: u64, persons: u32, n: usize) -> Vec<Row> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let table = rng.random_range(0..TABLES.len());
            let person = rng.random_range(0..persons);
            let values = TABLES[table]
                .1
                .iter()
                .map(|kind| {
                    if rng.random_bool(0.2) {
                        return None;
                    }
                    // Now and then a value of another person.
                    let who = if rng.random_bool(0.03) {
                        rng.random_range(0..persons)
                    } else {
                        person
                    };
                    Some(written(kind, who, &mut rng))
                })
                .collect();
            Row {
                table,
                key: i as i64,
                values,
            }
        })
        .collect()
}

fn create_tables(db: &Database) {
    for (t, cols) in TABLES {
        let cols: Vec<String> = cols.iter().map(|c| format!("{c} TEXT")).collect();
        db.sql(&format!(
            "CREATE TABLE {t} (key BIGINT NOT NULL, {})",
            cols.join(", ")
        ))
        .unwrap();
    }
}

const UNIFY_PLAIN: &str = "UNIFY people FROM a (email, customer_id = cid), b (email, phone), \
     c (phone, customer_id = cid) WITH (phone.region = 'FR', max_links = 0)";

const UNIFY_RULES: &str = "UNIFY people FROM a (email, customer_id = cid), b (email, phone), \
     c (phone, customer_id = cid, device_id = phone) \
     WITH (phone.region = 'FR', customer_id.limit = 1, email.limit = 2, max_links = 0)";

fn batch(table: usize, rows: &[&Row]) -> RecordBatch {
    let mut fields = vec![Field::new("key", DataType::Int64, false)];
    let mut cols: Vec<Arc<dyn Array>> = vec![Arc::new(Int64Array::from_iter_values(
        rows.iter().map(|r| r.key),
    ))];
    for (i, c) in TABLES[table].1.iter().enumerate() {
        fields.push(Field::new(*c, DataType::Utf8, true));
        cols.push(Arc::new(StringArray::from(
            rows.iter().map(|r| r.values[i].clone()).collect::<Vec<_>>(),
        )));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

fn insert_sql(table: usize, rows: &[&Row]) -> String {
    let lit = |v: &Option<String>| match v {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".into(),
    };
    let values: Vec<String> = rows
        .iter()
        .map(|r| {
            let mut v = vec![r.key.to_string()];
            v.extend(r.values.iter().map(lit));
            format!("({})", v.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {} VALUES {}",
        TABLES[table].0,
        values.join(", ")
    )
}

/// Every record's profile: (table, key) -> profile id (None: no identifier).
fn profiles(db: &Database) -> BTreeMap<(usize, i64), Option<i64>> {
    let mut out = BTreeMap::new();
    for (i, (t, _)) in TABLES.iter().enumerate() {
        for b in db.sql(&format!("SELECT key, profile_id FROM {t}")).unwrap() {
            let k = b.column(0).as_primitive::<Int64Type>();
            let p = b.column(1).as_primitive::<Int64Type>();
            for r in 0..b.num_rows() {
                out.insert((i, k.value(r)), p.is_valid(r).then(|| p.value(r)));
            }
        }
    }
    out
}

/// A partition as a set of classes (records without a profile left out).
fn partition(p: &BTreeMap<(usize, i64), Option<i64>>) -> BTreeSet<BTreeSet<(usize, i64)>> {
    let mut classes: HashMap<i64, BTreeSet<(usize, i64)>> = HashMap::new();
    for (rec, prof) in p {
        if let Some(prof) = prof {
            classes.entry(*prof).or_default().insert(*rec);
        }
    }
    classes.into_values().collect()
}

/// The reference: records joined when they share a kind's plain value.
fn brute_force(rows: &[Row]) -> BTreeSet<BTreeSet<(usize, i64)>> {
    let mut parent: Vec<usize> = (0..rows.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first: HashMap<(String, String), usize> = HashMap::new();
    let mut has_value = vec![false; rows.len()];
    for (i, r) in rows.iter().enumerate() {
        for (c, v) in TABLES[r.table].1.iter().zip(&r.values) {
            let Some(v) = v else { continue };
            has_value[i] = true;
            let kind = if *c == "cid" { "customer_id" } else { c };
            match first.get(&(kind.to_string(), plain(v))) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => {
                    first.insert((kind.to_string(), plain(v)), i);
                }
            }
        }
    }
    let mut classes: HashMap<usize, BTreeSet<(usize, i64)>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        if has_value[i] {
            let root = find(&mut parent, i);
            classes.entry(root).or_default().insert((r.table, r.key));
        }
    }
    classes.into_values().collect()
}

/// Loads `rows` in one go and runs UNIFY over them.
fn full(dir: &Path, rows: &[Row], unify: &str) -> BTreeMap<(usize, i64), Option<i64>> {
    let db = Database::open(dir).unwrap();
    create_tables(&db);
    for (t, (name, _)) in TABLES.iter().enumerate() {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.table == t).collect();
        if !mine.is_empty() {
            db.append(name, &batch(t, &mine)).unwrap();
        }
    }
    db.sql(unify).unwrap();
    profiles(&db)
}

#[test]
fn appending_in_random_order_gives_the_partition_of_a_full_run_and_of_union_find() {
    for seed in 0..3u64 {
        let rows = rows(seed, 120, 700);
        let tmp = tempfile::tempdir().unwrap();
        let full_run = full(&tmp.path().join("full"), &rows, UNIFY_PLAIN);

        let dir = tmp.path().join("incremental");
        let mut db = Database::open(&dir).unwrap();
        create_tables(&db);
        db.sql(UNIFY_PLAIN).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed + 100);
        let mut shuffled: Vec<&Row> = rows.iter().collect();
        shuffled.shuffle(&mut rng);
        let mut at = 0;
        let mut step = 0;
        while at < shuffled.len() {
            let n = rng.random_range(1..25).min(shuffled.len() - at);
            let chunk = &shuffled[at..at + n];
            at += n;
            step += 1;
            for (t, (name, _)) in TABLES.iter().enumerate() {
                let mine: Vec<&Row> = chunk.iter().copied().filter(|r| r.table == t).collect();
                if mine.is_empty() {
                    continue;
                }
                match rng.random_range(0..3) {
                    0 => {
                        db.sql(&insert_sql(t, &mine)).unwrap();
                    }
                    1 => db.append(name, &batch(t, &mine)).unwrap(),
                    _ => {
                        let csv = tmp.path().join(format!("chunk-{step}-{t}.csv"));
                        let mut text = String::from("key");
                        for c in TABLES[t].1 {
                            text.push(',');
                            text.push_str(c);
                        }
                        text.push('\n');
                        for r in &mine {
                            text.push_str(&r.key.to_string());
                            for v in &r.values {
                                text.push(',');
                                if let Some(v) = v {
                                    text.push('"');
                                    text.push_str(v);
                                    text.push('"');
                                }
                            }
                            text.push('\n');
                        }
                        std::fs::write(&csv, text).unwrap();
                        db.sql(&format!(
                            "COPY {} FROM '{}' WITH (FORMAT csv, HEADER true)",
                            name,
                            csv.display()
                        ))
                        .unwrap();
                    }
                }
            }
            if rng.random_bool(0.05) {
                drop(db);
                db = Database::open(&dir).unwrap();
            }
        }
        let incremental = profiles(&db);
        assert_eq!(incremental.len(), rows.len(), "seed {seed}: rows lost");
        let reference = brute_force(&rows);
        // The data links records across tables, not just within one.
        assert!(
            reference.len() < rows.len() / 3,
            "seed {seed}: {} classes",
            reference.len()
        );
        assert!(
            reference
                .iter()
                .any(|c| c.iter().map(|r| r.0).collect::<BTreeSet<_>>().len() == TABLES.len()),
            "seed {seed}: no class spans every table"
        );
        assert_eq!(
            partition(&full_run),
            reference,
            "seed {seed}: full run vs union-find"
        );
        assert_eq!(
            partition(&incremental),
            reference,
            "seed {seed}: incremental vs union-find"
        );
        // Records without any identifier have no profile on either path.
        for (rec, p) in &full_run {
            assert_eq!(
                p.is_none(),
                incremental[rec].is_none(),
                "seed {seed}: {rec:?}"
            );
        }
    }
}

#[test]
fn appending_in_the_full_runs_order_gives_the_same_ids_under_limits() {
    let rows = rows(7, 150, 900);
    let tmp = tempfile::tempdir().unwrap();
    let full_run = full(&tmp.path().join("full"), &rows, UNIFY_RULES);

    // The full run resolves table after table in storage order: so do these
    // appends, in small batches, with a restart in the middle.
    let dir = tmp.path().join("incremental");
    let mut db = Database::open(&dir).unwrap();
    create_tables(&db);
    db.sql(UNIFY_RULES).unwrap();
    for (t, (name, _)) in TABLES.iter().enumerate() {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.table == t).collect();
        for (i, chunk) in mine.chunks(17).enumerate() {
            db.append(name, &batch(t, chunk)).unwrap();
            if t == 1 && i == 3 {
                drop(db);
                db = Database::open(&dir).unwrap();
            }
        }
    }
    assert_eq!(profiles(&db), full_run);
    // Limits held: no profile has two customer ids.
    let two = db
        .sql("SELECT count(*) FROM (SELECT profile_id FROM people_identifiers WHERE kind = 'customer_id' GROUP BY profile_id HAVING count(*) > 1)")
        .unwrap();
    assert_eq!(two[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    // And a re-run over everything gives the same ids once more.
    db.sql(UNIFY_RULES).unwrap();
    assert_eq!(profiles(&db), full_run);
}
