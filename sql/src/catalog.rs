//! The persistent catalog: schemas, views, and the definitions the engine
//! keeps (profile spaces, segments) as named blobs (tables live in the
//! storage manifest). Stored as postcard bytes in the manifest's catalog field, so a
//! catalog change is as durable and atomic as a manifest version.

use serde::{Deserialize, Serialize};

use crate::error::{Result, SqlError};

/// Current catalog format (2 added `extensions`; format 1 is still read).
const CATALOG_FORMAT: u32 = 2;

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
    /// Definitions kept for the layers above, by key (`unify:customers`),
    /// in their own encoding.
    pub extensions: Vec<(String, Vec<u8>)>,
}

/// The catalog as format 1 wrote it.
#[derive(Debug, Deserialize)]
struct CatalogV1 {
    format: u32,
    schemas: Vec<String>,
    views: Vec<ViewDef>,
}

impl Default for CatalogState {
    fn default() -> Self {
        Self {
            format: CATALOG_FORMAT,
            schemas: Vec::new(),
            views: Vec::new(),
            extensions: Vec::new(),
        }
    }
}

impl CatalogState {
    /// Decodes the catalog bytes of a manifest (empty: a new database).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let corrupt = |e: postcard::Error| {
            SqlError::Storage(tessera_storage::Error::InvalidInput(format!(
                "catalog cannot be decoded: {e}"
            )))
        };
        // The format number is the first field in both layouts.
        let (format, _) = postcard::take_from_bytes::<u32>(bytes).map_err(corrupt)?;
        match format {
            1 => {
                let v1: CatalogV1 = postcard::from_bytes(bytes).map_err(corrupt)?;
                debug_assert_eq!(v1.format, 1);
                Ok(CatalogState {
                    format: CATALOG_FORMAT,
                    schemas: v1.schemas,
                    views: v1.views,
                    extensions: Vec::new(),
                })
            }
            CATALOG_FORMAT => postcard::from_bytes(bytes).map_err(corrupt),
            other => Err(SqlError::Unsupported(format!(
                "catalog format {other} (this Tessera reads 1 and {CATALOG_FORMAT})"
            ))),
        }
    }

    /// The extension blob under `key`.
    pub fn extension(&self, key: &str) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets (`Some`) or removes (`None`) the extension blob under `key`.
    pub fn set_extension(&mut self, key: &str, value: Option<Vec<u8>>) {
        self.extensions.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.extensions.push((key.to_string(), v));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_1_catalogs_are_read() {
        #[derive(Serialize)]
        struct V1 {
            format: u32,
            schemas: Vec<String>,
            views: Vec<ViewDef>,
        }
        let bytes = postcard::to_allocvec(&V1 {
            format: 1,
            schemas: vec!["crm".into()],
            views: Vec::new(),
        })
        .unwrap();
        let state = CatalogState::decode(&bytes).unwrap();
        assert_eq!(state.schemas, vec!["crm".to_string()]);
        assert!(state.extensions.is_empty());
        let mut state = state;
        state.set_extension("unify:customers", Some(vec![1, 2, 3]));
        let again = CatalogState::decode(&state.encode().unwrap()).unwrap();
        assert_eq!(again.extension("unify:customers"), Some(&[1u8, 2, 3][..]));
    }
}
