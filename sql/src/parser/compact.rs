//! `COMPACT [table]`: merges small segments and rewrites segments with
//! deleted rows, so that deleted data is physically gone.
//!
//! ```text
//! COMPACT [ table_name ]
//! ```

use std::fmt;

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::parser::Parser;

use super::{word_and_table, write_word_and_table};
use crate::error::Result;

/// `COMPACT [table]`
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    /// The table, or every table.
    pub table: Option<ObjectName>,
}

impl Compact {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        Ok(Compact {
            table: word_and_table(parser, "COMPACT")?,
        })
    }
}

impl fmt::Display for Compact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_word_and_table(f, "COMPACT", self.table.as_ref())
    }
}
