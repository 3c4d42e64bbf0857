//! Tessera's statements: sqlparser's PostgreSQL dialect plus Tessera's own.
//!
//! [`parse`] splits a text into statements. A statement that starts with one
//! of Tessera's keywords (`COMPACT`, `VERIFY`, `UNIFY`, `CREATE SEGMENT`,
//! `REFRESH SEGMENT`, …) is parsed by its own module, one file per statement, each
//! documenting its grammar and printing back as SQL; everything else is
//! parsed by sqlparser and kept as its AST.

mod archive;
mod compact;
mod consent;
mod erase;
mod pii;
mod segment;
mod unify;
mod verify;

use std::fmt;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

pub use archive::Archive;
pub use compact::Compact;
pub use consent::{AlterUnify, AlterUnifyAction, ConsentColumns};
pub use erase::{Erase, ExportProfile, LiftSuppression, ProfileTarget, VerifyErasure};
pub use pii::{GrantPii, PII_READER, SetPii};
pub use segment::{
    AlterSegment, AlterSegmentChange, CreateSegment, DropSegment, RefreshPolicy, RefreshSegment,
    SegmentBody, SegmentSet, SegmentStatement,
};
pub use unify::{Unify, UnifyOption, UnifySource};
pub use verify::Verify;

use crate::error::{Result, SqlError};

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// A statement of PostgreSQL's grammar.
    Sql(Box<datafusion::sql::sqlparser::ast::Statement>),
    /// `COMPACT [table]`
    Compact(Compact),
    /// `VERIFY`
    Verify(Verify),
    /// `UNIFY space FROM … [WITH (…)]` (run by the engine)
    Unify(Unify),
    /// `CREATE`, `ALTER`, `DROP` and `REFRESH` `SEGMENT` (run by the engine)
    Segment(SegmentStatement),
    /// `ERASE PROFILE …` (run by the engine)
    Erase(Erase),
    /// `VERIFY ERASURE 'id' [FOR …]` (run by the engine)
    VerifyErasure(VerifyErasure),
    /// `LIFT SUPPRESSION 'id'` (run by the engine)
    LiftSuppression(LiftSuppression),
    /// `EXPORT PROFILE … TO …` (run by the engine)
    ExportProfile(ExportProfile),
    /// `ALTER UNIFY space SET CONSENT …` / `DROP CONSENT` (run by the engine)
    AlterUnify(AlterUnify),
    /// `ARCHIVE [table]` (run by the engine)
    Archive(Archive),
    /// `ALTER TABLE t ALTER COLUMN c { SET | DROP } PII`
    SetPii(SetPii),
    /// `GRANT pii_reader TO …` / `REVOKE pii_reader FROM …` (run by the server)
    GrantPii(GrantPii),
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Statement::Sql(s) => write!(f, "{s}"),
            Statement::Compact(s) => write!(f, "{s}"),
            Statement::Verify(s) => write!(f, "{s}"),
            Statement::Unify(s) => write!(f, "{s}"),
            Statement::Segment(s) => write!(f, "{s}"),
            Statement::Erase(s) => write!(f, "{s}"),
            Statement::VerifyErasure(s) => write!(f, "{s}"),
            Statement::LiftSuppression(s) => write!(f, "{s}"),
            Statement::ExportProfile(s) => write!(f, "{s}"),
            Statement::AlterUnify(s) => write!(f, "{s}"),
            Statement::Archive(s) => write!(f, "{s}"),
            Statement::SetPii(s) => write!(f, "{s}"),
            Statement::GrantPii(s) => write!(f, "{s}"),
        }
    }
}

/// Parses `sql` into its statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).try_with_sql(sql)?;
    let mut out = Vec::new();
    loop {
        while parser.consume_token(&Token::SemiColon) {}
        if parser.peek_token().token == Token::EOF {
            break;
        }
        let stmt = if segment::starts(&parser) {
            Statement::Segment(SegmentStatement::parse(&mut parser)?)
        } else if Erase::starts(&parser) {
            Statement::Erase(Erase::parse(&mut parser)?)
        } else if ExportProfile::starts(&parser) {
            Statement::ExportProfile(ExportProfile::parse(&mut parser)?)
        } else if SetPii::starts(&parser) {
            Statement::SetPii(SetPii::parse(&mut parser)?)
        } else if GrantPii::starts(&parser) {
            Statement::GrantPii(GrantPii::parse(&mut parser)?)
        } else if AlterUnify::starts(&parser) {
            Statement::AlterUnify(AlterUnify::parse(&mut parser)?)
        } else if VerifyErasure::starts(&parser) {
            Statement::VerifyErasure(VerifyErasure::parse(&mut parser)?)
        } else {
            match leading_word(&parser).as_deref() {
                Some("COMPACT") => Statement::Compact(Compact::parse(&mut parser)?),
                Some("VERIFY") => Statement::Verify(Verify::parse(&mut parser)?),
                Some("UNIFY") => Statement::Unify(Unify::parse(&mut parser)?),
                Some("ARCHIVE") => Statement::Archive(Archive::parse(&mut parser)?),
                Some("LIFT") => Statement::LiftSuppression(LiftSuppression::parse(&mut parser)?),
                _ => Statement::Sql(Box::new(parser.parse_statement()?)),
            }
        };
        out.push(stmt);
        match parser.peek_token().token {
            Token::EOF | Token::SemiColon => {}
            other => {
                return Err(SqlError::Syntax(format!(
                    "expected end of statement, found {other}"
                )));
            }
        }
    }
    Ok(out)
}

/// The first word of the next statement, upper-cased, if it is a word.
fn leading_word(parser: &Parser<'_>) -> Option<String> {
    match parser.peek_token().token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
        _ => None,
    }
}

/// Consumes the keyword-like word `word` (case-insensitive).
fn expect_word(parser: &mut Parser<'_>, word: &str) -> Result<()> {
    match parser.next_token().token {
        Token::Word(w) if w.value.eq_ignore_ascii_case(word) => Ok(()),
        other => Err(SqlError::Syntax(format!("expected {word}, found {other}"))),
    }
}

/// `WORD [table]`: the keyword, then a table name unless the statement
/// ends (`COMPACT`, `ARCHIVE`).
fn word_and_table(
    parser: &mut Parser<'_>,
    word: &str,
) -> Result<Option<datafusion::sql::sqlparser::ast::ObjectName>> {
    expect_word(parser, word)?;
    Ok(if at_end(parser) {
        None
    } else {
        Some(parser.parse_object_name(false)?)
    })
}

/// Prints `WORD [table]`.
fn write_word_and_table(
    f: &mut fmt::Formatter<'_>,
    word: &str,
    table: Option<&datafusion::sql::sqlparser::ast::ObjectName>,
) -> fmt::Result {
    match table {
        Some(t) => write!(f, "{word} {t}"),
        None => write!(f, "{word}"),
    }
}

/// Whether the statement ends here.
fn at_end(parser: &Parser<'_>) -> bool {
    matches!(parser.peek_token().token, Token::EOF | Token::SemiColon)
}
