//! The bytes of a journal: the format constants, the CRC-32 check, and the encoding and decoding of
//! records, with the torn-tail rule (see the format and recovery rules in the parent module).

use crate::journal::Event;
use crate::store::StoreError;
use std::io;
use std::path::Path;

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

/// Decodes a whole journal file; see the module docs for what is a torn tail and what is damage.
pub(super) fn decode(path: &Path, bytes: &[u8]) -> Result<Decoded, StoreError> {
    let corrupt = |offset: usize, what: &str| {
        StoreError::Corrupt(format!(
            "corrupt journal {} at byte offset {offset}: {what} (the file was not modified)",
            path.display()
        ))
    };
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return Err(corrupt(0, "not a minder journal (bad header)"));
    }
    let version = le_u32(&bytes[MAGIC.len()..]);
    if version != VERSION {
        return Err(corrupt(
            MAGIC.len(),
            &format!("format version {version}, this build reads version {VERSION}"),
        ));
    }
    let mut events = Vec::with_capacity(count_records(bytes));
    let mut offset = HEADER_LEN;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
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
                    match serde_json::from_slice::<Event>(payload) {
                        Ok(event) => {
                            events.push(event);
                            offset += end;
                            continue;
                        }
                        Err(e) => {
                            return Err(corrupt(
                                offset,
                                &format!(
                                    "the record's checksum matches but it is not a known \
                                     event ({e}; written by a newer minder?)"
                                ),
                            ))
                        }
                    }
                }
            }
        };
        if let Some(next) = intact_record_after(bytes, offset + 1) {
            return Err(corrupt(
                offset,
                &format!("{torn}, yet an intact record follows at byte offset {next}"),
            ));
        }
        break;
    }
    if events.is_empty() {
        // A run is created with its first event synced: without it the file was cut short.
        return Err(corrupt(
            HEADER_LEN,
            "the journal has no complete first record (a run's journal is created with its \
             first event, so the file was cut short or damaged)",
        ));
    }
    Ok(Decoded {
        events,
        good_len: offset,
    })
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
    let event = serde_json::from_slice(payload).ok()?;
    Some((event, crc))
}

/// The length of a record whose header starts `bytes` (`None` if fewer than 8 bytes).
pub(super) fn record_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..RECORD_HEADER_LEN)?;
    Some(RECORD_HEADER_LEN + le_u32(header) as usize)
}

/// The length of the journal header, where the first record starts.
pub(super) const FIRST_RECORD: usize = HEADER_LEN;

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
            && serde_json::from_slice::<Event>(&bytes[body..body + len]).is_ok()
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

    #[test]
    fn records_are_counted_up_to_the_first_bad_length() {
        let event = |i: u32| Event::Log {
            key: format!("log#{i}"),
            message: "m".repeat(i as usize),
            seq: None,
            location: None,
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
