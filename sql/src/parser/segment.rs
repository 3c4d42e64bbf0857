//! `CREATE SEGMENT`, `ALTER SEGMENT`, `DROP SEGMENT`, `REFRESH SEGMENT[S]`:
//! audiences over a profile space, kept as bitmaps of profile ids.
//!
//! ```text
//! CREATE [OR REPLACE] SEGMENT name ON space
//!   [REFRESH {MANUAL | ON COMMIT | EVERY 'interval'}]
//!   AS {query | set}
//! ALTER SEGMENT name {AS {query | set} | REFRESH {MANUAL | ON COMMIT | EVERY 'interval'}}
//! DROP SEGMENT [IF EXISTS] name
//! REFRESH SEGMENT name
//! REFRESH SEGMENTS
//!
//! query  := any SELECT whose first column is profile ids of the space
//! set    := term { OR term }
//! term   := factor { AND [NOT] factor }
//! factor := SEGMENT name | ( set )
//! ```
//!
//! The statements only describe; the engine checks names, spaces, cycles
//! and queries when it runs them.

use std::fmt;

use datafusion::sql::sqlparser::ast::{ObjectName, Query};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{at_end, expect_word};
use crate::error::{Result, SqlError};

/// How a segment's members are kept up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// Only by `REFRESH SEGMENT`.
    Manual,
    /// After every commit to a table the segment depends on.
    OnCommit,
    /// Every interval (PostgreSQL interval text, `'1 hour'`).
    Every(String),
}

impl fmt::Display for RefreshPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshPolicy::Manual => write!(f, "MANUAL"),
            RefreshPolicy::OnCommit => write!(f, "ON COMMIT"),
            RefreshPolicy::Every(i) => write!(f, "EVERY '{}'", i.replace('\'', "''")),
        }
    }
}

/// A combination of segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentSet {
    /// `SEGMENT name`
    Segment(String),
    /// `a AND b`
    And(Box<SegmentSet>, Box<SegmentSet>),
    /// `a OR b`
    Or(Box<SegmentSet>, Box<SegmentSet>),
    /// `a AND NOT b`
    AndNot(Box<SegmentSet>, Box<SegmentSet>),
}

impl SegmentSet {
    /// The segments it names, in order of appearance.
    pub fn names(&self) -> Vec<&str> {
        match self {
            SegmentSet::Segment(n) => vec![n.as_str()],
            SegmentSet::And(a, b) | SegmentSet::Or(a, b) | SegmentSet::AndNot(a, b) => {
                let mut v = a.names();
                v.extend(b.names());
                v
            }
        }
    }

    fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        let mut left = Self::term(parser)?;
        while peek_word(parser, "OR") {
            parser.next_token();
            let right = Self::term(parser)?;
            left = SegmentSet::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn term(parser: &mut Parser<'_>) -> Result<Self> {
        let mut left = Self::factor(parser)?;
        while peek_word(parser, "AND") {
            parser.next_token();
            let not = if peek_word(parser, "NOT") {
                parser.next_token();
                true
            } else {
                false
            };
            let right = Self::factor(parser)?;
            left = if not {
                SegmentSet::AndNot(Box::new(left), Box::new(right))
            } else {
                SegmentSet::And(Box::new(left), Box::new(right))
            };
        }
        Ok(left)
    }

    fn factor(parser: &mut Parser<'_>) -> Result<Self> {
        if parser.consume_token(&Token::LParen) {
            let inner = Self::parse(parser)?;
            if !parser.consume_token(&Token::RParen) {
                return Err(SqlError::Syntax(
                    "expected ) closing a segment expression".into(),
                ));
            }
            return Ok(inner);
        }
        expect_word(parser, "SEGMENT")?;
        Ok(SegmentSet::Segment(segment_name(parser)?))
    }
}

impl fmt::Display for SegmentSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentSet::Segment(n) => write!(f, "SEGMENT {n}"),
            SegmentSet::And(a, b) => write!(f, "({a} AND {b})"),
            SegmentSet::Or(a, b) => write!(f, "({a} OR {b})"),
            SegmentSet::AndNot(a, b) => write!(f, "({a} AND NOT {b})"),
        }
    }
}

/// What a segment holds.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentBody {
    /// The profile ids a query returns.
    Query(Box<Query>),
    /// A combination of other segments.
    Set(SegmentSet),
}

impl fmt::Display for SegmentBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentBody::Query(q) => write!(f, "{q}"),
            SegmentBody::Set(s) => write!(f, "{s}"),
        }
    }
}

impl SegmentBody {
    fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        // `SEGMENT x …` or `(SEGMENT x …) …` is a set; anything else a query.
        let set = peek_word(parser, "SEGMENT") || {
            let mut n = 0;
            while parser.peek_nth_token(n).token == Token::LParen {
                n += 1;
            }
            n > 0
                && matches!(&parser.peek_nth_token(n).token,
                    Token::Word(w) if w.value.eq_ignore_ascii_case("SEGMENT"))
        };
        if set {
            Ok(SegmentBody::Set(SegmentSet::parse(parser)?))
        } else {
            Ok(SegmentBody::Query(parser.parse_query()?))
        }
    }
}

/// `CREATE [OR REPLACE] SEGMENT name ON space [REFRESH policy] AS body`
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSegment {
    /// `OR REPLACE`
    pub or_replace: bool,
    /// The segment's name (lower-cased unless quoted).
    pub name: String,
    /// The profile space it is a set of.
    pub space: ObjectName,
    /// Its refresh policy (`MANUAL` when not given).
    pub refresh: RefreshPolicy,
    /// What it holds.
    pub body: SegmentBody,
}

impl fmt::Display for CreateSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_replace = if self.or_replace { "OR REPLACE " } else { "" };
        write!(
            f,
            "CREATE {or_replace}SEGMENT {} ON {} REFRESH {} AS {}",
            self.name, self.space, self.refresh, self.body
        )
    }
}

/// What `ALTER SEGMENT` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterSegmentChange {
    /// `AS body`
    Body(SegmentBody),
    /// `REFRESH policy`
    Refresh(RefreshPolicy),
}

/// `ALTER SEGMENT name {AS body | REFRESH policy}`
#[derive(Debug, Clone, PartialEq)]
pub struct AlterSegment {
    /// The segment.
    pub name: String,
    /// The change.
    pub change: AlterSegmentChange,
}

impl fmt::Display for AlterSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            AlterSegmentChange::Body(b) => write!(f, "ALTER SEGMENT {} AS {b}", self.name),
            AlterSegmentChange::Refresh(r) => write!(f, "ALTER SEGMENT {} REFRESH {r}", self.name),
        }
    }
}

/// `DROP SEGMENT [IF EXISTS] name`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSegment {
    /// The segment.
    pub name: String,
    /// `IF EXISTS`
    pub if_exists: bool,
}

impl fmt::Display for DropSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let if_exists = if self.if_exists { "IF EXISTS " } else { "" };
        write!(f, "DROP SEGMENT {if_exists}{}", self.name)
    }
}

/// `REFRESH SEGMENT name` (`Some`) or `REFRESH SEGMENTS` (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshSegment {
    /// The segment, or every one.
    pub name: Option<String>,
}

impl fmt::Display for RefreshSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "REFRESH SEGMENT {n}"),
            None => write!(f, "REFRESH SEGMENTS"),
        }
    }
}

/// The statements of this module.
#[derive(Debug, Clone, PartialEq)]
pub enum SegmentStatement {
    /// `CREATE SEGMENT`
    Create(CreateSegment),
    /// `ALTER SEGMENT`
    Alter(AlterSegment),
    /// `DROP SEGMENT`
    Drop(DropSegment),
    /// `REFRESH SEGMENT[S]`
    Refresh(RefreshSegment),
}

impl fmt::Display for SegmentStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SegmentStatement::Create(s) => write!(f, "{s}"),
            SegmentStatement::Alter(s) => write!(f, "{s}"),
            SegmentStatement::Drop(s) => write!(f, "{s}"),
            SegmentStatement::Refresh(s) => write!(f, "{s}"),
        }
    }
}

fn peek_word(parser: &Parser<'_>, word: &str) -> bool {
    matches!(&parser.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

/// A segment name: folded to lower case unless quoted.
fn segment_name(parser: &mut Parser<'_>) -> Result<String> {
    let i = parser.parse_identifier()?;
    Ok(if i.quote_style.is_some() {
        i.value
    } else {
        i.value.to_lowercase()
    })
}

fn refresh_policy(parser: &mut Parser<'_>) -> Result<RefreshPolicy> {
    if peek_word(parser, "MANUAL") {
        parser.next_token();
        return Ok(RefreshPolicy::Manual);
    }
    if peek_word(parser, "ON") {
        parser.next_token();
        expect_word(parser, "COMMIT")?;
        return Ok(RefreshPolicy::OnCommit);
    }
    if peek_word(parser, "EVERY") {
        parser.next_token();
        return match parser.next_token().token {
            Token::SingleQuotedString(s) => Ok(RefreshPolicy::Every(s)),
            other => Err(SqlError::Syntax(format!(
                "expected an interval in quotes after EVERY ('1 hour'), found {other}"
            ))),
        };
    }
    Err(SqlError::Syntax(format!(
        "expected MANUAL, ON COMMIT or EVERY 'interval' after REFRESH, found {}",
        parser.peek_token().token
    )))
}

/// Whether the next statement is one of this module's.
pub(crate) fn starts(parser: &Parser<'_>) -> bool {
    let word = |n: usize, w: &str| matches!(&parser.peek_nth_token(n).token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    (word(0, "CREATE")
        && (word(1, "SEGMENT") || (word(1, "OR") && word(2, "REPLACE") && word(3, "SEGMENT"))))
        || ((word(0, "ALTER") || word(0, "DROP")) && word(1, "SEGMENT"))
        || (word(0, "REFRESH") && (word(1, "SEGMENT") || word(1, "SEGMENTS")))
}

impl SegmentStatement {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        match parser.next_token().token {
            Token::Word(w) if w.value.eq_ignore_ascii_case("CREATE") => {
                let or_replace = if peek_word(parser, "OR") {
                    parser.next_token();
                    expect_word(parser, "REPLACE")?;
                    true
                } else {
                    false
                };
                expect_word(parser, "SEGMENT")?;
                let name = segment_name(parser)?;
                expect_word(parser, "ON")?;
                let space = parser.parse_object_name(false)?;
                let refresh = if peek_word(parser, "REFRESH") {
                    parser.next_token();
                    refresh_policy(parser)?
                } else {
                    RefreshPolicy::Manual
                };
                expect_word(parser, "AS")?;
                let body = SegmentBody::parse(parser)?;
                Ok(SegmentStatement::Create(CreateSegment {
                    or_replace,
                    name,
                    space,
                    refresh,
                    body,
                }))
            }
            Token::Word(w) if w.value.eq_ignore_ascii_case("ALTER") => {
                expect_word(parser, "SEGMENT")?;
                let name = segment_name(parser)?;
                let change = if peek_word(parser, "AS") {
                    parser.next_token();
                    AlterSegmentChange::Body(SegmentBody::parse(parser)?)
                } else if peek_word(parser, "REFRESH") {
                    parser.next_token();
                    AlterSegmentChange::Refresh(refresh_policy(parser)?)
                } else {
                    return Err(SqlError::Syntax(format!(
                        "expected AS or REFRESH after ALTER SEGMENT {name}"
                    )));
                };
                Ok(SegmentStatement::Alter(AlterSegment { name, change }))
            }
            Token::Word(w) if w.value.eq_ignore_ascii_case("DROP") => {
                expect_word(parser, "SEGMENT")?;
                let if_exists = if peek_word(parser, "IF") {
                    parser.next_token();
                    expect_word(parser, "EXISTS")?;
                    true
                } else {
                    false
                };
                let name = segment_name(parser)?;
                Ok(SegmentStatement::Drop(DropSegment { name, if_exists }))
            }
            Token::Word(w) if w.value.eq_ignore_ascii_case("REFRESH") => {
                if peek_word(parser, "SEGMENTS") {
                    parser.next_token();
                    return Ok(SegmentStatement::Refresh(RefreshSegment { name: None }));
                }
                expect_word(parser, "SEGMENT")?;
                let name = segment_name(parser)?;
                if !at_end(parser) {
                    return Err(SqlError::Syntax(format!(
                        "REFRESH SEGMENT takes one name, found {} after {name}",
                        parser.peek_token().token
                    )));
                }
                Ok(SegmentStatement::Refresh(RefreshSegment {
                    name: Some(name),
                }))
            }
            other => Err(SqlError::Syntax(format!(
                "expected a SEGMENT statement, found {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse};

    fn one(sql: &str) -> SegmentStatement {
        match parse(sql).unwrap().pop().unwrap() {
            Statement::Segment(s) => s,
            other => panic!("not a segment statement: {other:?}"),
        }
    }

    #[test]
    fn statements_parse_and_print_back() {
        let s = one(
            "CREATE SEGMENT Recent_Buyers ON customers AS SELECT profile_id FROM orders WHERE amount > 10",
        );
        assert_eq!(
            s.to_string(),
            "CREATE SEGMENT recent_buyers ON customers REFRESH MANUAL AS SELECT profile_id FROM orders WHERE amount > 10"
        );
        // Printed text parses to the same statement.
        assert_eq!(one(&s.to_string()), s);
        let s = one(
            "create or replace segment win_back on customers refresh on commit as segment high_value and not (segment recent_buyers or segment vip)",
        );
        let SegmentStatement::Create(c) = &s else {
            panic!()
        };
        assert!(c.or_replace);
        assert_eq!(c.refresh, RefreshPolicy::OnCommit);
        let SegmentBody::Set(set) = &c.body else {
            panic!()
        };
        assert_eq!(set.names(), vec!["high_value", "recent_buyers", "vip"]);
        assert_eq!(one(&s.to_string()), s);
        let s = one("ALTER SEGMENT vip REFRESH EVERY '1 hour'");
        assert_eq!(one(&s.to_string()), s);
        let s = one("ALTER SEGMENT vip AS SELECT profile_id FROM customers");
        assert_eq!(one(&s.to_string()), s);
        assert_eq!(
            one("DROP SEGMENT IF EXISTS vip").to_string(),
            "DROP SEGMENT IF EXISTS vip"
        );
        assert_eq!(one("REFRESH SEGMENTS").to_string(), "REFRESH SEGMENTS");
        assert_eq!(
            one("refresh segment VIP").to_string(),
            "REFRESH SEGMENT vip"
        );
        // Precedence: AND binds tighter than OR.
        let s = one("CREATE SEGMENT x ON c AS SEGMENT a OR SEGMENT b AND NOT SEGMENT c");
        assert_eq!(
            s.to_string(),
            "CREATE SEGMENT x ON c REFRESH MANUAL AS (SEGMENT a OR (SEGMENT b AND NOT SEGMENT c))"
        );
    }

    #[test]
    fn mistakes_are_syntax_errors() {
        for bad in [
            "CREATE SEGMENT x AS SELECT 1",
            "CREATE SEGMENT x ON c",
            "CREATE SEGMENT x ON c REFRESH SOMETIMES AS SELECT 1",
            "CREATE SEGMENT x ON c AS SEGMENT a AND",
            "CREATE SEGMENT x ON c AS (SEGMENT a",
            "REFRESH SEGMENT a b",
            "ALTER SEGMENT a",
            "CREATE SEGMENT x ON c REFRESH EVERY 5 AS SELECT 1",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.sqlstate(), "42601", "{bad}: {e}");
        }
    }
}
