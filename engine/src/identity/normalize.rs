//! Identifier normalisers: the canonical form an identifier is matched by.
//!
//! - `email`: trimmed, lower-cased, one `@`, a domain with a dot; for
//!   `gmail.com` / `googlemail.com` the dots and the `+tag` of the local part
//!   are removed and the domain becomes `gmail.com` (Gmail ignores both;
//!   other providers, Outlook among them, do not, so their addresses keep
//!   them).
//! - `phone`: E.164 (`+` and up to 15 digits). Separators, parentheses and
//!   an extension are dropped; `+` or `00` starts an international number;
//!   otherwise the number is national to the default region and its trunk
//!   prefix (`0` in most of Europe, `1` in the NANP) is replaced by the
//!   country code.
//! - anything else (`trim`): surrounding whitespace removed.
//!
//! A value that is empty, malformed, or on the built-in junk list
//! ([`builtin_junk`]) normalises to `None`: it identifies nobody.

use crate::error::{EngineError, Result};

/// How an identifier kind's values are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Normalizer {
    /// E-mail addresses (see the module docs).
    Email,
    /// Phone numbers to E.164.
    Phone,
    /// Surrounding whitespace removed.
    Trim,
}

impl Normalizer {
    /// The normaliser named in `UNIFY … WITH (kind.normalize = 'name')`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Normalizer::Email),
            "phone" => Ok(Normalizer::Phone),
            "trim" | "none" | "text" => Ok(Normalizer::Trim),
            other => Err(EngineError::InvalidOption(format!(
                "unknown normaliser '{other}'; use 'email', 'phone' or 'trim'"
            ))),
        }
    }

    /// The name it is written with.
    pub fn name(self) -> &'static str {
        match self {
            Normalizer::Email => "email",
            Normalizer::Phone => "phone",
            Normalizer::Trim => "trim",
        }
    }

    /// Normalises `raw` (phones to `region`'s numbering plan when national).
    pub fn apply(self, raw: &str, region: Region) -> Option<String> {
        let mut out = String::new();
        self.apply_into(raw, region, &mut out).then_some(out)
    }

    /// Appends the normalised `raw` to `out` and returns true; returns
    /// false, `out` unchanged, when `raw` identifies nobody. Resolution
    /// normalises every identifier of every record through this, into one
    /// buffer per batch, without allocating per value.
    pub fn apply_into(self, raw: &str, region: Region, out: &mut String) -> bool {
        let start = out.len();
        let made = match self {
            Normalizer::Email => email_into(raw, out),
            Normalizer::Phone => phone_into(raw, region, out),
            Normalizer::Trim => {
                let t = raw.trim();
                out.push_str(t);
                !t.is_empty()
            }
        };
        let usable = made && !builtin_junk(self, &out[start..]);
        if !usable {
            out.truncate(start);
        }
        usable
    }
}

/// Normalises an e-mail address.
pub fn email(raw: &str) -> Option<String> {
    let mut out = String::new();
    email_into(raw, &mut out).then_some(out)
}

/// [`email`], appended to `out` (unchanged when `raw` is not an address).
/// ASCII addresses, nearly all of them, are lower-cased byte by byte as
/// they are copied; others take the general path.
fn email_into(raw: &str, out: &mut String) -> bool {
    let t = raw.trim();
    if !t.is_ascii() {
        return match email_unicode(t) {
            Some(s) => {
                out.push_str(&s);
                true
            }
            None => false,
        };
    }
    // Lower-casing ASCII changes no '@', '.' or whitespace: the raw text
    // is checked as its lower-cased form would be.
    let Some(at) = well_formed(t) else {
        return false;
    };
    let b = t.as_bytes();
    let (local, domain) = (&b[..at], &b[at + 1..]);
    let start = out.len();
    if domain.eq_ignore_ascii_case(b"gmail.com") || domain.eq_ignore_ascii_case(b"googlemail.com") {
        for &c in local.iter().take_while(|&&c| c != b'+') {
            if c != b'.' {
                out.push(char::from(c.to_ascii_lowercase()));
            }
        }
        if out.len() == start {
            return false;
        }
        out.push_str("@gmail.com");
        return true;
    }
    out.push_str(t);
    out[start..].make_ascii_lowercase();
    true
}

/// Where the `@` of an address is, if it has the shape of one: a
/// non-empty local part, one `@`, a domain with a dot inside, no
/// whitespace.
fn well_formed(s: &str) -> Option<usize> {
    let at = s.find('@')?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    let bad = local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
        || s.chars().any(char::is_whitespace);
    (!bad).then_some(at)
}

/// [`email`] for an address with non-ASCII characters (lower-casing may
/// change their length).
fn email_unicode(t: &str) -> Option<String> {
    let s = t.to_lowercase();
    let at = well_formed(&s)?;
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if domain == "gmail.com" || domain == "googlemail.com" {
        let base = local.split('+').next().unwrap_or(local).replace('.', "");
        if base.is_empty() {
            return None;
        }
        return Some(format!("{base}@gmail.com"));
    }
    Some(s)
}

/// A numbering plan: country calling code, trunk prefix, national
/// significant number lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    /// ISO 3166 code.
    pub code: [u8; 2],
    /// Country calling code.
    pub calling_code: u16,
    /// Trunk prefix dialled before national numbers (`0`, or `1` for NANP).
    pub trunk: Option<char>,
    /// Whether the trunk `0` is part of the number (Italy).
    pub keeps_trunk: bool,
    /// Shortest and longest national significant number.
    pub lengths: (usize, usize),
}

const REGIONS: &[Region] = &[
    region(*b"FR", 33, Some('0'), false, (9, 9)),
    region(*b"BE", 32, Some('0'), false, (8, 9)),
    region(*b"CH", 41, Some('0'), false, (9, 9)),
    region(*b"DE", 49, Some('0'), false, (6, 13)),
    region(*b"AT", 43, Some('0'), false, (4, 13)),
    region(*b"NL", 31, Some('0'), false, (9, 9)),
    region(*b"GB", 44, Some('0'), false, (9, 10)),
    region(*b"IE", 353, Some('0'), false, (7, 9)),
    region(*b"ES", 34, None, false, (9, 9)),
    region(*b"PT", 351, None, false, (9, 9)),
    region(*b"IT", 39, Some('0'), true, (6, 11)),
    region(*b"US", 1, Some('1'), false, (10, 10)),
    region(*b"CA", 1, Some('1'), false, (10, 10)),
];

const fn region(
    code: [u8; 2],
    calling_code: u16,
    trunk: Option<char>,
    keeps_trunk: bool,
    lengths: (usize, usize),
) -> Region {
    Region {
        code,
        calling_code,
        trunk,
        keeps_trunk,
        lengths,
    }
}

impl Region {
    /// The region of an ISO 3166 code (`FR`, `us`, …).
    pub fn parse(code: &str) -> Result<Region> {
        let up = code.trim().to_ascii_uppercase();
        REGIONS
            .iter()
            .find(|r| r.code == up.as_bytes())
            .copied()
            .ok_or_else(|| {
                let known: Vec<String> = REGIONS
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.code).into_owned())
                    .collect();
                EngineError::InvalidOption(format!(
                    "unknown phone region '{code}'; known: {}",
                    known.join(", ")
                ))
            })
    }

    /// Its ISO code as text.
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.code).into_owned()
    }
}

impl Default for Region {
    fn default() -> Self {
        REGIONS[0]
    }
}

/// Normalises a phone number to E.164 (`+33612345678`).
pub fn phone(raw: &str, region: Region) -> Option<String> {
    let mut out = String::new();
    phone_into(raw, region, &mut out).then_some(out)
}

/// The most digits a number can have and still be valid after its
/// international prefix and trunk are removed (E.164 allows 15).
const MAX_PHONE_DIGITS: usize = 20;

/// [`phone`], appended to `out` (unchanged when `raw` is not a number).
fn phone_into(raw: &str, region: Region, out: &mut String) -> bool {
    let t = raw.trim();
    let b = t.as_bytes();
    // Drop an extension ("ext. 12", "x12", "#12"). The markers are ASCII,
    // so a byte search cannot land inside a multi-byte character.
    let cut = (0..b.len())
        .find(|&i| {
            matches!(b[i], b'x' | b'X' | b'#' | b';')
                || b.get(i..i + 3)
                    .is_some_and(|w| w.eq_ignore_ascii_case(b"ext"))
        })
        .unwrap_or(b.len());
    let main = &t[..cut];
    let mut buf = [0u8; MAX_PHONE_DIGITS];
    let mut n = 0;
    for c in main.chars() {
        if c.is_ascii_digit() {
            // More digits than any valid number: not a phone.
            let Some(slot) = buf.get_mut(n) else {
                return false;
            };
            *slot = c as u8;
            n += 1;
        } else if !" .-/()+\u{a0}".contains(c) {
            // Anything but digits, separators and '+' is not a phone.
            return false;
        }
    }
    let mut digits = &buf[..n];
    let international = if main.starts_with('+') {
        true
    } else if let Some(rest) = digits.strip_prefix(b"00") {
        digits = rest;
        true
    } else if region.calling_code == 1
        && let Some(rest) = digits.strip_prefix(b"011")
    {
        digits = rest;
        true
    } else {
        false
    };
    let start = out.len();
    out.push('+');
    if international {
        // "+33 (0)6 …": a trunk 0 written after the country code.
        let trunk = REGIONS.iter().find_map(|r| {
            let rest = strip_code(digits, r.calling_code)?;
            (!r.keeps_trunk
                && r.trunk == Some('0')
                && rest.first() == Some(&b'0')
                && (r.lengths.0..=r.lengths.1).contains(&(rest.len() - 1)))
            .then_some(digits.len() - rest.len())
        });
        for (i, &d) in digits.iter().enumerate() {
            if Some(i) != trunk {
                out.push(char::from(d));
            }
        }
    } else {
        let national = match region.trunk.and_then(|t| u8::try_from(t).ok()) {
            Some(t) if !region.keeps_trunk => digits.strip_prefix(&[t]).unwrap_or(digits),
            _ => digits,
        };
        if !(region.lengths.0..=region.lengths.1).contains(&national.len()) {
            out.truncate(start);
            return false;
        }
        push_decimal(out, region.calling_code);
        out.extend(national.iter().map(|&d| char::from(d)));
    }
    let e164 = &out.as_bytes()[start + 1..];
    if !(8..=15).contains(&e164.len()) || e164.first() == Some(&b'0') {
        out.truncate(start);
        return false;
    }
    true
}

/// The decimal digits of `code`, most significant first, and how many.
fn decimal(code: u16) -> ([u8; 5], usize) {
    let mut buf = [0u8; 5];
    let mut at = buf.len();
    let mut n = code;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.copy_within(at.., 0);
    (buf, 5 - at)
}

fn push_decimal(out: &mut String, code: u16) {
    let (buf, len) = decimal(code);
    out.extend(buf[..len].iter().map(|&d| char::from(d)));
}

/// `digits` after the decimal digits of `code`, if it starts with them
/// (without formatting `code` into a new string for every region tried).
fn strip_code(digits: &[u8], code: u16) -> Option<&[u8]> {
    let (buf, len) = decimal(code);
    digits.strip_prefix(&buf[..len])
}

/// Values that identify nobody: placeholders typed into forms, test data,
/// repeated digits. Checked after normalisation.
pub fn builtin_junk(kind: Normalizer, v: &str) -> bool {
    const ANY: &[&str] = &[
        "null",
        "none",
        "nil",
        "n/a",
        "na",
        "-",
        "--",
        "0",
        "-1",
        "undefined",
        "unknown",
        "anonymous",
        "test",
        "abc123",
        "123",
        "x",
    ];
    const EMAILS: &[&str] = &[
        "test@test.com",
        "test@example.com",
        "example@example.com",
        "email@email.com",
        "noemail@noemail.com",
        "no@email.com",
        "none@none.com",
        "a@a.com",
        "asdf@asdf.com",
        "noreply@example.com",
        "user@example.com",
        "mail@mail.com",
    ];
    match kind {
        Normalizer::Email => {
            EMAILS.contains(&v)
                || v.split('@').next().is_some_and(|l| {
                    [
                        "noemail",
                        "noreply",
                        "no-reply",
                        "donotreply",
                        "unknown",
                        "none",
                    ]
                    .contains(&l)
                })
        }
        Normalizer::Phone => {
            let d = v.trim_start_matches('+');
            // After the country code: one digit repeated (the first digit
            // may differ: "+33 6 66 66 66 66"), or a counting run.
            let tail = d.get(d.len().saturating_sub(8)..).unwrap_or(d);
            let first = tail.chars().next();
            let nine = d.get(d.len().saturating_sub(9)..).unwrap_or(d);
            tail.chars().all(|c| Some(c) == first)
                || ["123456789", "012345678", "987654321"].contains(&nine)
        }
        Normalizer::Trim => v.len() <= 9 && ANY.iter().any(|j| j.eq_ignore_ascii_case(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> Region {
        Region::parse("fr").unwrap()
    }

    #[test]
    fn emails() {
        assert_eq!(
            email(" Marie.Dupont+promo@GMail.com ").as_deref(),
            Some("mariedupont@gmail.com")
        );
        assert_eq!(
            email("marie.dupont@googlemail.com").as_deref(),
            Some("mariedupont@gmail.com")
        );
        assert_eq!(
            email("Marie.Dupont+x@outlook.fr").as_deref(),
            Some("marie.dupont+x@outlook.fr")
        );
        for bad in [
            "",
            "  ",
            "marie",
            "@gmail.com",
            "a@b",
            "a@@b.com",
            "a b@c.com",
            "+x@gmail.com",
        ] {
            assert_eq!(email(bad), None, "{bad}");
        }
    }

    #[test]
    fn calling_codes_are_stripped_by_their_digits() {
        assert_eq!(strip_code(b"33612345678", 33), Some(&b"612345678"[..]));
        assert_eq!(strip_code(b"3531234567", 353), Some(&b"1234567"[..]));
        assert_eq!(strip_code(b"1415", 1), Some(&b"415"[..]));
        assert_eq!(strip_code(b"3", 33), None);
        assert_eq!(strip_code(b"34612345678", 33), None);
        assert_eq!(
            phone("+353 (0)87 123 4567", fr()).as_deref(),
            Some("+353871234567")
        );
    }

    #[test]
    fn phones() {
        let want = Some("+33612345678".to_string());
        for raw in [
            "06 12 34 56 78",
            "0612345678",
            "06.12.34.56.78",
            "06-12-34-56-78",
            "+33 6 12 34 56 78",
            "+33612345678",
            "0033 6 12 34 56 78",
            "+33 (0)6 12 34 56 78",
            "06 12 34 56 78 ext. 12",
        ] {
            assert_eq!(phone(raw, fr()), want, "{raw}");
        }
        let us = Region::parse("US").unwrap();
        assert_eq!(phone("(415) 555-0132", us).as_deref(), Some("+14155550132"));
        assert_eq!(phone("1-415-555-0132", us).as_deref(), Some("+14155550132"));
        assert_eq!(
            phone("011 33 6 12 34 56 78", us).as_deref(),
            Some("+33612345678")
        );
        let it = Region::parse("IT").unwrap();
        assert_eq!(phone("06 1234 5678", it).as_deref(), Some("+390612345678"));
        for bad in ["", "N/A", "12", "call me", "0612"] {
            assert_eq!(phone(bad, fr()), None, "{bad}");
        }
    }

    #[test]
    fn junk_is_nobody() {
        let n = Normalizer::Phone;
        assert_eq!(n.apply("0000000000", fr()), None);
        assert_eq!(n.apply("+33 1 11 11 11 11", fr()), None);
        assert_eq!(n.apply("01 23 45 67 89", fr()), None);
        assert!(n.apply("06 12 34 56 78", fr()).is_some());
        assert_eq!(Normalizer::Email.apply("TEST@test.com", fr()), None);
        assert_eq!(Normalizer::Email.apply("noreply@shop.fr", fr()), None);
        assert_eq!(Normalizer::Trim.apply(" N/A ", fr()), None);
        assert_eq!(
            Normalizer::Trim.apply(" C-42 ", fr()).as_deref(),
            Some("C-42")
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(Normalizer::parse("soundex").is_err());
        assert!(Region::parse("XX").is_err());
    }
}
