//! Cancel requests from another writer: a small file beside the run's journal, written whole
//! and renamed into place, read by the run's holder (see [`crate::Runner::cancel`]).

use super::lock::{open_error, run_file_options, set_file_mode};
use super::{io_error, FileStore, CANCEL};
use crate::store::StoreError;
use std::fs;
use std::io::{Read, Write};

impl FileStore {
    pub(super) fn request_cancel_now(
        &self,
        run_id: &str,
        reason: Option<String>,
    ) -> Result<(), StoreError> {
        let dir = self.existing_run(run_id)?;
        // Written whole, then renamed into place: the writer never reads half a request.
        let staged = dir.join(format!("{CANCEL}.{}", std::process::id()));
        let text = serde_json::json!({ "reason": reason }).to_string();
        let context = || format!("cannot ask run `{run_id}` to cancel");
        let mut file = run_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&staged)
            .map_err(|e| match open_error(&staged, "create", e) {
                StoreError::Io { source, .. } => io_error(context(), source),
                other => other,
            })?;
        set_file_mode(&file, &staged)?;
        file.write_all(text.as_bytes())
            .and_then(|()| fs::rename(&staged, dir.join(CANCEL)))
            .map_err(|e| io_error(context(), e))
    }

    pub(super) fn cancel_request_now(&self, run_id: &str) -> Option<Option<String>> {
        let dir = self.real_run_dir(run_id)?;
        let mut file = run_file_options().read(true).open(dir.join(CANCEL)).ok()?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        Some(value["reason"].as_str().map(str::to_string))
    }

    pub(super) fn clear_cancel_request_now(&self, run_id: &str) {
        if let Some(dir) = self.real_run_dir(run_id) {
            let _ = fs::remove_file(dir.join(CANCEL));
        }
    }
}
