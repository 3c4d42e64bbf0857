//! `VERIFY`: checks every file of the database (checksums, manifest, log,
//! and each bitmap index rebuilt from its segment) and returns one row per
//! problem found.
//!
//! ```text
//! VERIFY
//! ```

use std::fmt;

use datafusion::sql::sqlparser::parser::Parser;

use super::expect_word;
use crate::error::Result;

/// `VERIFY`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify;

impl Verify {
    pub(crate) fn parse(parser: &mut Parser<'_>) -> Result<Self> {
        expect_word(parser, "VERIFY")?;
        Ok(Verify)
    }
}

impl fmt::Display for Verify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VERIFY")
    }
}
