//! `ARCHIVE`: moves the rows past their table's retention to Parquet files
//! kept with the database (run by the engine).
//!
//! ```text
//! ARCHIVE [ table ]
//! ```
//!
//! Every table with a retention (`ALTER TABLE t SET (retention = …,
//! retention_column = …)`), or only `table`: its expired rows are written
//! to a Parquet file under the database's `archive/` folder, deleted from
//! the table and purged from its files; they stay queryable as
//! `archive.t`.

use std::fmt;

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::parser::Parser;

use super::{word_and_table, write_word_and_table};
use crate::error::Result;

/// `ARCHIVE [table]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The table (every table with a retention when `None`).
    pub table: Option<ObjectName>,
}

impl Archive {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        Ok(Archive {
            table: word_and_table(parser, "ARCHIVE")?,
        })
    }
}

impl fmt::Display for Archive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_word_and_table(f, "ARCHIVE", self.table.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use crate::parser::{Statement, parse};

    #[test]
    fn archive_parses_and_prints_back() {
        for sql in ["ARCHIVE", "archive web_events", "ARCHIVE crm.\"Events\""] {
            let s = parse(sql).unwrap();
            let [Statement::Archive(a)] = s.as_slice() else {
                panic!("{s:?}");
            };
            assert_eq!(parse(&a.to_string()).unwrap(), s);
        }
        assert!(parse("ARCHIVE a b").is_err());
    }
}
