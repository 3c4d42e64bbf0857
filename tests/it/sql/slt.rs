//! Runs every `tests/slt/**/*.slt` file, each against a fresh database.
//! Set `TESSERA_SLT=name` to run only the files whose path contains `name`.

use std::path::{Path, PathBuf};

use tessera_tests::slt::TesseraSlt;

fn slt_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            slt_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "slt") {
            out.push(p);
        }
    }
}

#[test]
fn sqllogictest_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("slt");
    let mut files = Vec::new();
    slt_files(&root, &mut files);
    files.sort();
    let only = std::env::var("TESSERA_SLT").ok();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in files.iter().filter(|f| {
        only.as_ref()
            .is_none_or(|o| f.to_string_lossy().contains(o.as_str()))
    }) {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        // `__SCRATCH__` names a scratch directory holding a copy of the
        // `data/` folder beside the file.
        let scratch = dir.path().join("scratch");
        std::fs::create_dir_all(&scratch).unwrap();
        if let Ok(entries) = std::fs::read_dir(file.parent().unwrap().join("data")) {
            for e in entries {
                let e = e.unwrap();
                std::fs::copy(e.path(), scratch.join(e.file_name())).unwrap();
            }
        }
        let text = std::fs::read_to_string(file)
            .unwrap()
            .replace("__SCRATCH__", &scratch.display().to_string());
        let script = dir.path().join(file.file_name().unwrap());
        std::fs::write(&script, text).unwrap();
        let mut runner = sqllogictest::Runner::new(|| {
            let d = db_dir.clone();
            async move { TesseraSlt::open(&d).map_err(tessera_tests::slt::SltError) }
        });
        ran += 1;
        if let Err(e) = runner.run_file(&script) {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(ran > 0, "no .slt file ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} files failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
