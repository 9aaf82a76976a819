//! Secrets no command can read: each `secrets.deny_read` path is covered, in the command's own
//! mount namespace, by an empty read-only file or directory, so no name reaches its bytes.
//!
//! Owns expanding the patterns to paths and the masking. Invariants: between fork and exec
//! the child makes only raw `unshare` and `mount` calls on strings built before the fork;
//! runbook's own mount namespace is never touched; without root, a path runbook can read is
//! refused, not run.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::wildcard;

#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error(
        "runbook runs as uid {uid}, not root, and can read {path}: it cannot hide it from commands (that needs a mount namespace, so root)"
    )]
    Readable { uid: u32, path: PathBuf },
    #[error(
        "{path} has {links} names (hard links): a mount can hide only this one, so no command may run while the others exist"
    )]
    HardLinked { path: PathBuf, links: u64 },
}

impl crate::util::Explain for MaskError {
    /// Refused before anything ran: the host needs changing, not the command.
    fn class(&self) -> crate::util::ExitClass {
        crate::util::ExitClass::Usage
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            MaskError::Readable { .. } => {
                "run runbook (and so its sessions) as root, or make that file unreadable to this user".into()
            }
            MaskError::HardLinked { path, .. } => format!(
                "find the other names with `find / -xdev -samefile {}` and remove them",
                path.display()
            ),
        })
    }
}

/// Entries looked at under a masked directory for hard-linked files, at most.
const MAX_WALK: usize = 100_000;

/// A regular file at or under `path` that has another name (a hard link) outside the mask.
fn hard_linked(path: &Path) -> Option<(PathBuf, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![path.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_file() && meta.nlink() > 1 {
            return Some((p, meta.nlink()));
        }
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            for e in entries.flatten() {
                seen += 1;
                if seen > MAX_WALK {
                    return None;
                }
                stack.push(e.path());
            }
        }
    }
    None
}

/// The existing paths that `patterns` (`/etc/*/backend.env`: `*` and `?` within one path
/// component) name now.
pub fn expand(patterns: &[String]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for pattern in patterns {
        // A relative pattern (an env file next to a config given as a relative path) is
        // taken from the working directory, as runbook itself reads it.
        let pattern = match std::path::absolute(pattern) {
            Ok(p) => p,
            Err(_) => continue,
        };
        let mut at = vec![PathBuf::from("/")];
        for part in pattern.components().skip(1) {
            let part = part.as_os_str().to_string_lossy();
            let mut next = Vec::new();
            for dir in &at {
                if part.contains(['*', '?']) {
                    let Ok(entries) = std::fs::read_dir(dir) else {
                        continue;
                    };
                    let mut names: Vec<_> = entries
                        .flatten()
                        .filter(|e| wildcard::matches(&part, &e.file_name().to_string_lossy()))
                        .map(|e| dir.join(e.file_name()))
                        .collect();
                    names.sort();
                    next.extend(names);
                } else {
                    let p = dir.join(&*part);
                    if std::fs::symlink_metadata(&p).is_ok() {
                        next.push(p);
                    }
                }
            }
            at = next;
        }
        found.extend(at.into_iter().filter(|p| p != Path::new("/")));
    }
    // A symlink is masked where it leads: the file itself, whatever name reaches it.
    let mut found: Vec<PathBuf> = found
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The masks for one command, ready before the fork.
#[derive(Debug, Default)]
pub struct Masks {
    /// (path, is a directory), as C strings.
    targets: Vec<(CString, bool)>,
}

impl Masks {
    /// Masks for `paths`. Where runbook is not root it cannot mask: a path it can read is
    /// then an error, and one it cannot read needs no mask (the kernel refuses it anyway).
    pub fn new(paths: &[PathBuf]) -> Result<Self, MaskError> {
        let uid = rustix::process::geteuid();
        if !uid.is_root() {
            if let Some(path) = paths.iter().find(|p| readable(p)) {
                return Err(MaskError::Readable {
                    uid: uid.as_raw(),
                    path: path.clone(),
                });
            }
            return Ok(Masks::default());
        }
        // Root reads any name: a second name of a secret would reach its bytes past the mask. (Files linked to each
        // other inside one masked directory are refused too: telling them apart is not worth
        // the walk.)
        if let Some((path, links)) = paths.iter().find_map(|p| hard_linked(p)) {
            return Err(MaskError::HardLinked { path, links });
        }
        let targets = paths
            .iter()
            .filter_map(|p| Some((CString::new(p.as_os_str().as_bytes()).ok()?, p.is_dir())))
            .collect();
        Ok(Masks { targets })
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Makes `cmd`'s process run in its own mount namespace with every path masked. Must be
    /// applied before the sandbox, which drops the capability mounting needs.
    pub fn apply(&self, cmd: &mut Command) {
        if self.targets.is_empty() {
            return;
        }
        let targets: Vec<(CString, bool)> = self.targets.clone();
        let null = c"/dev/null";
        let root = c"/";
        let tmpfs = c"tmpfs";
        let options = c"size=0,mode=000";
        // SAFETY: raw unshare and mount calls on C strings owned by the closure, made before
        // the fork; no allocation, no locks.
        unsafe {
            cmd.pre_exec(move || {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing done here propagates back to the host's mounts.
                if libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                for (target, dir) in &targets {
                    let covered = if *dir {
                        libc::mount(
                            tmpfs.as_ptr(),
                            target.as_ptr(),
                            tmpfs.as_ptr(),
                            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            options.as_ptr().cast(),
                        )
                    } else {
                        let bound = libc::mount(
                            null.as_ptr(),
                            target.as_ptr(),
                            std::ptr::null(),
                            libc::MS_BIND,
                            std::ptr::null(),
                        );
                        if bound == 0 {
                            libc::mount(
                                std::ptr::null(),
                                target.as_ptr(),
                                std::ptr::null(),
                                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                                std::ptr::null(),
                            )
                        } else {
                            bound
                        }
                    };
                    if covered != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

fn readable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::READ_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_expand_to_the_files_there_now_symlinks_to_their_target() {
        let d = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(d.path()).unwrap();
        for app in ["a", "b"] {
            std::fs::create_dir_all(base.join("etc").join(app)).unwrap();
            std::fs::write(base.join("etc").join(app).join("backend.env"), "K=V").unwrap();
        }
        std::fs::create_dir_all(base.join("etc/c")).unwrap();
        std::os::unix::fs::symlink(base.join("etc/a/backend.env"), base.join("etc/c/backend.env")).unwrap();
        let found = expand(&[format!("{}/etc/*/backend.env", base.display())]);
        assert_eq!(
            found,
            vec![base.join("etc/a/backend.env"), base.join("etc/b/backend.env")]
        );
        assert!(expand(&["/no/such/*/file".into()]).is_empty());
    }
}
