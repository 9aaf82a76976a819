//! Scratch directories next to the archives that a killed process does not leave behind for
//! good: verify's database copies, a drill's restored tree, an archive pulled for a drill.
//!
//! Invariant: a scratch directory in use holds an exclusive lock on its `.lock` file, and
//! whoever makes a new one first removes those of the same kind that nobody holds.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The lock file inside every scratch directory.
const LOCK: &str = ".lock";

/// A directory without its lock file is left alone this long: it may be one being made
/// right now (the lock comes a moment after the directory), or one an older runbook made.
const GRACE: Duration = Duration::from_secs(600);

/// A scratch directory in use; removed (with everything in it) when dropped.
pub struct Scratch {
    dir: tempfile::TempDir,
    _lock: File,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Lets the directory go as if its run had been stopped: everything in it but `keep`
    /// is removed now, and the next sweep hands it to its `release`.
    pub fn abandon(self, keep: &[&str]) {
        empty_but(self.dir.path(), keep);
        let _ = self.dir.keep();
    }
}

/// Removes everything in `dir` except its lock file and `keep`.
pub fn empty_but(dir: &Path, keep: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name != LOCK && !keep.iter().any(|k| name == *k) {
            super::remove_tree(&e.path());
        }
    }
}

/// Makes `<parent>/<prefix>XXXXXX`, after removing the abandoned ones with the same prefix.
pub fn create(parent: &Path, prefix: &str) -> io::Result<Scratch> {
    create_with(parent, prefix, &mut |_| true)
}

/// [`create`], with [`sweep`]'s `release` for the abandoned ones.
pub fn create_with(parent: &Path, prefix: &str, release: &mut dyn FnMut(&Path) -> bool) -> io::Result<Scratch> {
    sweep(parent, &[prefix], release);
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
    // Locked under another name, then named: a sweep never finds `.lock` unlocked in a
    // directory that is in use (without it, a young directory is left alone).
    let fresh = dir.path().join(".lock-new");
    let lock = File::create(&fresh)?;
    lock.try_lock().map_err(|e| io::Error::other(e.to_string()))?;
    std::fs::rename(&fresh, dir.path().join(LOCK))?;
    Ok(Scratch { dir, _lock: lock })
}

/// Removes every `<parent>/<prefix>*` directory, for each of `prefixes`, whose lock nobody
/// holds: one pass over `parent`. Each is first handed to `release` (with its lock held):
/// what its run held outside it, such as a scratch database, is let go there. The directory
/// goes only when `release` says so; one it keeps is left for a later sweep. Best effort:
/// what cannot be read or removed stays, and the caller goes on.
pub fn sweep(parent: &Path, prefixes: &[&str], release: &mut dyn FnMut(&Path) -> bool) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        let name = name.to_string_lossy();
        if !is_dir || !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let dir = e.path();
        // The lock is held while the directory is removed, so no other sweep takes it for
        // abandoned as well.
        let (abandoned, _held) = match File::open(dir.join(LOCK)) {
            Ok(lock) => match lock.try_lock() {
                Ok(()) => (true, Some(lock)),
                Err(_) => (false, None),
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let age = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                (age.is_some_and(|a| a > GRACE), None)
            }
            Err(_) => (false, None),
        };
        if abandoned && release(&dir) {
            tracing::info!(path = %dir.display(), "removing the scratch space of a run that was stopped");
            super::remove_tree(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_scratch_goes_and_scratch_in_use_stays() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        // Abandoned: its lock file is there, nobody holds it (the process was killed).
        std::fs::create_dir_all(p.join(".x-dead/sub")).unwrap();
        std::fs::write(p.join(".x-dead/.lock"), "").unwrap();
        std::fs::write(p.join(".x-dead/sub/copy.db"), vec![1u8; 4096]).unwrap();
        // In use: another holder has the lock.
        let alive = create(p, ".x-").unwrap();
        std::fs::write(alive.path().join("copy.db"), "data").unwrap();
        // No lock file, just made: may be on its way to having one.
        std::fs::create_dir(p.join(".x-new")).unwrap();
        // Another kind: not this sweep's.
        std::fs::create_dir(p.join(".y-dead")).unwrap();
        std::fs::write(p.join(".y-dead/.lock"), "").unwrap();

        let second = create(p, ".x-").unwrap();
        assert!(!p.join(".x-dead").exists(), "the abandoned one is gone");
        assert!(alive.path().join("copy.db").exists(), "the one in use stays");
        assert!(p.join(".x-new").exists(), "a fresh one without its lock yet stays");
        assert!(p.join(".y-dead").exists(), "another prefix is left alone");
        assert!(second.path().join(LOCK).exists());

        let (a, b) = (alive.path().to_path_buf(), second.path().to_path_buf());
        drop(alive);
        drop(second);
        assert!(!a.exists() && !b.exists(), "removed when dropped");
    }

    #[test]
    fn a_lockless_directory_goes_once_it_is_old() {
        let parent = tempfile::tempdir().unwrap();
        let old = parent.path().join(".x-old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("copy.db"), "data").unwrap();
        let long_ago = SystemTime::now() - GRACE - Duration::from_secs(60);
        File::open(&old).unwrap().set_modified(long_ago).unwrap();
        sweep(parent.path(), &[".x-"], &mut |_| true);
        assert!(!old.exists());
    }
}
