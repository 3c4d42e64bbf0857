//! Where the command line finds the key of an encrypted database.
//!
//! In order: `--key-file PATH` (or `key_file` in `tessera serve`'s config),
//! the environment variable `TESSERA_KEY_FILE`, then `TESSERA_KEY` holding
//! the key itself as 64 hexadecimal digits. With none of them the database
//! is opened (or created) without encryption.

use std::path::{Path, PathBuf};

use tessera_engine::{Database, EngineOptions, Key};

/// The key the user gave, if any.
pub fn resolve(key_file: Option<&Path>) -> tessera_engine::Result<Option<Key>> {
    let file = key_file.map(Path::to_path_buf).or_else(|| {
        std::env::var_os("TESSERA_KEY_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(file) = file {
        return Ok(Some(Key::from_file(&file)?));
    }
    match std::env::var("TESSERA_KEY") {
        Ok(hex) if !hex.is_empty() => Ok(Some(Key::from_hex(&hex)?)),
        _ => Ok(None),
    }
}

/// Opens the database at `path` with the key the user gave, if any.
pub fn open(
    path: &Path,
    key_file: Option<&Path>,
    options: EngineOptions,
) -> tessera_engine::Result<Database> {
    open_with_key(path, resolve(key_file)?, options)
}

/// Opens (or creates) the database at `path`, encrypted under `key` if one
/// is given.
pub fn open_with_key(
    path: &Path,
    key: Option<Key>,
    options: EngineOptions,
) -> tessera_engine::Result<Database> {
    match key {
        Some(key) => Database::open_encrypted(path, key, options),
        None => Database::open_with(path, options),
    }
}
