//! The storage engine's one error type.
//!
//! Variants are named after what the caller can do about them, and carry the
//! file, table or column they concern. [`Error::sqlstate`] maps each to the
//! PostgreSQL SQLSTATE the upper layers report to users.

use std::path::PathBuf;

/// Result alias used throughout the storage engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a file failed. A failed write or fsync
    /// also poisons the store (see [`Error::Poisoned`]).
    #[error("I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// The operation that failed (`write`, `fsync`, `rename`, ...).
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A file's bytes do not match their checksum or their documented layout.
    /// Nothing of the damaged file is used; restore it from a backup or, for a
    /// segment, drop the table.
    #[error("data corrupted in {}: {detail}", path.display())]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// What was found, with the offset where it applies.
        detail: String,
    },
    /// A table with this name does not exist.
    #[error("table \"{0}\" does not exist")]
    TableNotFound(String),
    /// A table with this name exists already.
    #[error("table \"{0}\" already exists")]
    TableExists(String),
    /// A column named by the caller is not in the table.
    #[error("column \"{column}\" does not exist in table \"{table}\"")]
    ColumnNotFound {
        /// The table.
        table: String,
        /// The missing column.
        column: String,
    },
    /// A batch or value does not fit the table's schema.
    #[error("{0}")]
    SchemaMismatch(String),
    /// A NULL was given for a NOT NULL column.
    #[error("null value in column \"{column}\" of table \"{table}\" violates not-null constraint")]
    NotNullViolation {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// The caller asked for something the storage engine does not do.
    #[error("{0}")]
    InvalidInput(String),
    /// An earlier write or fsync failed, so the state on disk is unknown; the
    /// store refuses further writes. Reopen it to recover from the log.
    #[error("the database refuses writes after an earlier I/O failure ({0}); reopen it to recover")]
    Poisoned(String),
    /// Another process holds the database directory.
    #[error("database at {} is in use by another process", .0.display())]
    Locked(PathBuf),
    /// The store was closed.
    #[error("the database is closed")]
    Closed,
    /// A table changed under a statement that rewrites it (rows were
    /// appended while it was being rewritten); nothing was changed: run the
    /// statement again.
    #[error("{0}")]
    Conflict(String),
    /// The database is encrypted and was opened without a key.
    #[error("the database at {} is encrypted: open it with its key", .0.display())]
    KeyRequired(PathBuf),
    /// The key given is not the one the database was encrypted with.
    #[error("the key given does not open the database at {} (it was encrypted under another key)", .0.display())]
    WrongKey(PathBuf),
    /// A key was given for a database created without encryption.
    #[error("the database at {} was created without encryption and cannot take a key (encryption is chosen when a database is created)", .0.display())]
    NotEncrypted(PathBuf),
}

impl Error {
    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Io { .. } | Error::Poisoned(_) => "58030", // io_error
            Error::Corruption { .. } => "XX001",              // data_corrupted
            Error::TableNotFound(_) => "42P01",               // undefined_table
            Error::TableExists(_) => "42P07",                 // duplicate_table
            Error::ColumnNotFound { .. } => "42703",          // undefined_column
            Error::SchemaMismatch(_) => "42804",              // datatype_mismatch
            Error::InvalidInput(_) => "22023",                // invalid_parameter_value
            Error::NotNullViolation { .. } => "23502",        // not_null_violation
            Error::Locked(_) => "55006",                      // object_in_use
            Error::Closed => "57P01",                         // admin_shutdown
            Error::Conflict(_) => "40001",                    // serialization_failure
            Error::KeyRequired(_) | Error::WrongKey(_) => "28000", // invalid_authorization_specification
            Error::NotEncrypted(_) => "55000", // object_not_in_prerequisite_state
        }
    }

    /// True for errors that say the bytes on disk are damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> Self {
        Error::Corruption {
            path: path.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
