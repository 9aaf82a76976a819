//! Named locks beside the state file (`<state>.locks/<name>.lock`): an OS file lock, released
//! by the kernel when its holder dies, so a crash never leaves one held.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ProfileLock {
    _file: File,
    pub path: PathBuf,
}

pub fn lock_dir(state_path: &Path) -> PathBuf {
    let mut name = state_path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "runbook".into());
    name.push(".locks");
    state_path.with_file_name(name)
}

/// Takes the profile's lock if it is free; `None` if another run holds it.
pub fn try_lock(state_path: &Path, profile: &str) -> io::Result<Option<ProfileLock>> {
    let dir = lock_dir(state_path);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{profile}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(ProfileLock { _file: file, path })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Whether lock `name` is held by someone now (`false` when free or absent).
pub fn held(state_path: &Path, name: &str) -> bool {
    let path = lock_dir(state_path).join(format!("{name}.lock"));
    let Ok(file) = OpenOptions::new().write(true).open(path) else {
        return false;
    };
    matches!(file.try_lock(), Err(TryLockError::WouldBlock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_drops() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let first = try_lock(&db, "hourly").unwrap().expect("free");
        assert!(try_lock(&db, "hourly").unwrap().is_none());
        assert!(try_lock(&db, "daily").unwrap().is_some());
        drop(first);
        assert!(try_lock(&db, "hourly").unwrap().is_some());
    }
}
