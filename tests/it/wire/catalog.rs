//! The catalog clients read: OIDs that survive a restart, and the owner
//! every object shows.

use super::{TestServer, runtime};

/// The rows of `sql` as text (OIDs come back as `oid`, `regclass`, … which
/// clients read as text).
async fn rows(client: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or_default().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// (relation, its OID, its schema's OID) of the default schema.
async fn relations(client: &tokio_postgres::Client) -> Vec<Vec<String>> {
    rows(
        client,
        "SELECT c.relname, c.oid, c.relnamespace FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' ORDER BY c.relname",
    )
    .await
}

const IN_SEGMENT: &str = "SELECT oid FROM pg_catalog.pg_proc WHERE proname = 'in_segment'";
const ANALYST: &str = "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'analyst'";

#[test]
fn oids_are_stable_across_connections_and_restarts() {
    let server = TestServer::start();
    let (before, kept) = runtime().block_on(async {
        let c = server.connect().await;
        c.batch_execute(
            "CREATE TABLE zeta (a INT); CREATE TABLE beta (b TEXT, c INT);
             CREATE ROLE analyst LOGIN PASSWORD 'x'",
        )
        .await
        .unwrap();
        let before = relations(&c).await;
        assert_eq!(before.len(), 2, "{before:?}");
        // Another connection sees the same numbers.
        assert_eq!(relations(&server.connect().await).await, before);
        let zeta = &before.iter().find(|r| r[0] == "zeta").unwrap()[1];
        let attributes = rows(
            &c,
            &format!(
                "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = {zeta} ORDER BY attnum"
            ),
        )
        .await;
        assert_eq!(attributes, [["a"]]);
        // The superuser the database was created with owns everything,
        // under PostgreSQL's bootstrap OID.
        let owners = rows(
            &c,
            "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_catalog.pg_class",
        )
        .await;
        assert_eq!(owners, [["tessera"]]);
        assert_eq!(
            rows(&c, "SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'tessera'").await,
            [["10"]]
        );
        (
            before,
            [rows(&c, IN_SEGMENT).await, rows(&c, ANALYST).await].concat(),
        )
    });
    assert!(
        before.iter().all(|r| r[1].parse::<u32>().unwrap() >= 16384),
        "{before:?}"
    );
    assert_eq!(kept.len(), 2);
    // A table created after a restart whose name sorts first gets a new
    // number; the others keep theirs.
    let server = server.restart();
    runtime().block_on(async {
        let c = server.connect().await;
        c.batch_execute("CREATE TABLE alpha (x INT)").await.unwrap();
        let after = relations(&c).await;
        for r in &before {
            assert!(after.contains(r), "{r:?} changed: {after:?}");
        }
        let alpha = after.iter().find(|r| r[0] == "alpha").unwrap();
        assert!(before.iter().all(|r| r[1] != alpha[1]), "{after:?}");
        assert_eq!(
            [rows(&c, IN_SEGMENT).await, rows(&c, ANALYST).await].concat(),
            kept
        );
        // psql's \d finds a table by its number: the restarted server
        // answers for the number the client kept.
        let zeta = &before.iter().find(|r| r[0] == "zeta").unwrap()[1];
        let name = rows(
            &c,
            &format!("SELECT relname FROM pg_catalog.pg_class WHERE oid = {zeta}"),
        )
        .await;
        assert_eq!(name, [["zeta"]]);
    });
}
