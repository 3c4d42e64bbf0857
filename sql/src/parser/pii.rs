//! PII statements:
//!
//! ```text
//! ALTER TABLE table ALTER [ COLUMN ] column { SET | DROP } PII
//! GRANT pii_reader TO role [, …]
//! REVOKE pii_reader FROM role [, …]
//! ```
//!
//! `SET PII` tags a column as personal data: readers without the
//! `pii_reader` privilege see it masked (a keyed hash). `GRANT pii_reader`
//! (run by the server, whose roles these are) lets a role read the values;
//! each such read is recorded in `pii_reads`.

use std::fmt;

use datafusion::sql::sqlparser::ast::{Ident, ObjectName};
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use super::expect_word;
use crate::error::{Result, SqlError};

/// The privilege that reads PII unmasked.
pub const PII_READER: &str = "pii_reader";

fn word_at(parser: &Parser<'_>, n: usize, w: &str) -> bool {
    matches!(&parser.peek_nth_token(n).token,
        Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
}

/// `ALTER TABLE t ALTER [COLUMN] c SET PII` / `DROP PII`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPii {
    /// The table.
    pub table: ObjectName,
    /// The column.
    pub column: Ident,
    /// Tag (`SET`) or untag (`DROP`).
    pub pii: bool,
}

impl SetPii {
    /// Whether the statement ahead is `ALTER TABLE … { SET | DROP } PII`.
    pub(crate) fn starts(parser: &Parser<'_>) -> bool {
        if !(word_at(parser, 0, "ALTER") && word_at(parser, 1, "TABLE")) {
            return false;
        }
        let mut n = 2;
        while !matches!(
            parser.peek_nth_token(n).token,
            Token::EOF | Token::SemiColon
        ) {
            n += 1;
        }
        n >= 4
            && word_at(parser, n - 1, "PII")
            && (word_at(parser, n - 2, "SET") || word_at(parser, n - 2, "DROP"))
    }

    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "ALTER")?;
        expect_word(parser, "TABLE")?;
        let table = parser.parse_object_name(false)?;
        expect_word(parser, "ALTER")?;
        if word_at(parser, 0, "COLUMN") {
            parser.next_token();
        }
        let column = parser.parse_identifier()?;
        let pii = match parser.next_token().token {
            Token::Word(w) if w.value.eq_ignore_ascii_case("SET") => true,
            Token::Word(w) if w.value.eq_ignore_ascii_case("DROP") => false,
            other => {
                return Err(SqlError::Syntax(format!(
                    "expected SET PII or DROP PII, found {other}"
                )));
            }
        };
        expect_word(parser, "PII")?;
        Ok(SetPii { table, column, pii })
    }
}

impl fmt::Display for SetPii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.pii { "SET" } else { "DROP" };
        write!(
            f,
            "ALTER TABLE {} ALTER COLUMN {} {verb} PII",
            self.table, self.column
        )
    }
}

/// `GRANT pii_reader TO role, …` / `REVOKE pii_reader FROM role, …`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantPii {
    /// The roles.
    pub roles: Vec<Ident>,
    /// Grant, or revoke.
    pub grant: bool,
}

impl GrantPii {
    pub(crate) fn starts(parser: &Parser<'_>) -> bool {
        (word_at(parser, 0, "GRANT") || word_at(parser, 0, "REVOKE"))
            && word_at(parser, 1, PII_READER)
    }

    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        let grant = word_at(parser, 0, "GRANT");
        parser.next_token();
        expect_word(parser, PII_READER)?;
        expect_word(parser, if grant { "TO" } else { "FROM" })?;
        let mut roles = vec![parser.parse_identifier()?];
        while parser.consume_token(&Token::Comma) {
            roles.push(parser.parse_identifier()?);
        }
        Ok(GrantPii { roles, grant })
    }
}

impl fmt::Display for GrantPii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<String> = self.roles.iter().map(ToString::to_string).collect();
        if self.grant {
            write!(f, "GRANT {PII_READER} TO {}", roles.join(", "))
        } else {
            write!(f, "REVOKE {PII_READER} FROM {}", roles.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::parser::{Statement, parse};

    #[test]
    fn pii_statements_parse_and_print_back() {
        for sql in [
            "ALTER TABLE crm ALTER COLUMN email SET PII",
            "alter table crm.contacts alter \"E-mail\" drop pii",
            "GRANT pii_reader TO analyst, dpo",
            "REVOKE pii_reader FROM analyst",
        ] {
            let s = parse(sql).unwrap();
            assert!(
                matches!(
                    s.as_slice(),
                    [Statement::SetPii(_) | Statement::GrantPii(_)]
                ),
                "{sql}: {s:?}"
            );
            assert_eq!(parse(&s[0].to_string()).unwrap(), s, "{sql}");
        }
        // Other ALTER TABLE and GRANT statements stay PostgreSQL's.
        for sql in [
            "ALTER TABLE t ADD COLUMN pii TEXT",
            "GRANT SELECT ON t TO analyst",
        ] {
            assert!(
                matches!(parse(sql).unwrap().as_slice(), [Statement::Sql(_)]),
                "{sql}"
            );
        }
        assert!(parse("ALTER TABLE t ALTER COLUMN c SET NOT PII").is_err());
    }
}
