//! Who may connect and what each role may do.

use super::{PASSWORD, TestServer, runtime, sqlstate};

fn connect_error(server: &TestServer, user: &str, password: &str) -> String {
    runtime().block_on(async {
        match server.connect_as(user, password).await {
            Ok(_) => "connected".to_string(),
            Err(e) => sqlstate(&e),
        }
    })
}

#[test]
fn passwords_roles_and_privileges() {
    let server = TestServer::start();
    // Wrong password and unknown user look the same (no user enumeration).
    assert_eq!(connect_error(&server, "tessera", "wrong"), "28P01");
    assert_eq!(connect_error(&server, "nobody", PASSWORD), "28P01");
    runtime().block_on(async {
        let admin = server.connect().await;
        admin
            .batch_execute(
                "CREATE TABLE orders (id BIGINT, amount DOUBLE);
                 CREATE TABLE secrets (id BIGINT);
                 INSERT INTO orders VALUES (1, 10), (2, 20);
                 CREATE ROLE analyst LOGIN PASSWORD 'read-only-pw';
                 CREATE ROLE loader LOGIN PASSWORD 'loader-pw';
                 CREATE ROLE nologin PASSWORD 'x';
                 GRANT SELECT ON orders TO analyst;
                 GRANT SELECT, INSERT ON orders TO loader;",
            )
            .await
            .unwrap();
        // Verifiers, not passwords, are stored.
        let e = admin
            .simple_query("CREATE ROLE analyst LOGIN")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42710");

        let analyst = server.connect_as("analyst", "read-only-pw").await.unwrap();
        let r = analyst
            .query_one("SELECT sum(amount) FROM orders", &[])
            .await
            .unwrap();
        assert_eq!(r.get::<_, f64>(0), 30.0);
        for sql in [
            "INSERT INTO orders VALUES (3, 30)",
            "DELETE FROM orders",
            "UPDATE orders SET amount = 0",
            "SELECT * FROM secrets",
            "CREATE TABLE mine (x INT)",
            "DROP TABLE orders",
            "CREATE ROLE sneaky SUPERUSER LOGIN PASSWORD 'x'",
            "COPY orders FROM '/etc/passwd'",
            "COPY (SELECT 1) TO '/tmp/out.csv'",
        ] {
            let e = analyst.simple_query(sql).await.unwrap_err();
            assert_eq!(sqlstate(&e), "42501", "{sql}: {e}");
        }
        // A view needs a grant of its own.
        admin
            .batch_execute("CREATE VIEW leak AS SELECT * FROM secrets")
            .await
            .unwrap();
        let e = analyst
            .simple_query("SELECT * FROM leak")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e}");

        let loader = server.connect_as("loader", "loader-pw").await.unwrap();
        loader
            .execute("INSERT INTO orders VALUES ($1, $2)", &[&3i64, &30.0f64])
            .await
            .unwrap();
        let e = loader.simple_query("DELETE FROM orders").await.unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
        // What an INSERT reads needs SELECT as well.
        let e = loader
            .simple_query("INSERT INTO orders SELECT id, 0 FROM secrets")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e}");
        loader
            .simple_query("INSERT INTO orders SELECT id + 10, amount FROM orders")
            .await
            .unwrap();

        // A write resolves unqualified names along the session's
        // search_path, as a read does: the privilege is checked on the table
        // actually written.
        admin
            .batch_execute(
                "CREATE SCHEMA crm; CREATE TABLE crm.orders (id BIGINT, amount DOUBLE);
                 GRANT INSERT ON crm.orders TO analyst",
            )
            .await
            .unwrap();
        let e = analyst
            .simple_query("INSERT INTO orders VALUES (9, 9)")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "public.orders: {e}");
        analyst
            .batch_execute("SET search_path = crm, public")
            .await
            .unwrap();
        analyst
            .simple_query("INSERT INTO orders VALUES (9, 9)")
            .await
            .unwrap();
        let n: i64 = admin
            .query_one("SELECT count(*) FROM crm.orders WHERE id = 9", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "the row went to crm.orders");
        let e = analyst
            .simple_query("UPDATE orders SET amount = 1")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501", "{e}");
        analyst.batch_execute("RESET search_path").await.unwrap();

        // Grants change at once, for connected sessions too.
        admin
            .batch_execute("REVOKE SELECT ON orders FROM analyst")
            .await
            .unwrap();
        let e = analyst
            .simple_query("SELECT * FROM orders")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501");
        admin
            .batch_execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst")
            .await
            .unwrap();
        analyst.simple_query("SELECT * FROM secrets").await.unwrap();

        // Even a superuser reads server files only inside --copy-dir.
        let e = admin
            .simple_query("COPY orders FROM '/etc/passwd'")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e), "42501");

        // Passwords change; dropped roles cannot log in.
        admin
            .batch_execute("ALTER ROLE analyst WITH PASSWORD 'new-pw'")
            .await
            .unwrap();
        admin.batch_execute("DROP ROLE loader").await.unwrap();
        let e = admin.simple_query("DROP ROLE tessera").await.unwrap_err();
        assert_eq!(sqlstate(&e), "22023");
    });
    assert_eq!(connect_error(&server, "analyst", "read-only-pw"), "28P01");
    assert_eq!(connect_error(&server, "analyst", "new-pw"), "connected");
    assert_eq!(connect_error(&server, "loader", "loader-pw"), "28P01");
    assert_eq!(connect_error(&server, "nologin", "x"), "28000");
    // Roles are durable: a restarted server knows them.
    let db = server.stop();
    let roles = tessera_server::wire::roles::Roles::new(&db);
    let analyst = roles.get("analyst").unwrap();
    assert!(analyst.verifier.starts_with("SCRAM-SHA-256$4096:"));
    assert!(!analyst.verifier.contains("new-pw"));
}

#[test]
fn limits_and_tls_policy() {
    let server = TestServer::with(|c| c.max_connections = 2);
    runtime().block_on(async {
        let _a = server.connect().await;
        let _b = server.connect().await;
        let e = server.connect_as("tessera", PASSWORD).await.unwrap_err();
        assert_eq!(sqlstate(&e), "53300");
    });
    // TLS required: a plaintext client is refused before any password.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("server.crt"), dir.path().join("server.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            // rustls checks the name against the subject alternative
            // names, and refuses a CA certificate as a server's.
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(status.status.success());
    let server = TestServer::with(|c| {
        c.tls = Some((cert.clone(), key.clone()));
        c.require_tls = true;
    });
    assert_eq!(connect_error(&server, "tessera", PASSWORD), "28000");
    // psql (libpq) over TLS is accepted.
    let out = std::process::Command::new("psql")
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "require")
        .args([
            "-X",
            "-A",
            "-t",
            "-h",
            "127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
        ])
        .args(["-U", "tessera", "-d", "tessera", "-c", "SELECT 41 + 1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    // tokio-postgres over rustls, verifying the server's certificate.
    runtime().block_on(async {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(&cert).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
        let conninfo = format!("{} sslmode=require", server.conninfo("tessera", PASSWORD));
        let (client, connection) = tokio_postgres::connect(&conninfo, tls).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        // A parameter's type from its cast, as PostgreSQL reads it.
        let row = client
            .query_one(
                "SELECT $1::int AS a, $2::bigint + 1 AS b",
                &[&41i32, &41i64],
            )
            .await
            .unwrap();
        assert_eq!((row.get::<_, i32>(0), row.get::<_, i64>(1)), (41, 42));
        // A client that does not trust the certificate does not connect.
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
        assert!(tokio_postgres::connect(&conninfo, tls).await.is_err());
    });
    // A TLS configuration that cannot load stops the server from starting.
    let db = tessera_engine::Database::open_in_memory().unwrap();
    let bad = tessera_server::wire::ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some((dir.path().join("missing.crt"), key.clone())),
        ..Default::default()
    };
    let e = db
        .runtime()
        .block_on(tessera_server::wire::Server::bind(
            &db,
            bad,
            Some("x".into()),
        ))
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}
