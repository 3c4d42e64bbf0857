//! Set expressions over segments, as `segment_count` takes them:
//!
//! ```text
//! expr   := term { ('|' | OR) term }
//! term   := unary { ('&' | AND) unary }
//! unary  := ('!' | NOT) unary | '(' expr ')' | name
//! name   := a segment's name, bare (letters, digits, _) or "double-quoted"
//! ```
//!
//! `!a` is every live profile of the space that is not in `a`. A name is
//! folded to lower case unless quoted, as in SQL.

use tessera_sql::parser::{SegmentBody, SegmentSet, Statement};

use super::SegmentDef;
use crate::error::{EngineError, Result};

/// A parsed set expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetExpr {
    /// A segment.
    Name(String),
    /// Profiles not in it.
    Not(Box<SetExpr>),
    /// In both.
    And(Box<SetExpr>, Box<SetExpr>),
    /// In either.
    Or(Box<SetExpr>, Box<SetExpr>),
}

impl SetExpr {
    /// The segments it names.
    pub fn names(&self) -> Vec<&str> {
        match self {
            SetExpr::Name(n) => vec![n.as_str()],
            SetExpr::Not(a) => a.names(),
            SetExpr::And(a, b) | SetExpr::Or(a, b) => {
                let mut v = a.names();
                v.extend(b.names());
                v
            }
        }
    }

    /// Whether it complements anything (and so needs the live profiles).
    pub fn has_not(&self) -> bool {
        match self {
            SetExpr::Name(_) => false,
            SetExpr::Not(_) => true,
            SetExpr::And(a, b) | SetExpr::Or(a, b) => a.has_not() || b.has_not(),
        }
    }
}

impl From<&SegmentSet> for SetExpr {
    /// A statement's set of segments, in the expression language:
    /// `a AND NOT b` is `a & !b`.
    fn from(set: &SegmentSet) -> Self {
        let pair =
            |a: &SegmentSet, b: &SegmentSet| (Box::new(Self::from(a)), Box::new(Self::from(b)));
        match set {
            SegmentSet::Segment(n) => SetExpr::Name(n.clone()),
            SegmentSet::And(a, b) => {
                let (a, b) = pair(a, b);
                SetExpr::And(a, b)
            }
            SegmentSet::Or(a, b) => {
                let (a, b) = pair(a, b);
                SetExpr::Or(a, b)
            }
            SegmentSet::AndNot(a, b) => {
                let (a, b) = pair(a, b);
                SetExpr::And(a, Box::new(SetExpr::Not(b)))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn syntax(text: &str, what: &str) -> EngineError {
    EngineError::Sql(tessera_sql::SqlError::Syntax(format!(
        "in segment expression \"{text}\": {what} (write names with & | ! and parentheses, as 'high_value & !recent_buyers | vip')"
    )))
}

fn tokens(text: &str) -> Result<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '&' => {
                chars.next();
                out.push(Tok::And);
            }
            '|' => {
                chars.next();
                out.push(Tok::Or);
            }
            '!' => {
                chars.next();
                out.push(Tok::Not);
            }
            '(' => {
                chars.next();
                out.push(Tok::Open);
            }
            ')' => {
                chars.next();
                out.push(Tok::Close);
            }
            '"' => {
                chars.next();
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            name.push('"');
                        }
                        Some('"') => break,
                        Some(c) => name.push(c),
                        None => return Err(syntax(text, "a quoted name is not closed")),
                    }
                }
                out.push(Tok::Name(name));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' || c == '$' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(match word.to_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    lower => Tok::Name(lower.to_string()),
                });
            }
            other => return Err(syntax(text, &format!("unexpected '{other}'"))),
        }
    }
    Ok(out)
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Tok>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn expr(&mut self) -> Result<SetExpr> {
        let mut left = self.term()?;
        while self.peek() == Some(&Tok::Or) {
            self.at += 1;
            left = SetExpr::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<SetExpr> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.at += 1;
            left = SetExpr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<SetExpr> {
        let tok = self.peek().cloned();
        self.at += 1;
        match tok {
            Some(Tok::Not) => Ok(SetExpr::Not(Box::new(self.unary()?))),
            Some(Tok::Open) => {
                let inner = self.expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err(syntax(self.text, "a parenthesis is not closed"));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Tok::Name(n)) => Ok(SetExpr::Name(n)),
            Some(other) => Err(syntax(self.text, &format!("unexpected {other:?}"))),
            None => Err(syntax(self.text, "it ends too soon")),
        }
    }
}

/// Parses a `segment_count` expression.
pub fn parse(text: &str) -> Result<SetExpr> {
    let mut p = Parser {
        text,
        toks: tokens(text)?,
        at: 0,
    };
    if p.toks.is_empty() {
        return Err(syntax(text, "it is empty"));
    }
    let e = p.expr()?;
    if p.at != p.toks.len() {
        return Err(syntax(text, "something follows the expression"));
    }
    Ok(e)
}

/// The body of a stored definition, parsed again.
pub fn reparse_body(def: &SegmentDef) -> Result<SegmentBody> {
    let sql = format!("CREATE SEGMENT x ON s AS {}", def.body);
    match tessera_sql::parser::parse(&sql)?.pop() {
        Some(Statement::Segment(tessera_sql::parser::SegmentStatement::Create(c))) => Ok(c.body),
        _ => Err(EngineError::InvalidOption(format!(
            "the stored definition of segment \"{}\" cannot be read back",
            def.name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_spellings() {
        let n = |s: &str| Box::new(SetExpr::Name(s.into()));
        assert_eq!(
            parse("High_Value & !recent_buyers | vip").unwrap(),
            SetExpr::Or(
                Box::new(SetExpr::And(
                    n("high_value"),
                    Box::new(SetExpr::Not(n("recent_buyers")))
                )),
                n("vip")
            )
        );
        assert_eq!(
            parse("a and not (b or \"C d\")").unwrap(),
            SetExpr::And(
                n("a"),
                Box::new(SetExpr::Not(Box::new(SetExpr::Or(n("b"), n("C d")))))
            )
        );
        for bad in ["", "a &", "(a | b", "a b", "a + b", "!", "\"a"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
