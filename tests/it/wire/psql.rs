//! psql against `tessera serve`: the meta-commands analysts use, `\copy`
//! both ways, and a script that fails half-way.

use std::process::{Command, Output};

use super::{PASSWORD, TestServer, runtime, sqlstate};

fn psql(server: &TestServer, args: &[&str], stdin: Option<&str>) -> Output {
    psql_with(server, "tessera", PASSWORD, args, stdin)
}

/// psql as another role.
fn psql_as(server: &TestServer, user: &str, password: &str, args: &[&str]) -> Output {
    psql_with(server, user, password, args, None)
}

fn psql_with(
    server: &TestServer,
    user: &str,
    password: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Output {
    use std::io::Write;
    let mut cmd = Command::new("psql");
    cmd.env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
            "-U",
            user,
            "-d",
            "tessera",
            "-v",
            "ON_ERROR_STOP=1",
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("psql is installed (Debian package postgresql-client; .ci/run installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "psql failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn meta_commands_describe_the_database() {
    let server = TestServer::start();
    ok(&psql(
        &server,
        &[
            "-c",
            "CREATE TABLE orders (id BIGINT NOT NULL, email TEXT, amount DOUBLE)",
            "-c",
            "INSERT INTO orders VALUES (1, 'marie@example.com', 10.5), (2, NULL, 3)",
            "-c",
            "CREATE VIEW big_orders AS SELECT * FROM orders WHERE amount > 5",
            "-c",
            "CREATE SCHEMA crm",
        ],
        None,
    ));
    let dt = ok(&psql(&server, &["-c", "\\dt"], None));
    assert!(dt.contains("orders") && dt.contains("table"), "{dt}");
    assert!(!dt.contains("big_orders"), "{dt}");
    let d = ok(&psql(&server, &["-c", "\\d orders"], None));
    for want in [
        "id",
        "bigint",
        "not null",
        "email",
        "text",
        "amount",
        "double precision",
    ] {
        assert!(d.contains(want), "{want} missing from \\d:\n{d}");
    }
    let dv = ok(&psql(&server, &["-c", "\\dv"], None));
    assert!(dv.contains("big_orders"), "{dv}");
    let dn = ok(&psql(&server, &["-c", "\\dn"], None));
    assert!(dn.contains("crm") && dn.contains("public"), "{dn}");
    let l = ok(&psql(&server, &["-c", "\\l"], None));
    assert!(l.contains("tessera"), "{l}");
    let dt_plus = ok(&psql(&server, &["-c", "\\dt+"], None));
    assert!(dt_plus.contains("orders"), "{dt_plus}");
    // The owner is the database's superuser, not a role that does not exist.
    assert!(
        dt_plus.contains("| tessera") && !dt_plus.contains("postgres"),
        "{dt_plus}"
    );
    let d_plus = ok(&psql(&server, &["-c", "\\d+ orders"], None));
    assert!(d_plus.contains("amount"), "{d_plus}");
    // Tessera's own functions are listed, with their arguments' names.
    let df = ok(&psql(&server, &["-c", "\\df"], None));
    for want in [
        "| kind text, value text ",
        "| space text, kind text, value text ",
        "in_segment",
        "segment_count",
        "| value anyelement, ts timestamp with time zone ",
        "SETOF record",
    ] {
        assert!(df.contains(want), "{want} missing from \\df:\n{df}");
    }
    let df_plus = ok(&psql(&server, &["-c", "\\df+ unify"], None));
    assert!(df_plus.contains("volatile"), "{df_plus}");
    // A meta-command Tessera cannot answer is an error, not a crash (psql's
    // `\dp` once overflowed the network thread's stack).
    let dp = psql(&server, &["-c", "\\dp"], None);
    assert!(
        String::from_utf8_lossy(&dp.stderr).contains("ERROR"),
        "{dp:?}"
    );
    assert_eq!(
        ok(&psql(&server, &["-A", "-t", "-c", "SELECT 42"], None)),
        "42\n"
    );
    // pgcli's column query names types with ::regtype::text.
    let types = ok(&psql(
        &server,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT att.attname, att.atttypid::regtype::text FROM pg_catalog.pg_attribute att \
             JOIN pg_catalog.pg_class cls ON att.attrelid = cls.oid \
             WHERE cls.relname = 'orders' AND cls.relkind = ANY('{r,p}') ORDER BY att.attnum",
        ],
        None,
    ));
    assert_eq!(types, "id|bigint\nemail|text\namount|double precision\n");
    let x = ok(&psql(
        &server,
        &[
            "-c",
            "\\x on",
            "-c",
            "SELECT id, email FROM orders WHERE id = 1",
        ],
        None,
    ));
    assert!(
        x.contains("-[ RECORD 1 ]") && x.contains("marie@example.com"),
        "{x}"
    );
}

#[test]
fn backslash_copy_both_ways_and_a_failing_script() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("people.csv");
    std::fs::write(&csv, "id,name\n1,Marie\n2,\"Dupont, Jean\"\n3,\n").unwrap();
    ok(&psql(
        &server,
        &["-c", "CREATE TABLE people (id BIGINT NOT NULL, name TEXT)"],
        None,
    ));
    let out = ok(&psql(
        &server,
        &[
            "-c",
            &format!(
                "\\copy people FROM '{}' WITH (FORMAT csv, HEADER true)",
                csv.display()
            ),
        ],
        None,
    ));
    assert!(out.contains("COPY 3"), "{out}");
    // From psql's own stdin, text format, ended by `\.`.
    let out = ok(&psql(
        &server,
        &["-f", "-"],
        Some("COPY people FROM STDIN;\n4\tAnna\n5\t\\N\n\\.\nSELECT count(*) FROM people;\n"),
    ));
    assert!(out.contains("COPY 2") && out.contains('5'), "{out}");
    let back = dir.path().join("back.csv");
    ok(&psql(
        &server,
        &[
            "-c",
            &format!(
                "\\copy (SELECT id, name FROM people ORDER BY id) TO '{}' WITH (FORMAT csv)",
                back.display()
            ),
        ],
        None,
    ));
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "1,Marie\n2,\"Dupont, Jean\"\n3,\n4,Anna\n5,\n"
    );
    // ON_ERROR_STOP: the script stops at the error with its SQLSTATE, and
    // what ran before it stays.
    let out = psql(
        &server,
        &["-v", "VERBOSITY=verbose", "-f", "-"],
        Some(
            "INSERT INTO people VALUES (6, 'Zoe');\nSELECT * FROM nowhere;\nINSERT INTO people VALUES (7, 'never');\n",
        ),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("42P01"), "{err}");
    let count = ok(&psql(
        &server,
        &["-A", "-t", "-c", "SELECT count(*) FROM people"],
        None,
    ));
    assert_eq!(count.trim(), "6");
}

#[test]
fn a_person_is_exported_and_erased_over_psql() {
    let server = TestServer::start();
    ok(&psql(
        &server,
        &[
            "-f",
            "-",
        ],
        Some(
            "CREATE TABLE contacts (id BIGINT NOT NULL, email TEXT, phone TEXT);
             INSERT INTO contacts VALUES (1, 'Marie.Curie@gmail.com', '06 12 34 56 78'), (2, 'paul@example.org', NULL);
             UNIFY people FROM contacts (email, phone) WITH (phone.region = 'FR');
             CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw';
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst;\n",
        ),
    ));
    // The export comes out on psql's standard output, as one JSON document.
    let doc = ok(&psql(
        &server,
        &[
            "-c",
            "EXPORT PROFILE WHERE email = 'mariecurie@gmail.com' TO STDOUT",
        ],
        None,
    ));
    let doc: serde_json::Value =
        serde_json::from_str(doc.trim()).unwrap_or_else(|e| panic!("{e}: {doc}"));
    assert_eq!(
        doc["sources"]["public.contacts"][0]["phone"],
        "06 12 34 56 78"
    );
    assert_eq!(doc["identifiers"].as_array().unwrap().len(), 2);
    // A file outside --copy-dir is refused.
    let out = psql(
        &server,
        &[
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "EXPORT PROFILE 0 TO '/tmp/marie.json'",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("42501"));
    // Only a superuser erases.
    runtime().block_on(async {
        let analyst = server.connect_as("analyst", "analyst-pw").await.unwrap();
        let e = analyst
            .simple_query("ERASE PROFILE 0 IMMEDIATELY")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
    });
    let out = ok(&psql(
        &server,
        &[
            "-A",
            "-c",
            "ERASE PROFILE WHERE phone = '+33612345678' IMMEDIATELY",
        ],
        None,
    ));
    assert!(
        out.contains("request_id|space|profile_id|rows_erased"),
        "{out}"
    );
    let count = ok(&psql(
        &server,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM contacts; SELECT found FROM erasure_requests",
        ],
        None,
    ));
    assert_eq!(count.split_whitespace().collect::<Vec<_>>(), ["1", "0"]);
}

#[test]
fn consent_is_declared_and_read_over_psql() {
    let server = TestServer::start();
    ok(&psql(
        &server,
        &["-f", "-"],
        Some(
            "CREATE TABLE contacts (id BIGINT NOT NULL, email TEXT);
             CREATE TABLE consents (email TEXT, purpose TEXT, granted BOOLEAN, recorded_at TIMESTAMP);
             INSERT INTO contacts VALUES (1, 'a@x.fr'), (2, 'b@x.fr'), (3, 'c@x.fr');
             INSERT INTO consents VALUES ('a@x.fr', 'email_marketing', true, '2026-01-01'),
                                         ('b@x.fr', 'email_marketing', true, '2026-01-01'),
                                         ('b@x.fr', 'email_marketing', false, '2026-02-01');
             UNIFY people FROM contacts (email), consents (email);
             ALTER UNIFY people SET CONSENT FROM consents (purpose, granted, recorded_at);
             CREATE SEGMENT everyone ON people AS SELECT profile_id FROM contacts;\n",
        ),
    ));
    let out = ok(&psql(
        &server,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM segment('everyone', purpose => 'email_marketing'); \
             SELECT string_agg(c.email, ',' ORDER BY c.email) FROM contacts c WHERE NOT has_consent(c.profile_id, 'email_marketing')",
        ],
        None,
    ));
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["1", "b@x.fr,c@x.fr"]
    );
    // Declaring a consent record takes a superuser.
    runtime().block_on(async {
        let c = server.connect().await;
        c.simple_query("CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw'")
            .await
            .unwrap();
        let analyst = server.connect_as("analyst", "analyst-pw").await.unwrap();
        let e = analyst
            .simple_query("ALTER UNIFY people DROP CONSENT")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
    });
}

#[test]
fn pii_columns_are_masked_for_analysts_over_the_wire_until_granted() {
    let server = TestServer::start();
    ok(&psql(
        &server,
        &["-f", "-"],
        Some(
            "CREATE TABLE contacts (id BIGINT NOT NULL, email TEXT, city TEXT);
             INSERT INTO contacts VALUES (1, 'marie@example.com', 'Lyon'), (2, 'paul@example.org', 'Paris');
             ALTER TABLE contacts ALTER COLUMN email SET PII;
             CREATE ROLE analyst LOGIN PASSWORD 'analyst-pw';
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst;\n",
        ),
    ));
    let as_analyst = |sql: &str| {
        let out = psql_as(&server, "analyst", "analyst-pw", &["-A", "-t", "-c", sql]);
        ok(&out)
    };
    // Simple query, a COPY to the client, and a filter on the stored value.
    let rows = as_analyst("SELECT email, city FROM contacts ORDER BY id");
    assert!(
        !rows.contains('@') && rows.contains("pii_") && rows.contains("Lyon"),
        "{rows}"
    );
    let copied = as_analyst("COPY contacts TO STDOUT WITH (FORMAT csv)");
    assert!(!copied.contains('@') && copied.contains("pii_"), "{copied}");
    let probe = as_analyst("SELECT count(*) FROM contacts WHERE email = 'marie@example.com'");
    assert_eq!(probe.trim(), "0");
    // The extended protocol (tokio-postgres), and only a superuser grants.
    runtime().block_on(async {
        let analyst = server.connect_as("analyst", "analyst-pw").await.unwrap();
        let row = analyst
            .query_one("SELECT email FROM contacts WHERE id = $1", &[&1i64])
            .await
            .unwrap();
        assert!(row.get::<_, String>(0).starts_with("pii_"));
        // Functions that answer from a value cannot probe masked values.
        for probe in [
            "SELECT unify('email', 'marie@example.com')",
            "SELECT * FROM unify_explain('email', 'marie@example.com')",
        ] {
            let e = analyst.simple_query(probe).await.unwrap_err();
            assert_eq!(sqlstate(&e), "42501", "{probe}");
        }
        let e = analyst
            .simple_query("GRANT pii_reader TO analyst")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
        let admin = server.connect().await;
        admin
            .simple_query("GRANT pii_reader TO analyst")
            .await
            .unwrap();
        // Granted: the next statement of the same connection reads values.
        let row = analyst
            .query_one("SELECT email FROM contacts WHERE id = $1", &[&1i64])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "marie@example.com");
    });
    // Every unmasked read is recorded, with the role.
    let audit = ok(&psql(
        &server,
        &[
            "-A",
            "-t",
            "-c",
            "SELECT role, table_name, rows FROM pii_reads WHERE role = 'analyst'",
        ],
        None,
    ));
    assert_eq!(audit.trim(), "analyst|public.contacts|1", "{audit}");
    ok(&psql(
        &server,
        &["-c", "REVOKE pii_reader FROM analyst"],
        None,
    ));
    assert!(as_analyst("SELECT email FROM contacts").contains("pii_"));
}
