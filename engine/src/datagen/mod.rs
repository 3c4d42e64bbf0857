//! Realistic multi-channel customer data with ground truth, for tests,
//! benchmarks and `tessera gen`.
//!
//! Every generated row belongs to one person, recorded in the `truth` table
//! (`source`, `row_id`, `person_id`), so that identity resolution can be
//! scored. The tables:
//!
//! | table | identifiers | other columns |
//! |---|---|---|
//! | `crm_contacts` | customer_id, email, phone | first_name, last_name, country, created_at |
//! | `orders` | customer_id (NULL for a guest), email, phone | order_id, channel, amount, ordered_at |
//! | `web_events` | anonymous_id (device), user_email (on login) | event_id, event_type, url, ts |
//! | `support_tickets` | email, phone | ticket_id, subject, created_at |
//! | `consents` | email | consent_id, purpose, granted, ts |
//!
//! The noise real data has, each at the rate of its [`Noise`] field:
//! e-mails in other cases or with spaces, gmail dots / `+tags` /
//! googlemail, phones in national and international forms with separators,
//! typos in names, missing values, junk values shared by many people
//! (`test@test.com`, `0000000000`, `N/A`, empty strings, and a shop's
//! placeholder address typed at the till), devices shared in a household,
//! people who change e-mail (then linked only through their customer id),
//! guest checkouts, anonymous browsing identified later by a login on the
//! same device, and a skewed (log-normal) activity per person.
//!
//! Each person draws from a random generator seeded by (seed, person), so
//! the data is the same for a seed whatever the chunking.

mod people;
mod tables;
mod write;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use tables::{Chunk, TABLES, schema};

/// The documented `UNIFY` of the generated tables (docs/identity.md): what
/// the demo, the quality test and the benchmarks run.
pub const UNIFY_EXAMPLE: &str = "UNIFY customers
  FROM crm_contacts (customer_id, email, phone),
       orders (customer_id, email, phone),
       web_events (device_id = anonymous_id, email = user_email),
       support_tickets (email, phone)
  WITH (phone.region = 'FR', customer_id.limit = 1, email.limit = 3)";
pub use write::{Formats, Written, ddl, write_dataset};

/// Rates of each kind of noise (probabilities per row or per person).
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    /// Share of persons with a customer account (in the CRM).
    pub registered: f64,
    /// An e-mail typed in capitals or with surrounding spaces.
    pub email_case: f64,
    /// A gmail address written with other dots, a `+tag` or googlemail.
    pub gmail_variant: f64,
    /// A typo in a name.
    pub name_typo: f64,
    /// An identifier left empty.
    pub missing: f64,
    /// An identifier replaced by a junk value shared by many people.
    pub junk: f64,
    /// Persons sharing a device with a household member (its owner uses it
    /// as any of their devices, the other person now and then).
    pub household: f64,
    /// Registered persons who changed e-mail address.
    pub email_change: f64,
    /// Orders of registered persons placed as a guest.
    pub guest_checkout: f64,
    /// Store orders given the shop's placeholder e-mail.
    pub till_email: f64,
    /// Devices never identified by a login.
    pub anonymous_device: f64,
    /// Persons with a foreign (international) phone number.
    pub foreign_phone: f64,
}

impl Default for Noise {
    fn default() -> Self {
        Self {
            registered: 0.7,
            email_case: 0.15,
            gmail_variant: 0.3,
            name_typo: 0.05,
            missing: 0.05,
            junk: 0.02,
            household: 0.05,
            email_change: 0.05,
            guest_checkout: 0.1,
            till_email: 0.05,
            anonymous_device: 0.01,
            foreign_phone: 0.05,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Number of persons.
    pub persons: u64,
    /// Seed: the same seed gives the same data.
    pub seed: u64,
    /// Noise rates.
    pub noise: Noise,
    /// Persons per chunk.
    pub chunk_persons: u64,
}

impl GenOptions {
    /// `persons` persons with seed `seed` and the default noise.
    pub fn new(persons: u64, seed: u64) -> Self {
        Self {
            persons,
            seed,
            noise: Noise::default(),
            chunk_persons: 20_000,
        }
    }
}

/// The placeholder address a shop types at the till for walk-in customers:
/// not on any built-in list, so it must be detected as junk.
pub const TILL_EMAIL: &str = "magasin@boutique-tessera.fr";

const JUNK_EMAILS: &[&str] = &["test@test.com", "N/A", "", "noemail@noemail.com", "null"];
const JUNK_PHONES: &[&str] = &["0000000000", "N/A", "", "0123456789"];

/// Generates the data chunk by chunk.
#[derive(Debug)]
pub struct Generator {
    opts: GenOptions,
    next_person: u64,
    ids: tables::RowIds,
}

impl Generator {
    /// A generator for `opts`.
    pub fn new(opts: GenOptions) -> Self {
        Self {
            opts,
            next_person: 0,
            ids: tables::RowIds::default(),
        }
    }

    fn person_rng(&self, person: u64) -> StdRng {
        StdRng::seed_from_u64(
            self.opts
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(person),
        )
    }
}

impl Iterator for Generator {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next_person >= self.opts.persons {
            return None;
        }
        let end = (self.next_person + self.opts.chunk_persons.max(2)).min(self.opts.persons);
        let mut chunk = tables::ChunkBuilder::default();
        for p in self.next_person..end {
            let mut rng = self.person_rng(p);
            // A household is a pair of neighbours (2k, 2k+1) deciding together.
            let mut pair_rng = self.person_rng(u64::MAX - p / 2);
            let household = pair_rng.random_bool(self.opts.noise.household)
                && p / 2 * 2 + 1 < self.opts.persons;
            let shared = household.then(|| (format!("hh-{:012x}", p / 2), p % 2 == 0));
            tables::person(
                &mut chunk,
                &mut self.ids,
                &mut rng,
                p,
                &self.opts.noise,
                shared,
            );
        }
        self.next_person = end;
        Some(chunk.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_for_a_seed_whatever_the_chunking() {
        let rows = |chunk_persons| {
            let mut o = GenOptions::new(300, 7);
            o.chunk_persons = chunk_persons;
            Generator::new(o)
                .flat_map(|c| c.tables)
                .map(|(t, b)| (t, format!("{:?}", b.columns())))
                .fold(std::collections::BTreeMap::new(), |mut m, (t, s)| {
                    m.entry(t).or_insert_with(String::new).push_str(&s);
                    m
                })
        };
        let a = rows(300);
        assert_eq!(a, rows(300));
        // Chunking changes batch boundaries only: compare row counts.
        let count = |chunk_persons| {
            let mut o = GenOptions::new(300, 7);
            o.chunk_persons = chunk_persons;
            Generator::new(o)
                .flat_map(|c| c.tables)
                .map(|(_, b)| b.num_rows())
                .sum::<usize>()
        };
        assert_eq!(count(300), count(64));
        assert!(count(300) > 300 * 5);
    }
}
