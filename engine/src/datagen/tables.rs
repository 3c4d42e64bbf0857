//! The generated tables: their schemas, and the rows of one person.

use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;
use tessera_sql::datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use tessera_sql::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::people::{self, FIRST, LAST};
use super::{JUNK_EMAILS, JUNK_PHONES, Noise, TILL_EMAIL};

/// The generated tables, in the order they are written.
pub const TABLES: [&str; 6] = [
    "crm_contacts",
    "orders",
    "web_events",
    "support_tickets",
    "consents",
    "truth",
];

/// The schema of a generated table.
pub fn schema(table: &str) -> Option<SchemaRef> {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, None);
    let f = |n: &str, t: DataType, null: bool| Field::new(n, t, null);
    let fields = match table {
        "crm_contacts" => vec![
            f("customer_id", DataType::Int64, false),
            f("email", DataType::Utf8, true),
            f("phone", DataType::Utf8, true),
            f("first_name", DataType::Utf8, true),
            f("last_name", DataType::Utf8, true),
            f("country", DataType::Utf8, true),
            f("created_at", ts(), false),
        ],
        "orders" => vec![
            f("order_id", DataType::Int64, false),
            f("customer_id", DataType::Int64, true),
            f("email", DataType::Utf8, true),
            f("phone", DataType::Utf8, true),
            f("channel", DataType::Utf8, false),
            f("amount", DataType::Float64, false),
            f("ordered_at", ts(), false),
        ],
        "web_events" => vec![
            f("event_id", DataType::Int64, false),
            f("anonymous_id", DataType::Utf8, false),
            f("user_email", DataType::Utf8, true),
            f("event_type", DataType::Utf8, false),
            f("url", DataType::Utf8, false),
            f("ts", ts(), false),
        ],
        "support_tickets" => vec![
            f("ticket_id", DataType::Int64, false),
            f("email", DataType::Utf8, true),
            f("phone", DataType::Utf8, true),
            f("subject", DataType::Utf8, false),
            f("created_at", ts(), false),
        ],
        "consents" => vec![
            f("consent_id", DataType::Int64, false),
            f("email", DataType::Utf8, true),
            f("purpose", DataType::Utf8, false),
            f("granted", DataType::Boolean, false),
            f("ts", ts(), false),
        ],
        "truth" => vec![
            f("source", DataType::Utf8, false),
            f("row_id", DataType::Int64, false),
            f("person_id", DataType::Int64, false),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

/// One chunk of generated rows: a batch per table (tables without rows in
/// the chunk are left out).
#[derive(Debug)]
pub struct Chunk {
    /// (table, rows).
    pub tables: Vec<(&'static str, RecordBatch)>,
}

/// The next id of each table's rows.
#[derive(Debug, Default)]
pub(super) struct RowIds {
    order: i64,
    event: i64,
    ticket: i64,
    consent: i64,
}

#[derive(Debug, Default)]
struct Crm {
    customer_id: Vec<i64>,
    email: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    first: Vec<Option<String>>,
    last: Vec<Option<String>>,
    country: Vec<Option<&'static str>>,
    created: Vec<i64>,
}

#[derive(Debug, Default)]
struct Orders {
    id: Vec<i64>,
    customer_id: Vec<Option<i64>>,
    email: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    channel: Vec<&'static str>,
    amount: Vec<f64>,
    at: Vec<i64>,
}

#[derive(Debug, Default)]
struct Events {
    id: Vec<i64>,
    device: Vec<String>,
    email: Vec<Option<String>>,
    kind: Vec<&'static str>,
    url: Vec<&'static str>,
    ts: Vec<i64>,
}

#[derive(Debug, Default)]
struct Tickets {
    id: Vec<i64>,
    email: Vec<Option<String>>,
    phone: Vec<Option<String>>,
    subject: Vec<&'static str>,
    at: Vec<i64>,
}

#[derive(Debug, Default)]
struct Consents {
    id: Vec<i64>,
    email: Vec<Option<String>>,
    purpose: Vec<&'static str>,
    granted: Vec<bool>,
    ts: Vec<i64>,
}

/// Rows of a chunk being built.
#[derive(Debug, Default)]
pub(super) struct ChunkBuilder {
    crm: Crm,
    orders: Orders,
    events: Events,
    tickets: Tickets,
    consents: Consents,
    truth: (Vec<&'static str>, Vec<i64>, Vec<i64>),
}

/// 2024-01-01T00:00:00Z in microseconds.
const EPOCH_2024: i64 = 1_704_067_200_000_000;
const TWO_YEARS_US: i64 = 2 * 365 * 86_400 * 1_000_000;

fn str_col<S: AsRef<str>>(v: Vec<Option<S>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

fn ts_col(v: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(v))
}

impl ChunkBuilder {
    fn truth(&mut self, source: &'static str, row: i64, person: u64) {
        self.truth.0.push(source);
        self.truth.1.push(row);
        self.truth.2.push(person as i64);
    }

    pub(super) fn finish(self) -> Chunk {
        let mut tables = Vec::new();
        let mut push = |name: &'static str, cols: Vec<ArrayRef>| {
            if cols.first().is_some_and(|c| !c.is_empty())
                && let Some(schema) = schema(name)
                && let Ok(b) = RecordBatch::try_new(schema, cols)
            {
                tables.push((name, b));
            }
        };
        let c = self.crm;
        push(
            "crm_contacts",
            vec![
                Arc::new(Int64Array::from(c.customer_id)),
                str_col(c.email),
                str_col(c.phone),
                str_col(c.first),
                str_col(c.last),
                str_col(c.country),
                ts_col(c.created),
            ],
        );
        let o = self.orders;
        push(
            "orders",
            vec![
                Arc::new(Int64Array::from(o.id)),
                Arc::new(Int64Array::from(o.customer_id)),
                str_col(o.email),
                str_col(o.phone),
                Arc::new(StringArray::from(o.channel)),
                Arc::new(Float64Array::from(o.amount)),
                ts_col(o.at),
            ],
        );
        let e = self.events;
        push(
            "web_events",
            vec![
                Arc::new(Int64Array::from(e.id)),
                Arc::new(StringArray::from(e.device)),
                str_col(e.email),
                Arc::new(StringArray::from(e.kind)),
                Arc::new(StringArray::from(e.url)),
                ts_col(e.ts),
            ],
        );
        let t = self.tickets;
        push(
            "support_tickets",
            vec![
                Arc::new(Int64Array::from(t.id)),
                str_col(t.email),
                str_col(t.phone),
                Arc::new(StringArray::from(t.subject)),
                ts_col(t.at),
            ],
        );
        let k = self.consents;
        push(
            "consents",
            vec![
                Arc::new(Int64Array::from(k.id)),
                str_col(k.email),
                Arc::new(StringArray::from(k.purpose)),
                Arc::new(BooleanArray::from(k.granted)),
                ts_col(k.ts),
            ],
        );
        let (s, r, p) = self.truth;
        push(
            "truth",
            vec![
                Arc::new(StringArray::from(s)),
                Arc::new(Int64Array::from(r)),
                Arc::new(Int64Array::from(p)),
            ],
        );
        Chunk { tables }
    }
}

/// A Poisson draw (Knuth; small means only).
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    let l = (-mean.min(30.0)).exp();
    let (mut k, mut p) = (0u32, 1.0);
    loop {
        p *= rng.random::<f64>();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

/// A standard normal draw (Box–Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// What one person is, before noise.
struct Person {
    id: u64,
    first: &'static str,
    last: &'static str,
    emails: Vec<String>,
    phone: Option<String>,
    customer_id: Option<i64>,
    /// (device id, identified by a login, share of the person's activity).
    devices: Vec<(String, bool, f64)>,
    activity: f64,
}

/// An identifier as written in one row: noise, junk or missing.
fn typed_email(rng: &mut StdRng, n: &Noise, email: &str) -> Option<String> {
    if rng.random_bool(n.missing) {
        return None;
    }
    if rng.random_bool(n.junk) {
        let j = JUNK_EMAILS[rng.random_range(0..JUNK_EMAILS.len())];
        return Some(j.to_string());
    }
    let mut e = email.to_string();
    if rng.random_bool(n.gmail_variant) {
        e = people::gmail_variant(rng, &e);
    }
    if rng.random_bool(n.email_case) {
        e = people::email_case(rng, &e);
    }
    Some(e)
}

fn typed_phone(rng: &mut StdRng, n: &Noise, phone: Option<&str>) -> Option<String> {
    let phone = phone?;
    if rng.random_bool(n.missing) {
        return None;
    }
    if rng.random_bool(n.junk) {
        let j = JUNK_PHONES[rng.random_range(0..JUNK_PHONES.len())];
        return Some(j.to_string());
    }
    Some(people::phone_format(rng, phone))
}

fn time(rng: &mut StdRng) -> i64 {
    EPOCH_2024 + rng.random_range(0..TWO_YEARS_US)
}

/// Generates every row of person `id`.
pub(super) fn person(
    out: &mut ChunkBuilder,
    ids: &mut RowIds,
    rng: &mut StdRng,
    id: u64,
    n: &Noise,
    shared_device: Option<(String, bool)>,
) {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let mut emails = vec![people::email(rng, first, last, id, 0)];
    let registered = rng.random_bool(n.registered);
    if registered && rng.random_bool(n.email_change) {
        emails.push(people::email(rng, first, last, id, 1));
    }
    let phone = rng
        .random_bool(0.85)
        .then(|| people::phone_digits(id, rng.random_bool(n.foreign_phone)));
    let mut devices: Vec<(String, bool, f64)> = (0..rng.random_range(1..=3))
        .map(|_| {
            let known = !rng.random_bool(n.anonymous_device);
            (people::device(rng), known, 1.0)
        })
        .collect();
    if let Some((d, owner)) = shared_device {
        devices.push((d, true, if owner { 1.0 } else { 0.25 }));
    }
    let p = Person {
        id,
        first,
        last,
        emails,
        phone,
        customer_id: registered.then_some(1_000_000 + id as i64),
        devices,
        activity: normal(rng).exp(),
    };
    crm(out, rng, n, &p);
    orders(out, ids, rng, n, &p);
    events(out, ids, rng, n, &p);
    tickets(out, ids, rng, n, &p);
    consents(out, ids, rng, n, &p);
}

fn name(rng: &mut StdRng, n: &Noise, s: &str) -> Option<String> {
    if rng.random_bool(n.missing) {
        None
    } else if rng.random_bool(n.name_typo) {
        Some(people::typo(rng, s))
    } else {
        Some(s.to_string())
    }
}

fn crm(out: &mut ChunkBuilder, rng: &mut StdRng, n: &Noise, p: &Person) {
    let Some(cid) = p.customer_id else { return };
    let current = p.emails.last().map_or("", String::as_str);
    let c = &mut out.crm;
    c.customer_id.push(cid);
    c.email.push(typed_email(rng, n, current));
    c.phone.push(typed_phone(rng, n, p.phone.as_deref()));
    c.first.push(name(rng, n, p.first));
    c.last.push(name(rng, n, p.last));
    c.country.push(Some(
        if p.phone.as_deref().is_some_and(|x| x.starts_with('+')) {
            "DE"
        } else {
            "FR"
        },
    ));
    c.created.push(time(rng));
    out.truth("crm_contacts", cid, p.id);
}

/// The e-mail a person used at a point of their history (0..1).
fn email_at(p: &Person, when: f64) -> &str {
    let i = ((when * p.emails.len() as f64) as usize).min(p.emails.len() - 1);
    &p.emails[i]
}

fn orders(out: &mut ChunkBuilder, ids: &mut RowIds, rng: &mut StdRng, n: &Noise, p: &Person) {
    let count = poisson(rng, 1.5 * p.activity).min(200);
    for _ in 0..count {
        let when: f64 = rng.random();
        let channel = ["web", "app", "store"][rng.random_range(0..3)];
        let guest = p.customer_id.is_none() || rng.random_bool(n.guest_checkout);
        let email = if channel == "store" && rng.random_bool(n.till_email) {
            Some(TILL_EMAIL.to_string())
        } else {
            typed_email(rng, n, email_at(p, when))
        };
        let o = &mut out.orders;
        ids.order += 1;
        o.id.push(ids.order);
        o.customer_id.push(if guest { None } else { p.customer_id });
        o.email.push(email);
        o.phone.push(if rng.random_bool(0.4) {
            typed_phone(rng, n, p.phone.as_deref())
        } else {
            None
        });
        o.channel.push(channel);
        o.amount
            .push((rng.random_range(5.0..400.0f64) * 100.0).round() / 100.0);
        o.at.push(EPOCH_2024 + (when * TWO_YEARS_US as f64) as i64);
        out.truth("orders", ids.order, p.id);
    }
}

const EVENT_TYPES: [&str; 5] = [
    "page_view",
    "product_view",
    "add_to_cart",
    "search",
    "checkout",
];
const URLS: [&str; 6] = ["/", "/shoes", "/bags", "/sale", "/cart", "/account"];

fn events(out: &mut ChunkBuilder, ids: &mut RowIds, rng: &mut StdRng, n: &Noise, p: &Person) {
    for (device, known, usage) in &p.devices {
        let sessions = poisson(rng, 2.0 * p.activity * usage).min(100);
        // A known device is identified by a login in at least one session.
        let login_session = known.then(|| rng.random_range(0..sessions.max(1)));
        for s in 0..sessions {
            let when: f64 = rng.random();
            let len = rng.random_range(1..=6);
            let login = login_session == Some(s) || (*known && rng.random_bool(0.2));
            for i in 0..len {
                let e = &mut out.events;
                ids.event += 1;
                e.id.push(ids.event);
                e.device.push(device.clone());
                if login && i == 0 {
                    // A login carries the address of the account: never
                    // missing or junk, though typed in any case.
                    let mut email = email_at(p, when).to_string();
                    if rng.random_bool(n.email_case) {
                        email = people::email_case(rng, &email);
                    }
                    e.email.push(Some(email));
                    e.kind.push("login");
                } else {
                    e.email.push(None);
                    e.kind
                        .push(EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())]);
                }
                e.url.push(URLS[rng.random_range(0..URLS.len())]);
                e.ts.push(
                    EPOCH_2024 + (when * TWO_YEARS_US as f64) as i64 + i64::from(i) * 30_000_000,
                );
                out.truth("web_events", ids.event, p.id);
            }
        }
    }
}

const SUBJECTS: [&str; 5] = [
    "Where is my order?",
    "Refund",
    "Wrong size",
    "Damaged item",
    "Account access",
];

fn tickets(out: &mut ChunkBuilder, ids: &mut RowIds, rng: &mut StdRng, n: &Noise, p: &Person) {
    let count = poisson(rng, 0.3 * p.activity).min(20);
    for _ in 0..count {
        let when: f64 = rng.random();
        // A call (phone only), a mail (e-mail only), or a form (both).
        let (mail, call) = match rng.random_range(0..3) {
            0 if p.phone.is_some() => (false, true),
            1 => (true, false),
            _ => (true, true),
        };
        let t = &mut out.tickets;
        ids.ticket += 1;
        t.id.push(ids.ticket);
        t.email.push(if mail {
            typed_email(rng, n, email_at(p, when))
        } else {
            None
        });
        t.phone.push(if call {
            typed_phone(rng, n, p.phone.as_deref())
        } else {
            None
        });
        t.subject
            .push(SUBJECTS[rng.random_range(0..SUBJECTS.len())]);
        t.at.push(EPOCH_2024 + (when * TWO_YEARS_US as f64) as i64);
        out.truth("support_tickets", ids.ticket, p.id);
    }
}

fn consents(out: &mut ChunkBuilder, ids: &mut RowIds, rng: &mut StdRng, n: &Noise, p: &Person) {
    if !rng.random_bool(0.6) {
        return;
    }
    for purpose in ["email_marketing", "sms_marketing", "analytics"] {
        if !rng.random_bool(0.5) {
            continue;
        }
        let k = &mut out.consents;
        ids.consent += 1;
        k.id.push(ids.consent);
        k.email.push(typed_email(rng, n, email_at(p, 1.0)));
        k.purpose.push(purpose);
        k.granted.push(rng.random_bool(0.7));
        k.ts.push(time(rng));
        out.truth("consents", ids.consent, p.id);
    }
}
