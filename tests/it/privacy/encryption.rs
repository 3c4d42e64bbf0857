//! Encryption at rest: a database created with a key writes no plaintext
//! to any file (segments, log, manifests, deletion vectors, archive), reads
//! everything back after a reopen, opens only with its key, and erasure
//! still removes a person (the proof scan reads through the encryption).

use std::collections::BTreeSet;
use std::path::Path;

use tessera_engine::engine_arrow::array::AsArray;
use tessera_engine::engine_arrow::datatypes::Int64Type;
use tessera_engine::{Database, EngineOptions, Key};

use super::erase::on_disk;

const KEY_HEX: &str = "8f2b6c1d9e0a4f37b5c8d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1";

fn key() -> Key {
    Key::from_hex(KEY_HEX).unwrap()
}

/// A key file holding `hex`, readable by its owner only.
fn key_file(dir: &Path, hex: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("db.key");
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Rows whose values are easy to find in raw bytes, in every kind of file.
const WORKLOAD: &str = "
    CREATE TABLE contacts (id BIGINT NOT NULL, email TEXT, phone TEXT, city TEXT);
    CREATE TABLE events (id BIGINT NOT NULL, email TEXT, device TEXT, at TIMESTAMP);
    INSERT INTO contacts VALUES
        (1, 'zelda.marker@example.org', '+33611223344', 'Markerville'),
        (2, 'paul.langevin@example.org', '+33622222222', 'Paris');
    INSERT INTO events VALUES
        (10, 'zelda.marker@example.org', 'device-marker-1', TIMESTAMP '2001-01-01 10:00:00'),
        (11, NULL, 'device-marker-1', now()),
        (12, 'paul.langevin@example.org', 'device-paul-2', now());
    UNIFY people FROM contacts (email, phone), events (email, device_id = device);
    CREATE SEGMENT in_markerville ON people AS
        SELECT profile_id FROM contacts WHERE city = 'Markerville';
    ALTER TABLE events SET (retention = '13 months', retention_column = at)";

const NEEDLES: &[&str] = &[
    "zelda.marker@example.org",
    "+33611223344",
    "markerville",
    "device-marker-1",
    "wal-only-marker",
];

/// What the workload left, as text, to compare across a reopen.
fn answers(db: &Database) -> Vec<String> {
    [
        "SELECT id, email, phone, city, profile_id FROM contacts ORDER BY id",
        "SELECT id, email, device, profile_id FROM events ORDER BY id",
        "SELECT id, email FROM archive.events ORDER BY id",
        "SELECT profile_id FROM segment('in_markerville')",
        "SELECT count(*) FROM people",
    ]
    .iter()
    .map(|q| {
        let b = db.sql(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        tessera_engine::engine_arrow::util::pretty::pretty_format_batches(&b)
            .unwrap()
            .to_string()
    })
    .collect()
}

fn run_workload(db: &Database) {
    db.sql(WORKLOAD).unwrap();
    db.flush().unwrap(); // segments, manifests, deletion vectors
    assert_eq!(db.execute("ARCHIVE events").unwrap()[0].tag, "ARCHIVE 1");
    // Only in the log.
    db.sql("INSERT INTO contacts VALUES (3, 'wal-only-marker@example.org', NULL, NULL)")
        .unwrap();
}

fn every_file(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            every_file(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn an_encrypted_database_writes_no_plaintext_and_reads_everything_back() {
    let needles: BTreeSet<String> = NEEDLES.iter().map(|s| s.to_string()).collect();
    // The same work without a key leaves the values in the files: the scan
    // below can find them.
    let plain = tempfile::tempdir().unwrap();
    let db = Database::open(plain.path()).unwrap();
    run_workload(&db);
    drop(db);
    let found: BTreeSet<String> = on_disk(plain.path(), &needles)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(found, needles, "the plaintext database holds every value");

    let dir = tempfile::tempdir().unwrap();
    let db_dir = dir.path().join("db");
    let file = key_file(dir.path(), KEY_HEX);
    let db = tessera_server::keys::open(&db_dir, Some(&file), EngineOptions::default()).unwrap();
    run_workload(&db);
    let before = answers(&db);
    assert!(
        before[0].contains("zelda.marker@example.org"),
        "{}",
        before[0]
    );
    drop(db);

    assert_eq!(on_disk(&db_dir, &needles), Vec::new());
    let mut files = Vec::new();
    every_file(&db_dir, &mut files);
    let mut sealed = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(f).unwrap();
        if name == "LOCK" || name == "ENCRYPTION" {
            continue;
        }
        assert!(
            bytes.starts_with(b"TSRENC01"),
            "{} is not encrypted",
            f.display()
        );
        sealed += 1;
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("/archive/"))
            && files.iter().any(|f| f.to_string_lossy().contains("seg-"))
            && sealed >= 5,
        "archive, segments, log and manifests were written: {files:?}"
    );

    // Reopened with the key, everything reads back as it was.
    let db = Database::open_encrypted(&db_dir, key(), EngineOptions::default()).unwrap();
    assert_eq!(answers(&db), before);
    // Queries never spill table data to plaintext files.
    let rt = db.engine().context().runtime_env();
    assert!(!rt.disk_manager.tmp_files_enabled());
    let plain_db = Database::open(plain.path()).unwrap();
    assert!(
        plain_db
            .engine()
            .context()
            .runtime_env()
            .disk_manager
            .tmp_files_enabled()
    );
    drop(plain_db);
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    drop(db);

    // Without the key, with another key, or a key for a plaintext database:
    // refused with a clear error, nothing touched.
    let other = Key::from_bytes([7; 32]);
    let cases = [
        (Database::open(&db_dir).map(drop), "28000", "is encrypted"),
        (
            Database::open_encrypted(&db_dir, other, EngineOptions::default()).map(drop),
            "28000",
            "another key",
        ),
        (
            Database::open_encrypted(plain.path(), key(), EngineOptions::default()).map(drop),
            "55000",
            "without encryption",
        ),
    ];
    for (result, state, words) in cases {
        let e = result.unwrap_err();
        assert_eq!(e.sqlstate(), state, "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
    // A key file others can read is refused before it is used.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = tessera_server::keys::open(&db_dir, Some(&file), EngineOptions::default()).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    let db = Database::open_encrypted(&db_dir, key(), EngineOptions::default()).unwrap();
    assert_eq!(answers(&db), before);

    // A new key: the old one stops opening the database, the data stays.
    let new = Key::from_bytes([42; 32]);
    assert_eq!(db.rekey(&new, &key()).unwrap_err().sqlstate(), "28000");
    db.rekey(&key(), &new).unwrap();
    drop(db);
    let e = Database::open_encrypted(&db_dir, key(), EngineOptions::default()).unwrap_err();
    assert_eq!(e.sqlstate(), "28000");
    let db = Database::open_encrypted(&db_dir, new, EngineOptions::default()).unwrap();
    assert_eq!(answers(&db), before);
    let plain_db = Database::open(plain.path()).unwrap();
    assert_eq!(
        plain_db.rekey(&key(), &key()).unwrap_err().sqlstate(),
        "55000"
    );
}

#[test]
fn erasure_holds_on_an_encrypted_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_encrypted(dir.path(), key(), EngineOptions::default()).unwrap();
    db.sql(WORKLOAD).unwrap();
    db.flush().unwrap();
    // The proof scan reads the files through the encryption: before the
    // erasure it finds her.
    let needles: Vec<Vec<u8>> = ["zelda.marker@example.org", "device-marker-1"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    let seen = db.engine().store().find_bytes(&needles).unwrap();
    assert!(!seen.found.is_empty(), "the scan decrypts what it reads");
    let out = db
        .sql("ERASE PROFILE WHERE email = 'zelda.marker@example.org' IMMEDIATELY")
        .unwrap();
    let b = &out[0];
    assert_eq!(b.column(3).as_primitive::<Int64Type>().value(0), 3, "rows");
    assert_eq!(b.column(7).as_primitive::<Int64Type>().value(0), 0, "found");
    let after = db.engine().store().find_bytes(&needles).unwrap();
    assert!(after.found.is_empty(), "{:?}", after.found);
    assert_eq!(
        db.sql("SELECT count(*) FROM contacts").unwrap()[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        1
    );
    drop(db);
    let db = Database::open_encrypted(dir.path(), key(), EngineOptions::default()).unwrap();
    let again = db.engine().store().find_bytes(&needles).unwrap();
    assert!(again.found.is_empty());
}
