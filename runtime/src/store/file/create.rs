//! Creating a run: atomic and durable (see the module's "Creation").

use super::codec::{encode_record, MAGIC, VERSION};
use super::lock::{
    create_private_dir, lock_run, open_error, run_file_options, set_file_mode, sync_dir,
};
use super::writer::FileLog;
use super::{io_error, ready, FileStore, JOURNAL};
use crate::journal::Event;
use crate::store::{validate_run_id, RunLog, StoreError};
use std::fs;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

impl FileStore {
    /// Creates run `run_id` whose first event is `first`: assembled in a staging directory
    /// (journal written and synced, the run locked), renamed into place, the runs directory
    /// synced, then marked ready in the index.
    pub(super) fn create_now(
        &self,
        run_id: &str,
        first: &Event,
    ) -> Result<Arc<dyn RunLog>, StoreError> {
        validate_run_id(run_id)?;
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        encode_record(first, &mut bytes)?;

        self.ensure_runs_dir()?;
        let dir = self.run_dir(run_id);
        if dir.symlink_metadata().is_ok() {
            return Err(StoreError::RunExists(run_id.to_string()));
        }
        static STAGE: AtomicU64 = AtomicU64::new(0);
        let stage = self.runs_dir.join(format!(
            ".create-{run_id}-{}-{}",
            std::process::id(),
            STAGE.fetch_add(1, Ordering::Relaxed)
        ));
        create_private_dir(&stage)
            .map_err(|e| io_error(format!("cannot create {}", stage.display()), e))?;
        let staged = (|| {
            let lock = lock_run(run_id, &stage)?;
            let path = stage.join(JOURNAL);
            let mut file = run_file_options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| open_error(&path, "create", e))?;
            set_file_mode(&file, &path)?;
            file.write_all(&bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(format!("cannot write {}", path.display()), e))?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
            sync_dir(&stage)?;
            if let Err(e) = fs::rename(&stage, &dir) {
                if dir.symlink_metadata().is_ok() {
                    return Err(StoreError::RunExists(run_id.to_string()));
                }
                return Err(io_error(format!("cannot create {}", dir.display()), e));
            }
            Ok((lock, file))
        })();
        let (lock, file) = match staged {
            Ok(staged) => staged,
            Err(e) => {
                let _ = fs::remove_dir_all(&stage);
                return Err(e);
            }
        };
        sync_dir(&self.runs_dir)?;
        let log = FileLog::start(
            dir.join(JOURNAL),
            file,
            lock,
            bytes.len() as u64,
            self.syncs.clone(),
            self.fail_sync.clone(),
        )?;
        // Ready for workers once this returns (a crash before it: the caller never got the id).
        ready::write_entry(
            &self.runs_dir,
            run_id,
            ready::Entry::of(first, crate::store::Readiness::Ready).as_ref(),
        )?;
        Ok(Arc::new(ready::IndexedLog::created(
            Arc::new(log),
            &self.runs_dir,
            run_id,
            first,
        )))
    }
}
