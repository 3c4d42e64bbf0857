//! `ERASE PROFILE` end to end on generated data: people present in several
//! channels are erased; no query returns them; after the purge no byte of
//! any file of the database holds their emails, phones, devices or names;
//! their original rows loaded again are suppressed and counted; the audit
//! tables hold none of it; all of it survives a reopen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use tessera_engine::Database;
use tessera_engine::datagen::{UNIFY_EXAMPLE, ddl};
use tessera_engine::engine_arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use tessera_engine::engine_arrow::compute::filter_record_batch;
use tessera_engine::engine_arrow::datatypes::Int64Type;
use tessera_engine::identity::normalize::{Normalizer, Region};

/// The unified sources: (table, key column, text identifier columns).
const SOURCES: &[(&str, &str, &[&str])] = &[
    ("crm_contacts", "customer_id", &["email", "phone"]),
    ("orders", "order_id", &["email", "phone"]),
    ("web_events", "event_id", &["anonymous_id", "user_email"]),
    ("support_tickets", "ticket_id", &["email", "phone"]),
];

fn int(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn text_of(batches: &[RecordBatch]) -> String {
    let mut out = String::new();
    for b in batches {
        for c in b.columns() {
            let t = tessera_engine::engine_arrow::compute::cast(
                c,
                &tessera_engine::engine_arrow::datatypes::DataType::Utf8,
            )
            .unwrap();
            for v in t.as_string::<i32>().iter().flatten() {
                out.push_str(v);
                out.push('\n');
            }
        }
    }
    out.to_lowercase()
}

/// Every file under `dir`, lower-cased (ASCII).
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push((p.display().to_string(), bytes.to_ascii_lowercase()));
        }
    }
}

/// The needles found in some file, with where.
pub(super) fn on_disk(dir: &Path, needles: &BTreeSet<String>) -> Vec<(String, String)> {
    let mut all = Vec::new();
    files(dir, &mut all);
    let mut found = Vec::new();
    for n in needles {
        let n = n.as_bytes();
        for (name, bytes) in &all {
            if bytes.windows(n.len()).any(|w| w == n) {
                found.push((String::from_utf8_lossy(n).to_string(), name.clone()));
            }
        }
    }
    found
}

/// The generated rows, by table, and each row's person.
struct Data {
    batches: HashMap<&'static str, Vec<RecordBatch>>,
    /// (table, key) -> person.
    person: HashMap<(String, i64), i64>,
}

fn generate(persons: u64) -> Data {
    let (batches, person) = tessera_tests::generated(persons, 11);
    Data { batches, person }
}

/// Per person: the lower-cased text values of their rows, identifiers
/// and (from the CRM) names apart.
type Values = BTreeMap<i64, BTreeSet<String>>;

fn values_by_person(data: &Data) -> (Values, Values) {
    let (mut ids, mut names): (Values, Values) = Default::default();
    for (table, key, cols) in SOURCES {
        let mut all: Vec<(&str, bool)> = cols.iter().map(|c| (*c, true)).collect();
        if *table == "crm_contacts" {
            all.extend([("first_name", false), ("last_name", false)]);
        }
        for b in data.batches.get(table).into_iter().flatten() {
            let keys = b.column_by_name(key).unwrap().as_primitive::<Int64Type>();
            for (c, identifier) in &all {
                let v = b.column_by_name(c).unwrap().as_string::<i32>();
                for i in 0..b.num_rows() {
                    if v.is_valid(i) {
                        let p = data.person[&(table.to_string(), keys.value(i))];
                        let into = if *identifier { &mut ids } else { &mut names };
                        into.entry(p)
                            .or_default()
                            .insert(v.value(i).trim().to_lowercase());
                    }
                }
            }
        }
    }
    (ids, names)
}

#[test]
fn erased_people_leave_no_trace_in_queries_or_files() {
    let data = generate(3000);
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    for (t, _, _) in SOURCES {
        db.sql(&ddl(t).unwrap()).unwrap();
        for b in data.batches.get(t).into_iter().flatten() {
            db.append(t, b).unwrap();
        }
    }
    db.sql(UNIFY_EXAMPLE).unwrap();
    db.sql("CREATE SEGMENT buyers ON customers AS SELECT profile_id FROM orders")
        .unwrap();
    db.flush().unwrap();

    // Each record's profile, and each person's profiles and rows.
    let mut profiles: BTreeMap<i64, BTreeSet<Option<i64>>> = BTreeMap::new();
    let mut rows_of: BTreeMap<i64, Vec<(&str, i64)>> = BTreeMap::new();
    for (t, key, _) in SOURCES {
        for b in db
            .sql(&format!("SELECT {key}, profile_id FROM {t}"))
            .unwrap()
        {
            let (k, p) = (
                b.column(0).as_primitive::<Int64Type>(),
                b.column(1).as_primitive::<Int64Type>(),
            );
            for i in 0..b.num_rows() {
                let person = data.person[&(t.to_string(), k.value(i))];
                profiles
                    .entry(person)
                    .or_default()
                    .insert(p.is_valid(i).then(|| p.value(i)));
                rows_of.entry(person).or_default().push((t, k.value(i)));
            }
        }
    }
    // People in three channels or more, resolved into one profile, whose
    // values no one else's rows carry.
    let (values, names) = values_by_person(&data);
    let mut holders: HashMap<&str, usize> = HashMap::new();
    for vs in values.values().chain(names.values()) {
        for v in vs {
            *holders.entry(v.as_str()).or_default() += 1;
        }
    }
    let chosen: Vec<(i64, i64)> = rows_of
        .iter()
        .filter(|(p, rows)| {
            let channels: BTreeSet<&str> = rows.iter().map(|r| r.0).collect();
            channels.len() >= 3
                && profiles[*p].len() == 1
                && profiles[*p].iter().all(Option::is_some)
                && values[*p].iter().all(|v| holders[v.as_str()] == 1)
        })
        .map(|(p, _)| (*p, profiles[p].iter().next().unwrap().unwrap()))
        .take(3)
        .collect();
    assert_eq!(chosen.len(), 3, "the generator makes such people");
    // Their identifiers, and their names where no one else has them.
    let needles: BTreeSet<String> = chosen
        .iter()
        .flat_map(|(p, _)| {
            let unique_names = names
                .get(p)
                .into_iter()
                .flatten()
                .filter(|n| holders[n.as_str()] == 1);
            values[p]
                .iter()
                .chain(unique_names)
                .filter(|v| v.len() >= 5)
                .cloned()
        })
        .collect();
    assert!(needles.len() >= 9, "{needles:?}");
    assert!(!on_disk(dir.path(), &needles).is_empty());
    let in_segment = |profile: i64| {
        int(
            &db,
            &format!("SELECT count(*) FROM segment('buyers') WHERE profile_id = {profile}"),
        )
    };
    let bought: Vec<i64> = chosen.iter().map(|(_, id)| in_segment(*id)).collect();
    assert!(bought.contains(&1), "{bought:?}");

    // Erase: by id, by an identifier as typed, by id in a named space.
    let region = Region::parse("FR").unwrap();
    let email_of_second = values[&chosen[1].0]
        .iter()
        .find(|v| v.contains('@') && Normalizer::Email.apply(v, region).is_some())
        .expect("an email")
        .to_uppercase();
    let statements = [
        format!("ERASE PROFILE {}", chosen[0].1),
        format!("ERASE PROFILE WHERE email = '  {email_of_second} '"),
        format!("ERASE PROFILE {} IN customers", chosen[2].1),
    ];
    let mut requests = Vec::new();
    for (i, sql) in statements.iter().enumerate() {
        let out = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let b = &out[0];
        requests.push(b.column(0).as_string::<i32>().value(0).to_string());
        let (p, profile) = chosen[i];
        assert_eq!(b.column(2).as_primitive::<Int64Type>().value(0), profile);
        assert_eq!(
            b.column(3).as_primitive::<Int64Type>().value(0),
            rows_of[&p].len() as i64,
            "{sql}: every row of the person"
        );
        assert!(b.column(6).is_null(0), "not purged before its deadline");
    }
    // Erasing again is refused, with a message.
    let again = db
        .sql(&format!("ERASE PROFILE {}", chosen[0].1))
        .unwrap_err();
    assert!(again.to_string().contains("erased already"), "{again}");
    assert_eq!(again.sqlstate(), "22023");

    // Gone from every query at once.
    for (_, profile) in &chosen {
        for (t, _, _) in SOURCES {
            let n = int(
                &db,
                &format!("SELECT count(*) FROM {t} WHERE profile_id = {profile}"),
            );
            assert_eq!(n, 0, "{t}");
        }
        for sql in [
            format!("SELECT count(*) FROM customers WHERE profile_id = {profile}"),
            format!("SELECT count(*) FROM customers_identifiers WHERE profile_id = {profile}"),
            format!(
                "SELECT count(*) FROM customers_merges WHERE merged_profile = {profile} OR surviving_profile = {profile}"
            ),
        ] {
            assert_eq!(int(&db, &sql), 0, "{sql}");
        }
        assert_eq!(in_segment(*profile), 0);
    }
    let visible = text_of(&db.sql("SELECT * FROM customers_identifiers").unwrap());
    for n in &needles {
        assert!(
            !visible.contains(n.as_str()),
            "{n} still identifies someone"
        );
    }
    let pending = int(
        &db,
        "SELECT count(*) FROM erasure_requests WHERE purged_at IS NULL",
    );
    assert_eq!(pending, 3);
    // Before the purge the bytes are still in the files, and VERIFY says so.
    let before = db
        .sql(&format!(
            "VERIFY ERASURE '{}' FOR '{email_of_second}'",
            requests[1]
        ))
        .unwrap();
    assert!(
        before[0].column(2).as_boolean().value(0),
        "the value is the request's"
    );
    assert!(before[0].column(3).as_primitive::<Int64Type>().value(0) > 0);

    // The purge: nothing left in any byte of any file.
    db.sql("COMPACT").unwrap();
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM erasure_requests WHERE purged_at IS NOT NULL"
        ),
        3
    );
    let left = on_disk(dir.path(), &needles);
    assert!(left.is_empty(), "still on disk: {left:?}");
    let verified = db
        .sql(&format!(
            "VERIFY ERASURE '{}' FOR '{email_of_second}', 'nobody@nowhere.example'",
            requests[1]
        ))
        .unwrap();
    let v = &verified[0];
    assert!(v.column(2).as_boolean().value(0));
    assert!(
        !v.column(2).as_boolean().value(1),
        "not a value of the request"
    );
    assert_eq!(v.column(3).as_primitive::<Int64Type>().value(0), 0);

    // Their rows loaded again are dropped and counted.
    let mut reloaded = 0;
    for (t, key, _) in SOURCES {
        let theirs: BTreeSet<i64> = chosen
            .iter()
            .flat_map(|(p, _)| rows_of[p].iter().filter(|r| r.0 == *t).map(|r| r.1))
            .collect();
        for b in data.batches.get(t).into_iter().flatten() {
            let keys = b.column_by_name(key).unwrap().as_primitive::<Int64Type>();
            let mask: BooleanArray = keys
                .iter()
                .map(|k| k.map(|k| theirs.contains(&k)))
                .collect();
            let rows = filter_record_batch(b, &mask).unwrap();
            if rows.num_rows() > 0 {
                reloaded += rows.num_rows() as i64;
                db.append(t, &rows).unwrap();
            }
        }
    }
    assert!(reloaded >= 9);
    assert_eq!(
        int(&db, "SELECT sum(suppressed_records) FROM erasure_requests"),
        reloaded
    );
    let visible = text_of(&db.sql("SELECT * FROM customers_identifiers").unwrap());
    for n in &needles {
        assert!(!visible.contains(n.as_str()), "{n} came back");
    }

    // The audit tables hold no personal data.
    let audit = text_of(&db.sql("SELECT * FROM erasure_log").unwrap())
        + &text_of(&db.sql("SELECT * FROM erasure_suppressions").unwrap())
        + &text_of(&db.sql("SELECT * FROM erasure_requests").unwrap());
    for n in &needles {
        assert!(!audit.contains(n.as_str()), "the audit holds {n}");
    }
    let writes = db.sql("INSERT INTO erasure_log (request_id, event, at) VALUES ('x', 'y', now())");
    assert!(writes.is_err(), "only Tessera writes the audit log");

    // After a reopen: still erased, still suppressed.
    let profiles_before = int(&db, "SELECT count(*) FROM customers");
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(int(&db, "SELECT count(*) FROM customers"), profiles_before);
    assert_eq!(
        int(
            &db,
            &format!(
                "SELECT count(*) FROM customers WHERE profile_id = {}",
                chosen[0].1
            )
        ),
        0
    );
    let (t, key) = rows_of[&chosen[1].0][0];
    let (_, key_col, _) = SOURCES.iter().find(|s| s.0 == t).unwrap();
    let original: Vec<RecordBatch> = data.batches[t]
        .iter()
        .map(|b| {
            let keys = b
                .column_by_name(key_col)
                .unwrap()
                .as_primitive::<Int64Type>();
            let mask: BooleanArray = keys.iter().map(|k| k.map(|k| k == key)).collect();
            filter_record_batch(b, &mask).unwrap()
        })
        .filter(|b| b.num_rows() > 0)
        .collect();
    db.append(t, &original[0]).unwrap();
    assert_eq!(
        int(&db, "SELECT sum(suppressed_records) FROM erasure_requests"),
        reloaded + 1
    );

    // Lifting the suppression lets the data in again.
    db.sql(&format!("LIFT SUPPRESSION '{}'", requests[1]))
        .unwrap();
    db.append(t, &original[0]).unwrap();
    assert_eq!(
        int(
            &db,
            &format!("SELECT count(*) FROM {t} WHERE {key_col} = {key}")
        ),
        1
    );
    let lifted = db
        .sql(&format!("LIFT SUPPRESSION '{}'", requests[1]))
        .unwrap_err();
    assert!(
        lifted.to_string().contains("suppresses nothing"),
        "{lifted}"
    );
}

#[test]
fn erase_immediately_purges_and_verifies_in_one_statement() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    db.sql(
        "CREATE TABLE contacts (id BIGINT NOT NULL, email TEXT, phone TEXT, device TEXT);
         CREATE TABLE events (id BIGINT NOT NULL, device TEXT, email TEXT);
         INSERT INTO contacts VALUES (1, 'Marie.Curie+news@Gmail.com', '06 12 34 56 78', NULL),
                                     (2, 'paul.langevin@example.org', '0611111111', NULL);
         INSERT INTO events VALUES (10, 'tablet-family-7', 'mariecurie@gmail.com'),
                                   (11, 'tablet-family-7', 'paul.langevin@example.org'),
                                   (12, 'laptop-marie-1', 'mariecurie@gmail.com'),
                                   (13, 'laptop-marie-1', NULL);
         UNIFY people FROM contacts (email, phone), events (device_id = device, email)
           WITH (phone.region = 'FR')",
    )
    .unwrap();
    db.flush().unwrap();
    // Parse errors and unknown people are reported, not half-applied.
    for (sql, state) in [
        ("ERASE PROFILE WHERE fax = '1'", "22023"),
        ("ERASE PROFILE WHERE email = 'nobody@example.org'", "42704"),
        ("ERASE PROFILE 99", "42704"),
        ("ERASE PROFILE 0 IN nowhere", "42704"),
        ("VERIFY ERASURE 'er-0000' FOR 'x'", "42704"),
    ] {
        let e = db.sql(sql).unwrap_err();
        assert_eq!(e.sqlstate(), state, "{sql}: {e}");
    }
    assert_eq!(int(&db, "SELECT count(*) FROM erasure_requests"), 0);

    let out = db
        .sql("ERASE PROFILE WHERE email = 'marie.curie@gmail.com' IMMEDIATELY")
        .unwrap();
    let b = &out[0];
    // Her contact, the two events with her email, and the one of her laptop.
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(0), 4, "rows");
    assert!(b.column(6).is_valid(0), "purged at once");
    assert_eq!(
        b.column(7).as_primitive::<Int64Type>().value(0),
        0,
        "found nothing"
    );
    let needles: BTreeSet<String> = [
        "marie.curie+news@gmail.com",
        "mariecurie@gmail.com",
        "06 12 34 56 78",
        "+33612345678",
        "laptop-marie-1",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert!(on_disk(dir.path(), &needles).is_empty());
    // The family tablet is Paul's too: his rows keep it, it is not suppressed.
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM events WHERE device = 'tablet-family-7'"
        ),
        1
    );
    let out = db
        .execute("INSERT INTO events VALUES (14, 'tablet-family-7', NULL), (15, 'laptop-marie-1', NULL), (16, NULL, 'MarieCurie@gmail.com')")
        .unwrap();
    assert_eq!(out[0].tag, "INSERT 0 1", "the tag counts the rows stored");
    assert_eq!(int(&db, "SELECT count(*) FROM events WHERE id >= 14"), 1);
    assert_eq!(
        int(&db, "SELECT sum(suppressed_records) FROM erasure_requests"),
        2
    );
    assert_eq!(
        int(
            &db,
            "SELECT count(*) FROM erasure_requests WHERE verified_at IS NOT NULL AND found = 0"
        ),
        1
    );
    // A new UNIFY of the space keeps suppressing her.
    db.sql(
        "UNIFY people FROM contacts (email, phone), events (device_id = device, email) \
         WITH (phone.region = 'FR')",
    )
    .unwrap();
    db.sql("INSERT INTO contacts (id, email) VALUES (9, 'marie.curie@gmail.com')")
        .unwrap();
    assert_eq!(int(&db, "SELECT count(*) FROM contacts WHERE id = 9"), 0);
}
