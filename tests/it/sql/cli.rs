//! The command line's library parts: the demo and the script runner.

use tessera_engine::Database;
use tessera_server::{demo, shell};

#[test]
fn the_demo_loads_data_answers_and_verifies_and_can_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo");
    let mut out = Vec::new();
    demo::run(&db, 500, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("loaded "), "{text}");
    for (title, _) in demo::QUERIES {
        assert!(text.contains(title), "{title} missing from:\n{text}");
    }
    assert!(text.contains("0 problems"), "{text}");
    // Every record of the sample data is unified: the demo shows profiles
    // and the 360° view, and its suggestions name real identifiers.
    let db_ = Database::open(&db).unwrap();
    let n = |sql: &str| {
        let b = db_.sql(sql).unwrap();
        tessera_engine::engine_arrow::util::display::array_value_to_string(b[0].column(0), 0)
            .unwrap()
    };
    let profiles: i64 = n("SELECT count(*) FROM customers").parse().unwrap();
    assert!(
        (400..=600).contains(&profiles),
        "{profiles} profiles for 500 persons"
    );
    assert_eq!(n("SELECT count(*) FROM customer_360"), profiles.to_string());
    let unresolved: i64 = n("SELECT count(*) FROM orders WHERE profile_id IS NULL")
        .parse()
        .unwrap();
    let orders: i64 = n("SELECT count(*) FROM orders").parse().unwrap();
    assert!(
        unresolved * 20 < orders,
        "{unresolved} of {orders} orders without a profile"
    );
    drop(db_);
    assert!(
        !text.contains("unify_explain('customers', 'email', '')"),
        "{text}"
    );
    // A second run reuses the database.
    let mut out = Vec::new();
    demo::run(&db, 500, &mut out).unwrap();
    assert!(String::from_utf8(out).unwrap().contains("reusing"));
}

#[test]
fn scripts_print_each_result_and_stop_at_the_first_error() {
    let db = Database::open_in_memory().unwrap();
    let mut out = Vec::new();
    let ok = shell::run_script(
        &db,
        "CREATE TABLE t (x INT); INSERT INTO t VALUES (1), (2); SELECT * FROM t; SELECT * FROM nope; SELECT 1",
        &mut out,
    );
    let text = String::from_utf8(out).unwrap();
    assert!(!ok);
    assert!(text.contains("CREATE TABLE"));
    assert!(text.contains("INSERT 0 2"));
    assert!(text.contains("(2 rows)"));
    assert!(text.contains("relation \"nope\" does not exist"));
    assert!(text.contains("SQLSTATE: 42P01"));
    assert!(!text.contains("(1 row)"), "nothing runs after the error");
}

#[test]
fn explain_shows_pruned_segments_and_bitmap_indexes() {
    let db = Database::open_in_memory().unwrap();
    db.execute("CREATE TABLE e (id BIGINT NOT NULL, kind TEXT)")
        .unwrap();
    db.execute("INSERT INTO e SELECT value, CASE WHEN value % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 1000) AS t(value)").unwrap();
    db.flush().unwrap();
    db.execute("INSERT INTO e SELECT value, 'c' FROM generate_series(1001, 2000) AS t(value)")
        .unwrap();
    db.flush().unwrap();
    let plan = |sql: &str| {
        let out = db
            .execute(&format!("EXPLAIN {sql}"))
            .unwrap()
            .pop()
            .unwrap();
        tessera_engine::pretty(&out.schema, &out.batches).unwrap()
    };
    let p = plan("SELECT count(*) FROM e WHERE kind = 'a'");
    assert!(p.contains("bitmap_index=["), "{p}");
    let p = plan("SELECT count(*) FROM e WHERE id > 1500");
    assert!(p.contains("pruned=["), "{p}");
    assert_eq!(
        db.sql("SELECT count(*) AS n FROM e WHERE id > 1500 AND kind = 'c'")
            .unwrap()[0]
            .num_rows(),
        1
    );
}
