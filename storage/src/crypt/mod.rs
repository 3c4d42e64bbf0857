//! Encryption at rest, chosen when a database is created.
//!
//! A database created with a [`Key`] gets a key-check file (`key.rs`) and
//! every other file it writes (segments, log, manifests, deletion vectors,
//! archive files) goes through [`EncryptedVfs`] (`vfs.rs`), which seals it in
//! AES-256-GCM frames (`file.rs`). Opening decides, before anything else is
//! read, whether the key given fits the directory:
//!
//! | directory | no key | a key |
//! |---|---|---|
//! | new | plaintext database | encrypted database |
//! | plaintext database | opens | [`Error::NotEncrypted`] |
//! | encrypted database | [`Error::KeyRequired`] | opens, or [`Error::WrongKey`] |

mod file;
mod key;
mod vfs;

use std::path::Path;
use std::sync::Arc;

pub use key::{KEY_CHECK_FILE, Key};
pub use vfs::EncryptedVfs;

use crate::error::{Error, Result};
use crate::io::Vfs;
use crate::{manifest, wal};

/// The file system the store at `dir` reads and writes through: `vfs`
/// itself, or `vfs` under encryption; and whether it is encrypted.
pub(crate) fn open(
    dir: &Path,
    vfs: Arc<dyn Vfs>,
    key: Option<&Key>,
) -> Result<(Arc<dyn Vfs>, bool)> {
    let encrypted = vfs.exists(&dir.join(KEY_CHECK_FILE))?;
    let data_key = match (encrypted, key) {
        (false, None) => return Ok((vfs, false)),
        (true, None) => return Err(Error::KeyRequired(dir.to_path_buf())),
        (true, Some(key)) => key::check(vfs.as_ref(), dir, key)?,
        (false, Some(key)) => {
            let existing = vfs.list(dir)?.iter().any(|name| {
                name == manifest::CURRENT
                    || manifest::parse_file_name(name).is_some()
                    || wal::parse_file_name(name).is_some()
            });
            if existing {
                return Err(Error::NotEncrypted(dir.to_path_buf()));
            }
            key::create(vfs.as_ref(), dir, key)?
        }
    };
    let encrypted = EncryptedVfs::new(vfs, dir, key::cipher(&data_key)?);
    Ok((Arc::new(encrypted), true))
}

/// Puts the data key of the encrypted database at `dir` under `new`
/// instead of `current`. The files stay as they are: only the key-check
/// file is replaced, atomically.
pub(crate) fn rekey(vfs: &dyn Vfs, dir: &Path, current: &Key, new: &Key) -> Result<()> {
    if !vfs.exists(&dir.join(KEY_CHECK_FILE))? {
        return Err(Error::NotEncrypted(dir.to_path_buf()));
    }
    let data_key = key::check(vfs, dir, current)?;
    key::write(vfs, dir, new, &data_key)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::file::{FRAME_OVERHEAD, FRAME_PLAIN, HEADER_LEN};
    use super::*;
    use crate::sim::SimVfs;
    use crate::{Options, Store};

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    fn opts(key: Option<Key>) -> Options {
        Options {
            background: false,
            encryption: key,
            ..Options::default()
        }
    }

    fn encrypted(sim: &Arc<SimVfs>) -> Arc<dyn Vfs> {
        sim.create_dir_all(Path::new("/db")).unwrap();
        open(Path::new("/db"), Arc::clone(sim) as _, Some(&key(7)))
            .unwrap()
            .0
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"MARKER-0123456789"[i % 17]).collect()
    }

    #[test]
    fn files_round_trip_in_frames_and_hold_no_plaintext() {
        let sim = Arc::new(SimVfs::new());
        let vfs = encrypted(&sim);
        let path = Path::new("/db/f");
        let data = text(2 * FRAME_PLAIN + 1000);
        let mut f = vfs.create(path).unwrap();
        f.append(&data[..100]).unwrap();
        f.sync().unwrap(); // a short frame in the middle
        f.append(&data[100..]).unwrap();
        f.sync().unwrap();
        drop(f);
        assert_eq!(vfs.read(path).unwrap(), data);
        assert_eq!(vfs.len(path).unwrap(), data.len() as u64);
        for (off, len) in [
            (0, 10),
            (95, 10),
            (FRAME_PLAIN as u64 - 3, 7),
            (5, 2 * FRAME_PLAIN as u64),
        ] {
            let got = vfs.read_at(path, off, len).unwrap();
            assert_eq!(
                got,
                &data[off as usize..(off + len) as usize],
                "{off}+{len}"
            );
        }
        assert!(vfs.read_at(path, data.len() as u64 - 1, 2).is_err());
        assert_eq!(vfs.map(path).unwrap().as_slice(), &data[..]);
        let raw = sim.read(path).unwrap();
        assert_eq!(
            raw.len() as u64,
            HEADER_LEN + data.len() as u64 + 4 * FRAME_OVERHEAD
        );
        assert!(!raw.windows(6).any(|w| w == b"MARKER"));
    }

    #[test]
    fn a_torn_last_frame_is_an_unsynced_write_and_a_damaged_one_inside_is_corruption() {
        for seed in 1..40u64 {
            let sim = Arc::new(SimVfs::new());
            let vfs = encrypted(&sim);
            let path = Path::new("/db/wal");
            let data = text(5000);
            let mut f = vfs.create(path).unwrap();
            f.append(&data[..3000]).unwrap();
            f.sync().unwrap();
            f.append(&data[3000..]).unwrap();
            drop(f); // handed to the "kernel", never synced
            sim.sync_dir(Path::new("/db")).unwrap();
            sim.crash(Some(seed));
            let vfs = encrypted(&sim);
            let got = vfs.read(path).unwrap();
            assert!(
                got == data[..3000] || got == data,
                "seed {seed}: {} bytes",
                got.len()
            );
            assert_eq!(vfs.len(path).unwrap(), got.len() as u64);
        }
        let sim = Arc::new(SimVfs::new());
        let vfs = encrypted(&sim);
        let path = Path::new("/db/seg");
        let mut f = vfs.create(path).unwrap();
        f.append(&text(3 * FRAME_PLAIN)).unwrap();
        f.sync().unwrap();
        drop(f);
        sim.corrupt(path, HEADER_LEN as usize + 100, b"x").unwrap();
        let vfs = encrypted(&sim);
        let err = vfs.read(path).unwrap_err();
        assert!(
            err.is_corruption() && err.to_string().contains("frame 0"),
            "{err}"
        );
        assert!(vfs.read_at(path, 10, 10).unwrap_err().is_corruption());
        assert_eq!(
            vfs.read_at(path, FRAME_PLAIN as u64, 5).unwrap(),
            &text(FRAME_PLAIN + 5)[FRAME_PLAIN..]
        );
    }

    #[test]
    fn a_database_opens_only_with_its_key() {
        let sim = Arc::new(SimVfs::new());
        let store = Store::open_with("/db", opts(Some(key(1))), Arc::clone(&sim) as _).unwrap();
        store
            .write_side_file("t/a", b"MARKER in a side file")
            .unwrap();
        drop(store);
        let err = Store::open_with("/db", opts(Some(key(2))), Arc::clone(&sim) as _).unwrap_err();
        assert!(matches!(err, Error::WrongKey(_)), "{err}");
        assert_eq!(err.sqlstate(), "28000");
        let err = Store::open_with("/db", opts(None), Arc::clone(&sim) as _).unwrap_err();
        assert!(matches!(err, Error::KeyRequired(_)), "{err}");
        let store = Store::open_with("/db", opts(Some(key(1))), Arc::clone(&sim) as _).unwrap();
        assert_eq!(
            store.read_side_file("t/a").unwrap(),
            b"MARKER in a side file"
        );
        assert!(store.verify().unwrap().is_ok());
        drop(store);
        for (path, bytes) in sim.files() {
            assert!(
                !bytes.windows(6).any(|w| w == b"MARKER"),
                "{}",
                path.display()
            );
        }

        let plain = Arc::new(SimVfs::new());
        drop(Store::open_with("/p", opts(None), Arc::clone(&plain) as _).unwrap());
        let err = Store::open_with("/p", opts(Some(key(1))), Arc::clone(&plain) as _).unwrap_err();
        assert!(matches!(err, Error::NotEncrypted(_)), "{err}");
        assert_eq!(err.sqlstate(), "55000");
    }

    #[test]
    fn a_crash_while_creating_an_encrypted_database_creates_it_again_or_opens_it() {
        for n in 1..=8 {
            let sim = Arc::new(SimVfs::new());
            sim.fail_at(n, crate::sim::FaultMode::Persistent);
            let created = Store::open_with("/db", opts(Some(key(1))), Arc::clone(&sim) as _);
            drop(created);
            sim.crash(Some(n));
            let store = Store::open_with("/db", opts(Some(key(1))), Arc::clone(&sim) as _)
                .unwrap_or_else(|e| panic!("op {n}: {e}"));
            store.write_side_file("x", b"MARKER").unwrap();
            drop(store);
            let err = Store::open_with("/db", opts(None), Arc::clone(&sim) as _).unwrap_err();
            assert!(matches!(err, Error::KeyRequired(_)), "op {n}: {err}");
        }
    }

    #[test]
    fn rekeying_seals_the_data_key_anew_and_the_old_key_stops_opening() {
        let sim = Arc::new(SimVfs::new());
        let store = Store::open_with("/db", opts(Some(key(1))), Arc::clone(&sim) as _).unwrap();
        store.write_side_file("a", b"before").unwrap();
        let err = store.rekey(&key(9), &key(2)).unwrap_err();
        assert!(matches!(err, Error::WrongKey(_)), "{err}");
        store.rekey(&key(1), &key(2)).unwrap();
        store.write_side_file("b", b"after").unwrap();
        drop(store);
        let err = Store::open_with("/db", opts(Some(key(1))), Arc::clone(&sim) as _).unwrap_err();
        assert!(matches!(err, Error::WrongKey(_)), "{err}");
        let store = Store::open_with("/db", opts(Some(key(2))), Arc::clone(&sim) as _).unwrap();
        assert_eq!(store.read_side_file("a").unwrap(), b"before");
        assert_eq!(store.read_side_file("b").unwrap(), b"after");
        assert!(store.verify().unwrap().is_ok());
        drop(store);
        // A crash at any step of a rekey leaves one key or the other.
        for n in 1..=6 {
            let store = Store::open_with("/db", opts(Some(key(2))), Arc::clone(&sim) as _).unwrap();
            sim.fail_at(n, crate::sim::FaultMode::Persistent);
            let _ = store.rekey(&key(2), &key(3));
            drop(store);
            sim.crash(Some(n));
            let two = Store::open_with("/db", opts(Some(key(2))), Arc::clone(&sim) as _).map(drop);
            let three =
                Store::open_with("/db", opts(Some(key(3))), Arc::clone(&sim) as _).map(drop);
            assert!(two.is_ok() != three.is_ok(), "op {n}: {two:?} {three:?}");
            if three.is_ok() {
                Store::open_with("/db", opts(Some(key(3))), Arc::clone(&sim) as _)
                    .unwrap()
                    .rekey(&key(3), &key(2))
                    .unwrap();
            }
        }
        let plain = Store::open_with("/p", Options::default(), Arc::clone(&sim) as _).unwrap();
        assert!(matches!(
            plain.rekey(&key(1), &key(2)),
            Err(Error::NotEncrypted(_))
        ));
    }

    #[test]
    fn keys_are_read_from_hex_and_never_printed() {
        let k = Key::from_hex(&"ab".repeat(32)).unwrap();
        assert_eq!(format!("{k:?}"), "Key(<redacted>)");
        for bad in ["", "ab", &"zz".repeat(32), &"ab".repeat(33)] {
            assert!(Key::from_hex(bad).is_err(), "{bad}");
        }
    }
}
