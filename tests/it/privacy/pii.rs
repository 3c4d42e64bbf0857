//! PII columns: `ALTER TABLE … ALTER COLUMN … SET PII`, masked for readers
//! without `pii_reader` on every path, unmasked reads recorded in
//! `pii_reads`.

use tessera_engine::engine_arrow::array::{Array, AsArray};
use tessera_engine::engine_arrow::datatypes::Int64Type;
use tessera_engine::{Database, QueryOutput};
use tessera_sql::pii::{PiiAccess, STATEMENT_ACCESS};

const SETUP: &str = "
    CREATE TABLE crm (customer_id BIGINT NOT NULL, email TEXT, name TEXT, spend DOUBLE PRECISION);
    CREATE TABLE orders (order_id BIGINT NOT NULL, email TEXT, amount DOUBLE PRECISION);
    INSERT INTO crm VALUES (1, 'marie@example.com', 'Marie', 900), (2, 'paul@example.org', 'Paul', 10),
                           (3, NULL, 'Anon', 0);
    INSERT INTO orders VALUES (10, 'marie@example.com', 5), (11, 'marie@example.com', 7),
                              (12, 'paul@example.org', 1);
    ALTER TABLE crm ALTER COLUMN email SET PII;
    ALTER TABLE crm ALTER COLUMN customer_id SET PII;
    ALTER TABLE orders ALTER COLUMN email SET PII";

/// Runs `sql` as a role without pii_reader (as the server does for one).
fn as_analyst(db: &Database, sql: &str) -> Vec<QueryOutput> {
    let access = PiiAccess {
        reader: false,
        user: "analyst".into(),
    };
    db.runtime().block_on(STATEMENT_ACCESS.scope(access, async {
        let mut out = Vec::new();
        for s in tessera_sql::parser::parse(sql).unwrap() {
            out.push(
                db.run_async(s)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}")),
            );
        }
        out
    }))
}

fn texts(out: &QueryOutput, col: usize) -> Vec<Option<String>> {
    out.batches
        .iter()
        .flat_map(|b| {
            let c = b.column(col).as_string::<i32>();
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn one(out: &QueryOutput) -> i64 {
    out.batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0)
}

#[test]
fn readers_without_pii_reader_see_stable_masks_everywhere() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    let out = as_analyst(&db, "SELECT email, name FROM crm ORDER BY name");
    let emails = texts(&out[0], 0);
    // Anon, Marie, Paul: masked, NULL stays NULL, other columns as stored.
    assert_eq!(emails[0], None);
    let marie = emails[1].clone().unwrap();
    assert!(marie.starts_with("pii_") && marie.len() == 20, "{marie}");
    assert!(!emails.iter().flatten().any(|e| e.contains('@')));
    assert_eq!(
        texts(&out[0], 1),
        [
            Some("Anon".into()),
            Some("Marie".into()),
            Some("Paul".into())
        ]
    );
    // The same value masks the same in every table: joins and counts work.
    let out = as_analyst(
        &db,
        "SELECT count(*) FROM crm c JOIN orders o USING (email);
         SELECT count(DISTINCT email) FROM orders;
         SELECT count(*) FROM crm WHERE customer_id = 1",
    );
    assert_eq!(one(&out[0]), 3);
    assert_eq!(one(&out[1]), 2);
    // A filter on a masked column compares masked values: the stored
    // value cannot be probed for.
    assert_eq!(one(&out[2]), 0);
    let out = as_analyst(
        &db,
        &format!(
            "SELECT count(*) FROM crm WHERE email = 'marie@example.com';
             SELECT count(*) FROM crm WHERE email = '{marie}';
             SELECT count(*) FROM crm WHERE email LIKE '%example%'"
        ),
    );
    assert_eq!((one(&out[0]), one(&out[1]), one(&out[2])), (0, 1, 0));
    // Through a view, into another table, and COPY TO a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("crm.csv");
    as_analyst(
        &db,
        &format!(
            "CREATE VIEW v AS SELECT email FROM crm;
             CREATE TABLE copy_of AS SELECT email FROM crm;
             COPY crm TO '{}' WITH (FORMAT csv, HEADER true)",
            file.display()
        ),
    );
    let out = as_analyst(&db, "SELECT email FROM v WHERE email IS NOT NULL");
    assert!(
        texts(&out[0], 0)
            .iter()
            .flatten()
            .all(|e| e.starts_with("pii_"))
    );
    let stored = db.sql("SELECT email FROM copy_of").unwrap();
    let c = stored[0].column(0).as_string::<i32>();
    assert!(
        (0..c.len())
            .filter(|i| !c.is_null(*i))
            .all(|i| c.value(i).starts_with("pii_"))
    );
    let csv = std::fs::read_to_string(&file).unwrap();
    assert!(
        !csv.contains('@') && csv.contains("pii_") && csv.contains("Marie"),
        "{csv}"
    );
    // The owner (the embedding program) reads the values.
    let b = db
        .sql("SELECT email FROM crm WHERE customer_id = 1")
        .unwrap();
    assert_eq!(
        b[0].column(0).as_string::<i32>().value(0),
        "marie@example.com"
    );
}

#[test]
fn unmasked_reads_are_recorded_and_tags_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(SETUP).unwrap();
        // Reads of PII columns are recorded; reads without them are not.
        db.sql("SELECT email FROM crm").unwrap();
        db.sql("SELECT name FROM crm").unwrap();
        let b = db
            .sql("SELECT role, table_name, columns, rows FROM pii_reads")
            .unwrap();
        assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        assert_eq!(b[0].column(0).as_string::<i32>().value(0), "owner");
        assert_eq!(b[0].column(1).as_string::<i32>().value(0), "public.crm");
        assert_eq!(b[0].column(2).as_string::<i32>().value(0), "email");
        assert_eq!(b[0].column(3).as_primitive::<Int64Type>().value(0), 3);
        // Masked reads are not unmasked reads.
        as_analyst(&db, "SELECT email FROM orders");
        let n = db.sql("SELECT count(*) FROM pii_reads").unwrap();
        assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 1);
        for (sql, state) in [
            ("ALTER TABLE crm ALTER COLUMN spend SET PII", "0A000"),
            ("ALTER TABLE crm ALTER COLUMN nope SET PII", "42703"),
            ("ALTER TABLE nope ALTER COLUMN email SET PII", "42P01"),
            ("ALTER TABLE pii_reads ALTER COLUMN role SET PII", "42501"),
            (
                "INSERT INTO pii_reads VALUES (now(), 'x', 'y', 'z', 1)",
                "42501",
            ),
            ("GRANT pii_reader TO analyst", "0A000"),
        ] {
            let e = db.execute(sql).unwrap_err();
            assert_eq!(e.sqlstate(), state, "{sql}: {e}");
        }
    }
    let db = Database::open(dir.path()).unwrap();
    let out = as_analyst(&db, "SELECT email FROM crm WHERE email IS NOT NULL");
    assert!(
        texts(&out[0], 0)
            .iter()
            .flatten()
            .all(|e| e.starts_with("pii_"))
    );
    db.execute("ALTER TABLE crm ALTER COLUMN email DROP PII")
        .unwrap();
    let out = as_analyst(
        &db,
        "SELECT email FROM crm WHERE customer_id IS NOT NULL ORDER BY name",
    );
    assert_eq!(texts(&out[0], 0)[1].as_deref(), Some("marie@example.com"));
}

#[test]
fn identifiers_of_pii_columns_are_masked_in_profile_tables_and_segments() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    db.execute(
        "UNIFY customers FROM crm (email), orders (email);
         CREATE SEGMENT buyers ON customers AS SELECT profile_id FROM orders",
    )
    .unwrap();
    let out = as_analyst(
        &db,
        "SELECT value FROM customers_identifiers ORDER BY 1;
         SELECT array_to_string(identifiers, ',') FROM customers ORDER BY 1;
         SELECT array_to_string(identifiers, ',') FROM segment('buyers') ORDER BY 1",
    );
    for o in &out {
        let values = texts(o, 0);
        assert_eq!(values.len(), 2, "{values:?}");
        for v in values.iter().flatten() {
            assert!(!v.contains('@') && v.contains("pii_"), "{v}");
        }
    }
    // The owner sees them; the analyst's masks match the columns' masks.
    let b = db
        .sql("SELECT value FROM customers_identifiers ORDER BY 1")
        .unwrap();
    assert_eq!(
        b[0].column(0).as_string::<i32>().value(0),
        "marie@example.com"
    );
    let out = as_analyst(
        &db,
        "SELECT count(*) FROM customers_identifiers i JOIN orders o ON i.value = o.email",
    );
    assert_eq!(one(&out[0]), 3);
}

#[test]
fn a_refresh_triggered_by_a_masked_role_still_reads_the_values() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    db.execute(
        "UNIFY customers FROM crm (email);
         CREATE SEGMENT at_example ON customers REFRESH ON COMMIT AS
           SELECT profile_id FROM crm WHERE email LIKE '%@example.com'",
    )
    .unwrap();
    let size = |db: &Database| {
        let b = db.sql("SELECT segment_count('at_example')").unwrap();
        b[0].column(0).as_primitive::<Int64Type>().value(0)
    };
    assert_eq!(size(&db), 1);
    // An analyst's write refreshes the segment; its definition matches
    // the stored addresses, not their masks.
    as_analyst(
        &db,
        "INSERT INTO crm VALUES (4, 'zoe@example.com', 'Zoe', 5)",
    );
    assert_eq!(size(&db), 2);
}
