//! The engine's error type, each mapped to a PostgreSQL SQLSTATE.

use tessera_sql::SqlError;

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine: the SQL layer's errors, and
/// those of the customer-data domain (identity resolution, segments, …).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The SQL layer (and below it the storage engine) refused or failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// An option of a statement is unknown or out of range.
    #[error("{0}")]
    InvalidOption(String),
    /// A column named in a statement does not exist in its table.
    #[error("{0}")]
    UndefinedColumn(String),
    /// An object named in a statement (profile space, …) does not exist.
    #[error("{0}")]
    UndefinedObject(String),
    /// An object (segment, …) of that name exists already.
    #[error("{0}")]
    DuplicateObject(String),
    /// A definition is invalid as a whole (a segment that depends on itself).
    #[error("{0}")]
    InvalidDefinition(String),
    /// Writing to the terminal or a file failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<tessera_sql::storage::Error> for EngineError {
    fn from(e: tessera_sql::storage::Error) -> Self {
        EngineError::Sql(SqlError::Storage(e))
    }
}

impl From<tessera_sql::datafusion::arrow::error::ArrowError> for EngineError {
    fn from(e: tessera_sql::datafusion::arrow::error::ArrowError) -> Self {
        EngineError::Sql(SqlError::from(e))
    }
}

impl EngineError {
    /// As a DataFusion error that keeps its SQLSTATE (for code running
    /// inside a DataFusion plan: table providers, functions).
    pub fn into_datafusion(self) -> tessera_sql::datafusion::error::DataFusionError {
        match self {
            EngineError::Sql(e) => e.into_datafusion(),
            EngineError::UndefinedColumn(m) => SqlError::UndefinedColumn(m).into_datafusion(),
            EngineError::UndefinedObject(m) => SqlError::UndefinedObject(m).into_datafusion(),
            other => SqlError::InvalidParameter(other.to_string()).into_datafusion(),
        }
    }

    /// Corruption (XX001) of the stored table `table`, which the engine
    /// keeps (a graph log, segment memberships, the audit tables).
    pub(crate) fn corrupt_table(table: &str, detail: String) -> Self {
        EngineError::Sql(SqlError::Storage(tessera_sql::storage::Error::Corruption {
            path: std::path::PathBuf::from(table),
            detail,
        }))
    }

    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            EngineError::Sql(e) => e.sqlstate(),
            EngineError::InvalidOption(_) => "22023",
            EngineError::UndefinedColumn(_) => "42703",
            EngineError::UndefinedObject(_) => "42704",
            EngineError::DuplicateObject(_) => "42710",
            EngineError::InvalidDefinition(_) => "42P17",
            EngineError::Io(_) => "58030",
        }
    }
}
