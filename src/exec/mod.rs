//! Bounded child processes: the only place runbook spawns anything.
//!
//! Owns spawning, output capture (head and tail, capped), timeouts and cancellation, and
//! killing: a task runs in its own process group, and stopping it signals the whole group
//! (SIGTERM, a grace period, SIGKILL). It does not redact or record; callers do.
//! Invariant: `run` returns within timeout + grace + a short linger, whatever the child does.

mod capture;
mod limits;
pub mod mask;
pub mod process;
pub mod sandbox;

pub use capture::{HeadTail, OMITTED_END, OMITTED_START};
pub use limits::SystemdUnavailable;

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::config::Limits;
pub use crate::config::model::Confine;

/// How long to wait for the output pipes to close after the main process exits.
const LINGER: Duration = Duration::from_millis(250);
/// How often a waiting `run` looks at its cancel flag.
const POLL: Duration = Duration::from_millis(50);

pub const DEFAULT_HEAD: usize = 16 * 1024;
pub const DEFAULT_TAIL: usize = 48 * 1024;

/// What to run and within which bounds.
#[derive(Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub limits: Limits,
    pub head: usize,
    pub tail: usize,
    /// Send standard output to this file (created or truncated) instead of capturing it:
    /// for dumps whose size has no bound.
    pub stdout_to: Option<PathBuf>,
    /// How the command is held: in the kernel's read-only sandbox (`sandbox::ReadOnly`: no
    /// file written, no host setting changed, no process outside its own tree signalled), and
    /// the paths no name may reach from it (`mask::Masks`: covered by empty read-only ones in
    /// its own mount namespace).
    pub hold: Confine,
}

impl Spec {
    pub fn new(argv: Vec<String>, timeout: Duration) -> Self {
        Spec {
            argv,
            cwd: None,
            env: Vec::new(),
            timeout,
            kill_grace: crate::config::model::DEFAULT_KILL_GRACE,
            limits: Limits::default(),
            head: DEFAULT_HEAD,
            tail: DEFAULT_TAIL,
            stdout_to: None,
            hold: Confine::default(),
        }
    }
}

/// Why runbook stopped a process before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Timeout,
    Shutdown,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub pid: u32,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stopped: Option<Stop>,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// A process that escaped the group kept the output pipes open; capture ended early.
    pub output_detached: bool,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0) && self.stopped.is_none()
    }

    /// One line: `exit 0`, `exit 3`, `killed by signal 9`, `timed out after 2s`.
    pub fn summary(&self, timeout: Duration) -> String {
        match (self.stopped, self.exit_code, self.signal) {
            (Some(Stop::Timeout), ..) => format!("timed out after {}", crate::config::HumanDuration(timeout)),
            (Some(Stop::Shutdown), ..) => "stopped by shutdown".into(),
            (None, Some(code), _) => format!("exit {code}"),
            (None, None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None, None) => "ended without status".into(),
        }
    }

    /// [`summary`](Self::summary), then `: said` when the command said anything.
    pub fn summary_with(&self, timeout: Duration, said: &str) -> String {
        let summary = self.summary(timeout);
        match said.trim() {
            "" => summary,
            said => format!("{summary}: {said}"),
        }
    }

    /// stdout, then stderr under a marker if there was any.
    pub fn combined_output(&self) -> String {
        let mut out = self.stdout.clone();
        if !self.stderr.is_empty() {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("--- stderr ---\n");
            out.push_str(&self.stderr);
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("nothing to run (empty command)")]
    Empty,
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error(transparent)]
    Systemd(#[from] SystemdUnavailable),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    Mask(#[from] mask::MaskError),
}

/// A flag that asks running processes to stop (daemon shutdown). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

enum Msg {
    Exited(std::io::Result<ExitStatus>),
    Eof,
}

/// Set in a sandboxed command's environment: runbook run inside one knows its state file
/// cannot be written there.
const SANDBOXED: &str = "RUNBOOK_SANDBOX";

/// Whether this process runs as a command of runbook's read-only sandbox.
pub fn sandboxed() -> bool {
    std::env::var(SANDBOXED).is_ok_and(|v| v == "read-only")
}

/// Runs `spec` to completion, timeout or cancellation.
pub fn run(spec: &Spec, cancel: &Cancel) -> Result<Outcome, ExecError> {
    let argv = limits::wrap(spec.argv.clone(), &spec.limits)?;
    let (program, args) = argv.split_first().ok_or(ExecError::Empty)?;
    let mut cmd = Command::new(program);
    let stdout = match &spec.stdout_to {
        Some(path) => Stdio::from(std::fs::File::create(path).map_err(|source| ExecError::Spawn {
            program: format!("{program} (its output file {})", path.display()),
            source,
        })?),
        None => Stdio::piped(),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .process_group(0)
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    limits::prepare_child(&mut cmd, &spec.limits, spec.limits.systemd_run);
    // Masks first: the sandbox drops the capability that mounting needs.
    mask::Masks::new(&spec.hold.masked)?.apply(&mut cmd);
    // A sandboxed command's one writable place (its TMPDIR), removed when it has ended: tools
    // that need a temporary file work, and nothing they write outlives them.
    // The ruleset is kept alive until the child has executed its program (`spawn` returns
    // after that), the scratch directory until the command has ended.
    let (scratch, sandbox) = if spec.hold.read_only {
        let dir = sandbox::scratch().map_err(sandbox::SandboxError::Setup)?;
        let s = sandbox::ReadOnly::new(Some(dir.path()))?;
        cmd.env("TMPDIR", dir.path()).env(SANDBOXED, "read-only");
        s.apply(&mut cmd);
        (Some(dir), Some(s))
    } else {
        (None, None)
    };

    let start = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ExecError::Spawn {
        program: program.clone(),
        source,
    })?;
    drop(sandbox);
    let pid = child.id();
    let (tx, rx) = mpsc::channel::<Msg>();

    let mut buffers = Vec::new();
    for pipe in [
        child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
    ] {
        let buffer = Arc::new(Mutex::new(HeadTail::new(spec.head, spec.tail)));
        buffers.push(buffer.clone());
        let tx = tx.clone();
        if let Some(mut pipe) = pipe {
            std::thread::spawn(move || {
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => buffer.lock().unwrap_or_else(|p| p.into_inner()).push(&chunk[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Msg::Eof);
            });
        } else {
            let _ = tx.send(Msg::Eof);
        }
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(Msg::Exited(child.wait()));
        });
    }
    drop(tx);

    let group = Pid::from_raw(pid as i32);
    let signal_group = |sig: Signal| {
        if let Some(g) = group {
            let _ = kill_process_group(g, sig);
        }
    };
    let deadline = start + spec.timeout;
    let mut status: Option<std::io::Result<ExitStatus>> = None;
    let mut eofs = 0;
    let mut stopped: Option<Stop> = None;
    let mut term_at: Option<Instant> = None;
    let mut killed = false;

    // Phase 1: wait for the main process, enforcing timeout and cancellation.
    while status.is_none() {
        let now = Instant::now();
        if stopped.is_none() {
            let reason = if cancel.is_cancelled() {
                Some(Stop::Shutdown)
            } else if now >= deadline {
                Some(Stop::Timeout)
            } else {
                None
            };
            if let Some(reason) = reason {
                stopped = Some(reason);
                term_at = Some(now);
                signal_group(Signal::TERM);
            }
        } else if !killed && term_at.is_some_and(|t| now >= t + spec.kill_grace) {
            signal_group(Signal::KILL);
            killed = true;
        }
        let next = match (stopped, term_at) {
            (None, _) => deadline.saturating_duration_since(now),
            (Some(_), Some(t)) if !killed => (t + spec.kill_grace).saturating_duration_since(now),
            _ => POLL,
        };
        match rx.recv_timeout(next.min(POLL).max(Duration::from_millis(1))) {
            Ok(Msg::Exited(s)) => status = Some(s),
            Ok(Msg::Eof) => eofs += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let duration = start.elapsed();

    // Phase 2: collect output. Members of the group that keep the pipes open are killed;
    // a process that left the group (setsid) is abandoned so that we still return.
    if stopped.is_some() {
        signal_group(Signal::KILL);
    }
    let mut output_detached = false;
    let mut linger_deadline = Instant::now() + LINGER;
    let mut group_killed = stopped.is_some();
    while eofs < 2 {
        match rx.recv_timeout(linger_deadline.saturating_duration_since(Instant::now())) {
            Ok(Msg::Eof) => eofs += 1,
            Ok(Msg::Exited(_)) => {}
            Err(mpsc::RecvTimeoutError::Timeout) if !group_killed => {
                signal_group(Signal::KILL);
                group_killed = true;
                linger_deadline = Instant::now() + LINGER;
            }
            Err(_) => {
                output_detached = true;
                break;
            }
        }
    }

    // What a sandboxed command left running in its group goes with it, before its scratch
    // directory does.
    if scratch.is_some() {
        signal_group(Signal::KILL);
    }
    let status = status.and_then(Result::ok);
    let take = |i: usize| {
        let b = buffers[i].lock().unwrap_or_else(|p| p.into_inner());
        (b.text(), b.total())
    };
    let (stdout, stdout_bytes) = take(0);
    let (stderr, stderr_bytes) = take(1);
    Ok(Outcome {
        pid,
        exit_code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stopped,
        duration,
        stdout,
        stderr,
        stdout_bytes,
        stderr_bytes,
        output_detached,
    })
}

/// Shell-quotes an argv for display (`git -C '/srv/my app' fetch`).
/// The absolute path of `program` as a process started in `cwd` would find it through `path`
/// (or runbook's own PATH): a relative PATH entry (`.`, `bin`) counts from `cwd`.
pub fn resolve(program: &str, cwd: &str, path: Option<&str>) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = path
        .map(std::ffi::OsString::from)
        .or_else(|| std::env::var_os("PATH"))?;
    std::env::split_paths(&path)
        .map(|dir| {
            let dir = if dir.is_absolute() {
                dir
            } else {
                PathBuf::from(cwd).join(dir)
            };
            dir.join(program)
        })
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64) -> Spec {
        let mut s = Spec::new(
            vec!["/bin/sh".into(), "-c".into(), script.into()],
            Duration::from_millis(timeout_ms),
        );
        s.kill_grace = Duration::from_millis(200);
        s
    }

    #[test]
    fn captures_exit_code_and_streams() {
        let o = run(&sh("echo out; echo err >&2; exit 3", 5000), &Cancel::default()).unwrap();
        assert_eq!(o.exit_code, Some(3));
        assert_eq!(o.stdout, "out\n");
        assert_eq!(o.stderr, "err\n");
        assert!(!o.success());
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run(
            &Spec::new(vec!["/nonexistent/prog".into()], Duration::from_secs(1)),
            &Cancel::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("cannot start `/nonexistent/prog`"), "{err}");
    }

    #[test]
    fn cancel_stops_the_group() {
        let cancel = Cancel::default();
        let c2 = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            c2.cancel();
        });
        let o = run(&sh("sleep 30", 60_000), &cancel).unwrap();
        assert_eq!(o.stopped, Some(Stop::Shutdown));
        assert!(o.duration < Duration::from_secs(10));
    }
}
