//! `ALTER UNIFY`: settings of a profile space after its `UNIFY` (run by the
//! engine).
//!
//! ```text
//! ALTER UNIFY space SET CONSENT FROM table ( purpose_column, granted_column, recorded_at_column )
//! ALTER UNIFY space DROP CONSENT
//! ```
//!
//! `SET CONSENT` declares `table` (one of the space's sources, so each of
//! its rows has a current `profile_id`) the record of the consent decisions
//! of the space's people: which purpose, granted or withdrawn, when. The
//! latest decision per profile and purpose is what `has_consent` and the
//! segment functions' `purpose` argument read. `DROP CONSENT` removes the
//! declaration (the table and its rows stay).

use std::fmt;

use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::expect_word;
use crate::error::{Result, SqlError};

/// The consent columns of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentColumns {
    /// The table holding the decisions.
    pub table: ObjectName,
    /// The purpose column (text: `email_marketing`, …).
    pub purpose: Ident,
    /// The decision column (boolean: granted or withdrawn).
    pub granted: Ident,
    /// When the decision was recorded (a timestamp).
    pub recorded_at: Ident,
}

/// What an `ALTER UNIFY` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterUnifyAction {
    /// `SET CONSENT FROM table (purpose, granted, recorded_at)`
    SetConsent(Box<ConsentColumns>),
    /// `DROP CONSENT`
    DropConsent,
}

/// `ALTER UNIFY space …`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterUnify {
    /// The profile space (its profile table).
    pub space: ObjectName,
    /// The change.
    pub action: AlterUnifyAction,
}

impl AlterUnify {
    pub(crate) fn starts(parser: &Parser<'_>) -> bool {
        let word = |n: usize, w: &str| {
            matches!(&parser.peek_nth_token(n).token,
                Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
        };
        word(0, "ALTER") && word(1, "UNIFY")
    }

    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "ALTER")?;
        expect_word(parser, "UNIFY")?;
        let space = parser.parse_object_name(false)?;
        let action = match parser.next_token().token {
            Token::Word(w) if w.value.eq_ignore_ascii_case("SET") => {
                expect_word(parser, "CONSENT")?;
                expect_word(parser, "FROM")?;
                let table = parser.parse_object_name(false)?;
                parser.expect_token(&Token::LParen)?;
                let mut columns = Vec::new();
                loop {
                    columns.push(parser.parse_identifier()?);
                    if !parser.consume_token(&Token::Comma) {
                        break;
                    }
                }
                parser.expect_token(&Token::RParen)?;
                let [purpose, granted, recorded_at] = <[Ident; 3]>::try_from(columns)
                    .map_err(|c| {
                        SqlError::Syntax(format!(
                            "SET CONSENT FROM names three columns (purpose, granted, recorded_at), got {}",
                            c.len()
                        ))
                    })?;
                AlterUnifyAction::SetConsent(Box::new(ConsentColumns {
                    table,
                    purpose,
                    granted,
                    recorded_at,
                }))
            }
            Token::Word(w) if w.value.eq_ignore_ascii_case("DROP") => {
                expect_word(parser, "CONSENT")?;
                AlterUnifyAction::DropConsent
            }
            other => {
                return Err(SqlError::Syntax(format!(
                    "expected SET CONSENT or DROP CONSENT after ALTER UNIFY {space}, found {other}"
                )));
            }
        };
        Ok(AlterUnify { space, action })
    }
}

impl fmt::Display for AlterUnify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ALTER UNIFY {} ", self.space)?;
        match &self.action {
            AlterUnifyAction::SetConsent(c) => write!(
                f,
                "SET CONSENT FROM {} ({}, {}, {})",
                c.table, c.purpose, c.granted, c.recorded_at
            ),
            AlterUnifyAction::DropConsent => write!(f, "DROP CONSENT"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Statement, parse};

    #[test]
    fn set_and_drop_consent_print_back() {
        for sql in [
            "ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted, recorded_at)",
            "alter unify crm.people drop consent",
        ] {
            let stmts = parse(sql).unwrap();
            let [Statement::AlterUnify(a)] = stmts.as_slice() else {
                panic!("{stmts:?}");
            };
            let again = parse(&a.to_string()).unwrap();
            assert_eq!(again, stmts);
        }
    }

    #[test]
    fn wrong_forms_are_syntax_errors() {
        for sql in [
            "ALTER UNIFY customers SET CONSENT FROM consents (purpose, granted)",
            "ALTER UNIFY customers SET RETENTION",
            "ALTER UNIFY customers",
        ] {
            assert!(matches!(parse(sql), Err(SqlError::Syntax(_))), "{sql}");
        }
        // ALTER TABLE is still PostgreSQL's.
        assert!(matches!(
            parse("ALTER TABLE t ADD COLUMN x INT").unwrap().as_slice(),
            [Statement::Sql(_)]
        ));
    }
}
