//! psycopg 3, SQLAlchemy (reflection), pandas and pgcli against `tessera serve`
//! (the checks are in `tests/python/wire_clients.py`; `tests/python/run.sh`
//! installs the packages into `.venv` on first use).

use super::{PASSWORD, TestServer};

#[test]
fn psycopg_sqlalchemy_pandas_and_pgcli() {
    let server = TestServer::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/run.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("TESSERA_PORT", server.addr.port().to_string())
        .env("TESSERA_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}
