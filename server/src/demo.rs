//! `tessera demo`: a database of sample multi-channel customer data, a few
//! questions asked of it, and what to try next.

use std::sync::Arc;

use tessera_engine::Database;
use tessera_engine::engine_arrow::array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};

use crate::print;

/// A small deterministic generator (SplitMix64), so the demo needs no data files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const FIRST: [&str; 10] = [
    "marie", "paul", "lea", "hugo", "chloe", "louis", "emma", "jules", "alice", "noah",
];
const LAST: [&str; 8] = [
    "martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand",
];
const COUNTRIES: [&str; 5] = ["FR", "DE", "ES", "IT", "BE"];
const EVENTS: [&str; 5] = [
    "page_view",
    "page_view",
    "search",
    "add_to_cart",
    "purchase",
];
const CHANNELS: [&str; 3] = ["web", "app", "store"];
/// 2026-01-01T00:00:00Z in microseconds.
const T0: i64 = 1_767_225_600_000_000;
const DAY: i64 = 86_400_000_000;

/// Creates and fills the demo tables; returns the row counts loaded.
pub fn load(db: &Database, customers: u64) -> tessera_engine::Result<Vec<(&'static str, usize)>> {
    db.execute(
        "CREATE TABLE IF NOT EXISTS crm_contacts (customer_id BIGINT NOT NULL, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, country TEXT);
         CREATE TABLE IF NOT EXISTS orders (order_id BIGINT NOT NULL, customer_id BIGINT, email TEXT, channel TEXT, amount DOUBLE PRECISION, ordered_at TIMESTAMPTZ);
         CREATE TABLE IF NOT EXISTS web_events (event_id BIGINT NOT NULL, anonymous_id TEXT, user_email TEXT, event_type TEXT, channel TEXT, occurred_at TIMESTAMPTZ);
         CREATE TABLE IF NOT EXISTS support_tickets (ticket_id BIGINT NOT NULL, email TEXT, phone TEXT, subject TEXT, opened_at TIMESTAMPTZ)",
    )?;
    let mut rng = Rng(42);
    let n = customers as usize;
    let email = |i: u64| {
        format!(
            "{}.{}{}@example.com",
            FIRST[(i % 10) as usize],
            LAST[(i % 8) as usize],
            i
        )
    };
    let schema = |t: &str| -> tessera_engine::Result<_> {
        Ok(db
            .execute(&format!("SELECT * FROM {t} LIMIT 0"))?
            .remove(0)
            .schema)
    };

    let ids: Vec<i64> = (1..=n as i64).collect();
    let contacts = RecordBatch::try_new(
        schema("crm_contacts")?,
        vec![
            Arc::new(Int64Array::from(ids.clone())) as ArrayRef,
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| email(*i as u64)),
            )),
            Arc::new(StringArray::from_iter_values(ids.iter().map(|i| {
                format!(
                    "+33 6 {:02} {:02} {:02} {:02}",
                    i % 97,
                    i % 89,
                    i % 83,
                    i % 79
                )
            }))),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| FIRST[(*i as usize) % 10]),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| LAST[(*i as usize) % 8]),
            )),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| COUNTRIES[(*i as usize) % 5]),
            )),
        ],
    )?;
    db.append("crm_contacts", &contacts)?;

    let orders_n = n * 4;
    let cust: Vec<u64> = (0..orders_n).map(|_| 1 + rng.below(customers)).collect();
    let orders = RecordBatch::try_new(
        schema("orders")?,
        vec![
            Arc::new(Int64Array::from_iter_values(1..=orders_n as i64)) as ArrayRef,
            Arc::new(Int64Array::from_iter_values(cust.iter().map(|c| *c as i64))),
            Arc::new(StringArray::from_iter_values(
                cust.iter().map(|c| email(*c)),
            )),
            Arc::new(StringArray::from_iter_values(
                cust.iter().map(|_| CHANNELS[rng.below(3) as usize]),
            )),
            Arc::new(Float64Array::from_iter_values(
                cust.iter()
                    .map(|_| (500 + rng.below(20_000)) as f64 / 100.0),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    cust.iter().map(|_| T0 + rng.below(90) as i64 * DAY),
                )
                .with_timezone("UTC"),
            ),
        ],
    )?;
    db.append("orders", &orders)?;

    let events_n = n * 20;
    let who: Vec<u64> = (0..events_n).map(|_| 1 + rng.below(customers)).collect();
    let events = RecordBatch::try_new(
        schema("web_events")?,
        vec![
            Arc::new(Int64Array::from_iter_values(1..=events_n as i64)) as ArrayRef,
            Arc::new(StringArray::from_iter_values(
                who.iter()
                    .map(|c| format!("dev-{:06x}", c * 7919 % 1_000_003)),
            )),
            Arc::new(
                who.iter()
                    .map(|c| (c % 3 == 0).then(|| email(*c)))
                    .collect::<StringArray>(),
            ),
            Arc::new(StringArray::from_iter_values(
                who.iter().map(|_| EVENTS[rng.below(5) as usize]),
            )),
            Arc::new(StringArray::from_iter_values(
                who.iter().map(|_| CHANNELS[rng.below(2) as usize]),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    who.iter()
                        .map(|_| T0 + rng.below(90 * 24) as i64 * DAY / 24),
                )
                .with_timezone("UTC"),
            ),
        ],
    )?;
    db.append("web_events", &events)?;

    let tickets_n = n / 2;
    let who: Vec<u64> = (0..tickets_n).map(|_| 1 + rng.below(customers)).collect();
    let tickets = RecordBatch::try_new(
        schema("support_tickets")?,
        vec![
            Arc::new(Int64Array::from_iter_values(1..=tickets_n as i64)) as ArrayRef,
            Arc::new(StringArray::from_iter_values(who.iter().map(|c| email(*c)))),
            Arc::new(StringArray::from_iter_values(who.iter().map(|i| {
                format!(
                    "+33 6 {:02} {:02} {:02} {:02}",
                    i % 97,
                    i % 89,
                    i % 83,
                    i % 79
                )
            }))),
            Arc::new(StringArray::from_iter_values(who.iter().map(|c| {
                ["late delivery", "refund", "login problem"][(*c % 3) as usize]
            }))),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    who.iter().map(|_| T0 + rng.below(90) as i64 * DAY),
                )
                .with_timezone("UTC"),
            ),
        ],
    )?;
    db.append("support_tickets", &tickets)?;
    db.flush()?;
    Ok(vec![
        ("crm_contacts", n),
        ("orders", orders_n),
        ("web_events", events_n),
        ("support_tickets", tickets_n),
    ])
}

/// The questions the demo asks.
pub const QUERIES: [(&str, &str); 4] = [
    (
        "Revenue per channel",
        "SELECT channel, count(*) AS orders, round(sum(amount), 2) AS revenue FROM orders GROUP BY channel ORDER BY revenue DESC",
    ),
    (
        "Funnel: web events per type (the event_type column has a bitmap index, built automatically)",
        "SELECT event_type, count(*) AS events FROM web_events GROUP BY event_type ORDER BY events DESC",
    ),
    (
        "Top customers by lifetime value, with their CRM record",
        "SELECT c.customer_id, c.first_name, c.last_name, c.country, round(sum(o.amount), 2) AS ltv \
         FROM orders o JOIN crm_contacts c ON c.customer_id = o.customer_id \
         GROUP BY c.customer_id, c.first_name, c.last_name, c.country ORDER BY ltv DESC LIMIT 5",
    ),
    (
        "One person across channels, found by email (not yet unified: that is UNIFY's job)",
        "SELECT 'orders' AS source, count(*) AS records FROM orders WHERE email = 'marie.martin120@example.com' \
         UNION ALL SELECT 'web_events', count(*) FROM web_events WHERE user_email = 'marie.martin120@example.com' \
         UNION ALL SELECT 'support_tickets', count(*) FROM support_tickets WHERE email = 'marie.martin120@example.com' ORDER BY source",
    ),
];

/// Runs the demo into `dir`, writing to `out`.
pub fn run(
    dir: &std::path::Path,
    customers: u64,
    out: &mut dyn std::io::Write,
) -> tessera_engine::Result<()> {
    let fresh = !dir.exists();
    let db = Database::open(dir)?;
    let io = tessera_engine::EngineError::Io;
    writeln!(out, "Tessera demo: database in {}", dir.display()).map_err(io)?;
    if fresh || db.sql("SELECT count(*) FROM crm_contacts").is_err() {
        let t = std::time::Instant::now();
        let loaded = load(&db, customers)?;
        let total: usize = loaded.iter().map(|(_, n)| n).sum();
        writeln!(
            out,
            "loaded {total} rows of sample customer data in {:.2?}:",
            t.elapsed()
        )
        .map_err(io)?;
        for (t, n) in loaded {
            writeln!(out, "  {t:<16} {n:>8} rows").map_err(io)?;
        }
    } else {
        writeln!(out, "(reusing the sample data already there)").map_err(io)?;
    }
    for (title, sql) in QUERIES {
        writeln!(out, "\n-- {title}\n{sql};").map_err(io)?;
        let t = std::time::Instant::now();
        let res = db.execute(sql)?;
        for o in &res {
            writeln!(out, "{}", print::table(o)).map_err(io)?;
        }
        writeln!(out, "({:.2?})", t.elapsed()).map_err(io)?;
    }
    let report = db.verify()?;
    writeln!(
        out,
        "\nverify: {} files, {} segments, {} bitmap indexes checked, {} problems.",
        report.files_checked,
        report.segments,
        report.indexes,
        report.problems.len()
    )
    .map_err(io)?;
    writeln!(
        out,
        "\nNext, try:\n  tessera sql --db {d}                      # an interactive shell\n  tessera sql --db {d} -c \"EXPLAIN SELECT count(*) FROM web_events WHERE event_type = 'purchase'\"\n  tessera verify --db {d}\n  tessera compact --db {d}",
        d = dir.display()
    )
    .map_err(io)?;
    Ok(())
}
