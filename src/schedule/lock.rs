//! Per-profile non-overlap locks: an OS file lock next to the state file.
//!
//! Owns the lock files (`<state>.locks/<profile>.lock`). A lock held by a process that dies is
//! released by the kernel, so a crash never leaves a profile stuck. Invariant: while a
//! `ProfileLock` lives, no other runbook process or thread can run that profile.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

pub use crate::util::lock::{ProfileLock, lock_dir, try_lock};

/// The daemon's own lock, holding its pid: one daemon per state file, and `reload` finds it.
/// `runbook serve` holds one of its own (`@serve.lock`) so that `reload` reaches it too.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

const DAEMON: &str = "@daemon.lock";
const SERVE: &str = "@serve.lock";

fn pid_lock_path(state_path: &Path, name: &str) -> PathBuf {
    // `@` cannot appear in a profile name, so this never collides with a profile's lock.
    lock_dir(state_path).join(name)
}

fn try_lock_pid(state_path: &Path, name: &str) -> io::Result<Option<DaemonLock>> {
    use std::io::Write;
    let dir = lock_dir(state_path);
    std::fs::create_dir_all(&dir)?;
    let path = pid_lock_path(state_path, name);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(Some(DaemonLock { _file: file, path }))
        }
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

fn running(state_path: &Path, name: &str) -> Option<u32> {
    let path = pid_lock_path(state_path, name);
    let file = OpenOptions::new().read(true).write(true).open(&path).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => std::fs::read_to_string(&path).ok()?.trim().parse().ok(),
    }
}

pub fn try_lock_daemon(state_path: &Path) -> io::Result<Option<DaemonLock>> {
    try_lock_pid(state_path, DAEMON)
}

/// The pid of the daemon running on this state file, if one holds the lock.
pub fn running_daemon(state_path: &Path) -> Option<u32> {
    running(state_path, DAEMON)
}

/// `runbook serve`'s lock: `None` when another `serve` on the same state file holds it.
pub fn try_lock_serve(state_path: &Path) -> io::Result<Option<DaemonLock>> {
    try_lock_pid(state_path, SERVE)
}

/// The pid of the `runbook serve` holding the serve lock of this state file, if any.
pub fn running_serve(state_path: &Path) -> Option<u32> {
    running(state_path, SERVE)
}
