//! tokio-postgres against `tessera serve`: both query protocols, binary
//! results, parameters, portals, session settings, COPY both ways, cancel
//! and timeouts, errors that leave the connection usable.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_postgres::SimpleQueryMessage;

use super::{TestServer, runtime, sqlstate};

fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn simple_and_extended_queries_with_parameters_and_binary_results() {
    let server = TestServer::start();
    runtime().block_on(async {
        let c = server.connect().await;
        // Several statements in one simple query.
        c.batch_execute(
            "CREATE TABLE orders (id BIGINT NOT NULL, email TEXT, amount DOUBLE, paid BOOLEAN, at TIMESTAMP);
             INSERT INTO orders VALUES (1, 'marie@example.com', 19.5, true, '2024-03-01 10:00:00');",
        )
        .await
        .unwrap();
        // Extended protocol: parameter types come from the table.
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_709_290_800);
        let n = c
            .execute(
                "INSERT INTO orders VALUES ($1, $2, $3, $4, $5)",
                &[&2i64, &"paul@example.com", &5.25f64, &false, &at],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        // Binary results, typed.
        let rows = c
            .query(
                "SELECT id, email, amount, paid, at FROM orders WHERE amount > $1 ORDER BY id",
                &[&1.0f64],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].get::<_, i64>(0), 2);
        assert_eq!(rows[1].get::<_, &str>(1), "paul@example.com");
        assert_eq!(rows[1].get::<_, f64>(2), 5.25);
        assert!(!rows[1].get::<_, bool>(3));
        assert_eq!(rows[1].get::<_, std::time::SystemTime>(4), at);
        // A prepared statement runs many times.
        let stmt = c.prepare("SELECT count(*) FROM orders WHERE id <= $1").await.unwrap();
        for (limit, want) in [(0i64, 0i64), (1, 1), (5, 2)] {
            let r = c.query_one(&stmt, &[&limit]).await.unwrap();
            assert_eq!(r.get::<_, i64>(0), want);
        }
        // Text results through the simple protocol, several statements.
        let m = c
            .simple_query("SELECT 1 AS one; SELECT email FROM orders ORDER BY id")
            .await
            .unwrap();
        assert_eq!(
            simple_rows(&m),
            vec![
                vec![Some("1".into())],
                vec![Some("marie@example.com".into())],
                vec![Some("paul@example.com".into())],
            ]
        );
        // NULLs both ways.
        c.execute("INSERT INTO orders (id, email) VALUES ($1, $2)", &[&3i64, &None::<&str>])
            .await
            .unwrap();
        let r = c.query_one("SELECT email, amount FROM orders WHERE id = 3", &[]).await.unwrap();
        assert_eq!(r.get::<_, Option<&str>>(0), None);
        assert_eq!(r.get::<_, Option<f64>>(1), None);
        // version() is what drivers parse.
        let v: String = c.query_one("SELECT version()", &[]).await.unwrap().get(0);
        assert!(v.starts_with("PostgreSQL 16."), "{v}");
    });
}

#[test]
fn errors_carry_their_sqlstate_and_the_connection_stays_usable() {
    let server = TestServer::start();
    runtime().block_on(async {
        let c = server.connect().await;
        c.batch_execute("CREATE TABLE t (id BIGINT NOT NULL)")
            .await
            .unwrap();
        for (sql, state) in [
            ("SELECT * FROM missing", "42P01"),
            ("SELEC 1", "42601"),
            ("SELECT nope FROM t", "42703"),
            ("INSERT INTO t VALUES (NULL)", "23502"),
            ("CREATE TABLE t (x INT)", "42P07"),
            ("SELECT 1/0", "22012"),
            ("SET no_such_setting = 1", "42704"),
        ] {
            let e = c.simple_query(sql).await.unwrap_err();
            assert_eq!(sqlstate(&e), state, "{sql}: {e}");
            let e = c.query(sql, &[]).await.unwrap_err();
            assert_eq!(sqlstate(&e), state, "{sql} (extended): {e}");
            // Still usable.
            let r = c.query_one("SELECT 42::BIGINT", &[]).await.unwrap();
            assert_eq!(r.get::<_, i64>(0), 42);
        }
        // A failing statement in a script stops it; what ran before stays.
        let e = c
            .batch_execute(
                "INSERT INTO t VALUES (1); INSERT INTO t VALUES (NULL); INSERT INTO t VALUES (3)",
            )
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "23502");
        let r = c.query_one("SELECT count(*) FROM t", &[]).await.unwrap();
        assert_eq!(r.get::<_, i64>(0), 1);
    });
}

#[test]
fn session_settings_are_per_connection_and_take_effect() {
    let server = TestServer::start();
    runtime().block_on(async {
        let a = server.connect().await;
        let b = server.connect().await;
        a.batch_execute(
            "CREATE SCHEMA crm; CREATE TABLE crm.contacts (id BIGINT); INSERT INTO crm.contacts VALUES (7);
             CREATE TABLE public.contacts (id BIGINT); INSERT INTO public.contacts VALUES (1)",
        )
        .await
        .unwrap();
        a.batch_execute("SET search_path = crm, public").await.unwrap();
        let id = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
        assert_eq!(id(a.query("SELECT id FROM contacts", &[]).await.unwrap()), 7);
        assert_eq!(id(b.query("SELECT id FROM contacts", &[]).await.unwrap()), 1);
        // Each schema of the path in turn: a name only public holds is
        // found there, and a new table goes in the first schema.
        a.batch_execute(
            "CREATE TABLE public.events (id BIGINT); INSERT INTO events VALUES (3);
             CREATE TABLE leads (id BIGINT); INSERT INTO leads SELECT id FROM contacts",
        )
        .await
        .unwrap();
        assert_eq!(id(a.query("SELECT id FROM events", &[]).await.unwrap()), 3);
        assert_eq!(
            id(b.query("SELECT id FROM crm.leads", &[]).await.unwrap()),
            7
        );
        assert_eq!(
            id(a.query("SELECT e.id FROM events e JOIN contacts c ON c.id > e.id", &[])
                .await
                .unwrap()),
            3
        );
        let show = |m: Vec<SimpleQueryMessage>| simple_rows(&m)[0][0].clone().unwrap();
        assert_eq!(show(a.simple_query("SHOW search_path").await.unwrap()), "crm, public");
        assert_eq!(show(b.simple_query("SHOW search_path").await.unwrap()), "\"$user\", public");
        a.batch_execute("SET TIME ZONE 'Europe/Paris'").await.unwrap();
        assert_eq!(show(a.simple_query("SHOW TimeZone").await.unwrap()), "Europe/Paris");
        assert_eq!(show(b.simple_query("SHOW timezone").await.unwrap()), "UTC");
        assert_eq!(
            show(a.simple_query("SELECT current_setting('timezone')").await.unwrap()),
            "Europe/Paris"
        );
        // A timestamptz is rendered in the session's zone.
        let paris = show(
            a.simple_query("SELECT '2024-01-01T12:00:00Z'::timestamptz")
                .await
                .unwrap(),
        );
        let utc = show(
            b.simple_query("SELECT '2024-01-01T12:00:00Z'::timestamptz")
                .await
                .unwrap(),
        );
        assert!(paris.contains("13:00:00"), "{paris}");
        assert!(utc.contains("12:00:00"), "{utc}");
        // RESET and set_config.
        a.batch_execute("RESET search_path").await.unwrap();
        assert_eq!(id(a.query("SELECT id FROM contacts", &[]).await.unwrap()), 1);
        a.simple_query("SELECT set_config('application_name', 'report', false)")
            .await
            .unwrap();
        assert_eq!(show(a.simple_query("SHOW application_name").await.unwrap()), "report");
        // BEGIN … ROLLBACK cannot undo a write: the client is warned.
        a.batch_execute("CREATE TABLE tx (x BIGINT)").await.unwrap();
        let m = a
            .simple_query("BEGIN; INSERT INTO tx VALUES (1); ROLLBACK")
            .await
            .unwrap();
        assert!(!m.is_empty());
        assert_eq!(
            id(a.query("SELECT count(*) FROM tx", &[]).await.unwrap()),
            1,
            "autocommit, as documented"
        );
        // What drivers send on connect and on release.
        for sql in [
            "SET extra_float_digits = 3",
            "SET client_encoding = 'UTF8'",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SHOW transaction isolation level",
            "SHOW standard_conforming_strings",
            "BEGIN",
            "COMMIT",
            "DISCARD ALL",
            "DEALLOCATE ALL",
            "RESET ALL",
        ] {
            a.simple_query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    });
}

#[test]
fn portals_page_rows_and_cursors_fetch_them() {
    let server = TestServer::start();
    runtime().block_on(async {
        let mut c = server.connect().await;
        c.batch_execute("CREATE TABLE m (x BIGINT)").await.unwrap();
        c.execute(
            "INSERT INTO m SELECT value FROM generate_series(0, 999)",
            &[],
        )
        .await
        .unwrap();
        let tx = c.transaction().await.unwrap();
        let portal = tx.bind("SELECT x FROM m ORDER BY x", &[]).await.unwrap();
        let mut seen = 0i64;
        loop {
            let page = tx.query_portal(&portal, 300).await.unwrap();
            for r in &page {
                assert_eq!(r.get::<_, i64>(0), seen);
                seen += 1;
            }
            if page.len() < 300 {
                break;
            }
        }
        assert_eq!(seen, 1000);
        tx.commit().await.unwrap();
        // Tableau's way: DECLARE … CURSOR WITH HOLD, FETCH, CLOSE.
        c.batch_execute("DECLARE cur CURSOR WITH HOLD FOR SELECT x FROM m ORDER BY x")
            .await
            .unwrap();
        let first = simple_rows(&c.simple_query("FETCH 5 FROM cur").await.unwrap());
        assert_eq!(first.len(), 5);
        assert_eq!(first[4][0].as_deref(), Some("4"));
        let rest = simple_rows(&c.simple_query("FETCH ALL FROM cur").await.unwrap());
        assert_eq!(rest.len(), 995);
        assert_eq!(rest[0][0].as_deref(), Some("5"));
        c.batch_execute("CLOSE cur").await.unwrap();
        let e = c.simple_query("FETCH 1 FROM cur").await.unwrap_err();
        assert_eq!(sqlstate(&e), "34000");
    });
}

#[test]
fn copy_from_stdin_and_to_stdout() {
    let server = TestServer::start();
    runtime().block_on(async {
        let c = server.connect().await;
        c.batch_execute("CREATE TABLE people (id BIGINT NOT NULL, name TEXT, city TEXT)")
            .await
            .unwrap();
        // Text format, in several chunks.
        let sink = c.copy_in("COPY people FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"1\tMarie\tParis\n2\t"))
            .await
            .unwrap();
        sink.send(bytes::Bytes::from_static(b"Paul\t\\N\n"))
            .await
            .unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 2);
        // CSV with a header and a column list.
        let sink = c
            .copy_in("COPY people (id, name) FROM STDIN WITH (FORMAT csv, HEADER true)")
            .await
            .unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(b"id,name\n3,\"Dupont, Jean\"\n"))
            .await
            .unwrap();
        assert_eq!(sink.as_mut().finish().await.unwrap(), 1);
        // A bad row: nothing of that COPY is loaded.
        let sink = c.copy_in("COPY people FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from_static(
            b"4\tAnna\tLyon\nnot-a-number\tX\tY\n",
        ))
        .await
        .unwrap();
        let e = sink.as_mut().finish().await.unwrap_err();
        assert_eq!(sqlstate(&e), "22P02", "{e}");
        let r = c
            .query_one("SELECT count(*) FROM people", &[])
            .await
            .unwrap();
        assert_eq!(r.get::<_, i64>(0), 3);
        // Out, as text and as CSV.
        let out = c
            .copy_out("COPY (SELECT id, name, city FROM people ORDER BY id) TO STDOUT")
            .await
            .unwrap();
        let bytes: Vec<u8> = out
            .map(|b| b.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "1\tMarie\tParis\n2\tPaul\t\\N\n3\tDupont, Jean\t\\N\n"
        );
        let out = c
            .copy_out("COPY people TO STDOUT WITH (FORMAT csv, HEADER true)")
            .await
            .unwrap();
        let text = String::from_utf8(
            out.map(|b| b.unwrap().to_vec())
                .collect::<Vec<_>>()
                .await
                .concat(),
        )
        .unwrap();
        assert!(text.starts_with("id,name,city\n"), "{text}");
        assert!(text.contains("3,\"Dupont, Jean\",\n"), "{text}");
    });
}

#[test]
fn cancel_and_statement_timeout_stop_a_running_query() {
    let server = TestServer::start();
    runtime().block_on(async {
        let c = server.connect().await;
        // A query that runs for minutes: ten billion rows, summed.
        let slow = "SELECT sum(value) FROM generate_series(1, 10000000000)";
        let token = c.cancel_token();
        let canceller = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        });
        let started = std::time::Instant::now();
        let e = c.simple_query(slow).await.unwrap_err();
        canceller.await.unwrap();
        assert_eq!(sqlstate(&e), "57014", "{e}");
        eprintln!("cancelled after {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_secs(30));
        // The connection goes on.
        assert_eq!(
            c.query_one("SELECT 1::BIGINT", &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            1
        );
        // statement_timeout, set for the session.
        eprintln!("next query done after {:?}", started.elapsed());
        c.batch_execute("SET statement_timeout = 300")
            .await
            .unwrap();
        let e = c.query(slow, &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e), "57014", "{e}");
        eprintln!("timeout after {:?}", started.elapsed());
        c.batch_execute("SET statement_timeout = 0").await.unwrap();
        assert_eq!(
            c.query_one("SELECT 2::BIGINT", &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            2
        );
    });
}

#[test]
fn tessera_statements_travel_the_same_path() {
    let server = TestServer::start();
    runtime().block_on(async {
        let c = server.connect().await;
        c.batch_execute(
            "CREATE TABLE crm (customer_id TEXT, email TEXT);
             CREATE TABLE orders (order_id BIGINT, email TEXT, amount DOUBLE);
             INSERT INTO crm VALUES ('c1', 'Marie@Example.com'), ('c2', 'paul@example.com');
             INSERT INTO orders VALUES (1, 'marie@example.com', 10), (2, 'paul@example.com', 20), (3, 'marie@example.com', 5);",
        )
        .await
        .unwrap();
        let m = c
            .simple_query(
                "UNIFY customers FROM crm (customer_id, email), orders (email) WITH (email.normalize = 'email')",
            )
            .await
            .unwrap();
        assert!(!simple_rows(&m).is_empty());
        let rows = c
            .query(
                "SELECT profile_id, sum(amount) FROM orders GROUP BY profile_id ORDER BY 2",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get::<_, f64>(1), 15.0);
        assert_eq!(rows[1].get::<_, f64>(1), 20.0);
        c.batch_execute(
            "CREATE SEGMENT big ON customers AS SELECT profile_id FROM orders WHERE amount >= 15",
        )
        .await
        .unwrap();
        let n = c
            .query_one("SELECT segment_count('big')", &[])
            .await
            .unwrap();
        assert_eq!(n.get::<_, i64>(0), 1);
    });
}

#[test]
fn client_catalog_rewrites_never_touch_queries_over_data() {
    let server = TestServer::start();
    runtime().block_on(async {
        let c = server.connect().await;
        c.batch_execute(
            "CREATE TABLE ca (id INT); CREATE TABLE cb (k INT, v INT);
             INSERT INTO ca VALUES (1), (2); INSERT INTO cb VALUES (1, 10), (1, 5), (3, 7);",
        )
        .await
        .unwrap();
        // A scalar subquery in a select list: PostgreSQL-compatibility rules
        // meant for catalog probes would turn it into NULL.
        let m = c
            .simple_query("SELECT ca.id, (SELECT min(v) FROM cb WHERE cb.k = ca.id) FROM ca ORDER BY 1")
            .await
            .unwrap();
        assert_eq!(
            simple_rows(&m),
            vec![
                vec![Some("1".into()), Some("5".into())],
                vec![Some("2".into()), None],
            ]
        );
        // The shapes of a driver's type loading (Npgsql's): array types found
        // through their receive function, a correlated lookup in pg_range.
        let m = c
            .simple_query(
                "SELECT t.typname, CASE WHEN p.proname = 'array_recv' THEN 'a' ELSE t.typtype END AS kind,
                        CASE WHEN t.typtype = 'm' THEN (SELECT rngtypid FROM pg_range WHERE rngmultitypid = t.oid) END AS r
                 FROM pg_type AS t LEFT JOIN pg_proc AS p ON p.oid = t.typreceive
                 WHERE t.typname IN ('int8', '_int8', 'text') ORDER BY 1",
            )
            .await
            .unwrap();
        let rows = simple_rows(&m);
        let kinds: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("_int8".to_string(), "a".to_string()),
                ("int8".to_string(), "b".to_string()),
                ("text".to_string(), "b".to_string()),
            ]
        );
    });
}
