//! `COMPACT [table]`: merges small segments and rewrites segments with
//! deleted rows, so that deleted data is physically gone.
//!
//! ```text
//! COMPACT [ table_name ]
//! ```

use std::fmt;

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::parser::Parser;

use super::{at_end, expect_word};
use crate::error::Result;

/// `COMPACT [table]`
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    /// The table, or every table.
    pub table: Option<ObjectName>,
}

impl Compact {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "COMPACT")?;
        let table = if at_end(parser) {
            None
        } else {
            Some(parser.parse_object_name(false)?)
        };
        Ok(Compact { table })
    }
}

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.table {
            Some(t) => write!(f, "COMPACT {t}"),
            None => write!(f, "COMPACT"),
        }
    }
}
