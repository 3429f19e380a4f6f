//! Opening a run's journal for writing: the lock, reading it (whole, or streamed a few
//! batches ahead of its reader on a thread of its own), cutting it back to what can be
//! trusted, and starting its writer.

use super::codec::{decode, Decoded, Reader};
use super::durable::{read_durable, trusted_len, DURABLE, DURABLE_TMP};
use super::lock::{lock_run, open_error, run_file_options, sync_dir};
use super::writer::FileLog;
use super::{io_error, ready, run_id_of, FileStore, JOURNAL};
use crate::journal::Event;
use crate::store::{JournalStream, RunLog, StoreError};
use futures::stream::StreamExt;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

impl FileStore {
    /// Opens run `run_id`'s journal for writing: takes the lock, reads and decodes the journal,
    /// cuts it back to its last durable offset (a poisoned writer's record) or drops a torn
    /// tail, and syncs it.
    pub(super) fn open_journal(&self, run_id: &str) -> Result<Opened, StoreError> {
        let locked = self.lock_journal(run_id)?;
        let mut bytes = Vec::new();
        (&locked.file)
            .read_to_end(&mut bytes)
            .map_err(|e| io_error(format!("cannot read {}", locked.path.display()), e))?;
        let trusted = trusted_len(&locked.path, locked.durable, bytes.len())?;
        let Decoded { events, good_len } = decode(&locked.path, &bytes[..trusted])?;
        self.ready_journal(locked, bytes.len(), good_len, events)
    }

    /// Takes run `run_id`'s lock and opens its journal for reading and writing.
    fn lock_journal(&self, run_id: &str) -> Result<Locked, StoreError> {
        let dir = self.existing_run(run_id)?;
        let path = dir.join(JOURNAL);
        let lock = lock_run(run_id, &dir)?;
        let file = match run_file_options().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownRun(run_id.to_string()))
            }
            Err(e) => return Err(open_error(&path, "open", e)),
        };
        let durable = read_durable(&dir)?;
        Ok(Locked {
            dir,
            path,
            file,
            lock,
            durable,
        })
    }

    /// After the journal of `locked` (`len` bytes) was read up to `good_len`: cuts it back
    /// there (to the last durable offset of a poisoned writer, or before a torn tail), syncs
    /// it, and positions it at its end for appending.
    fn ready_journal(
        &self,
        locked: Locked,
        len: usize,
        good_len: usize,
        events: Vec<Event>,
    ) -> Result<Opened, StoreError> {
        let Locked {
            dir,
            path,
            mut file,
            lock,
            durable,
        } = locked;
        let mut notice = None;
        if let Some(offset) = durable {
            let dropped = len - good_len;
            let message = format!(
                "a write or sync of journal {} failed earlier, so its writer stopped; the bytes \
                 past offset {offset} (the end of its last successful sync) were never confirmed \
                 durable and cannot be trusted, so {} — nothing acknowledged was lost, and the \
                 steps after that point run again",
                path.display(),
                if dropped == 0 {
                    "nothing past it needed cutting".to_string()
                } else {
                    format!("the journal was cut back to it ({dropped} bytes dropped)")
                }
            );
            tracing::warn!(journal = %path.display(), offset, dropped, "{message}");
            notice = Some(message);
        } else if good_len < len {
            tracing::warn!(
                journal = %path.display(),
                offset = good_len,
                bytes = len - good_len,
                "dropping the torn tail of a journal (an append interrupted by a crash)"
            );
        }
        let synced = if good_len < len {
            file.set_len(good_len as u64).and_then(|()| file.sync_all())
        } else {
            file.sync_data()
        };
        synced.map_err(|e| io_error(format!("cannot sync {}", path.display()), e))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if durable.is_some() {
            // The record goes only once the cut is durable, and the run is written to only
            // once its removal is.
            for name in [DURABLE, DURABLE_TMP] {
                match fs::remove_file(dir.join(name)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_error(
                            format!("cannot remove {}", dir.join(name).display()),
                            e,
                        ))
                    }
                    _ => {}
                }
            }
            sync_dir(&dir)?;
        }
        file.seek(SeekFrom::Start(good_len as u64))
            .map_err(|e| io_error(format!("cannot seek in {}", path.display()), e))?;
        Ok(Opened {
            events,
            path,
            file,
            lock,
            len: good_len as u64,
            notice,
        })
    }

    /// [`Store::open_stream`], on the calling thread: takes the lock and opens the journal
    /// (reporting that through `setup`), sends its events in batches of [`BATCH`] (an error
    /// ends them), then readies the journal for appending and hands its log to `log`. Stops
    /// early, releasing the run, when the reader goes away.
    fn stream_journal(
        &self,
        run_id: &str,
        setup: oneshot::Sender<Result<(), StoreError>>,
        batches: mpsc::Sender<Result<Vec<Event>, StoreError>>,
        log: oneshot::Sender<Result<Arc<dyn RunLog>, StoreError>>,
    ) {
        let locked = match self.lock_journal(run_id).and_then(|locked| {
            let len = locked
                .file
                .metadata()
                .map_err(|e| io_error(format!("cannot read {}", locked.path.display()), e))?
                .len() as usize;
            let trusted = trusted_len(&locked.path, locked.durable, len)?;
            Ok((locked, len, trusted))
        }) {
            Ok(locked) => locked,
            Err(e) => {
                let _ = setup.send(Err(e));
                return;
            }
        };
        if setup.send(Ok(())).is_err() {
            return;
        }
        let (locked, len, trusted) = locked;
        let read = (|| {
            let mut reader = Reader::new(&locked.path, &locked.file, trusted)?;
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(event) = reader.next_event()? {
                batch.push(event);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if batches.blocking_send(Ok(full)).is_err() {
                        return Ok(None);
                    }
                }
            }
            if !batch.is_empty() && batches.blocking_send(Ok(batch)).is_err() {
                return Ok(None);
            }
            Ok(Some(reader.good_len()))
        })();
        let good_len = match read {
            Ok(Some(good_len)) => good_len,
            Ok(None) => return,
            Err(e) => {
                let _ = batches.blocking_send(Err(e));
                return;
            }
        };
        drop(batches);
        let opened = self
            .ready_journal(locked, len, good_len, Vec::new())
            .and_then(|opened| self.start_log(opened).map(|(log, _)| log));
        let _ = log.send(opened);
    }

    /// Starts the writer of a journal readied for appending; returns it and the journal's
    /// events.
    pub(super) fn start_log(
        &self,
        opened: Opened,
    ) -> Result<(Arc<dyn RunLog>, Vec<Event>), StoreError> {
        let Opened {
            events,
            path,
            file,
            lock,
            len,
            notice: _,
        } = opened;
        let run_id = run_id_of(&path);
        let log = FileLog::start(
            path,
            file,
            lock,
            len,
            self.syncs.clone(),
            self.fail_sync.clone(),
        )?;
        // Keeps the run's entry in the workers' ready index current when it closes.
        let log = ready::indexed(self, &run_id, &events, Arc::new(log));
        Ok((log, events))
    }

    /// Starts [`FileStore::stream_journal`] on a thread of its own, and waits until it holds
    /// the run (or failed to).
    pub(super) async fn open_stream_once(&self, run_id: &str) -> Result<JournalStream, StoreError> {
        let (setup_tx, setup_rx) = oneshot::channel();
        let (batch_tx, mut batch_rx) = mpsc::channel(BATCHES_AHEAD);
        let (log_tx, log_rx) = oneshot::channel();
        let store = self.clone();
        let id = run_id.to_string();
        std::thread::Builder::new()
            .name("minder-journal-read".to_string())
            .spawn(move || store.stream_journal(&id, setup_tx, batch_tx, log_tx))
            .map_err(|e| io_error("cannot start the journal reader".to_string(), e))?;
        let stopped = || {
            io_error(
                "the journal reader stopped".to_string(),
                io::Error::other("the reader thread exited"),
            )
        };
        setup_rx.await.map_err(|_| stopped())??;
        let batches = futures::stream::poll_fn(move |cx| batch_rx.poll_recv(cx)).boxed();
        let log = Box::pin(async move { log_rx.await.map_err(|_| stopped())? });
        Ok(JournalStream::new(batches, log))
    }
}

/// Events per batch of a streamed journal, and how many batches the reader runs ahead.
const BATCH: usize = 1024;
const BATCHES_AHEAD: usize = 4;

/// A run's journal, locked and opened, not read yet.
struct Locked {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    lock: File,
    /// A poisoned writer's last durable offset, if one is recorded.
    durable: Option<u64>,
}

/// A journal opened for writing by [`FileStore::open_journal`].
pub(super) struct Opened {
    events: Vec<Event>,
    path: PathBuf,
    /// The journal, synced and positioned at its end.
    file: File,
    /// The held run lock.
    lock: File,
    /// The journal's length: all of it durable.
    len: u64,
    /// What was cut back after a poisoned writer, for the user.
    pub(super) notice: Option<String>,
}
