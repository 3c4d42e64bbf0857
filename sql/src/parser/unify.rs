//! `UNIFY`: identity resolution of the records of several tables into one
//! profile space.
//!
//! ```text
//! UNIFY space
//!   FROM table ( identifier [, ...] ) [, table ( identifier [, ...] ) ...]
//!   [ WITH ( option = value [, ...] ) ]
//!
//! identifier := kind [ = column ]          -- `email` alone: column `email`
//! option     := kind.normalize = 'email' | 'phone' | 'trim'
//!             | kind.limit = n              -- distinct values per profile
//!             | kind.weak = true | false    -- weak kinds never merge people
//!             | kind.blocklist = 'v1, v2'   -- values that identify nobody
//!             | phone.region = 'FR'         -- (any kind using the phone normaliser)
//!             | priority = 'kind1, kind2, ...'
//!             | max_links = n               -- junk detection; 0 turns it off
//! ```
//!
//! The statement only describes; the engine checks tables, columns and
//! options when it runs it.

use std::fmt;

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Value};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{at_end, expect_word};
use crate::error::{Result, SqlError};

/// One source table and the identifier kinds its columns hold.
#[derive(Debug, Clone, PartialEq)]
pub struct UnifySource {
    /// The table.
    pub table: ObjectName,
    /// (kind, column).
    pub identifiers: Vec<(Ident, Ident)>,
}

/// An option of `WITH (…)`: a dotted key and a literal.
#[derive(Debug, Clone, PartialEq)]
pub struct UnifyOption {
    /// `email.limit` → `["email", "limit"]`; `priority` → `["priority"]`.
    pub key: Vec<Ident>,
    /// The value.
    pub value: Value,
}

/// `UNIFY space FROM … [WITH (…)]`
#[derive(Debug, Clone, PartialEq)]
pub struct Unify {
    /// The profile space (also the name of its profile table).
    pub space: ObjectName,
    /// The sources, in order.
    pub sources: Vec<UnifySource>,
    /// The options, in order.
    pub options: Vec<UnifyOption>,
}

impl Unify {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "UNIFY")?;
        let space = parser.parse_object_name(false)?;
        expect_word(parser, "FROM")?;
        let mut sources = Vec::new();
        loop {
            let table = parser.parse_object_name(false)?;
            if !parser.consume_token(&Token::LParen) {
                return Err(SqlError::Syntax(format!(
                    "expected ( after {table}: list the identifier columns, as in {table} (email, phone = mobile)"
                )));
            }
            let mut identifiers = Vec::new();
            loop {
                let kind = parser.parse_identifier()?;
                let column = if parser.consume_token(&Token::Eq) {
                    parser.parse_identifier()?
                } else {
                    kind.clone()
                };
                identifiers.push((kind, column));
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            parser.expect_token(&Token::RParen)?;
            sources.push(UnifySource { table, identifiers });
            if !parser.consume_token(&Token::Comma) {
                break;
            }
        }
        let mut options = Vec::new();
        if !at_end(parser) {
            expect_word(parser, "WITH")?;
            parser.expect_token(&Token::LParen)?;
            loop {
                let mut key = vec![parser.parse_identifier()?];
                while parser.consume_token(&Token::Period) {
                    key.push(parser.parse_identifier()?);
                }
                parser.expect_token(&Token::Eq)?;
                let value = parser.parse_value()?.value;
                options.push(UnifyOption { key, value });
                if !parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            parser.expect_token(&Token::RParen)?;
        }
        Ok(Unify {
            space,
            sources,
            options,
        })
    }
}

impl fmt::Display for UnifyOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: Vec<String> = self.key.iter().map(ToString::to_string).collect();
        write!(f, "{} = {}", key.join("."), self.value)
    }
}

impl fmt::Display for Unify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UNIFY {} FROM ", self.space)?;
        for (i, s) in self.sources.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            let ids: Vec<String> = s
                .identifiers
                .iter()
                .map(|(k, c)| {
                    if k == c {
                        k.to_string()
                    } else {
                        format!("{k} = {c}")
                    }
                })
                .collect();
            write!(f, "{} ({})", s.table, ids.join(", "))?;
        }
        if !self.options.is_empty() {
            let opts: Vec<String> = self.options.iter().map(ToString::to_string).collect();
            write!(f, " WITH ({})", opts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::parser::{Statement, parse};

    #[test]
    fn the_documented_example_parses_and_prints_back() {
        let sql = "UNIFY customers
             FROM crm_contacts (customer_id, email, phone),
                  orders (customer_id, email, phone),
                  web_events (device_id = anonymous_id, email = user_email),
                  support_tickets (email, phone)
             WITH (email.normalize = 'email', phone.normalize = 'phone', phone.region = 'FR',
                   customer_id.limit = 1, email.limit = 3)";
        let mut stmts = parse(sql).unwrap();
        let Some(Statement::Unify(u)) = stmts.pop() else {
            panic!("not a UNIFY")
        };
        assert_eq!(u.sources.len(), 4);
        assert_eq!(u.sources[2].identifiers[0].0.value, "device_id");
        assert_eq!(u.sources[2].identifiers[0].1.value, "anonymous_id");
        assert_eq!(u.options.len(), 5);
        let printed = u.to_string();
        assert_eq!(
            printed,
            "UNIFY customers FROM crm_contacts (customer_id, email, phone), orders (customer_id, email, phone), \
             web_events (device_id = anonymous_id, email = user_email), support_tickets (email, phone) \
             WITH (email.normalize = 'email', phone.normalize = 'phone', phone.region = 'FR', \
             customer_id.limit = 1, email.limit = 3)"
        );
        assert_eq!(parse(&printed).unwrap(), vec![Statement::Unify(u)]);
    }

    #[test]
    fn malformed_unify_is_a_syntax_error() {
        for bad in [
            "UNIFY",
            "UNIFY c",
            "UNIFY c FROM",
            "UNIFY c FROM t",
            "UNIFY c FROM t ()",
            "UNIFY c FROM t (email",
            "UNIFY c FROM t (email) WITH",
            "UNIFY c FROM t (email) WITH (email.limit)",
            "UNIFY c FROM t (email) extra",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.sqlstate(), "42601", "{bad}: {err}");
        }
    }
}
