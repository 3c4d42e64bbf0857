//! The key a database is encrypted under, and the file that keeps the
//! database's data key wrapped under it.
//!
//! Envelope encryption: every file is encrypted under a random data key
//! drawn when the database is created. The key-check file `ENCRYPTION`
//! holds that data key sealed (AES-256-GCM) under a key-encryption key
//! derived from the user's key with HKDF-SHA256 and a random salt. A wrong
//! user key fails to open the sealed data key, which tells it from damage;
//! changing the user's key ([`rekey`]) rewrites this one small file and no
//! data. Its layout is in `docs/storage.md`.

use std::fmt;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::codec::crc;
use crate::error::{Error, Result};
use crate::io::Vfs;

/// Name of the key-check file in the database directory.
pub const KEY_CHECK_FILE: &str = "ENCRYPTION";
/// The key-check file while it is being replaced.
pub(crate) const KEY_CHECK_TMP: &str = "ENCRYPTION.tmp";

const MAGIC: &[u8; 8] = b"TSRKEYCK";
const FORMAT: u32 = 1;
/// AES-256-GCM, data key derived with HKDF-SHA256.
const CIPHER_AES256GCM_HKDF: u32 = 1;
const SALT_LEN: usize = 32;
const DATA_KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// magic, format, cipher, salt, nonce, sealed data key, tag, CRC-32C.
const CHECK_LEN: usize = 8 + 4 + 4 + SALT_LEN + NONCE_LEN + DATA_KEY_LEN + TAG_LEN + 4;
const HKDF_INFO: &[u8] = b"tessera key-encryption key v1";

/// A 256-bit encryption key given by the user. Its bytes are wiped from
/// memory when it is dropped and never printed.
#[derive(Clone)]
pub struct Key(Zeroizing<[u8; 32]>);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key(Zeroizing::new(bytes))
    }

    /// A key written as 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Key> {
        let text = text.trim();
        let bad = || {
            Error::InvalidInput(
                "an encryption key is 64 hexadecimal digits (32 bytes), e.g. from `openssl rand -hex 32`"
                    .into(),
            )
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(bad());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, slot) in key.iter_mut().enumerate() {
            *slot = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Key(key))
    }

    /// A key read from a file holding 64 hexadecimal digits or 32 raw
    /// bytes. On Unix the file must not be readable by group or others.
    pub fn from_file(path: &Path) -> Result<Key> {
        let io = |e| Error::io("read key file", path, e);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(Error::InvalidInput(format!(
                    "key file {} is accessible to other users (mode {:o}); run `chmod 600` on it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        let bytes = Zeroizing::new(std::fs::read(path).map_err(io)?);
        if let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(Key::from_bytes(raw));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            Error::InvalidInput(format!(
                "key file {} holds neither 32 bytes nor 64 hexadecimal digits",
                path.display()
            ))
        })?;
        Key::from_hex(text)
    }

    /// The key-encryption key for the key-check file with `salt`.
    fn derive(&self, salt: &[u8]) -> Result<LessSafeKey> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(self.0.as_slice());
        let info = [HKDF_INFO];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| Error::InvalidInput("cannot derive the key-encryption key".into()))?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

/// A database's data key.
pub(crate) type DataKey = Zeroizing<[u8; DATA_KEY_LEN]>;

/// The cipher of a data key.
pub(crate) fn cipher(data_key: &DataKey) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, data_key.as_slice())
        .map(LessSafeKey::new)
        .map_err(|_| Error::InvalidInput("cannot load the data key".into()))
}

/// Random bytes from the operating system.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| Error::io("random", "", std::io::Error::other("no system randomness")))?;
    Ok(out)
}

/// Writes the key-check file of a new encrypted database durably, with a
/// new data key, and returns that data key.
pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, key: &Key) -> Result<DataKey> {
    let data_key: DataKey = Zeroizing::new(random()?);
    write(vfs, dir, key, &data_key)?;
    Ok(data_key)
}

/// Writes `data_key` sealed under `key` as the key-check file, atomically
/// (temporary file, fsync, rename, directory fsync).
pub(crate) fn write(vfs: &dyn Vfs, dir: &Path, key: &Key, data_key: &DataKey) -> Result<()> {
    let salt: [u8; SALT_LEN] = random()?;
    let nonce: [u8; NONCE_LEN] = random()?;
    let mut sealed = Zeroizing::new(**data_key);
    let tag = key
        .derive(&salt)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(MAGIC),
            sealed.as_mut_slice(),
        )
        .map_err(|_| Error::InvalidInput("cannot seal the data key".into()))?;
    let mut bytes = Vec::with_capacity(CHECK_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    bytes.extend_from_slice(&CIPHER_AES256GCM_HKDF.to_le_bytes());
    bytes.extend_from_slice(&salt);
    bytes.extend_from_slice(&nonce);
    bytes.extend_from_slice(sealed.as_slice());
    bytes.extend_from_slice(tag.as_ref());
    let sum = crc(&bytes);
    bytes.extend_from_slice(&sum.to_le_bytes());
    let path = dir.join(KEY_CHECK_FILE);
    let tmp = dir.join(KEY_CHECK_TMP);
    let mut f = vfs.create(&tmp)?;
    f.append(&bytes)?;
    f.sync()?;
    drop(f);
    vfs.rename(&tmp, &path)?;
    vfs.sync_dir(dir)
}

/// Opens the key-check file with `key`: the data key, or
/// [`Error::WrongKey`] when the key is not the database's.
pub(crate) fn check(vfs: &dyn Vfs, dir: &Path, key: &Key) -> Result<DataKey> {
    let path = dir.join(KEY_CHECK_FILE);
    let bytes = vfs.read(&path)?;
    if bytes.len() != CHECK_LEN || &bytes[..8] != MAGIC {
        return Err(Error::corrupt(&path, "not a Tessera key-check file"));
    }
    let (body, sum) = bytes.split_at(CHECK_LEN - 4);
    if sum != crc(body).to_le_bytes() {
        return Err(Error::corrupt(&path, "key-check file checksum mismatch"));
    }
    let word = |at: usize| u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    if word(8) != FORMAT || word(12) != CIPHER_AES256GCM_HKDF {
        return Err(Error::corrupt(
            &path,
            format!(
                "key-check format {} / cipher {} is not one this version reads",
                word(8),
                word(12)
            ),
        ));
    }
    let salt = &body[16..16 + SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&body[16 + SALT_LEN..16 + SALT_LEN + NONCE_LEN]);
    let mut sealed = Zeroizing::new(body[16 + SALT_LEN + NONCE_LEN..].to_vec());
    let kek = key.derive(salt)?;
    match kek.open_in_place(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(MAGIC),
        sealed.as_mut_slice(),
    ) {
        Ok(plain) => {
            let mut data_key: DataKey = Zeroizing::new([0; DATA_KEY_LEN]);
            data_key.copy_from_slice(plain);
            Ok(data_key)
        }
        Err(_) => Err(Error::WrongKey(dir.to_path_buf())),
    }
}
