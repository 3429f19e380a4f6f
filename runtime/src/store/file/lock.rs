//! Files inside a run directory: opens that never follow a symbolic link (`O_NOFOLLOW`),
//! modes 0600 and 0700 whatever the umask, directory syncs, and the run's exclusive lock.

use crate::store::StoreError;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::io_error;

/// The lock file's name inside a run directory.
const LOCK: &str = "lock";
/// The mode of every file the store creates.
#[cfg(unix)]
pub(super) const FILE_MODE: u32 = 0o600;
/// The mode of every directory the store creates.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// Options to open a file inside a run directory: never through a symbolic link
/// (`O_NOFOLLOW`), created mode 0600.
pub(super) fn run_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW).mode(FILE_MODE);
    options
}

/// The error of opening `path` inside a run directory: [`StoreError::Symlink`] when it is a
/// link (which `O_NOFOLLOW` refuses), else an I/O error saying what was being done.
pub(super) fn open_error(path: &Path, doing: &str, e: io::Error) -> StoreError {
    #[cfg(unix)]
    if e.raw_os_error() == Some(libc::ELOOP)
        && path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
    {
        return StoreError::Symlink(path.to_path_buf());
    }
    io_error(format!("cannot {doing} {}", path.display()), e)
}

/// Gives a file the store created mode 0600, whatever the umask took away or left.
pub(super) fn set_file_mode(file: &File, path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| io_error(format!("cannot set the mode of {}", path.display()), e))?;
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Creates the directory `path` (its parent must exist) with mode 0700, whatever the umask.
pub(super) fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    builder.mode(DIR_MODE);
    builder.create(path)?;
    #[cfg(unix)]
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)?
        .set_permissions(fs::Permissions::from_mode(DIR_MODE))?;
    Ok(())
}

/// Takes the run's exclusive lock, or fails with [`StoreError::Locked`]. The lock file is
/// created (0600) if missing, and never opened through a link.
pub(super) fn lock_run(run_id: &str, dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK);
    let file = match run_file_options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => {
            set_file_mode(&file, &path)?;
            file
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => run_file_options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| open_error(&path, "open", e))?,
        Err(e) => return Err(open_error(&path, "create", e)),
    };
    // Not waited for here: the store's async calls ask a busy lock again, on a timer.
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for `workers` (a hint: not synced, and a holder that died leaves
            // its pid behind with the lock free).
            #[cfg(unix)]
            {
                use std::os::unix::fs::FileExt as _;
                let _ = file.set_len(0);
                let _ = file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0);
            }
            Ok(file)
        }
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked(run_id.to_string())),
        Err(TryLockError::Error(e)) => Err(io_error(format!("cannot lock {}", path.display()), e)),
    }
}

/// Makes a directory's entries durable (a no-op where directories cannot be synced).
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(format!("cannot sync directory {}", dir.display()), e))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The pid a run's lock file names and whether the lock is held now (by anyone).
pub(super) fn lock_holder(dir: &Path) -> Option<u32> {
    let path = dir.join(LOCK);
    let file = run_file_options().read(true).write(true).open(&path).ok()?;
    let pid = fs::read_to_string(&path).ok()?.trim().parse().ok()?;
    match file.try_lock() {
        // Free: nobody holds it (the lock goes with `file`).
        Ok(()) => None,
        Err(_) => Some(pid),
    }
}

/// Writes `bytes` to `path` through a temporary file beside it (`.<name>.<pid>.tmp`) renamed
/// into place, so a reader never sees half of it; `durable` syncs the file and its directory.
pub(super) fn write_whole(path: &Path, bytes: &[u8], durable: bool) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .expect("a file in the runs directory has a directory");
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut file = run_file_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_data()?;
        }
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(format!("cannot write {}", path.display()), e));
    }
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}
