//! The statements about one person's data (run by the engine):
//!
//! ```text
//! ERASE PROFILE profile_id [ IN space ] [ IMMEDIATELY ]
//! ERASE PROFILE [ IN space ] WHERE kind = 'raw value' [ IMMEDIATELY ]
//! VERIFY ERASURE 'request id' [ FOR 'value' [, …] ]
//! LIFT SUPPRESSION 'request id'
//! EXPORT PROFILE profile_id [ IN space ] TO { 'file.json' | STDOUT }
//! EXPORT PROFILE [ IN space ] WHERE kind = 'raw value' TO { 'file.json' | STDOUT }
//! ```
//!
//! `ERASE PROFILE` forgets one person of a profile space: every row of
//! every source that belongs to the profile, its identifiers, its segment
//! memberships and its lineage, in one atomic commit; the files are purged
//! by a compaction within the database's deadline, or at once with
//! `IMMEDIATELY`. `VERIFY ERASURE` scans every byte of the database's files
//! for the values given (the person's emails, phones, …) and reports what
//! it found. `LIFT SUPPRESSION` lets data about an erased person be loaded
//! again. `EXPORT PROFILE` writes everything the database holds about the
//! person as one JSON document (GDPR articles 15 and 20).

use std::fmt;

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{at_end, expect_word};
use crate::error::{Result, SqlError};

/// Whom an `ERASE PROFILE` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileTarget {
    /// A profile id (a retired id names the profile that absorbed it).
    Id(u64),
    /// The profile holding an identifier: `kind = 'raw value'` (normalised
    /// as the space normalises that kind).
    Identifier {
        /// The identifier kind (`email`, `phone`, …).
        kind: String,
        /// The value as a person would type it.
        value: String,
    },
}

/// `ERASE PROFILE …`
#[derive(Debug, Clone, PartialEq)]
pub struct Erase {
    /// The profile space (the only one, when `None`).
    pub space: Option<ObjectName>,
    /// The person.
    pub target: ProfileTarget,
    /// Purge the files now instead of by the deadline.
    pub immediately: bool,
}

/// `VERIFY ERASURE 'id' [FOR 'v', …]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyErasure {
    /// The request, as `ERASE` returned it.
    pub request: String,
    /// Values to look for in the files.
    pub values: Vec<String>,
}

/// `LIFT SUPPRESSION 'id'`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiftSuppression {
    /// The request whose suppression ends.
    pub request: String,
}

fn string(parser: &mut Parser<'_>, what: &str) -> Result<String> {
    match parser.next_token().token {
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(SqlError::Syntax(format!(
            "expected {what} as a quoted string, found {other}"
        ))),
    }
}

fn peek_word(parser: &Parser<'_>, word: &str) -> bool {
    matches!(&parser.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// `profile_id [IN space]` or `[IN space] WHERE kind = 'value'`.
fn person(parser: &mut Parser<'_>, verb: &str) -> Result<(Option<ObjectName>, ProfileTarget)> {
    let mut space = None;
    let mut target = None;
    if let Token::Number(n, _) = &parser.peek_token().token {
        let id = n.parse::<u64>().map_err(|_| {
            SqlError::Syntax(format!("\"{n}\" is not a profile id (a whole number)"))
        })?;
        parser.next_token();
        target = Some(ProfileTarget::Id(id));
    }
    if peek_word(parser, "IN") {
        parser.next_token();
        space = Some(parser.parse_object_name(false)?);
    }
    let target = match target {
        Some(t) => t,
        None => {
            expect_word(parser, "WHERE").map_err(|_| {
                SqlError::Syntax(format!(
                    "{verb} PROFILE takes a profile id ({verb} PROFILE 42) or an identifier \
                     ({verb} PROFILE WHERE email = 'marie@example.com')"
                ))
            })?;
            let kind = parser.parse_identifier()?.value.to_lowercase();
            if !parser.consume_token(&Token::Eq) {
                return Err(SqlError::Syntax(format!(
                    "expected = after {kind}, found {}",
                    parser.peek_token().token
                )));
            }
            let value = string(parser, "the identifier")?;
            ProfileTarget::Identifier { kind, value }
        }
    };
    Ok((space, target))
}

/// Writes `target` (and `space`) as the statements spell them.
fn fmt_person(
    f: &mut fmt::Formatter<'_>,
    space: &Option<ObjectName>,
    target: &ProfileTarget,
) -> fmt::Result {
    if let ProfileTarget::Id(id) = target {
        write!(f, " {id}")?;
    }
    if let Some(s) = space {
        write!(f, " IN {s}")?;
    }
    if let ProfileTarget::Identifier { kind, value } = target {
        write!(f, " WHERE {kind} = {}", quote(value))?;
    }
    Ok(())
}

/// `EXPORT PROFILE … TO 'file' | STDOUT`
#[derive(Debug, Clone, PartialEq)]
pub struct ExportProfile {
    /// The profile space (the only one, when `None`).
    pub space: Option<ObjectName>,
    /// The person.
    pub target: ProfileTarget,
    /// The file to write; `None` for `STDOUT`.
    pub to: Option<String>,
}

impl ExportProfile {
    /// Whether the next statement is `EXPORT PROFILE`.
    pub(crate) fn starts(parser: &Parser<'_>) -> bool {
        peek_word(parser, "EXPORT")
            && matches!(&parser.peek_nth_token(1).token, Token::Word(w) if w.value.eq_ignore_ascii_case("PROFILE"))
    }

    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "EXPORT")?;
        expect_word(parser, "PROFILE")?;
        let (space, target) = person(parser, "EXPORT")?;
        expect_word(parser, "TO")?;
        let to = if peek_word(parser, "STDOUT") {
            parser.next_token();
            None
        } else {
            Some(string(parser, "the file (or STDOUT)")?)
        };
        Ok(ExportProfile { space, target, to })
    }
}

impl fmt::Display for ExportProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EXPORT PROFILE")?;
        fmt_person(f, &self.space, &self.target)?;
        match &self.to {
            Some(file) => write!(f, " TO {}", quote(file)),
            None => write!(f, " TO STDOUT"),
        }
    }
}

impl Erase {
    /// Whether the next statement is `ERASE PROFILE`.
    pub(crate) fn starts(parser: &Parser<'_>) -> bool {
        peek_word(parser, "ERASE")
    }

    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "ERASE")?;
        expect_word(parser, "PROFILE")?;
        let (space, target) = person(parser, "ERASE")?;
        let immediately = if peek_word(parser, "IMMEDIATELY") {
            parser.next_token();
            true
        } else {
            false
        };
        if !at_end(parser) {
            return Err(SqlError::Syntax(format!(
                "expected IMMEDIATELY or the end of ERASE PROFILE, found {}",
                parser.peek_token().token
            )));
        }
        Ok(Erase {
            space,
            target,
            immediately,
        })
    }
}

impl VerifyErasure {
    /// Whether the next statement is `VERIFY ERASURE` (rather than `VERIFY`).
    pub(crate) fn starts(parser: &Parser<'_>) -> bool {
        peek_word(parser, "VERIFY")
            && matches!(&parser.peek_nth_token(1).token, Token::Word(w) if w.value.eq_ignore_ascii_case("ERASURE"))
    }

    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "VERIFY")?;
        expect_word(parser, "ERASURE")?;
        let request = string(parser, "the request id")?;
        let mut values = Vec::new();
        if peek_word(parser, "FOR") {
            parser.next_token();
            loop {
                values.push(string(parser, "a value to look for")?);
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
        }
        Ok(VerifyErasure { request, values })
    }
}

impl LiftSuppression {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "LIFT")?;
        expect_word(parser, "SUPPRESSION")?;
        Ok(LiftSuppression {
            request: string(parser, "the request id")?,
        })
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl fmt::Display for Erase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ERASE PROFILE")?;
        fmt_person(f, &self.space, &self.target)?;
        if self.immediately {
            write!(f, " IMMEDIATELY")?;
        }
        Ok(())
    }
}

impl fmt::Display for VerifyErasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VERIFY ERASURE {}", quote(&self.request))?;
        if !self.values.is_empty() {
            let v: Vec<String> = self.values.iter().map(|v| quote(v)).collect();
            write!(f, " FOR {}", v.join(", "))?;
        }
        Ok(())
    }
}

impl fmt::Display for LiftSuppression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LIFT SUPPRESSION {}", quote(&self.request))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Statement, parse};

    fn one(sql: &str) -> Statement {
        let mut v = parse(sql).unwrap();
        assert_eq!(v.len(), 1, "{sql}");
        v.remove(0)
    }

    #[test]
    fn erase_forms_round_trip() {
        for sql in [
            "ERASE PROFILE 42",
            "ERASE PROFILE 42 IN customers IMMEDIATELY",
            "ERASE PROFILE IN crm.customers WHERE email = 'o''brien@example.com'",
            "ERASE PROFILE WHERE phone = '06 12 34 56 78' IMMEDIATELY",
            "VERIFY ERASURE 'e-1'",
            "VERIFY ERASURE 'e-1' FOR 'marie@example.com', '+33612345678'",
            "LIFT SUPPRESSION 'e-1'",
            "EXPORT PROFILE 7 TO STDOUT",
            "EXPORT PROFILE IN customers WHERE email = 'marie@example.com' TO '/tmp/marie.json'",
        ] {
            let s = one(sql);
            assert_eq!(s.to_string(), sql);
            assert_eq!(one(&s.to_string()), s);
        }
        assert!(matches!(one("verify"), Statement::Verify(_)));
    }

    #[test]
    fn erase_errors_say_what_is_expected() {
        for (sql, says) in [
            ("ERASE PROFILE", "takes a profile id"),
            ("ERASE PROFILE -3", "takes a profile id"),
            ("ERASE PROFILE WHERE email 'x'", "expected ="),
            ("ERASE PROFILE WHERE email = x", "quoted string"),
            ("ERASE PROFILE 4 NOW", "IMMEDIATELY"),
            ("VERIFY ERASURE 12", "request id"),
            ("EXPORT PROFILE 7", "expected TO"),
            ("EXPORT PROFILE 7 TO marie", "the file (or STDOUT)"),
            (
                "EXPORT PROFILE TO STDOUT",
                "EXPORT PROFILE takes a profile id",
            ),
        ] {
            let e = parse(sql).unwrap_err().to_string();
            assert!(e.contains(says), "{sql}: {e}");
        }
    }
}
