//! `EXPORT PROFILE`: one person's data from every source, their
//! identifiers, lineage and segments, as one JSON document.

use tessera_engine::Database;
use tessera_engine::engine_arrow::array::AsArray;

fn setup() -> Database {
    let db = Database::open_in_memory().unwrap();
    db.sql(
        "CREATE TABLE crm (customer_id TEXT, email TEXT, name TEXT);
         CREATE TABLE orders (order_id BIGINT NOT NULL, email TEXT, amount DOUBLE PRECISION, at TIMESTAMP);
         CREATE TABLE web (event_id BIGINT NOT NULL, device TEXT, email TEXT);
         INSERT INTO crm VALUES ('C1', 'marie@example.com', 'Marie Curie'), ('C2', 'paul@example.org', 'Paul');
         INSERT INTO web VALUES (1, 'dev-1', NULL), (2, 'dev-1', NULL);
         INSERT INTO orders VALUES (10, 'MARIE@example.com', 120.5, '2026-01-02 10:00:00'), (11, 'paul@example.org', 3, NULL);
         UNIFY customers FROM crm (customer_id, email), orders (email), web (device_id = device, email);
         INSERT INTO web VALUES (3, 'dev-1', 'marie@example.com');
         CREATE SEGMENT big ON customers AS SELECT profile_id FROM orders WHERE amount > 100",
    )
    .unwrap();
    db
}

fn doc(db: &Database, sql: &str) -> serde_json::Value {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    serde_json::from_str(b[0].column(0).as_string::<i32>().value(0)).unwrap()
}

#[test]
fn an_export_holds_every_source_identifier_merge_and_segment() {
    let db = setup();
    let d = doc(
        &db,
        "EXPORT PROFILE WHERE email = ' Marie@Example.com' TO STDOUT",
    );
    assert_eq!(d["format"], "tessera.profile/1");
    assert_eq!(d["space"], "public.customers");
    let sources = &d["sources"];
    assert_eq!(sources["public.crm"].as_array().unwrap().len(), 1);
    assert_eq!(sources["public.crm"][0]["name"], "Marie Curie");
    assert_eq!(sources["public.orders"][0]["amount"], 120.5);
    assert_eq!(sources["public.orders"][0]["at"], "2026-01-02T10:00:00");
    // The anonymous device events joined her when she logged in on it.
    assert_eq!(sources["public.web"].as_array().unwrap().len(), 3);
    let kinds: Vec<&str> = d["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds.contains(&"device_id") && kinds.contains(&"email"));
    assert_eq!(
        d["merges"].as_array().unwrap().len(),
        1,
        "the device's profile merged"
    );
    assert_eq!(d["segments"], serde_json::json!(["big"]));
    let p = d["profile_id"].as_i64().unwrap();
    let ids = d["profile_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 2);
    // By a retired id too: the same person.
    let retired = ids
        .iter()
        .map(|v| v.as_i64().unwrap())
        .find(|v| *v != p)
        .unwrap();
    let again = doc(&db, &format!("EXPORT PROFILE {retired} TO STDOUT"));
    assert_eq!(again["profile_id"], p);
    // Paul's export holds nothing of Marie's.
    let paul = doc(
        &db,
        "EXPORT PROFILE WHERE email = 'paul@example.org' TO STDOUT",
    )
    .to_string();
    assert!(!paul.contains("marie") && !paul.contains("dev-1"), "{paul}");

    // To a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("marie.json");
    let out = db
        .sql(&format!("EXPORT PROFILE {p} TO '{}'", file.display()))
        .unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["sources"], d["sources"]);
    assert_eq!(
        out[0]
            .column(2)
            .as_primitive::<tessera_engine::engine_arrow::datatypes::Int64Type>()
            .value(0),
        std::fs::metadata(&file).unwrap().len() as i64
    );

    // Errors a person can act on.
    for (sql, state) in [
        ("EXPORT PROFILE 99 TO STDOUT", "42704"),
        (
            "EXPORT PROFILE WHERE email = 'nobody@example.org' TO STDOUT",
            "42704",
        ),
        ("EXPORT PROFILE WHERE fax = '1' TO STDOUT", "22023"),
        ("EXPORT PROFILE 0 TO '/nonexistent/dir/x.json'", "58030"),
    ] {
        let e = db.sql(sql).unwrap_err();
        assert_eq!(e.sqlstate(), state, "{sql}: {e}");
    }
    // An erased person has nothing left to export.
    db.sql(&format!("ERASE PROFILE {p}")).unwrap();
    let e = db
        .sql(&format!("EXPORT PROFILE {p} TO STDOUT"))
        .unwrap_err();
    assert!(e.to_string().contains("erased"), "{e}");
}
