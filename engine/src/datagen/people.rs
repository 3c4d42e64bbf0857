//! The people behind generated data: names, e-mail addresses, phones,
//! devices, each derived from the person's number so that they are unique
//! and the same for a seed whatever the chunking.

use rand::Rng;
use rand::rngs::StdRng;

pub(super) const FIRST: &[&str] = &[
    "Marie", "Jean", "Camille", "Lucas", "Léa", "Hugo", "Chloé", "Louis", "Emma", "Gabriel",
    "Manon", "Arthur", "Inès", "Jules", "Sarah", "Adam", "Zoé", "Nathan", "Anna", "Paul", "Julie",
    "Thomas", "Clara", "Noah", "Lina", "Mohamed", "Sofia", "Karim", "Yasmine", "Pierre", "Sophie",
    "Nicolas", "Laura", "Antoine", "Elena", "David", "Olivia", "James", "Mia", "Luca", "Giulia",
    "Hannah", "Felix", "Amélie", "Théo", "Céline", "Eric", "Nora", "Victor", "Alice",
];

pub(super) const LAST: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guerin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clement",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Schmidt",
    "Rossi",
    "Smith",
    "Nguyen",
];

const PROVIDERS: &[(&str, f64)] = &[
    ("gmail.com", 0.35),
    ("googlemail.com", 0.02),
    ("yahoo.fr", 0.09),
    ("hotmail.fr", 0.09),
    ("outlook.com", 0.10),
    ("orange.fr", 0.10),
    ("free.fr", 0.10),
    ("laposte.net", 0.05),
    ("acme-corp.com", 0.10),
];

/// Lower-case ASCII of a name (accents dropped), for e-mail addresses.
pub(super) fn ascii(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'é' | 'è' | 'ê' | 'ë' | 'É' => 'e',
            'à' | 'â' => 'a',
            'ç' => 'c',
            'î' | 'ï' => 'i',
            'ô' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            c => c.to_ascii_lowercase(),
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// A canonical e-mail address for person `id` (`generation` > 0 for the
/// address someone moves to).
pub(super) fn email(rng: &mut StdRng, first: &str, last: &str, id: u64, generation: u32) -> String {
    let (f, l) = (ascii(first), ascii(last));
    let local = match rng.random_range(0..4) {
        0 => format!("{f}.{l}{id}"),
        1 => format!("{f}{l}{id}"),
        2 => format!("{}.{l}.{id}", &f[..1.min(f.len())]),
        _ => format!("{l}.{f}{id}"),
    };
    let local = if generation > 0 {
        format!("{local}.{generation}")
    } else {
        local
    };
    let mut x: f64 = rng.random();
    for (domain, p) in PROVIDERS {
        if x < *p {
            return format!("{local}@{domain}");
        }
        x -= p;
    }
    format!("{local}@gmail.com")
}

/// A French mobile number (10 digits, national form) unique to `id`, or a
/// foreign one written internationally.
pub(super) fn phone_digits(id: u64, foreign: bool) -> String {
    // 7919 is prime and coprime with 10^8: distinct ids, distinct numbers.
    let n = (id.wrapping_mul(7919).wrapping_add(10_234_567)) % 100_000_000;
    if foreign {
        match id % 2 {
            0 => format!("+447{:09}", n % 1_000_000_000),
            _ => format!("+49151{n:08}"),
        }
    } else {
        let prefix = if id.is_multiple_of(3) { "07" } else { "06" };
        format!("{prefix}{n:08}")
    }
}

/// Writes a French national number in one of the ways people type it.
pub(super) fn phone_format(rng: &mut StdRng, national: &str) -> String {
    if national.starts_with('+') {
        return national.to_string();
    }
    let d: Vec<char> = national.chars().collect();
    let pairs: Vec<String> = d.chunks(2).map(|c| c.iter().collect()).collect();
    let rest = &national[1..];
    match rng.random_range(0..8) {
        0 => national.to_string(),
        1 => pairs.join(" "),
        2 => pairs.join("."),
        3 => pairs.join("-"),
        4 => format!("+33{rest}"),
        5 => format!("+33 {} {}", &rest[..1], pairs[1..].join(" ")),
        6 => format!("0033{rest}"),
        _ => format!("+33 (0){}", &pairs.join(" ")[1..]),
    }
}

/// A device id (anonymous id of web analytics).
pub(super) fn device(rng: &mut StdRng) -> String {
    let a: u64 = rng.random();
    let b: u32 = rng.random();
    format!("{a:016x}-{b:08x}")
}

/// A typo: a letter dropped, doubled or swapped with its neighbour.
pub(super) fn typo(rng: &mut StdRng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 3 {
        return s.to_string();
    }
    let i = rng.random_range(1..c.len() - 1);
    match rng.random_range(0..3) {
        0 => {
            c.remove(i);
        }
        1 => c.insert(i, c[i]),
        _ => c.swap(i, i + 1),
    }
    c.into_iter().collect()
}

/// A gmail address written another way Gmail delivers to the same inbox:
/// dots moved, a `+tag`, or the googlemail domain.
pub(super) fn gmail_variant(rng: &mut StdRng, email: &str) -> String {
    let Some((local, domain)) = email.split_once('@') else {
        return email.to_string();
    };
    if domain != "gmail.com" && domain != "googlemail.com" {
        return email.to_string();
    }
    let bare = local.replace('.', "");
    match rng.random_range(0..3) {
        0 => {
            let i = rng.random_range(1..bare.len().max(2));
            let (a, b) = bare.split_at(i.min(bare.len()));
            format!("{a}.{b}@{domain}")
        }
        1 => {
            let tags = ["promo", "shop", "news", "2024"];
            format!("{local}+{}@{domain}", tags[rng.random_range(0..tags.len())])
        }
        _ => format!("{local}@googlemail.com"),
    }
}

/// An e-mail address as typed: random capitals, stray spaces.
pub(super) fn email_case(rng: &mut StdRng, email: &str) -> String {
    match rng.random_range(0..3) {
        0 => email.to_uppercase(),
        1 => {
            let mut out = String::with_capacity(email.len());
            let mut cap = true;
            for ch in email.chars() {
                out.extend(if cap {
                    ch.to_uppercase().collect::<Vec<_>>()
                } else {
                    vec![ch]
                });
                cap = ch == '.' || ch == '@';
            }
            out
        }
        _ => format!("  {email} "),
    }
}
