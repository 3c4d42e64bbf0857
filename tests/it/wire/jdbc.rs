//! pgjdbc (Debian's `libpostgresql-jdbc-java`) against `tessera serve`: the
//! `DatabaseMetaData` calls JDBC tools make on connecting, prepared
//! statements and column types (the checks are in
//! `tests/java/JdbcChecks.java`, run as a single-file Java program).

use super::{PASSWORD, TestServer};

/// Where Debian installs the driver.
const DRIVER: &str = "/usr/share/java/postgresql.jar";

#[test]
fn pgjdbc_metadata_and_prepared_statements() {
    assert!(
        std::path::Path::new(DRIVER).exists(),
        "pgjdbc is installed (Debian package libpostgresql-jdbc-java; .ci/run installs it)"
    );
    let server = TestServer::start();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("java/JdbcChecks.java");
    let out = std::process::Command::new("java")
        .args(["-cp", DRIVER])
        .arg(&source)
        .arg(server.addr.port().to_string())
        .arg(PASSWORD)
        .output()
        .expect("java is installed (Debian package default-jdk-headless; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
