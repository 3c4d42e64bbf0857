//! The write-ahead log.
//!
//! The log is a sequence of files `wal-<seq>.twal`, each a 16-byte header and
//! then records. A record is one atomic commit:
//!
//! ```text
//! [ payload length u32 ][ CRC-32C of payload u32 ][ payload: lsn u64 | postcard(WalCommit) ]
//! ```
//!
//! On replay a record that runs past the end of the last file, or fails its
//! checksum with nothing valid after it, is a torn write from a crash and is
//! dropped; a bad record followed by a valid one is corruption.

use std::path::{Path, PathBuf};

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::codec::{LeReader, PutLe, crc, from_postcard, to_postcard};
use crate::error::{Error, Result};
use crate::index::parse_bitmap;
use crate::io::{Vfs, WritableFile};

/// Magic bytes opening every WAL file.
pub const WAL_MAGIC: &[u8; 8] = b"TESSWAL1";
/// Current WAL format version.
pub const WAL_FORMAT: u32 = 1;
/// Size of a WAL file header.
pub const WAL_HEADER_LEN: usize = 16;
/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest record accepted (a larger length field is damage, not data).
pub const MAX_RECORD_LEN: u32 = 1 << 30;

/// File name of WAL file `seq`.
pub fn file_name(seq: u64) -> String {
    format!("wal-{seq:020}.twal")
}

/// Parses a WAL file name back to its sequence number.
pub fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("wal-")?
        .strip_suffix(".twal")?
        .parse()
        .ok()
}

/// One operation of a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WalOp {
    /// Rows appended to the in-memory segment `segment` of table `table`,
    /// starting at row `first_row`, as an Arrow IPC stream.
    Append {
        /// Table id.
        table: u64,
        /// In-memory segment id.
        segment: u64,
        /// Row position of the first appended row in that segment.
        first_row: u64,
        /// Arrow IPC stream (schema + one batch).
        ipc: Vec<u8>,
    },
    /// Rows deleted from segment `segment` (on disk or in memory) of table `table`.
    Delete {
        /// Table id.
        table: u64,
        /// Segment id.
        segment: u64,
        /// Portable Roaring bitmap of the row positions.
        rows: Vec<u8>,
    },
}

/// The payload of one record: everything one commit changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalCommit {
    /// The operations, applied in order.
    pub ops: Vec<WalOp>,
}

/// A decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    /// Log sequence number.
    pub lsn: u64,
    /// The commit.
    pub commit: WalCommit,
}

impl WalOp {
    /// The deleted rows of a `Delete` op.
    pub fn delete_rows(rows: &[u8], path: &Path) -> Result<RoaringBitmap> {
        parse_bitmap(rows, path)
    }
}

/// Encodes one record, header included.
pub fn encode_record(lsn: u64, commit: &WalCommit) -> Result<Vec<u8>> {
    let body = to_postcard(commit, "log record")?;
    let mut payload = Vec::with_capacity(body.len() + 8);
    payload.put_u64(lsn);
    payload.extend_from_slice(&body);
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD_LEN)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "a single commit of {} bytes is larger than the 1 GiB limit; split it",
                payload.len()
            ))
        })?;
    let mut out = Vec::with_capacity(payload.len() + RECORD_HEADER_LEN);
    out.put_u32(len);
    out.put_u32(crc(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

fn header() -> Vec<u8> {
    let mut h = Vec::with_capacity(WAL_HEADER_LEN);
    h.extend_from_slice(WAL_MAGIC);
    h.put_u32(WAL_FORMAT);
    let c = crc(&h);
    h.put_u32(c);
    h
}

/// The active WAL file, appended to by the commit leader.
#[derive(Debug)]
pub struct WalWriter {
    seq: u64,
    path: PathBuf,
    file: Box<dyn WritableFile>,
    bytes: u64,
}

impl WalWriter {
    /// Creates WAL file `seq` in `dir` durably (header written, file and
    /// directory synced).
    pub fn create(vfs: &dyn Vfs, dir: &Path, seq: u64) -> Result<WalWriter> {
        let path = dir.join(file_name(seq));
        let mut file = vfs.create(&path)?;
        let h = header();
        file.append(&h)?;
        file.sync()?;
        vfs.sync_dir(dir)?;
        Ok(WalWriter {
            seq,
            path,
            file,
            bytes: h.len() as u64,
        })
    }

    /// The file's sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes written to this file so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends encoded records (not yet durable).
    pub fn append(&mut self, data: &[u8]) -> Result<()> {
        self.file.append(data)?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What reading one WAL file found.
#[derive(Debug, Default)]
pub struct WalScan {
    /// The valid records, in order.
    pub records: Vec<WalRecord>,
    /// Offset of the first byte after the last valid record.
    pub valid_len: u64,
    /// Bytes after `valid_len` (a torn tail when the file is the last one).
    pub tail_bytes: u64,
}

/// Reads a WAL file. With `tolerate_tail`, a damaged record with no valid
/// record after it ends the file (a torn write); the caller must then check
/// that no later file holds records. Without it, any damage is corruption.
/// `prev_lsn` is the last sequence number of the previous file.
pub fn read_file(
    vfs: &dyn Vfs,
    path: &Path,
    tolerate_tail: bool,
    prev_lsn: Option<u64>,
) -> Result<WalScan> {
    let last = tolerate_tail;
    let data = vfs.read(path)?;
    if data.len() < WAL_HEADER_LEN {
        if last {
            // Crashed while creating the file: nothing in it was ever acknowledged.
            return Ok(WalScan {
                records: Vec::new(),
                valid_len: 0,
                tail_bytes: data.len() as u64,
            });
        }
        return Err(Error::corrupt(path, "WAL file shorter than its header"));
    }
    if data[..WAL_HEADER_LEN] != header()[..] {
        return Err(Error::corrupt(
            path,
            "WAL header is damaged or of an unknown version",
        ));
    }
    let mut scan = WalScan::default();
    let mut pos = WAL_HEADER_LEN;
    let mut prev_lsn = prev_lsn;
    while pos < data.len() {
        match parse_record(&data[pos..], path, None) {
            Some((rec, len)) => {
                if prev_lsn.is_some_and(|p| rec.lsn <= p) {
                    return Err(Error::corrupt(
                        path,
                        format!("log sequence numbers go backwards at offset {pos}"),
                    ));
                }
                prev_lsn = Some(rec.lsn);
                scan.records.push(rec);
                pos += len;
            }
            None => {
                // A bad record. A crash can only tear the unsynced tail, so a
                // valid record anywhere after it means real damage.
                let later = (pos + 1..data.len())
                    .find(|p| parse_record(&data[*p..], path, prev_lsn).is_some());
                if !last || later.is_some() {
                    return Err(Error::corrupt(
                        path,
                        format!("damaged log record at offset {pos} with valid records after it"),
                    ));
                }
                break;
            }
        }
    }
    scan.valid_len = pos as u64;
    scan.tail_bytes = (data.len() - pos) as u64;
    Ok(scan)
}

/// Parses one record at the start of `buf`; `None` if it is torn or damaged.
/// A record must continue the sequence after `prev_lsn` (checked before the
/// checksum, which keeps the search for valid records after damage cheap).
fn parse_record(buf: &[u8], path: &Path, prev_lsn: Option<u64>) -> Option<(WalRecord, usize)> {
    let mut r = LeReader::new(buf, path);
    let len = r.u32().ok()?;
    if !(8..=MAX_RECORD_LEN).contains(&len) {
        return None;
    }
    let sum = r.u32().ok()?;
    let payload = r.bytes(len as usize).ok()?;
    let lsn = LeReader::new(payload, path).u64().ok()?;
    if prev_lsn.is_some_and(|p| lsn <= p || lsn - p > 1 << 32) {
        return None;
    }
    if crc(payload) != sum {
        return None;
    }
    let commit: WalCommit = from_postcard(&payload[8..], path, "log record").ok()?;
    Some((WalRecord { lsn, commit }, RECORD_HEADER_LEN + len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimVfs;

    fn commit(n: u8) -> WalCommit {
        WalCommit {
            ops: vec![WalOp::Delete {
                table: 1,
                segment: 2,
                rows: vec![n; 40],
            }],
        }
    }

    fn write_log(vfs: &SimVfs, records: usize) -> (PathBuf, Vec<usize>) {
        let dir = Path::new("/db");
        let mut w = WalWriter::create(vfs, dir, 1).unwrap();
        let mut ends = Vec::new();
        for i in 0..records {
            w.append(&encode_record(i as u64 + 1, &commit(i as u8)).unwrap())
                .unwrap();
            ends.push(w.bytes() as usize);
        }
        w.sync().unwrap();
        (dir.join(file_name(1)), ends)
    }

    #[test]
    fn records_round_trip() {
        let vfs = SimVfs::new();
        let (path, _) = write_log(&vfs, 3);
        let scan = read_file(&vfs, &path, false, None).unwrap();
        assert_eq!(scan.records.len(), 3);
        assert_eq!(
            scan.records[2],
            WalRecord {
                lsn: 3,
                commit: commit(2)
            }
        );
        assert_eq!(scan.tail_bytes, 0);
    }

    #[test]
    fn a_torn_tail_is_dropped_but_damage_before_a_valid_record_is_corruption() {
        let vfs = SimVfs::new();
        let (path, ends) = write_log(&vfs, 3);
        // Tear the last record: the first two survive, the tail is reported.
        let data = vfs.read(&path).unwrap();
        let torn = &data[..ends[2] - 5];
        let mut f = vfs.create(&path).unwrap();
        f.append(torn).unwrap();
        let scan = read_file(&vfs, &path, true, None).unwrap();
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.tail_bytes as usize, ends[2] - 5 - ends[1]);
        // Without tolerance (verify), the same tail is an error.
        assert!(
            read_file(&vfs, &path, false, None)
                .unwrap_err()
                .is_corruption()
        );
        // A flipped byte in the first record, with valid records after it.
        let mut damaged = data.clone();
        damaged[WAL_HEADER_LEN + 12] ^= 1;
        let mut f = vfs.create(&path).unwrap();
        f.append(&damaged).unwrap();
        let err = read_file(&vfs, &path, true, None).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(err.to_string().contains("offset 16"), "{err}");
    }

    #[test]
    fn sequence_numbers_must_increase() {
        let vfs = SimVfs::new();
        let dir = Path::new("/db");
        let mut w = WalWriter::create(&vfs, dir, 1).unwrap();
        w.append(&encode_record(5, &commit(0)).unwrap()).unwrap();
        w.append(&encode_record(4, &commit(1)).unwrap()).unwrap();
        let err = read_file(&vfs, &dir.join(file_name(1)), true, None).unwrap_err();
        assert!(err.is_corruption());
    }
}
