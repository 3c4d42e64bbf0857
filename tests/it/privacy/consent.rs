//! Consent: a source declared the consent record of a profile space;
//! `has_consent`, `segment(…, purpose => …)`, `segment_count(…, purpose)`
//! and segment exports for a purpose.

use tessera_engine::Database;
use tessera_engine::engine_arrow::array::{Array, AsArray};
use tessera_engine::engine_arrow::datatypes::Int64Type;

const SETUP: &str = "
    CREATE TABLE crm (customer_id TEXT, email TEXT, spend BIGINT);
    CREATE TABLE consents (email TEXT, purpose TEXT, granted BOOLEAN, recorded_at TIMESTAMP);
    INSERT INTO crm VALUES ('C1', 'marie@example.com', 900), ('C2', 'paul@example.org', 800),
                           ('C3', 'anna@example.net', 700), ('C4', 'bob@example.com', 600),
                           ('C5', 'zoe@example.com', 10);
    UNIFY customers FROM crm (customer_id, email), consents (email);
    ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted, recorded_at);
    -- Marie's withdrawal is loaded before the grant it overrides.
    INSERT INTO consents VALUES
        ('marie@example.com', 'email_marketing', false, '2026-03-01 10:00:00'),
        ('MARIE@example.com', 'email_marketing', true,  '2026-01-01 10:00:00'),
        ('paul@example.org',  'email_marketing', true,  '2026-01-01 10:00:00'),
        ('anna@example.net',  'email_marketing', false, '2026-01-01 10:00:00'),
        ('anna@example.net',  'email_marketing', true,  '2026-02-01 10:00:00'),
        ('anna@example.net',  'sms_marketing',   true,  '2026-02-01 10:00:00'),
        ('zoe@example.com',   'email_marketing', true,  '2026-05-01 10:00:00'),
        ('zoe@example.com',   'email_marketing', false, '2026-05-01 10:00:00');
    CREATE SEGMENT big ON customers AS SELECT profile_id FROM crm WHERE spend > 100";

/// The first (text) column of a query's rows.
fn texts(db: &Database, sql: &str) -> Vec<String> {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b.iter()
        .flat_map(|b| {
            let c = b.column(0).as_string::<i32>();
            (0..c.len())
                .map(|i| c.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn consents_of(db: &Database, purpose: &str) -> Vec<String> {
    texts(
        db,
        &format!(
            "SELECT c.customer_id FROM crm c WHERE has_consent(c.profile_id, '{purpose}') ORDER BY 1"
        ),
    )
}

fn one_i64(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

#[test]
fn the_latest_decision_wins_and_no_decision_is_no_consent() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    // Marie withdrew; Anna granted after withdrawing; Bob never decided;
    // Zoe's grant and withdrawal share an instant: the withdrawal wins.
    assert_eq!(consents_of(&db, "email_marketing"), ["C2", "C3"]);
    assert_eq!(consents_of(&db, "sms_marketing"), ["C3"]);
    assert!(consents_of(&db, "analytics").is_empty());
    // NULLs stay NULL; a profile id nobody holds has no consent.
    let b = db
        .sql("SELECT has_consent(NULL, 'email_marketing'), has_consent(123456, 'email_marketing'), has_consent(1, NULL)")
        .unwrap();
    assert!(b[0].column(0).is_null(0));
    assert!(!b[0].column(1).as_boolean().value(0));
    assert!(b[0].column(2).is_null(0));

    // A new decision is seen by the next query.
    db.execute(
        "INSERT INTO consents VALUES ('bob@example.com', 'email_marketing', true, '2026-06-01 00:00:00'),
                                     ('paul@example.org', 'email_marketing', false, '2026-06-01 00:00:00')",
    )
    .unwrap();
    assert_eq!(consents_of(&db, "email_marketing"), ["C3", "C4"]);
    // A purpose per row works too.
    let b = db
        .sql("SELECT count(*) FROM crm c CROSS JOIN (VALUES ('email_marketing'), ('sms_marketing')) p(purpose) WHERE has_consent(c.profile_id, p.purpose)")
        .unwrap();
    assert_eq!(b[0].column(0).as_primitive::<Int64Type>().value(0), 3);
}

#[test]
fn a_merge_makes_the_latest_decision_of_either_profile_the_persons() {
    let db = Database::open_in_memory().unwrap();
    db.execute(
        "CREATE TABLE crm (customer_id TEXT, email TEXT);
         CREATE TABLE consents (email TEXT, purpose TEXT, granted BOOLEAN, recorded_at TIMESTAMP);
         INSERT INTO crm VALUES ('C1', 'old@example.com'), ('C1', NULL);
         INSERT INTO consents VALUES ('new@example.com', 'email_marketing', true, '2026-04-01 00:00:00'),
                                     ('old@example.com', 'email_marketing', false, '2026-02-01 00:00:00');
         UNIFY customers FROM crm (customer_id, email), consents (email);
         ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted, recorded_at)",
    )
    .unwrap();
    // Two people so far: the one with the new address consents.
    assert_eq!(one_i64(&db, "SELECT count(*) FROM customers"), 2);
    assert_eq!(
        one_i64(
            &db,
            "SELECT count(*) FROM consents WHERE has_consent(profile_id, 'email_marketing')"
        ),
        1
    );
    // The CRM learns the new address: one person, whose latest decision
    // (April's grant) is theirs.
    db.execute("INSERT INTO crm VALUES ('C1', 'new@example.com')")
        .unwrap();
    assert_eq!(one_i64(&db, "SELECT count(*) FROM customers"), 1);
    assert_eq!(
        one_i64(
            &db,
            "SELECT count(*) FROM crm WHERE has_consent(profile_id, 'email_marketing')"
        ),
        3
    );
}

#[test]
fn segments_for_a_purpose_hold_only_consenting_members() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    assert_eq!(one_i64(&db, "SELECT count(*) FROM segment('big')"), 4);
    let both = "SELECT c.customer_id FROM segment('big', purpose => 'email_marketing') s JOIN crm c USING (profile_id) ORDER BY 1";
    assert_eq!(texts(&db, both), ["C2", "C3"]);
    // Positionally, and by name in any order.
    assert_eq!(
        one_i64(
            &db,
            "SELECT count(*) FROM segment(purpose => 'sms_marketing', name => 'big')"
        ),
        1
    );
    assert_eq!(
        one_i64(&db, "SELECT count(*) FROM segment('big', 'sms_marketing')"),
        1
    );
    assert_eq!(
        one_i64(&db, "SELECT segment_count('big', 'email_marketing')"),
        2
    );
    assert_eq!(db.segment_count_for("big", Some("analytics")).unwrap(), 0);
    // A view keeps its purpose across a reopen (stored positionally).
    db.execute(
        "CREATE VIEW mailable AS SELECT * FROM segment('big', purpose => 'email_marketing')",
    )
    .unwrap();
    assert_eq!(one_i64(&db, "SELECT count(*) FROM mailable"), 2);

    // The export for a purpose says how many were left out.
    use tessera_server::export;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let done = export::run(&db, "big", &file, None, None, Some("email_marketing")).unwrap();
    assert_eq!((done.rows, done.left_out), (2, Some(2)));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().lines().count(),
        3,
        "a header and two members"
    );
    // A delta for a purpose: the entered without consent are left out,
    // exits always go (the tool must stop addressing them).
    db.execute(
        "UPDATE crm SET spend = 0 WHERE customer_id = 'C2';
         UPDATE crm SET spend = 1000 WHERE customer_id = 'C5';
         REFRESH SEGMENT big",
    )
    .unwrap();
    let delta = dir.path().join("delta.csv");
    let done = export::run(&db, "big", &delta, Some(1), None, Some("email_marketing")).unwrap();
    let text = std::fs::read_to_string(&delta).unwrap();
    assert_eq!((done.rows, done.left_out), (1, Some(1)), "{text}");
    assert!(
        text.contains("exited") && !text.contains("entered"),
        "{text}"
    );
}

#[test]
fn consent_declarations_persist_and_bad_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        db.execute(
            "CREATE TABLE crm (customer_id TEXT, email TEXT);
             CREATE TABLE consents (email TEXT, purpose TEXT, granted BOOLEAN, recorded_at TIMESTAMP, note BIGINT);
             CREATE TABLE other (email TEXT, purpose TEXT, granted BOOLEAN, recorded_at TIMESTAMP);
             INSERT INTO crm VALUES ('C1', 'a@x.fr');
             INSERT INTO consents VALUES ('a@x.fr', 'email_marketing', true, '2026-01-01 00:00:00', 1);
             UNIFY customers FROM crm (customer_id, email), consents (email)",
        )
        .unwrap();
        // Before any declaration: nothing to answer from.
        let e = db
            .sql("SELECT has_consent(0, 'email_marketing')")
            .unwrap_err();
        assert_eq!(e.sqlstate(), "55000", "{e}");
        assert!(e.to_string().contains("ALTER UNIFY"), "{e}");
        for (sql, state) in [
            (
                "ALTER UNIFY nowhere SET CONSENT FROM consents (purpose, granted, recorded_at)",
                "42704",
            ),
            (
                "ALTER UNIFY customers SET CONSENT FROM missing (purpose, granted, recorded_at)",
                "42P01",
            ),
            (
                "ALTER UNIFY customers SET CONSENT FROM other (purpose, granted, recorded_at)",
                "42809",
            ),
            (
                "ALTER UNIFY customers SET CONSENT FROM consents (purpose, agreed, recorded_at)",
                "42703",
            ),
            (
                "ALTER UNIFY customers SET CONSENT FROM consents (purpose, note, recorded_at)",
                "42804",
            ),
            (
                "ALTER UNIFY customers SET CONSENT FROM consents (granted, granted, recorded_at)",
                "42804",
            ),
            ("ALTER UNIFY customers DROP CONSENT", "42704"),
            (
                "ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted)",
                "42601",
            ),
        ] {
            let e = db.execute(sql).unwrap_err();
            assert_eq!(e.sqlstate(), state, "{sql}: {e}");
        }
        db.execute(
            "ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted, recorded_at)",
        )
        .unwrap();
        // Named arguments a function does not have.
        let e = db
            .sql("SELECT * FROM segment('x', purpse => 'email_marketing')")
            .unwrap_err();
        assert_eq!(e.sqlstate(), "22023", "{e}");
    }
    // Reopened: the declaration holds.
    let db = Database::open(dir.path()).unwrap();
    assert_eq!(
        one_i64(
            &db,
            "SELECT count(*) FROM crm WHERE has_consent(profile_id, 'email_marketing', 'customers')"
        ),
        1
    );
    db.execute("ALTER UNIFY customers DROP CONSENT").unwrap();
    let e = db
        .sql("SELECT has_consent(0, 'email_marketing', 'customers')")
        .unwrap_err();
    assert_eq!(e.sqlstate(), "55000", "{e}");
    drop(db);
    let db = Database::open(dir.path()).unwrap();
    let e = db
        .sql("SELECT has_consent(0, 'email_marketing')")
        .unwrap_err();
    assert_eq!(e.sqlstate(), "55000", "{e}");
}

#[test]
fn an_erased_persons_decisions_go_with_them_and_their_export_holds_them() {
    let db = Database::open_in_memory().unwrap();
    db.execute(SETUP).unwrap();
    let b = db
        .sql("EXPORT PROFILE WHERE email = 'anna@example.net' TO STDOUT")
        .unwrap();
    let d: serde_json::Value =
        serde_json::from_str(b[0].column(0).as_string::<i32>().value(0)).unwrap();
    assert_eq!(d["sources"]["public.consents"].as_array().unwrap().len(), 3);
    db.execute("ERASE PROFILE WHERE email = 'anna@example.net'")
        .unwrap();
    assert_eq!(consents_of(&db, "email_marketing"), ["C2"]);
    assert_eq!(one_i64(&db, "SELECT count(*) FROM consents"), 5);
    assert_eq!(
        one_i64(&db, "SELECT segment_count('big', 'sms_marketing')"),
        0
    );
}
