//! The `end` note of a run that has ended: where its journal's last record, the run's end,
//! starts, so that resuming an ended run reads two records (its first and its end), not the
//! whole journal.
//!
//! The note is a cache, never the truth: 28 bytes,
//!
//! ```text
//! b"MINDERE1" (8) | journal length: u64 | offset of the end record: u64 | CRC-32 of the 24 bytes before
//! ```
//!
//! written (to `end.tmp`, renamed to `end`, neither synced) after the sync that made the end
//! record durable, or by an open that read a whole journal ending with a run end. It is used
//! only when its CRC matches, the journal is exactly as long as it says, no `durable-offset`
//! record waits, and the records at offset 12 and at its offset are intact (length, CRC,
//! a known event), the last one a run's end ending exactly at the end of the file. Anything else
//! (no note, a torn or stale note, a journal cut or grown since) and the journal is read
//! whole, as before the note existed. Since the note is written only after the end record was
//! synced, a note that survives a crash describes durable bytes.

use super::codec::{decode_one, record_len, FIRST_RECORD, MAGIC, VERSION};
use super::lock::run_file_options;
use crate::journal::Event;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The note's file name inside a run directory.
pub(super) const END: &str = "end";
/// The note while it is written.
const END_TMP: &str = "end.tmp";
const END_MAGIC: &[u8; 8] = b"MINDERE1";
const NOTE_LEN: usize = 28;

/// Where the end record of a journal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EndNote {
    /// The journal's length, up to the end of the end record.
    pub(super) journal_len: u64,
    /// Where the end record starts.
    pub(super) end_offset: u64,
}

impl EndNote {
    fn to_bytes(self) -> [u8; NOTE_LEN] {
        let mut bytes = [0u8; NOTE_LEN];
        bytes[..8].copy_from_slice(END_MAGIC);
        bytes[8..16].copy_from_slice(&self.journal_len.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.end_offset.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..24]);
        bytes[24..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Option<EndNote> {
        if bytes.len() != NOTE_LEN || &bytes[..8] != END_MAGIC {
            return None;
        }
        let crc = u32::from_le_bytes(bytes[24..28].try_into().ok()?);
        if crc32fast::hash(&bytes[..24]) != crc {
            return None;
        }
        Some(EndNote {
            journal_len: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
            end_offset: u64::from_le_bytes(bytes[16..24].try_into().ok()?),
        })
    }
}

/// Writes the note of run directory `dir` (to a temporary file renamed into place; not synced:
/// a note lost in a crash only makes the next resume read the whole journal).
pub(super) fn record_end(dir: &Path, note: EndNote) -> io::Result<()> {
    let tmp = dir.join(END_TMP);
    let mut file = run_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(&note.to_bytes())?;
    drop(file);
    fs::rename(&tmp, dir.join(END))
}

/// Writes the note, logging (not returning) a failure: the note only saves time.
pub(super) fn note_end(dir: &Path, note: EndNote) {
    if let Err(e) = record_end(dir, note) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot write the end note of a run");
    }
}

/// The note of run directory `dir`, if there is a well-formed one.
pub(super) fn read_note(dir: &Path) -> Option<EndNote> {
    let mut file = run_file_options().read(true).open(dir.join(END)).ok()?;
    let mut bytes = Vec::with_capacity(NOTE_LEN);
    Read::by_ref(&mut file)
        .take(NOTE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    EndNote::from_bytes(&bytes)
}

/// The first and the end event of `journal` (open for reading) as `note` places them, if the
/// journal matches the note (see the module docs); `None` if it does not.
pub(super) fn read_ends(journal: &File, note: EndNote) -> Option<(Event, Event)> {
    let len = journal.metadata().ok()?.len();
    if len != note.journal_len
        || note.end_offset < FIRST_RECORD as u64
        || note.end_offset >= note.journal_len
    {
        return None;
    }
    let read_at = |offset: u64, size: usize| -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; size];
        journal.read_exact_at(&mut bytes, offset).ok()?;
        Some(bytes)
    };
    // The header and the first record.
    let head = read_at(0, FIRST_RECORD + 8)?;
    if &head[..MAGIC.len()] != MAGIC
        || u32::from_le_bytes(head[MAGIC.len()..FIRST_RECORD].try_into().ok()?) != VERSION
    {
        return None;
    }
    let first_len = record_len(&head[FIRST_RECORD..])?;
    // The first record lies before the end record (a journal of one record takes the
    // long way).
    if FIRST_RECORD as u64 + first_len as u64 > note.end_offset {
        return None;
    }
    let end_size = usize::try_from(note.journal_len - note.end_offset).ok()?;
    let end_bytes = read_at(note.end_offset, end_size)?;
    if record_len(&end_bytes)? != end_size {
        return None;
    }
    let (end, _) = decode_one(&end_bytes)?;
    end.run_end()?;
    let (first, _) = decode_one(&read_at(FIRST_RECORD as u64, first_len)?)?;
    Some((first, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_round_trips_and_a_damaged_one_is_refused() {
        let note = EndNote {
            journal_len: 1_234_567,
            end_offset: 1_234_500,
        };
        let bytes = note.to_bytes();
        assert_eq!(EndNote::from_bytes(&bytes), Some(note));
        for i in 0..NOTE_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert_eq!(EndNote::from_bytes(&bad), None, "byte {i} flipped");
        }
        assert_eq!(EndNote::from_bytes(&bytes[..NOTE_LEN - 1]), None);
        assert_eq!(EndNote::from_bytes(&[]), None);
    }
}
