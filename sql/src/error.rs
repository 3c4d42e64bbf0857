//! The SQL layer's error type, each mapped to a PostgreSQL SQLSTATE.

use datafusion::error::DataFusionError;

/// Result alias of the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// Everything that can go wrong running SQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The text is not valid SQL.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A table or view does not exist.
    #[error("relation \"{0}\" does not exist")]
    UndefinedTable(String),
    /// A schema does not exist.
    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),
    /// A table or view exists already.
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// A column does not exist.
    #[error("{0}")]
    UndefinedColumn(String),
    /// A type name Tessera does not support.
    #[error(
        "type \"{0}\" is not supported; use BOOLEAN, SMALLINT, INTEGER, BIGINT, REAL, DOUBLE PRECISION, NUMERIC(p,s), TEXT, VARCHAR, DATE, TIMESTAMP, TIMESTAMPTZ, TEXT[] or JSON"
    )]
    UnsupportedType(String),
    /// A statement or clause Tessera does not support (yet).
    #[error("{0} is not supported")]
    Unsupported(String),
    /// A value cannot be converted to the column's type.
    #[error("{0}")]
    InvalidText(String),
    /// A string is longer than its column's declared length.
    #[error("{0}")]
    StringTooLong(String),
    /// A number does not fit its column's type.
    #[error("{0}")]
    NumericOutOfRange(String),
    /// A file given to COPY is not in the format it was said to be in.
    #[error("{0}")]
    BadFileFormat(String),
    /// A parameter of a statement is out of range or unknown.
    #[error("{0}")]
    InvalidParameter(String),
    /// A named object (profile space, segment, …) does not exist.
    #[error("{0}")]
    UndefinedObject(String),
    /// Other objects depend on the one a statement would drop.
    #[error("{0}")]
    DependentObjects(String),
    /// The statement does not apply to this kind of object.
    #[error("{0}")]
    WrongObjectType(String),
    /// The object is kept by Tessera itself and users may not change it.
    #[error("{0}")]
    ReadOnly(String),
    /// A column's type does not fit the use a statement makes of it.
    #[error("{0}")]
    DatatypeMismatch(String),
    /// The object is not set up for what the statement asks (a profile
    /// space without a consent source asked for consent).
    #[error("{0}")]
    NotInPrerequisiteState(String),
    /// A file named in a statement cannot be opened, read or written.
    #[error("could not access file \"{}\": {source}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The storage engine refused or failed.
    #[error(transparent)]
    Storage(#[from] tessera_storage::Error),
    /// DataFusion refused or failed.
    #[error("{}", strip_prefixes(.0))]
    DataFusion(DataFusionError),
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        // Errors of ours that travelled through DataFusion come back out whole.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<SqlError>() {
                Ok(sql) => *sql,
                Err(other) => match other.downcast::<tessera_storage::Error>() {
                    Ok(st) => SqlError::Storage(*st),
                    Err(other) => SqlError::DataFusion(DataFusionError::External(other)),
                },
            },
            DataFusionError::Diagnostic(_, inner) => SqlError::from(*inner),
            DataFusionError::Context(ctx, inner) => match SqlError::from(*inner) {
                SqlError::DataFusion(df) => {
                    SqlError::DataFusion(DataFusionError::Context(ctx, Box::new(df)))
                }
                other => other,
            },
            DataFusionError::SQL(e, _) => SqlError::Syntax(e.to_string()),
            DataFusionError::Plan(msg)
                if msg.starts_with("table '") && msg.ends_with("' not found") =>
            {
                let full = &msg["table '".len()..msg.len() - "' not found".len()];
                let name = full.strip_prefix("tessera.").unwrap_or(full);
                SqlError::UndefinedTable(name.strip_prefix("public.").unwrap_or(name).to_string())
            }
            other => SqlError::DataFusion(other),
        }
    }
}

impl From<datafusion::sql::sqlparser::parser::ParserError> for SqlError {
    fn from(e: datafusion::sql::sqlparser::parser::ParserError) -> Self {
        SqlError::Syntax(e.to_string())
    }
}

impl From<arrow::error::ArrowError> for SqlError {
    fn from(e: arrow::error::ArrowError) -> Self {
        SqlError::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

impl SqlError {
    /// The PostgreSQL SQLSTATE for this error.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            SqlError::Syntax(_) => "42601",
            SqlError::UndefinedTable(_) => "42P01",
            SqlError::UndefinedSchema(_) => "3F000",
            SqlError::DuplicateTable(_) => "42P07",
            SqlError::UndefinedColumn(_) => "42703",
            SqlError::UnsupportedType(_) => "42704",
            SqlError::Unsupported(_) => "0A000",
            SqlError::InvalidText(_) => "22P02",
            SqlError::InvalidParameter(_) => "22023",
            SqlError::UndefinedObject(_) => "42704",
            SqlError::DependentObjects(_) => "2BP01",
            SqlError::WrongObjectType(_) => "42809",
            SqlError::ReadOnly(_) => "42501",
            SqlError::DatatypeMismatch(_) => "42804",
            SqlError::NotInPrerequisiteState(_) => "55000",
            SqlError::StringTooLong(_) => "22001",
            SqlError::BadFileFormat(_) => "22P04",
            SqlError::NumericOutOfRange(_) => "22003",
            SqlError::File { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "58P01"
            }
            SqlError::File { .. } => "58030",
            SqlError::Storage(e) => e.sqlstate(),
            SqlError::DataFusion(e) => datafusion_sqlstate(e),
        }
    }

    /// Wraps this error so it can travel through DataFusion's APIs.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }
}

fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    use datafusion::common::SchemaError;
    match e {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(se, _) => match se.as_ref() {
            SchemaError::FieldNotFound { .. } => "42703",
            SchemaError::AmbiguousReference { .. } => "42702",
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => "42701",
        },
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ArrowError(ae, _) => match ae.as_ref() {
            arrow::error::ArrowError::InvalidArgumentError(m) if m.contains("non-nullable") => {
                "23502"
            }
            arrow::error::ArrowError::InvalidArgumentError(m)
            | arrow::error::ArrowError::CastError(m)
                if out_of_range(m) =>
            {
                "22003"
            }
            arrow::error::ArrowError::CastError(_) | arrow::error::ArrowError::ParseError(_) => {
                "22P02"
            }
            arrow::error::ArrowError::DivideByZero => "22012",
            arrow::error::ArrowError::ArithmeticOverflow(_) => "22003",
            _ => "XX000",
        },
        DataFusionError::Plan(msg) => {
            if msg.contains("not found") && msg.contains("table") {
                "42P01"
            } else if msg.contains("No function matches") || msg.contains("Invalid function") {
                "42883"
            } else {
                "42000"
            }
        }
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            datafusion_sqlstate(inner)
        }
        DataFusionError::Shared(inner) => datafusion_sqlstate(inner),
        DataFusionError::Collection(errs) => errs.first().map_or("XX000", datafusion_sqlstate),
        DataFusionError::Execution(msg) if out_of_range(msg) => "22003",
        DataFusionError::Execution(msg) if msg.contains("Cannot cast") => "22P02",
        DataFusionError::External(_) => "XX000",
        _ => "XX000",
    }
}

/// Whether an Arrow or DataFusion message says a value does not fit a type.
fn out_of_range(msg: &str) -> bool {
    msg.contains("too large to store")
        || msg.contains("Overflow")
        || msg.contains("overflow")
        || msg.contains("out of range")
        // Arrow's wording for a number that does not fit the target type
        // (text that does not parse reads "Cannot cast string …").
        || msg.contains("Can't cast value")
}

/// DataFusion prefixes messages with its phase ("Error during planning: ");
/// users get the sentence itself.
/// An error wrapped in context ("Optimizer rule … failed") is told by its
/// root cause.
fn strip_prefixes(e: &DataFusionError) -> String {
    let s = e.find_root().to_string();
    for p in [
        "Error during planning: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Schema error: ",
        "Arrow error: ",
        "Cast error: ",
    ] {
        if let Some(rest) = s.strip_prefix(p) {
            return rest.to_string();
        }
    }
    s
}
