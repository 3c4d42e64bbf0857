//! `tessera gen`'s files load into Tessera as they are.

use tessera_engine::Database;
use tessera_engine::datagen::{Formats, GenOptions, TABLES, write_dataset};

#[test]
fn generated_files_load_with_the_written_script() {
    let dir = tempfile::tempdir().unwrap();
    for (sub, formats) in [
        (
            "csv",
            Formats {
                csv: true,
                parquet: false,
            },
        ),
        (
            "parquet",
            Formats {
                csv: false,
                parquet: true,
            },
        ),
    ] {
        let out = dir.path().join(sub);
        let mut seen = 0;
        let written = write_dataset(&GenOptions::new(500, 3), &out, formats, |p| seen = p).unwrap();
        assert_eq!(seen, 500);
        assert_eq!(written.files.len(), TABLES.len() + 1);
        let db = Database::open(dir.path().join(format!("db-{sub}"))).unwrap();
        let script = std::fs::read_to_string(out.join("load.sql")).unwrap();
        db.execute(&script).unwrap();
        let mut total = 0;
        for (t, n) in &written.rows {
            let got = db.sql(&format!("SELECT count(*) FROM {t}")).unwrap();
            let got = got[0]
                .column(0)
                .as_any()
                .downcast_ref::<tessera_engine::engine_arrow::array::Int64Array>()
                .unwrap()
                .value(0);
            assert_eq!(got as u64, *n, "{t}");
            if *t != "truth" {
                total += n;
            }
        }
        // Every row has its person.
        let truth = written.rows.iter().find(|(t, _)| *t == "truth").unwrap().1;
        assert_eq!(truth, total);
        let joined = db
            .sql("SELECT count(*) FROM orders o JOIN truth t ON t.source = 'orders' AND t.row_id = o.order_id")
            .unwrap();
        assert_eq!(joined[0].num_rows(), 1);
    }
}
