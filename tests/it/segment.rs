//! SEGMENT, differentially: for random data and random definitions (queries,
//! and sets of segments nested three levels), the members kept as bitmaps
//! equal the same definition evaluated directly in SQL (INTERSECT, UNION,
//! EXCEPT over the queries) — after creation, after random writes that
//! merge profiles (ON COMMIT segments at once, the others after REFRESH
//! SEGMENTS), and after a restart; and so do `segment_count`, `in_segment`
//! filters and `segment_overlap`.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use tessera_engine::Database;
use tessera_engine::engine_arrow::array::{Array, AsArray};
use tessera_engine::engine_arrow::datatypes::Int64Type;

/// A segment under test: its name, its definition, its direct SQL.
struct Def {
    name: String,
    body: String,
    direct: String,
    on_commit: bool,
}

fn ids(db: &Database, sql: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for b in db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}")) {
        let c = b.column(0).as_primitive::<Int64Type>();
        for i in 0..c.len() {
            if c.is_valid(i) {
                out.insert(c.value(i));
            }
        }
    }
    out
}

fn one(db: &Database, sql: &str) -> i64 {
    let b = db.sql(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    b[0].column(0).as_primitive::<Int64Type>().value(0)
}

fn insert_rows(db: &Database, rng: &mut impl Rng, first_order: i64, n: usize) {
    let mut rows = Vec::new();
    for i in 0..n {
        let cid = rng.random_range(0..200);
        let with_cid = rng.random_bool(0.6);
        // Some orders carry a guest e-mail of another customer: merges.
        let email = format!("c{}@x.fr", rng.random_range(0..260));
        rows.push(format!(
            "({}, {}, '{email}', {}, '{}')",
            first_order + i as i64,
            if with_cid {
                cid.to_string()
            } else {
                "NULL".into()
            },
            rng.random_range(1..500),
            ["web", "app", "store"][rng.random_range(0..3)]
        ));
    }
    db.sql(&format!("INSERT INTO orders VALUES {}", rows.join(", ")))
        .unwrap();
}

fn random_query(rng: &mut impl Rng) -> String {
    match rng.random_range(0..4) {
        0 => format!(
            "SELECT profile_id FROM orders WHERE amount > {}",
            rng.random_range(100..480)
        ),
        1 => format!(
            "SELECT profile_id FROM orders WHERE channel = '{}'",
            ["web", "app", "store"][rng.random_range(0..3)]
        ),
        2 => format!(
            "SELECT profile_id FROM orders GROUP BY profile_id HAVING count(*) >= {}",
            rng.random_range(2..6)
        ),
        _ => format!(
            "SELECT profile_id FROM crm WHERE customer_id % {} = 0",
            rng.random_range(2..5)
        ),
    }
}

fn check(db: &Database, defs: &[Def], label: &str) {
    for d in defs {
        let kept = ids(db, &format!("SELECT profile_id FROM segment('{}')", d.name));
        let direct = ids(db, &d.direct);
        assert_eq!(kept, direct, "{label}: segment {} = {}", d.name, d.body);
        // segment() builds only its members' rows: the same rows as the
        // profile table's; and without the identifier lists (the profile
        // table is then built without them) the other columns agree too.
        for row in [
            "profile_id, first_seen, last_seen, records, array_to_string(identifiers, ',')",
            "profile_id, first_seen, last_seen, records",
        ] {
            let differ = one(
                db,
                &format!(
                    "SELECT count(*) FROM (
                       (SELECT {row} FROM segment('{n}') EXCEPT ALL
                        SELECT {row} FROM people WHERE in_segment(profile_id, '{n}'))
                       UNION ALL
                       (SELECT {row} FROM people WHERE in_segment(profile_id, '{n}') EXCEPT ALL
                        SELECT {row} FROM segment('{n}'))) AS t",
                    n = d.name
                ),
            );
            assert_eq!(differ, 0, "{label}: rows of segment('{}'): {row}", d.name);
        }
        let filtered = one(
            db,
            &format!(
                "SELECT count(*) FROM orders WHERE in_segment(profile_id, '{}')",
                d.name
            ),
        );
        let expected = one(
            db,
            &format!(
                "SELECT count(*) FROM orders WHERE profile_id IN (SELECT * FROM ({}) AS t)",
                d.direct
            ),
        );
        assert_eq!(filtered, expected, "{label}: in_segment over {}", d.name);
    }
    // A few random expressions counted on the bitmaps.
    for (i, a) in defs.iter().enumerate().take(4) {
        let b = &defs[(i + 3) % defs.len()];
        let c = &defs[(i + 5) % defs.len()];
        let n = one(
            db,
            &format!(
                "SELECT segment_count('({} & !{}) | {}')",
                a.name, b.name, c.name
            ),
        );
        let direct = one(
            db,
            &format!(
                "SELECT count(*) FROM ((({}) EXCEPT ({})) UNION ({})) AS t",
                a.direct, b.direct, c.direct
            ),
        );
        assert_eq!(
            n, direct,
            "{label}: count of ({} & !{}) | {}",
            a.name, b.name, c.name
        );
        let overlap = db
            .sql(&format!(
                "SELECT * FROM segment_overlap('{}', '{}')",
                a.name, b.name
            ))
            .unwrap();
        let both = overlap[0].column(1).as_primitive::<Int64Type>().value(0);
        let direct_both = one(
            db,
            &format!(
                "SELECT count(*) FROM (({}) INTERSECT ({})) AS t",
                a.direct, b.direct
            ),
        );
        assert_eq!(
            both, direct_both,
            "{label}: overlap of {} and {}",
            a.name, b.name
        );
    }
}

#[test]
fn bitmaps_equal_their_definitions_evaluated_directly() {
    for seed in 0..3u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let dir = tempfile::tempdir().unwrap();
        let mut db = Database::open(dir.path()).unwrap();
        db.sql("CREATE TABLE crm (customer_id BIGINT NOT NULL, email TEXT)")
            .unwrap();
        db.sql("CREATE TABLE orders (order_id BIGINT NOT NULL, customer_id BIGINT, email TEXT, amount BIGINT, channel TEXT)")
            .unwrap();
        let crm: Vec<String> = (0..200).map(|i| format!("({i}, 'c{i}@x.fr')")).collect();
        db.sql(&format!("INSERT INTO crm VALUES {}", crm.join(", ")))
            .unwrap();
        insert_rows(&db, &mut rng, 0, 600);
        db.sql("UNIFY people FROM crm (customer_id, email), orders (customer_id, email) WITH (customer_id.limit = 1)")
            .unwrap();

        let mut defs: Vec<Def> = Vec::new();
        for i in 0..8 {
            let q = random_query(&mut rng);
            let on_commit = rng.random_bool(0.5);
            defs.push(Def {
                name: format!("q{i}"),
                direct: format!(
                    "SELECT DISTINCT profile_id FROM ({q}) AS q WHERE profile_id IS NOT NULL"
                ),
                body: q,
                on_commit,
            });
        }
        // Sets of earlier segments, nested: each level names the one before.
        for i in 0..6 {
            let pick = |rng: &mut rand::rngs::StdRng, defs: &[Def]| rng.random_range(0..defs.len());
            let (a, b, c) = (
                pick(&mut rng, &defs),
                pick(&mut rng, &defs),
                pick(&mut rng, &defs),
            );
            let (op, sql_op) = match rng.random_range(0..3) {
                0 => ("AND", "INTERSECT"),
                1 => ("OR", "UNION"),
                _ => ("AND NOT", "EXCEPT"),
            };
            let body = format!(
                "(SEGMENT {} {op} SEGMENT {}) OR SEGMENT {}",
                defs[a].name, defs[b].name, defs[c].name
            );
            let direct = format!(
                "SELECT * FROM ((({}) {sql_op} ({})) UNION ({})) AS t",
                defs[a].direct, defs[b].direct, defs[c].direct
            );
            defs.push(Def {
                name: format!("s{i}"),
                body,
                direct,
                on_commit: false,
            });
        }
        for d in &defs {
            let policy = if d.on_commit { "REFRESH ON COMMIT" } else { "" };
            db.sql(&format!(
                "CREATE SEGMENT {} ON people {policy} AS {}",
                d.name, d.body
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", d.body));
        }
        check(&db, &defs, &format!("seed {seed}, created"));

        // Random writes, some merging profiles: ON COMMIT segments follow
        // at once (their sets are refreshed with REFRESH SEGMENTS below).
        let mut next = 10_000;
        for round in 0..5 {
            let n = rng.random_range(1..40);
            insert_rows(&db, &mut rng, next, n);
            next += 100;
            let live: Vec<&Def> = defs.iter().filter(|d| d.on_commit).collect();
            for d in &live {
                let kept = ids(
                    &db,
                    &format!("SELECT profile_id FROM segment('{}')", d.name),
                );
                assert_eq!(
                    kept,
                    ids(&db, &d.direct),
                    "seed {seed} round {round}: ON COMMIT {}",
                    d.name
                );
            }
            if round == 2 {
                drop(db);
                db = Database::open(dir.path()).unwrap();
            }
        }
        db.sql("REFRESH SEGMENTS").unwrap();
        check(&db, &defs, &format!("seed {seed}, after writes"));
        drop(db);
        let db = Database::open(dir.path()).unwrap();
        check(&db, &defs, &format!("seed {seed}, after a restart"));
    }
}
