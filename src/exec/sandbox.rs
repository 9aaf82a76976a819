//! The kernel's read-only sandbox of diagnostic commands: a command the argv policy let
//! through still cannot write a file, change the host or signal a process outside its tree.
//!
//! Owns the Landlock ruleset, the seccomp filter and the capability drop. Landlock holds the
//! file tree (no write, create, remove, rename, link); the filter holds what Landlock does not
//! see: a file's mode, owner, times and extended attributes (a root command still owns root's
//! files, so without it `chmod u+s` on any of them would pass). Invariants: between fork and
//! exec the child makes only raw `prctl`, `landlock_restrict_self` and `capset` calls on a
//! ruleset and a filter built in the parent (no allocation, no locks); runbook itself is never
//! restricted; every child of a sandboxed command inherits the restriction and cannot shed it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

// Filesystem access rights (linux/landlock.h).
const FS_WRITE_FILE: u64 = 1 << 1;
const FS_REMOVE_DIR: u64 = 1 << 4;
const FS_REMOVE_FILE: u64 = 1 << 5;
const FS_MAKE_CHAR: u64 = 1 << 6;
const FS_MAKE_DIR: u64 = 1 << 7;
const FS_MAKE_REG: u64 = 1 << 8;
const FS_MAKE_SOCK: u64 = 1 << 9;
const FS_MAKE_FIFO: u64 = 1 << 10;
const FS_MAKE_BLOCK: u64 = 1 << 11;
const FS_MAKE_SYM: u64 = 1 << 12;
const FS_REFER: u64 = 1 << 13;
const FS_TRUNCATE: u64 = 1 << 14;
// Scopes (ABI 6): signals and abstract UNIX sockets stay inside the sandbox.
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// The one capability a diagnostic command keeps: reading any file and directory (root's
/// reach for logs and configuration). Not CAP_SYS_PTRACE: with it, `ps e` or a read of
/// `/proc/PID/environ` would show other processes' environments, secrets included.
const CAP_DAC_READ_SEARCH: u32 = 2;
const KEPT_CAPS: u64 = 1 << CAP_DAC_READ_SEARCH;
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this kernel has no Landlock (it needs Linux 5.13 or later with `landlock` in the `lsm=` list): diagnostic commands cannot be kept from writing"
    )]
    Unsupported,
    #[error("cannot build the sandbox: {0}")]
    Setup(std::io::Error),
}

/// The Landlock ABI version of this kernel; `None` when Landlock is not there or disabled.
pub fn abi() -> Option<u32> {
    // SAFETY: the documented version query: a null attribute, size 0, the version flag.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as u32)
}

/// A read-only sandbox, ready to be applied to children.
#[derive(Debug)]
pub struct ReadOnly {
    ruleset: OwnedFd,
    last_cap: u32,
    filter: Vec<libc::sock_filter>,
}

/// The system calls that change a file without writing it, refused with EPERM: mode, owner,
/// times, extended attributes; and io_uring, whose operations would go around this list.
const METADATA_CALLS: &[libc::c_long] = &[
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    452, // fchmodat2
    libc::SYS_fchown,
    libc::SYS_fchownat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    463, // setxattrat
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    466, // removexattrat
    libc::SYS_utimensat,
    libc::SYS_io_uring_setup,
];
/// The older forms of the same calls that x86_64 keeps.
#[cfg(target_arch = "x86_64")]
const LEGACY_CALLS: &[libc::c_long] = &[
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_futimesat,
];
#[cfg(target_arch = "aarch64")]
const LEGACY_CALLS: &[libc::c_long] = &[];
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// The seccomp program: a call of another architecture (or x32) is refused outright, one of
/// `METADATA_CALLS` or `LEGACY_CALLS` is refused with EPERM, everything else is allowed.
fn metadata_filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let calls: Vec<libc::c_long> = METADATA_CALLS.iter().chain(LEGACY_CALLS).copied().collect();
    let n = calls.len() as u8;
    let mut f = vec![
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 1, 0, AUDIT_ARCH),
        op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        // x32 calls carry this bit: refused (to the deny at the end).
        op(JGE_K, n + 1, 0, 0x4000_0000),
    ];
    for (i, nr) in calls.iter().enumerate() {
        // To the deny at the end: past the remaining comparisons and the allow.
        f.push(op(JEQ_K, n - i as u8, 0, *nr as u32));
    }
    f.push(op(RET_K, 0, 0, RET_ALLOW));
    f.push(op(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32));
    f
}

impl ReadOnly {
    /// Builds the ruleset: every way of changing the filesystem is handled, and allowed only
    /// on `/dev/null`, the terminal and beneath `scratch` (a directory of the command's own,
    /// removed when it ends); with ABI 6 or later, signals and abstract sockets are scoped to
    /// the sandbox.
    pub fn new(scratch: Option<&std::path::Path>) -> Result<Self, SandboxError> {
        let abi = abi().ok_or(SandboxError::Unsupported)?;
        let mut fs = FS_WRITE_FILE
            | FS_REMOVE_DIR
            | FS_REMOVE_FILE
            | FS_MAKE_CHAR
            | FS_MAKE_DIR
            | FS_MAKE_REG
            | FS_MAKE_SOCK
            | FS_MAKE_FIFO
            | FS_MAKE_BLOCK
            | FS_MAKE_SYM;
        if abi >= 2 {
            fs |= FS_REFER;
        }
        if abi >= 3 {
            fs |= FS_TRUNCATE;
        }
        let attr = RulesetAttr {
            handled_access_fs: fs,
            handled_access_net: 0,
            scoped: if abi >= 6 {
                SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET
            } else {
                0
            },
        };
        let size = if abi >= 6 {
            std::mem::size_of::<RulesetAttr>()
        } else {
            // Older kernels know a shorter structure; the fields past it are zero.
            2 * std::mem::size_of::<u64>()
        };
        // SAFETY: `attr` is a live, initialised landlock_ruleset_attr of at least `size` bytes.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(SandboxError::Setup(std::io::Error::last_os_error()));
        }
        // SAFETY: the kernel just returned this descriptor (O_CLOEXEC) and nothing else owns it.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let fixed = [
            (
                "/dev/null".as_ref(),
                FS_WRITE_FILE | if abi >= 3 { FS_TRUNCATE } else { 0 },
            ),
            ("/dev/tty".as_ref(), FS_WRITE_FILE),
        ];
        for (path, access) in fixed.into_iter().chain(scratch.map(|d| (d, fs))) {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) if scratch == Some(path) => return Err(SandboxError::Setup(e)),
                Err(_) => continue,
            };
            let rule = PathBeneathAttr {
                allowed_access: access,
                parent_fd: file.as_raw_fd(),
            };
            // SAFETY: a live path_beneath_attr, and two descriptors that outlive the call.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset.as_raw_fd(),
                    RULE_PATH_BENEATH,
                    &rule as *const PathBeneathAttr,
                    0u32,
                )
            };
            if r < 0 {
                return Err(SandboxError::Setup(std::io::Error::last_os_error()));
            }
        }
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);
        Ok(ReadOnly {
            ruleset,
            last_cap,
            filter: metadata_filter(),
        })
    }

    /// Makes `cmd`'s process enter the sandbox just before it executes its program. The
    /// sandbox must outlive the spawn.
    pub fn apply(&self, cmd: &mut Command) {
        let ruleset = self.ruleset.as_raw_fd();
        let last_cap = self.last_cap;
        let program = libc::sock_fprog {
            len: self.filter.len() as u16,
            filter: self.filter.as_ptr() as *mut libc::sock_filter,
        };
        // Raw pointers are not Send; the closure runs in the forked child, whose copy of this
        // process's memory holds the filter (which outlives the spawn, as `self` does).
        let program = FilterProgram(program);
        let root = rustix::process::geteuid().is_root();
        // SAFETY: the closure makes raw system calls only (prctl, capset,
        // landlock_restrict_self), all async-signal-safe, on values computed before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Executing a setuid program (sudo, su) gains nothing from here on.
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if root {
                    // The bounding set decides what root gets back at exec: keep only
                    // reading, drop the rest (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_TIME,
                    // CAP_KILL, CAP_DAC_OVERRIDE, CAP_CHOWN, …).
                    for cap in 0..=last_cap {
                        if KEPT_CAPS & (1u64 << cap) == 0
                            && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
                        {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    let header = CapHeader {
                        version: CAPABILITY_VERSION_3,
                        pid: 0,
                    };
                    let kept = [
                        CapData {
                            effective: KEPT_CAPS as u32,
                            permitted: KEPT_CAPS as u32,
                            inheritable: 0,
                        },
                        CapData {
                            effective: 0,
                            permitted: 0,
                            inheritable: 0,
                        },
                    ];
                    if libc::syscall(libc::SYS_capset, &header as *const CapHeader, kept.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let program = &program;
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &program.0 as *const libc::sock_fprog,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// A new scratch directory for a sandboxed command, in runbook's temporary directory; those a
/// killed runbook left behind (a day old) are removed first.
pub fn scratch() -> std::io::Result<tempfile::TempDir> {
    const PREFIX: &str = "runbook-scratch-";
    let tmp = std::env::temp_dir();
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(PREFIX)
            && e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < day_ago);
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    tempfile::Builder::new().prefix(PREFIX).tempdir_in(tmp)
}

/// The filter's program as the child reads it.
struct FilterProgram(libc::sock_fprog);
// SAFETY: the pointer in it is only read, in the forked child, while the filter it points to
// lives (the sandbox outlives the spawn).
unsafe impl Send for FilterProgram {}
unsafe impl Sync for FilterProgram {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandboxed_command_cannot_write_but_reads_and_writes_to_dev_null() {
        let scratch = tempfile::tempdir().unwrap();
        let Ok(sandbox) = ReadOnly::new(Some(scratch.path())) else {
            assert!(
                std::env::var("RUNBOOK_TEST_REQUIRE").is_err(),
                "RUNBOOK_TEST_REQUIRE is set and this kernel has no Landlock"
            );
            eprintln!("note: no Landlock on this kernel; skipping");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sentinel = dir.path().join("sentinel");
        std::fs::write(&sentinel, "before").unwrap();
        let meta = |p: &std::path::Path| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(p).unwrap();
            (m.mode(), m.uid(), m.mtime())
        };
        let (before, scratch_before) = (meta(&sentinel), meta(scratch.path()));
        let script = format!(
            "echo changed > {0}; true > {0}; truncate -s 0 {0}; rm -f {0}; ln -s x {1}/link; mv {0} {1}/moved; touch {1}/new; mkdir {1}/d; cp {0} {2}/escaped; mkdir {2}/d && echo scratch > {2}/d/f && mv {2}/d/f {1}/out; ln {2}/d/f {1}/linked; chmod 4755 {0}; chown 65534 {0}; touch -d 2001-01-01 {0}; cp /bin/sh {2}/sh; chmod 4755 {2}/sh; chmod 777 {2}; cat {0} > /dev/null && echo read-ok > /dev/null && cat {2}/d/f",
            sentinel.display(),
            dir.path().display(),
            scratch.path().display()
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&script);
        sandbox.apply(&mut cmd);
        let out = cmd.output().unwrap();
        // It writes beneath its scratch directory, and nowhere else, not even from there.
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "scratch",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_to_string(&sentinel).unwrap(), "before");
        assert!(!dir.path().join("new").exists() && !dir.path().join("d").exists());
        assert!(
            !dir.path().join("out").exists(),
            "a file moved out of the scratch directory"
        );
        assert!(
            !dir.path().join("linked").exists(),
            "a file linked out of the scratch directory"
        );
        // Mode, owner and times are held too, outside and in the scratch directory.
        assert_eq!(meta(&sentinel), before, "the sentinel's mode, owner or time changed");
        assert_eq!(meta(scratch.path()), scratch_before);
        if let Ok(sh) = std::fs::metadata(scratch.path().join("sh")) {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(sh.permissions().mode() & 0o6000, 0, "a setuid file was made");
        }
        assert_eq!(std::fs::read(scratch.path().join("escaped")).unwrap(), b"before");
        // runbook itself is not restricted.
        std::fs::write(&sentinel, "after").unwrap();
    }
}
