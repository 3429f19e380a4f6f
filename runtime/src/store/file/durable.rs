//! The last durable offset of a poisoned journal: recorded by its writer after a failed write
//! or sync (`durable-offset`), read back by the next open or read, which trusts nothing past it.

use crate::store::StoreError;
use std::fs::{self, File};
use std::io::{self, Read, Write};
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::io_error;
#[cfg(unix)]
use super::lock::FILE_MODE;
use super::lock::{open_error, run_file_options};

/// The last durable offset of a poisoned journal, left for the next open.
pub(super) const DURABLE: &str = "durable-offset";
/// `DURABLE` while it is being written.
pub(super) const DURABLE_TMP: &str = "durable-offset.tmp";
/// What `DURABLE` holds before the offset (and a newline after it).
const DURABLE_PREFIX: &str = "minder durable offset ";

/// The last durable offset a poisoned writer recorded in run directory `dir`, if any. A record
/// that does not read back whole is [`StoreError::Corrupt`]: a human has to look.
pub(super) fn read_durable(dir: &Path) -> Result<Option<u64>, StoreError> {
    let path = dir.join(DURABLE);
    let mut file = match run_file_options().read(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_error(&path, "open", e)),
    };
    let mut text = Vec::new();
    Read::by_ref(&mut file)
        .take(64)
        .read_to_end(&mut text)
        .map_err(|e| io_error(format!("cannot read {}", path.display()), e))?;
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_prefix(DURABLE_PREFIX))
        .and_then(|t| t.strip_suffix('\n'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{} does not hold a durable offset (`{DURABLE_PREFIX}<n>`): a write or sync of \
                 the run's journal failed and the offset it recorded was lost; check the \
                 journal, then remove the file",
                path.display()
            ))
        })
}

/// How many bytes of a journal of `len` bytes can be trusted given its recorded last durable
/// offset: all of them without a record, the recorded prefix with one.
pub(super) fn trusted_len(
    path: &Path,
    durable: Option<u64>,
    len: usize,
) -> Result<usize, StoreError> {
    match durable {
        None => Ok(len),
        Some(offset) if offset <= len as u64 => Ok(offset as usize),
        Some(offset) => Err(StoreError::Corrupt(format!(
            "journal {} is {len} bytes, shorter than its recorded last durable offset {offset}: \
             bytes that were synced are missing (the file was not modified)",
            path.display()
        ))),
    }
}

/// Records `offset`, the end of the last successful sync of the journal in run directory `dir`,
/// for the next open: written to a temporary file, synced, renamed into place, the directory
/// synced. Fails only if the record could not be put in place; a failed sync of it is logged
/// (the record is visible in this boot, which is when the page cache can lie).
pub(super) fn record_durable(dir: &Path, offset: u64) -> io::Result<()> {
    let tmp = dir.join(DURABLE_TMP);
    let mut file = run_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(format!("{DURABLE_PREFIX}{offset}\n").as_bytes())?;
    let synced = file.sync_all();
    drop(file);
    fs::rename(&tmp, dir.join(DURABLE))?;
    let synced = synced.and_then(|()| File::open(dir).and_then(|d| d.sync_all()));
    if let Err(e) = synced {
        tracing::error!(
            dir = %dir.display(),
            error = %e,
            "the last durable offset of a poisoned journal is recorded but could not be synced"
        );
    }
    Ok(())
}
