//! The command line's library parts: the demo, the script runner and the bench.

use tessera_engine::Database;
use tessera_server::{demo, shell};

#[test]
fn the_demo_loads_data_answers_and_verifies_and_can_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo");
    let mut out = Vec::new();
    demo::run(&db, 500, None, &mut out).unwrap();
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
    demo::run(&db, 500, None, &mut out).unwrap();
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

#[test]
fn export_segment_writes_members_and_changes() {
    use tessera_server::export;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("db")).unwrap();
    db.execute(
        "CREATE TABLE crm (customer_id BIGINT NOT NULL, email TEXT, amount BIGINT);
         INSERT INTO crm VALUES (1, 'a@x.fr', 10), (2, 'b@x.fr', 500), (3, 'c@x.fr', 900);
         UNIFY people FROM crm (customer_id, email);
         CREATE SEGMENT big ON people AS SELECT profile_id FROM crm WHERE amount > 100",
    )
    .unwrap();
    let full = dir.path().join("big.csv");
    let done = export::run(&db, "big", &full, None, None, None).unwrap();
    assert_eq!(
        done,
        export::Exported {
            rows: 2,
            version: 1,
            left_out: None,
        }
    );
    let text = std::fs::read_to_string(&full).unwrap();
    assert!(text.starts_with("profile_id,"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    // Customer 1 spends; customer 3 is refunded: one enters, one exits.
    db.execute("UPDATE crm SET amount = 1000 WHERE customer_id = 1; UPDATE crm SET amount = 0 WHERE customer_id = 3; REFRESH SEGMENT big")
        .unwrap();
    let delta = dir.path().join("big-delta.ndjson");
    let done = export::run(&db, "big", &delta, Some(1), None, None).unwrap();
    assert_eq!(
        done,
        export::Exported {
            rows: 2,
            version: 2,
            left_out: None,
        }
    );
    let text = std::fs::read_to_string(&delta).unwrap();
    assert!(
        text.contains("\"change\":\"entered\"") && text.contains("\"change\":\"exited\""),
        "{text}"
    );
    let parquet = dir.path().join("big.out");
    assert_eq!(
        export::run(&db, "big", &parquet, None, Some("parquet"), None)
            .unwrap()
            .rows,
        2
    );
    assert!(std::fs::read(&parquet).unwrap().starts_with(b"PAR1"));
    // Bad input: an unknown segment, an unknown format.
    let e = export::run(&db, "nope", &full, None, None, None).unwrap_err();
    assert_eq!(e.sqlstate(), "42704");
    let e = export::run(&db, "big", &dir.path().join("big.xlsx"), None, None, None).unwrap_err();
    assert_eq!(e.sqlstate(), "22023");
}

#[test]
fn the_bench_runs_the_whole_workload_and_reports_every_step() {
    use tessera_server::bench;
    let dir = tempfile::tempdir().unwrap();
    let opts = bench::BenchOptions {
        persons: 400,
        seed: 7,
        work: dir.path().to_path_buf(),
        data: None,
        runs: 1,
        key: None,
        stream: true,
        csv: true,
    };
    let mut seen = Vec::new();
    let report = bench::run(&opts, &mut |name: &str, done: usize, total: usize| {
        seen.push((name.to_string(), done, total));
    })
    .unwrap();
    // Progress went through every step once, in order, to the end.
    let total = seen[0].2;
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, s)| s.1 == i && s.2 == total),
        "{seen:?}"
    );
    assert_eq!(seen.last().unwrap().0, "done");

    let names: Vec<&str> = report.measures.iter().map(|m| m.name.as_str()).collect();
    for step in [
        "load_csv",
        "load_parquet",
        "unify",
        "create_segments",
        "append_10k_per_source",
        "refresh_segments",
        "segment_count",
        "in_segment",
    ] {
        assert!(names.contains(&step), "{step} missing from {names:?}");
    }
    assert_eq!(names.iter().filter(|n| n.starts_with("query:")).count(), 10);
    assert!(
        report
            .measures
            .iter()
            .all(|m| m.seconds > 0.0 && !m.runs.is_empty())
    );
    // Both formats load the same rows, which are the tables' rows.
    let rows = |n: &str| report.measures.iter().find(|m| m.name == n).unwrap().rows;
    let sources: u64 = report.tables.iter().map(|(_, n)| n).sum();
    assert_eq!(rows("load_csv"), sources);
    assert_eq!(rows("load_parquet"), sources);
    assert_eq!(rows("append_10k_per_source"), 5 * bench::APPEND_ROWS as u64);
    // The answers are real: the 360° view finds its person's records.
    let answer = |n: &str| {
        report
            .measures
            .iter()
            .find(|m| m.name == n)
            .unwrap()
            .answer
            .clone()
    };
    assert!(
        answer("unify").ends_with(" profiles"),
        "{}",
        answer("unify")
    );
    assert_eq!(answer("create_segments"), "4 segments");
    let view = answer("query:profile_360");
    assert!(view.contains('@') && !view.contains("orders=0,"), "{view}");
    assert_eq!(rows("query:revenue_per_segment"), 4);
    // Every web event (the appended ones too) reached psql over the wire,
    // both ways: the rows it printed are counted.
    if tessera_server::bench::stream::psql_available() {
        let events = report
            .tables
            .iter()
            .find(|t| t.0 == "web_events")
            .unwrap()
            .1;
        for step in ["stream_select_psql", "stream_copy_psql"] {
            assert_eq!(rows(step), events + bench::APPEND_ROWS as u64, "{step}");
        }
    }
    // The JSON report holds it all; the database is kept, the CSV one is not.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(
        json["measures"].as_array().unwrap().len(),
        report.measures.len()
    );
    assert!(report.database_bytes > 0);
    assert!(dir.path().join("db").exists() && !dir.path().join("db-csv").exists());
    // A second run reuses the generated data.
    let data = std::path::PathBuf::from(&report.data);
    let before = std::fs::metadata(data.join("orders.csv"))
        .unwrap()
        .modified()
        .unwrap();
    let again = bench::run(&opts, &mut |_: &str, _: usize, _: usize| {}).unwrap();
    let after = std::fs::metadata(data.join("orders.csv"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);
    assert_eq!(again.tables, report.tables);

    // Encrypted at rest, the same workload gives the same answers.
    let enc = tempfile::tempdir().unwrap();
    let encrypted = bench::run(
        &bench::BenchOptions {
            work: enc.path().to_path_buf(),
            data: Some(data),
            key: Some(tessera_engine::Key::from_bytes([3; 32])),
            ..opts
        },
        &mut |_: &str, _: usize, _: usize| {},
    )
    .unwrap();
    assert!(encrypted.encrypted && !report.encrypted);
    let answers = |r: &bench::Report| -> Vec<(String, String)> {
        r.measures
            .iter()
            .filter(|m| m.name.starts_with("query:") || m.name == "in_segment")
            .map(|m| (m.name.clone(), m.answer.clone()))
            .collect()
    };
    assert_eq!(answers(&encrypted), answers(&report));
    let current = std::fs::read(enc.path().join("db").join("CURRENT")).unwrap();
    assert!(current.starts_with(b"TSRENC01"));

    // A database served in-process (the wire step) is closed once its last
    // handle is gone: it opens again in this process.
    if tessera_server::bench::stream::psql_available() {
        drop(Database::open(dir.path().join("db")).unwrap());
    }

    // A wrong answer fast is a failure: DuckDB answers the ten queries over
    // the rows a run left (exported through the Database API), and the
    // comparison script fails if one answer differs from Tessera's (a run
    // without the wire step, for speed).
    let plain = tempfile::tempdir().unwrap();
    let plain_report = bench::run(
        &bench::BenchOptions {
            work: plain.path().to_path_buf(),
            data: Some(std::path::PathBuf::from(&report.data)),
            stream: false,
            ..opts
        },
        &mut |_: &str, _: usize, _: usize| {},
    )
    .unwrap();
    assert!(
        !plain_report
            .measures
            .iter()
            .any(|m| m.name.starts_with("stream_")),
        "a run without the wire step streams nothing"
    );
    // Parquet only (about half the disk at scale): no CSV is written or
    // loaded, and the answers are the same.
    let lean = tempfile::tempdir().unwrap();
    let lean_report = bench::run(
        &bench::BenchOptions {
            work: lean.path().to_path_buf(),
            data: None,
            key: None,
            stream: false,
            csv: false,
            ..opts
        },
        &mut |_: &str, _: usize, _: usize| {},
    )
    .unwrap();
    assert!(!lean_report.measures.iter().any(|m| m.name == "load_csv"));
    assert!(
        lean_report
            .measures
            .iter()
            .any(|m| m.name == "load_parquet")
    );
    let lean_data = std::path::Path::new(&lean_report.data);
    assert!(lean_data.join("orders.parquet").exists() && !lean_data.join("orders.csv").exists());
    assert_eq!(answers(&lean_report), answers(&report));
    let export = plain.path().join("export");
    std::fs::create_dir_all(&export).unwrap();
    {
        let db = Database::open(plain.path().join("db")).unwrap();
        for t in [
            "crm_contacts",
            "orders",
            "web_events",
            "support_tickets",
            "consents",
            "customers_identifiers",
        ] {
            let file = export.join(format!("{t}.parquet"));
            db.sql(&format!(
                "COPY {t} TO '{}' WITH (FORMAT parquet)",
                file.display()
            ))
            .unwrap();
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let install = std::process::Command::new("bash")
        .arg(root.join("tests/python/run.sh"))
        .arg("install")
        .status()
        .unwrap();
    assert!(install.success(), "the Python environment installs");
    let report_file = plain.path().join("report.json");
    std::fs::write(&report_file, serde_json::to_vec(&plain_report).unwrap()).unwrap();
    // The wire step alone, on the database a run without it left, added to
    // that run's report (`tessera bench --only stream --out FILE`).
    if tessera_server::bench::stream::psql_available() {
        let events = plain_report
            .tables
            .iter()
            .find(|t| t.0 == "web_events")
            .unwrap()
            .1;
        let rerun = bench::rerun_stream(&report_file, None, 1).unwrap();
        let written: bench::Report =
            serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
        for r in [&rerun, &written] {
            assert_eq!(r.measures.len(), plain_report.measures.len() + 2);
            for step in ["stream_select_psql", "stream_copy_psql"] {
                let m = r.measures.iter().find(|m| m.name == step).unwrap();
                assert_eq!(m.rows, events + bench::APPEND_ROWS as u64, "{step}");
            }
        }
        // Again, on a database that has roles now: the step logs in as a
        // superuser of its own, removed after; its rows are replaced.
        let served = bench::rerun_stream(&report_file, None, 1).unwrap();
        assert_eq!(served.measures.len(), plain_report.measures.len() + 2);
        {
            let db = Database::open(plain.path().join("db")).unwrap();
            let roles = tessera_server::wire::roles::Roles::new(&db).all();
            assert_eq!(roles.len(), 1, "only the first serving's superuser");
            assert!(!roles[0].name.starts_with("tessera_bench_"));
        }
        let e = bench::rerun_stream(&export.join("orders.parquet"), None, 1).unwrap_err();
        assert_eq!(e.sqlstate(), "22023");
    }
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("benches/workload/compare.py"))
        .arg(&report_file)
        .arg("--export")
        .arg(&export)
        .args([
            "--engines",
            "duckdb",
            "--runs",
            "1",
            "--no-unify",
            "--check",
        ])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(printed.matches(" yes ").count(), 10, "{printed}");
}
