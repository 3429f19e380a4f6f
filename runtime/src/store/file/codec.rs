//! The bytes of a journal: the format constants, the CRC-32 check, and the encoding and decoding of
//! records, with the torn-tail rule (see the format and recovery rules in the parent module).

use crate::journal::Event;
use crate::store::StoreError;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::Path;

use super::flat::decode_event;
use super::io_error;

/// The first 8 bytes of every journal file.
pub(super) const MAGIC: &[u8; 8] = b"MINDERJ1";
/// The format version written after the magic.
pub(super) const VERSION: u32 = 1;
/// Magic plus version.
const HEADER_LEN: usize = 12;
/// Payload length plus CRC.
const RECORD_HEADER_LEN: usize = 8;

/// CRC-32/ISO-HDLC of `bytes` (the zlib / PNG one), from `crc32fast`, which picks the
/// fastest implementation the CPU has (carry-less multiplication where available).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Appends one record (`length | crc | json`) for `event` to `out`. The event is serialized in
/// place after a placeholder header, which is then filled in: one buffer, no copy.
pub(super) fn encode_record(event: &Event, out: &mut Vec<u8>) -> Result<(), StoreError> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    if let Err(e) = serde_json::to_writer(&mut *out, event) {
        out.truncate(start);
        return Err(io_error(
            "cannot encode a journal event".to_string(),
            e.into(),
        ));
    }
    let payload = &out[start + RECORD_HEADER_LEN..];
    let Ok(len) = u32::try_from(payload.len()) else {
        let size = payload.len();
        out.truncate(start);
        return Err(io_error(
            "cannot journal an event".to_string(),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the event is {size} bytes, over the 4 GiB limit"),
            ),
        ));
    };
    let crc = crc32(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A decoded journal: its events and the length of the intact prefix of the file.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) events: Vec<Event>,
    pub(super) good_len: usize,
}

fn le_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn corrupt(path: &Path, offset: usize, what: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "corrupt journal {} at byte offset {offset}: {what} (the file was not modified)",
        path.display()
    ))
}

/// Checks the 12-byte header at the start of `bytes`.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(path, 0, "not a minder journal (bad header)"));
    }
    let version = le_u32(&bytes[MAGIC.len()..]);
    if version != VERSION {
        return Err(corrupt(
            path,
            MAGIC.len(),
            &format!("format version {version}, this build reads version {VERSION}"),
        ));
    }
    Ok(())
}

/// The error of a journal without a complete first record.
fn no_first_record(path: &Path) -> StoreError {
    // A run is created with its first event synced: without it the file was cut short.
    corrupt(
        path,
        HEADER_LEN,
        "the journal has no complete first record (a run's journal is created with its \
         first event, so the file was cut short or damaged)",
    )
}

/// What starts at an offset of a journal.
enum Record {
    /// An intact record: its event and its length.
    Event(Event, usize),
    /// The end of the intact records: the end of the file, or a torn tail.
    End,
}

/// The record at `offset` of `bytes`, which hold the journal from file offset `base` to the
/// end of the file (error messages name file offsets); see the module docs for what is a
/// torn tail and what is damage.
fn record_at(path: &Path, bytes: &[u8], offset: usize, base: usize) -> Result<Record, StoreError> {
    let corrupt = |at: usize, what: &str| corrupt(path, base + at, what);
    let rest = &bytes[offset..];
    if rest.is_empty() {
        return Ok(Record::End);
    }
    // Why the record at `offset` is bad, if it may be a torn tail.
    let torn: &str = if rest.len() < RECORD_HEADER_LEN {
        "the record header is cut short"
    } else {
        let len = le_u32(rest) as usize;
        let crc = le_u32(&rest[4..]);
        let end = RECORD_HEADER_LEN.saturating_add(len);
        if len == 0 {
            if rest.iter().any(|&b| b != 0) {
                return Err(corrupt(
                    offset,
                    "a zero-length record followed by more data",
                ));
            }
            "the rest of the file is zero bytes"
        } else if end > rest.len() {
            "the record is cut short"
        } else {
            let payload = &rest[RECORD_HEADER_LEN..end];
            if crc32(payload) != crc {
                if end < rest.len() {
                    return Err(corrupt(
                        offset,
                        "the record's checksum does not match and more data follows",
                    ));
                }
                "the last record's checksum does not match"
            } else {
                return match decode_event(payload) {
                    Ok(event) => Ok(Record::Event(event, end)),
                    Err(e) => Err(corrupt(
                        offset,
                        &format!(
                            "the record's checksum matches but it is not a known \
                             event ({e}; written by a newer minder?)"
                        ),
                    )),
                };
            }
        }
    };
    if let Some(next) = intact_record_after(bytes, offset + 1) {
        return Err(corrupt(
            offset,
            &format!(
                "{torn}, yet an intact record follows at byte offset {}",
                base + next
            ),
        ));
    }
    Ok(Record::End)
}

/// Decodes a whole journal file; see the module docs for what is a torn tail and what is damage.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Decoded, StoreError> {
    check_header(path, bytes)?;
    let mut events = Vec::with_capacity(count_records(bytes));
    let mut offset = HEADER_LEN;
    while let Record::Event(event, len) = record_at(path, bytes, offset, 0)? {
        events.push(event);
        offset += len;
    }
    if events.is_empty() {
        return Err(no_first_record(path));
    }
    Ok(Decoded {
        events,
        good_len: offset,
    })
}

/// Reads a journal record by record from a file, without holding it in memory: the same
/// rules as [`decode`], record by record. At the first record that is not intact, the rest of
/// the file (normally a few bytes of torn tail) is read whole to tell a torn tail from damage.
pub(super) struct Reader<'a> {
    path: &'a Path,
    file: &'a File,
    reader: io::BufReader<io::Take<File>>,
    /// The file offset of the next record.
    offset: usize,
    /// Where the trusted part of the file ends.
    len: usize,
    payload: Vec<u8>,
    /// Records read.
    count: u64,
    done: bool,
}

impl<'a> Reader<'a> {
    /// Starts reading `file`, `len` bytes of it trusted, at its header (which is checked).
    pub(super) fn new(path: &'a Path, file: &'a File, len: usize) -> Result<Self, StoreError> {
        let read_error = |e| io_error(format!("cannot read {}", path.display()), e);
        let mut head = [0u8; HEADER_LEN];
        let got = read_at_most(file, &mut head, 0).map_err(read_error)?;
        check_header(path, &head[..got.min(len)])?;
        let mut clone = file.try_clone().map_err(read_error)?;
        clone
            .seek(io::SeekFrom::Start(HEADER_LEN as u64))
            .map_err(read_error)?;
        Ok(Reader {
            path,
            file,
            reader: io::BufReader::with_capacity(256 * 1024, clone.take((len - HEADER_LEN) as u64)),
            offset: HEADER_LEN,
            len,
            payload: Vec::new(),
            count: 0,
            done: false,
        })
    }

    /// The next event, or `None` at the end of the intact records (the offset of which is then
    /// [`Reader::good_len`]).
    pub(super) fn next_event(&mut self) -> Result<Option<Event>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let event = match self.fast_next() {
            Some(event) => Some(event),
            None => self.slow_next()?,
        };
        match event {
            Some(event) => {
                self.count += 1;
                Ok(Some(event))
            }
            None => {
                self.done = true;
                if self.count == 0 {
                    return Err(no_first_record(self.path));
                }
                Ok(None)
            }
        }
    }

    /// The length of the intact prefix of the file, once [`Reader::next_event`] returned `None`.
    pub(super) fn good_len(&self) -> usize {
        self.offset
    }

    /// The next record when it is intact, read from the buffer; `None` if anything is amiss
    /// (the reader is then left at an unknown place: [`Reader::slow_next`] reads by offset).
    fn fast_next(&mut self) -> Option<Event> {
        let remaining = self.len - self.offset;
        if remaining < RECORD_HEADER_LEN {
            return None;
        }
        let mut header = [0u8; RECORD_HEADER_LEN];
        self.reader.read_exact(&mut header).ok()?;
        let len = le_u32(&header) as usize;
        if len == 0 || len > remaining - RECORD_HEADER_LEN {
            return None;
        }
        self.payload.resize(len, 0);
        self.reader.read_exact(&mut self.payload).ok()?;
        if crc32(&self.payload) != le_u32(&header[4..]) {
            return None;
        }
        let event = decode_event(&self.payload).ok()?;
        self.offset += RECORD_HEADER_LEN + len;
        Some(event)
    }

    /// The record at the current offset, judged on the rest of the file read whole.
    fn slow_next(&mut self) -> Result<Option<Event>, StoreError> {
        let mut rest = vec![0u8; self.len - self.offset];
        let got = read_at_most(self.file, &mut rest, self.offset as u64)
            .map_err(|e| io_error(format!("cannot read {}", self.path.display()), e))?;
        rest.truncate(got);
        match record_at(self.path, &rest, 0, self.offset)? {
            Record::End => Ok(None),
            Record::Event(event, len) => {
                // A read that failed the first time: go on from the next record.
                self.offset += len;
                let mut clone = self
                    .file
                    .try_clone()
                    .map_err(|e| io_error(format!("cannot read {}", self.path.display()), e))?;
                clone
                    .seek(io::SeekFrom::Start(self.offset as u64))
                    .map_err(|e| io_error(format!("cannot read {}", self.path.display()), e))?;
                self.reader = io::BufReader::with_capacity(
                    256 * 1024,
                    clone.take((self.len - self.offset) as u64),
                );
                Ok(Some(event))
            }
        }
    }
}

/// The event of the one intact record `bytes` holds exactly (header and payload, nothing
/// after), and its CRC; `None` if it is not one.
pub(super) fn decode_one(bytes: &[u8]) -> Option<(Event, u32)> {
    let header = bytes.get(..RECORD_HEADER_LEN)?;
    let len = le_u32(header) as usize;
    let crc = le_u32(&header[4..]);
    let payload = &bytes[RECORD_HEADER_LEN..];
    if len == 0 || payload.len() != len || crc32(payload) != crc {
        return None;
    }
    let event = decode_event(payload).ok()?;
    Some((event, crc))
}

/// The length of a record whose header starts `bytes` (`None` if fewer than 8 bytes).
pub(super) fn record_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..RECORD_HEADER_LEN)?;
    Some(RECORD_HEADER_LEN + le_u32(header) as usize)
}

/// The length of the journal header, where the first record starts.
pub(super) const FIRST_RECORD: usize = HEADER_LEN;

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// How many records the length fields of a journal chain through, without checking them: the
/// capacity to decode into, so a long journal is not decoded into a vector that doubles (and
/// briefly holds twice its size) as it grows.
fn count_records(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut offset = HEADER_LEN;
    while let Some(header) = bytes.get(offset..offset + RECORD_HEADER_LEN) {
        let len = le_u32(header) as usize;
        if len == 0 || len > bytes.len() - offset - RECORD_HEADER_LEN {
            break;
        }
        count += 1;
        offset += RECORD_HEADER_LEN + len;
    }
    count
}

/// The offset of the first intact record (length > 0, matching CRC, a decodable event) that
/// starts at or after `from`, if any. Only called on the rare bad record: it tells a torn tail
/// (nothing intact after it) from a damaged length field in the middle of the file.
fn intact_record_after(bytes: &[u8], from: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(RECORD_HEADER_LEN + 1)?;
    (from..=last).find(|&at| {
        let len = le_u32(&bytes[at..]) as usize;
        let body = at + RECORD_HEADER_LEN;
        len > 0
            && len <= bytes.len() - body
            && crc32(&bytes[body..body + len]) == le_u32(&bytes[at + 4..])
            && decode_event(&bytes[body..body + len]).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// The bit-at-a-time definition of CRC-32/ISO-HDLC (reflected polynomial 0xEDB88320).
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn the_crc_matches_the_bitwise_definition_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(151) >> 3) as u8)
            .collect();
        for start in 0..8 {
            for end in start..data.len() {
                assert_eq!(
                    crc32(&data[start..end]),
                    crc32_bitwise(&data[start..end]),
                    "{start}..{end}"
                );
            }
        }
    }

    /// A record written by the hand-written CRC of earlier builds (bytes fixed here) still
    /// reads back: the format did not change with the crate.
    #[test]
    fn a_journal_written_before_the_crate_still_decodes() {
        let payload = br#"{"event":"log","key":"log#0","message":"m"}"#;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32_bitwise(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        let decoded = decode(Path::new("j"), &bytes).unwrap();
        assert_eq!(decoded.good_len, bytes.len());
        let mut again = MAGIC.to_vec();
        again.extend_from_slice(&VERSION.to_le_bytes());
        encode_record(&decoded.events[0], &mut again).unwrap();
        assert_eq!(again, bytes, "encoded byte for byte as before");
    }

    /// What the streaming reader makes of `bytes`: the events and the intact length, or the
    /// error's message.
    fn read_streaming(bytes: &[u8]) -> Result<(Vec<Event>, usize), String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let shown = Path::new("j");
        let mut reader = Reader::new(shown, &file, bytes.len()).map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        while let Some(event) = reader.next_event().map_err(|e| e.to_string())? {
            events.push(event);
        }
        Ok((events, reader.good_len()))
    }

    /// The streaming reader and the whole-file decoder agree on intact journals, torn tails
    /// and damage, error messages (and their byte offsets) included.
    #[test]
    fn the_streaming_reader_reads_as_the_decoder_does() {
        let event = |i: u32| Event::Log {
            key: format!("log#{i}"),
            message: "m".repeat(i as usize * 7),
            seq: None,
            location: None,
            node: None,
        };
        let mut good = MAGIC.to_vec();
        good.extend_from_slice(&VERSION.to_le_bytes());
        let mut starts = Vec::new();
        for i in 0..6 {
            starts.push(good.len());
            encode_record(&event(i), &mut good).unwrap();
        }
        let mut cases: Vec<Vec<u8>> = vec![good.clone(), good[..5].to_vec(), good[..12].to_vec()];
        // Every cut: a torn tail (or, inside the first record, no first record).
        for cut in 12..good.len() {
            cases.push(good[..cut].to_vec());
        }
        // Zeros after the end, a zero length followed by data, flipped bytes everywhere.
        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 40]);
        cases.push(zeros);
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x41;
            cases.push(bad);
        }
        let mut zero_len = good.clone();
        zero_len[starts[3]..starts[3] + 4].copy_from_slice(&[0; 4]);
        cases.push(zero_len);
        for bytes in &cases {
            let whole = decode(Path::new("j"), bytes)
                .map(|d| (d.events, d.good_len))
                .map_err(|e| e.to_string());
            assert_eq!(read_streaming(bytes), whole, "{} bytes", bytes.len());
        }
    }

    #[test]
    fn records_are_counted_up_to_the_first_bad_length() {
        let event = |i: u32| Event::Log {
            key: format!("log#{i}"),
            message: "m".repeat(i as usize),
            seq: None,
            location: None,
            node: None,
        };
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        assert_eq!(count_records(&bytes), 0);
        for i in 0..5 {
            encode_record(&event(i), &mut bytes).unwrap();
        }
        assert_eq!(count_records(&bytes), 5);
        let decoded = decode(Path::new("j"), &bytes).unwrap();
        assert_eq!(decoded.events.len(), 5);
        assert_eq!(decoded.events.capacity(), 5);
        assert_eq!(decoded.events[3], event(3));
        // A torn tail: the header of a sixth record, its payload missing.
        bytes.extend_from_slice(&40u32.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        assert_eq!(count_records(&bytes), 5);
    }
}
