//! The persistent catalog: schemas and views (tables live in the storage
//! manifest). Stored as postcard bytes in the manifest's catalog field, so a
//! catalog change is as durable and atomic as a manifest version.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};

/// Current catalog format.
const CATALOG_FORMAT: u32 = 1;

/// A persisted view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDef {
    /// Schema name.
    pub schema: String,
    /// View name.
    pub name: String,
    /// The `CREATE VIEW` statement, replayed at open.
    pub sql: String,
}

/// Everything the SQL layer persists besides tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogState {
    /// Format version.
    pub format: u32,
    /// Schemas besides `public`.
    pub schemas: Vec<String>,
    /// Views, in creation order (a view may use the ones before it).
    pub views: Vec<ViewDef>,
}

impl Default for CatalogState {
    fn default() -> Self {
        Self {
            format: CATALOG_FORMAT,
            schemas: Vec::new(),
            views: Vec::new(),
        }
    }
}

impl CatalogState {
    /// Decodes the catalog bytes of a manifest (empty: a new database).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let state: CatalogState = postcard::from_bytes(bytes).map_err(|e| {
            SqlError::Storage(tessera_storage::Error::InvalidInput(format!(
                "catalog cannot be decoded: {e}"
            )))
        })?;
        if state.format != CATALOG_FORMAT {
            return Err(SqlError::Unsupported(format!(
                "catalog format {}",
                state.format
            )));
        }
        Ok(state)
    }

    /// Encodes the catalog for the manifest.
    pub fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| {
            SqlError::Storage(tessera_storage::Error::InvalidInput(format!(
                "catalog cannot be encoded: {e}"
            )))
        })
    }
}
