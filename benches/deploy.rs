//! Deploy benchmark: what a deploy costs the service it switches, and what `runbook deploy`
//! costs against the same steps written as a shell script.
//!
//!   (a) The switch. Deploys alternating two tags while a load generator in this process GETs
//!       the service (a fresh TCP connection per request) and a poller reads `current` in a
//!       tight loop. Per deploy: requests sent, answered, unanswered (refused, reset, timed
//!       out, non-200), the span of the unanswered ones, and how long `current` was in
//!       transition (the poller: it must never find it missing or dangling; the rename(2)
//!       itself: timed under strace). Two services:
//!         a1  a std::net server thread in this process that opens `current/index.html` per
//!             request, restart `true`: the switch alone;
//!         a2  `python3 -m http.server` started in `current`, restarted by stop-and-start (the
//!             restart waits until the new process accepts connections): switch + restart.
//!       Target: none fixed; reported.
//!   (b) Overhead against a shell script, on a generated repository of 10,000 small files in
//!       nested directories: `runbook deploy APP TAG --apply` (with `gates.after`, one http
//!       check, and its evidence) against a bash script doing the same steps (`git worktree
//!       add`, `ln -s` shared, `ln -s … current.tmp && mv -T current.tmp current`, the same
//!       restart, `curl -fsS` once). Alternating, the side that goes first swaps every round,
//!       sync(2) before each (untimed); medians.      target ≤ 1.2× the script's wall time
//!
//! A plain harness (`harness = false`): `cargo bench --bench deploy`. Needs git, bash and
//! python3 (curl too; without it the script checks with python's urllib), and strace for the
//! rename's own time (skipped without it). Everything listens on 127.0.0.1; the repository,
//! the apps and the state files live in a temp dir, removed at the end. Services and threads
//! are stopped at the end, also when the benchmark fails.
//! (c) recovery: kill -9 of runbook in the build and in the restart, then `deploy --resume`,
//! and `deploy rollback --apply`, each timed (target under 5 s).
//! Knobs (environment): BENCH_ROUNDS (9), BENCH_FILES (10000), BENCH_SWITCH_DEPLOYS (10, per
//! service), BENCH_LOAD_THREADS (4), BENCH_LOAD_PACE_US (2000: one request per thread every
//! 2 ms; 0 = back to back), BENCH_DIR (a directory to work in instead of a temp dir).

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");
const TARGET_RATIO: f64 = 1.2;

// ---------------------------------------------------------------------------------------------
// One time base: seconds since the benchmark started, for this process's own instants, the
// state file's timestamps (UTC, ms) and the script's `$EPOCHREALTIME` marks alike.
// ---------------------------------------------------------------------------------------------

struct Epoch {
    at: Instant,
    unix: f64,
}

static EPOCH: OnceLock<Epoch> = OnceLock::new();

fn epoch() -> &'static Epoch {
    EPOCH.get_or_init(|| Epoch {
        at: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64(),
    })
}

/// Seconds since the benchmark started.
fn now() -> f64 {
    epoch().at.elapsed().as_secs_f64()
}

fn from_unix(unix: f64) -> f64 {
    unix - epoch().unix
}

/// A state-file timestamp (`2026-11-23T11:32:38.123Z`) on the benchmark's time base.
fn from_ts(ts: &str) -> f64 {
    let t: jiff::Timestamp = ts.parse().unwrap_or_else(|e| panic!("timestamp {ts:?}: {e}"));
    from_unix(t.as_millisecond() as f64 / 1000.0)
}

fn unix_second() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Release names carry the UTC second: before deploying a commit again, wait (outside any
/// timed window) until the second in which its last deploy ended is over.
fn next_second_after(last: Option<i64>) {
    if let Some(last) = last {
        while unix_second() <= last {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn ms(secs: f64) -> f64 {
    secs * 1000.0
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { Stats::of(v).median }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// git with an identity of its own and no signing, whatever the user's configuration says.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.org")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.org")
        .stdin(Stdio::null())
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The runbook binary with `--config`, run in the config's directory, runbook's own
/// environment variables removed.
fn runbook(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .args(args)
        .current_dir(config.parent().expect("config dir"))
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null());
    c
}

/// Runs a command to its end; (start, end) on the benchmark's time base, and its output.
fn timed(cmd: &mut Command) -> (f64, f64, Output) {
    let start = now();
    let out = cmd.output().expect("spawn");
    (start, now(), out)
}

/// The interpreter behind `python3` (a pyenv shim costs a shell script per start).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is needed (the service)");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && !p.is_empty(), "python3: {}", text(&out));
    p
}

fn has(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A service started by the restart script (its pid in `pidfile`): killed when dropped, also on
/// panic.
struct Service {
    pidfile: PathBuf,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            && let Some(p) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The repository and the scripts
// ---------------------------------------------------------------------------------------------

/// `files` files in all: `index.html` ("release v1"/"release v2") and small text files in
/// src/dNN/sNN/ (100 a directory). v2 changes index.html and every 100th file.
fn make_repo(root: &Path, files: usize) -> PathBuf {
    let repo = root.join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir repo");
    git(&repo, &["init", "-q", "-b", "main"]);
    let nested = files.saturating_sub(1).max(1);
    let line = "the quick brown fox jumps over the lazy dog 0123456789\n";
    let path = |i: usize| repo.join(format!("src/d{:02}/s{:02}/f{i:05}.txt", i / 1000, (i / 100) % 10));
    for i in 0..nested {
        let p = path(i);
        if i % 100 == 0 {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        }
        std::fs::write(&p, format!("{i}\n{}", line.repeat(1 + (i * 7) % 16))).expect("write");
    }
    std::fs::write(repo.join("index.html"), "release v1\n").expect("write");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v1"]);
    git(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("index.html"), "release v2\n").expect("write");
    for i in (0..nested).step_by(100) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path(i)).expect("open");
        f.write_all(b"changed in v2\n").expect("append");
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "v2"]);
    git(&repo, &["tag", "v2"]);
    repo
}

/// `restart.sh PORT PIDFILE PYTHON`, run in `current`: stops the service started before (and
/// waits until all of it is gone), starts `python3 -m http.server` in the current directory, returns
/// once it accepts connections. Builtins only in the loops.
const RESTART_SH: &str = r#"#!/bin/bash
port=$1 pidfile=$2 py=$3
shopt -s nullglob
old=
[ -f "$pidfile" ] && read -r old < "$pidfile"
if [ -n "$old" ] && kill "$old" 2>/dev/null; then
  # Gone: reaped, or a zombie whose other threads have exited too (the main thread turns
  # zombie first; the listening socket closes with the last thread).
  for ((i = 0; i < 2500; i++)); do
    st=
    { read -r _ _ st _ < "/proc/$old/stat"; } 2>/dev/null
    tasks=("/proc/$old/task/"*)
    case "$st" in '') break ;; Z|X) [ "${#tasks[@]}" -le 1 ] && break ;; esac
    sleep 0.002
  done
fi
"$py" -m http.server "$port" --bind 127.0.0.1 --directory . </dev/null >/dev/null 2>&1 &
new=$!
echo "$new" > "$pidfile"
for ((i = 0; i < 2500; i++)); do
  if ! kill -0 "$new" 2>/dev/null; then echo "the service exited at start" >&2; exit 1; fi
  if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then exec 3>&-; exit 0; fi
  sleep 0.002
done
echo "the service does not listen on 127.0.0.1:$port" >&2
exit 1
"#;

/// `deploy.sh APP REPO TAG PORT PIDFILE PYTHON RESTART CHECK`: the steps of a deploy by hand,
/// each followed by a mark on stderr (`$EPOCHREALTIME`, no process).
const DEPLOY_SH: &str = r#"#!/bin/bash
set -euo pipefail
app=$1 repo=$2 tag=$3 port=$4 pidfile=$5 py=$6 restart=$7 check=$8
echo "mark start $EPOCHREALTIME" >&2
cd "$app"
sha=$(git -C "$repo" rev-parse --verify "refs/tags/$tag^{commit}")
rel=releases/${sha:0:12}-$(date -u +%Y%m%dT%H%M%SZ)
echo "mark resolve $EPOCHREALTIME" >&2
mkdir -p releases
git -C "$repo" worktree add --detach "$app/$rel" "$sha"
echo "mark worktree $EPOCHREALTIME" >&2
ln -s "$app/shared/.env" "$rel/.env"
echo "mark link $EPOCHREALTIME" >&2
ln -s "$rel" current.tmp && mv -T current.tmp current
echo "mark switch $EPOCHREALTIME" >&2
(cd current && bash "$restart" "$port" "$pidfile" "$py")
echo "mark restart $EPOCHREALTIME" >&2
url="http://127.0.0.1:$port/index.html"
if [ "$check" = curl ]; then
  body=$(curl -fsS "$url")
  [[ $body == *release* ]]
else
  "$py" -c 'import sys, urllib.request; sys.exit(b"release" not in urllib.request.urlopen(sys.argv[1], timeout=2).read())' "$url"
fi
echo "mark check $EPOCHREALTIME" >&2
"#;

/// An app directory with `shared/.env`.
fn app_dir(path: &Path) {
    std::fs::create_dir_all(path.join("shared")).expect("mkdir shared");
    std::fs::write(path.join("shared/.env"), "SECRET_KEY=x\n").expect("write .env");
}

/// runbook.yaml with one app `site` at `app`, a check `web` on the port, the gate `after`
/// (that one check, measured once), and `restart`.
fn config(dir: &Path, repo: &Path, app: &Path, port: u16, restart: &str) -> PathBuf {
    let yaml = format!(
        r#"version: 1
state: {{ url: "sqlite://state/runbook.db" }}
checks:
  web: {{ http: {{ url: "http://127.0.0.1:{port}/index.html", expect: {{ body_contains: "release" }} }}, timeout: 2s }}
gates:
  after: {{ checks: [web] }}
deploy:
  site:
    repo: {repo}
    path: {app}
    refs: tags
    shared: [.env]
    restart: [ {restart} ]
    gates: {{ after: after }}
"#,
        repo = repo.display(),
        app = app.display(),
    );
    let path = dir.join("runbook.yaml");
    std::fs::write(&path, yaml).expect("write runbook.yaml");
    let out = runbook(&path, &["config", "check", "--strict"])
        .output()
        .expect("run runbook");
    assert!(out.status.success(), "config check: {}", text(&out));
    path
}

/// `runbook deploy site TAG --apply --json`, timed; the deploy's release and id.
struct RbDeploy {
    tag: &'static str,
    start: f64,
    end: f64,
    release: String,
    id: i64,
}

fn rb_deploy(config: &Path, tag: &'static str) -> RbDeploy {
    let (start, end, out) = timed(&mut runbook(config, &["deploy", "site", tag, "--apply", "--json"]));
    assert!(out.status.success(), "deploy site {tag}: {}", text(&out));
    let r: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("deploy --json is not JSON ({e}): {}", text(&out)));
    assert_eq!(r["deploy"]["status"], "good", "{r:#}");
    RbDeploy {
        tag,
        start,
        end,
        release: r["deploy"]["release"].as_str().expect("release").to_string(),
        id: r["deploy"]["id"].as_i64().expect("id"),
    }
}

/// (c): an app whose build or restart kills runbook (its parent) when `kill-at` names it;
/// each kill is followed by `--resume`, timed; then `deploy rollback --apply`, timed.
fn bench_resume(root: &Path, repo: &Path) -> Vec<(&'static str, Vec<f64>)> {
    let dir = root.join("c");
    let app = dir.join("app");
    std::fs::create_dir_all(&dir).expect("mkdir c");
    app_dir(&app);
    let die = |point: &str| {
        format!(
            "[ \\\"$(cat {}/kill-at 2>/dev/null)\\\" = {point} ] && {{ rm -f {}/kill-at; kill -9 $PPID; sleep 5; }}; true",
            dir.display(),
            dir.display()
        )
    };
    let yaml = format!(
        "version: 1\nstate: {{ url: \"sqlite://state/runbook.db\" }}\ndeploy:\n  site:\n    repo: {}\n    path: {}\n    refs: tags\n    shared: [.env]\n    build: [ {{ sh: \"{}\" }} ]\n    restart: [ {{ sh: \"{}\" }} ]\n",
        repo.display(),
        app.display(),
        die("build"),
        die("restart")
    );
    let cfg = dir.join("runbook.yaml");
    std::fs::write(&cfg, yaml).expect("write runbook.yaml");
    let run = |args: &[&str]| -> (f64, bool) {
        let (start, end, out) = timed(&mut runbook(&cfg, args));
        (end - start, out.status.success())
    };
    let mut last = None;
    next_second_after(last);
    assert!(run(&["deploy", "site", "v1", "--apply"]).1, "first deploy");
    last = Some(unix_second());
    let mut after_switch = Vec::new();
    let mut before_switch = Vec::new();
    let mut rollback = Vec::new();
    let mut tag = "v2";
    for _ in 0..3 {
        for (point, into) in [("restart", &mut after_switch), ("build", &mut before_switch)] {
            next_second_after(last);
            std::fs::write(dir.join("kill-at"), point).expect("write kill-at");
            let (_, ok) = run(&["deploy", "site", tag, "--apply"]);
            assert!(!ok, "runbook was to be killed at {point}");
            let (secs, ok) = run(&["deploy", "site", "--resume"]);
            assert!(ok, "resume after a kill at {point}");
            last = Some(unix_second());
            into.push(secs);
            tag = if tag == "v2" { "v1" } else { "v2" };
        }
        let (secs, ok) = run(&["deploy", "rollback", "site", "--apply"]);
        assert!(ok, "rollback");
        rollback.push(secs);
    }
    vec![
        ("--resume, killed after the switch (restart, then good)", after_switch),
        (
            "--resume, killed in the build (the release made again, built, switched)",
            before_switch,
        ),
        ("deploy rollback --apply (switch back, restart)", rollback),
    ]
}

// ---------------------------------------------------------------------------------------------
// What runbook recorded: each step of a deploy and its gate run, from the state file
// ---------------------------------------------------------------------------------------------

/// The moments of one deploy on the benchmark's time base, in order: (label, t).
fn recorded_steps(db: &rusqlite::Connection, d: &RbDeploy) -> Vec<(String, f64)> {
    let mut st = db
        .prepare(
            "SELECT kind, ts, data FROM audit_events WHERE kind IN \
             ('deploy.started', 'deploy.step', 'deploy.finished', 'gate.run') ORDER BY seq",
        )
        .expect("prepare");
    let rows: Vec<(String, String, Value)> = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .expect("query")
        .map(|r| {
            let (k, ts, data) = r.expect("row");
            (k, ts, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect();
    let first = rows
        .iter()
        .position(|(k, _, data)| k == "deploy.started" && data["release"] == d.release.as_str())
        .unwrap_or_else(|| panic!("no deploy.started for {}", d.release));
    let mut out = vec![("started".to_string(), from_ts(&rows[first].1))];
    for (kind, ts, data) in &rows[first + 1..] {
        match kind.as_str() {
            "deploy.step" if data["deploy"] == d.id => {
                out.push((data["step"].as_str().unwrap_or("?").to_string(), from_ts(ts)));
            }
            "gate.run" => {
                // The gate's own start and end of measuring, from its row.
                let evidence = data["evidence"].as_str().unwrap_or_default().to_string();
                if let Ok((a, b)) = db.query_row(
                    "SELECT started_at, finished_at FROM gate_runs WHERE evidence_path = ?1",
                    [&evidence],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                ) {
                    out.push(("gate measuring".into(), from_ts(&a)));
                    out.push(("gate measured".into(), from_ts(&b)));
                }
                out.push(("gate recorded".into(), from_ts(ts)));
            }
            "deploy.finished" if data["deploy"] == d.id => {
                out.push(("finished".into(), from_ts(ts)));
                break;
            }
            _ => {}
        }
    }
    out
}

fn step_at(steps: &[(String, f64)], label: &str) -> Option<f64> {
    steps.iter().find(|(l, _)| l == label).map(|(_, t)| *t)
}

// ---------------------------------------------------------------------------------------------
// (a) The service in this process, the load generator, the poller
// ---------------------------------------------------------------------------------------------

/// An HTTP/1.0 server thread on 127.0.0.1 answering every request with `current/index.html`,
/// opened afresh per request (so `current` is resolved per request); 500 when that fails.
struct InProcess {
    port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<u64>>,
}

impl InProcess {
    fn start(current: PathBuf) -> InProcess {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut served = 0u64;
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut s) = conn
                    && serve_one(&mut s, &current)
                {
                    served += 1;
                }
            }
            served
        });
        InProcess {
            port,
            stop,
            handle: Some(handle),
        }
    }
}

/// Reads a request head, answers it in one write, closes. False when nothing was asked.
fn serve_one(s: &mut TcpStream, current: &Path) -> bool {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => return false,
        }
    }
    if n == 0 {
        return false;
    }
    let (status, body) = match std::fs::read(current.join("index.html")) {
        Ok(b) => ("200 OK", b),
        Err(e) => ("500 Internal Server Error", format!("{e}\n").into_bytes()),
    };
    let mut answer = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let _ = s.write_all(&answer);
    true
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Ok,
    Refused,
    Reset,
    Timeout,
    Empty,
    Status,
    Other,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Refused => "refused",
            Kind::Reset => "reset",
            Kind::Timeout => "timeout",
            Kind::Empty => "closed without an answer",
            Kind::Status => "non-200",
            Kind::Other => "other error",
        }
    }

    fn of(e: &std::io::Error) -> Kind {
        match e.kind() {
            ErrorKind::ConnectionRefused => Kind::Refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => Kind::Reset,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Kind::Timeout,
            _ => Kind::Other,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Req {
    start: f64,
    end: f64,
    kind: Kind,
    /// Which release answered: 1 or 2 (0: unknown or no answer).
    tag: u8,
}

/// One GET on a fresh connection.
fn get(addr: &SocketAddr) -> (Kind, u8) {
    let limit = Duration::from_secs(2);
    let mut s = match TcpStream::connect_timeout(addr, limit) {
        Ok(s) => s,
        Err(e) => return (Kind::of(&e), 0),
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    if let Err(e) = s.write_all(b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n") {
        return (Kind::of(&e), 0);
    }
    let mut answer = Vec::with_capacity(512);
    if let Err(e) = s.read_to_end(&mut answer) {
        return (Kind::of(&e), 0);
    }
    if answer.is_empty() {
        return (Kind::Empty, 0);
    }
    if !(answer.starts_with(b"HTTP/1.0 200") || answer.starts_with(b"HTTP/1.1 200")) {
        return (Kind::Status, 0);
    }
    let body = String::from_utf8_lossy(&answer);
    let tag = if body.contains("release v1") {
        1
    } else if body.contains("release v2") {
        2
    } else {
        0
    };
    (Kind::Ok, tag)
}

/// `threads` client threads, each a GET on a fresh connection every `pace` (back to back when
/// zero, or when a request took longer).
struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Vec<Req>>>,
}

impl Load {
    fn start(port: u16, threads: usize, pace: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let handles = (0..threads)
            .map(|i| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut out = Vec::with_capacity(64 * 1024);
                    // Spread the threads over one pace interval.
                    let mut next = now() + pace.as_secs_f64() * i as f64 / threads as f64;
                    while !stop.load(Ordering::Relaxed) {
                        let t = now();
                        if next > t {
                            std::thread::sleep(Duration::from_secs_f64(next - t));
                        }
                        next = next.max(now()) + pace.as_secs_f64();
                        let start = now();
                        let (kind, tag) = get(&addr);
                        out.push(Req {
                            start,
                            end: now(),
                            kind,
                            tag,
                        });
                    }
                    out
                })
            })
            .collect();
        Load { stop, handles }
    }

    fn finish(mut self) -> Vec<Req> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: Vec<Req> = std::mem::take(&mut self.handles)
            .into_iter()
            .flat_map(|h| h.join().expect("a load thread panicked"))
            .collect();
        all.sort_by(|a, b| a.start.total_cmp(&b.start));
        all
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A change of `current` seen by the poller: the last poll that read the old target and the
/// first that read the new one.
#[derive(Debug, Clone)]
struct Change {
    before: f64,
    after: f64,
}

#[derive(Debug, Default)]
struct Polled {
    polls: u64,
    secs: f64,
    /// readlink(2) failed: `current` missing.
    missing: u64,
    /// stat(2) through the link failed: `current` pointing nowhere.
    dangling: u64,
    changes: Vec<Change>,
    max_gap: f64,
}

/// readlink(`current`) and stat(`current`) in a tight loop until stopped.
struct Poller {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Polled>>,
}

impl Poller {
    fn start(current: PathBuf) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut p = Polled::default();
            let t0 = now();
            let mut prev_t = t0;
            let mut last: Option<PathBuf> = None;
            while !flag.load(Ordering::Relaxed) {
                let t = now();
                p.max_gap = p.max_gap.max(t - prev_t);
                p.polls += 1;
                match std::fs::read_link(&current) {
                    Err(_) => p.missing += 1,
                    Ok(target) => {
                        if std::fs::metadata(&current).is_err() {
                            p.dangling += 1;
                        }
                        if last.as_ref() != Some(&target) {
                            if last.is_some() {
                                p.changes.push(Change {
                                    before: prev_t,
                                    after: t,
                                });
                            }
                            last = Some(target);
                        }
                    }
                }
                prev_t = t;
            }
            p.secs = now() - t0;
            p
        });
        Poller {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Polled {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().expect("poller").join().expect("the poller panicked")
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (a) The switch
// ---------------------------------------------------------------------------------------------

/// What the clients saw in one window (a deploy and the quiet time after it, or the baseline).
#[derive(Debug, Default, Clone)]
struct Window {
    sent: usize,
    answered: usize,
    failed: BTreeMap<&'static str, usize>,
    /// From the start of the first unanswered request to the end of the last, s.
    span: f64,
    /// The longest time between two answers (by the time each answer arrived), s.
    longest_gap: f64,
    /// From the deploy's start to the first answer from the new release, s.
    first_new: Option<f64>,
}

impl Window {
    fn unanswered(&self) -> usize {
        self.failed.values().sum()
    }

    fn json(&self) -> Value {
        json!({
            "sent": self.sent,
            "answered": self.answered,
            "unanswered": self.unanswered(),
            "failed": self.failed,
            "unanswered_span_ms": r3(ms(self.span)),
            "longest_gap_between_answers_ms": r3(ms(self.longest_gap)),
            "first_answer_from_new_release_ms": self.first_new.map(|t| r3(ms(t))),
        })
    }
}

fn window(reqs: &[Req], answers: &[f64], from: f64, to: f64, new_tag: Option<(u8, f64)>) -> Window {
    let mut w = Window::default();
    let (mut first_fail, mut last_fail) = (f64::MAX, f64::MIN);
    for r in reqs.iter().filter(|r| r.start >= from && r.start < to) {
        w.sent += 1;
        if r.kind == Kind::Ok {
            w.answered += 1;
            if let Some((tag, t0)) = new_tag
                && r.tag == tag
                && w.first_new.is_none_or(|f| r.end - t0 < f)
            {
                w.first_new = Some(r.end - t0);
            }
        } else {
            *w.failed.entry(r.kind.name()).or_default() += 1;
            first_fail = first_fail.min(r.start);
            last_fail = last_fail.max(r.end);
        }
    }
    if last_fail >= first_fail {
        w.span = last_fail - first_fail;
    }
    // Gaps between consecutive answers, counted in the window where the gap starts.
    for pair in answers.windows(2) {
        if pair[0] >= from && pair[0] < to {
            w.longest_gap = w.longest_gap.max(pair[1] - pair[0]);
        }
    }
    w
}

struct SwitchDeploy {
    d: RbDeploy,
    w: Window,
    /// The poller's bracket around the change of `current` in this window, s.
    seen_switch: Option<Change>,
    /// The switch and the restart as runbook recorded them, s after the deploy started.
    switched_at: Option<f64>,
    restart: Option<f64>,
}

struct SwitchResult {
    name: &'static str,
    service: String,
    baseline: Window,
    deploys: Vec<SwitchDeploy>,
    polled: Polled,
    rename_us: Option<f64>,
    rename_calls: usize,
}

#[allow(clippy::too_many_arguments)]
fn bench_switch(
    root: &Path,
    repo: &Path,
    name: &'static str,
    deploys: usize,
    threads: usize,
    pace: Duration,
    py: &str,
    restart_sh: &Path,
) -> SwitchResult {
    let dir = root.join(name);
    let app = dir.join("app");
    app_dir(&app);
    let current = app.join("current");
    let pidfile = dir.join("run.pid");
    let _service = Service {
        pidfile: pidfile.clone(),
    };
    let in_process = (name == "a1").then(|| InProcess::start(current.clone()));
    let (port, restart, service) = match &in_process {
        Some(s) => (
            s.port,
            "{ run: [\"true\"] }".to_string(),
            "a std::net server thread in the benchmark process, `current/index.html` opened per request; restart: `true`".to_string(),
        ),
        None => {
            let port = free_port();
            (
                port,
                format!(
                    "{{ run: [bash, \"{}\", \"{port}\", \"{}\", \"{py}\"] }}",
                    restart_sh.display(),
                    pidfile.display()
                ),
                "`python3 -m http.server` started in `current`; restart: stop it, wait until it is gone, start a new one, wait until it accepts".to_string(),
            )
        }
    };
    let cfg = config(&dir, repo, &app, port, &restart);
    // The first release goes live before the clock starts.
    rb_deploy(&cfg, "v1");
    let mut last_end: HashMap<&str, i64> = HashMap::from([("v1", unix_second())]);

    let poller = Poller::start(current.clone());
    let load = Load::start(port, threads, pace);
    let load_start = now();
    std::thread::sleep(Duration::from_secs(1));
    let mut runs = Vec::new();
    for i in 0..deploys {
        let tag = if i % 2 == 0 { "v2" } else { "v1" };
        next_second_after(last_end.get(tag).copied());
        let d = rb_deploy(&cfg, tag);
        last_end.insert(tag, unix_second());
        runs.push(d);
        std::thread::sleep(Duration::from_millis(500));
    }
    let reqs = load.finish();
    let load_end = now();
    let polled = poller.finish();

    let mut answers: Vec<f64> = reqs.iter().filter(|r| r.kind == Kind::Ok).map(|r| r.end).collect();
    answers.sort_by(f64::total_cmp);
    let baseline = window(&reqs, &answers, load_start, runs[0].start, None);
    let db =
        rusqlite::Connection::open_with_flags(dir.join("state/runbook.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the state file");
    let starts: Vec<f64> = runs.iter().map(|d| d.start).collect();
    let mut out = Vec::new();
    for (i, d) in runs.into_iter().enumerate() {
        let to = starts.get(i + 1).copied().unwrap_or(load_end);
        let tag = if d.tag == "v1" { 1 } else { 2 };
        let w = window(&reqs, &answers, d.start, to, Some((tag, d.start)));
        let steps = recorded_steps(&db, &d);
        let switched = step_at(&steps, "switched");
        let restarted = step_at(&steps, "restarted");
        let seen_switch = polled
            .changes
            .iter()
            .find(|c| c.after >= d.start && c.after < to)
            .cloned();
        out.push(SwitchDeploy {
            switched_at: switched.map(|t| t - d.start),
            restart: switched.zip(restarted).map(|(a, b)| b - a),
            d,
            w,
            seen_switch,
        });
    }

    // The rename itself, timed by the kernel's clock under strace: one more deploy, no load.
    // Only where the restart leaves no process behind (strace -f waits for every tracee).
    let (rename_us, rename_calls) = if in_process.is_some() {
        strace_rename(&cfg, &dir, &mut last_end)
    } else {
        (None, 0)
    };
    SwitchResult {
        name,
        service,
        baseline,
        deploys: out,
        polled,
        rename_us,
        rename_calls,
    }
}

/// One deploy under `strace -f -T` of the renames: the time of the rename(2) of `current`, µs,
/// and how many renames of `current` there were.
fn strace_rename(cfg: &Path, dir: &Path, last_end: &mut HashMap<&str, i64>) -> (Option<f64>, usize) {
    if !has("strace") {
        return (None, 0);
    }
    let log = dir.join("strace.txt");
    let tag = "v2";
    next_second_after(last_end.get(tag).copied());
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-T", "-e", "trace=rename,renameat,renameat2", "-o"])
        .arg(&log)
        .arg(BIN)
        .arg("--config")
        .arg(cfg)
        .args(["deploy", "site", tag, "--apply", "--json"])
        .current_dir(dir)
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    let out = cmd.output().expect("strace");
    last_end.insert(tag, unix_second());
    if !out.status.success() {
        println!("    (strace could not trace the deploy: {})", text(&out).trim());
        return (None, 0);
    }
    let trace = std::fs::read_to_string(&log).unwrap_or_default();
    let times: Vec<f64> = trace
        .lines()
        .filter(|l| l.contains("/current\"") && l.contains("= 0 <"))
        .filter_map(|l| {
            let t = l.rsplit_once('<')?.1.trim_end_matches('>');
            t.parse::<f64>().ok()
        })
        .map(|s| s * 1e6)
        .collect();
    (times.first().copied(), times.len())
}

/// The switch's two calls as runbook makes them (a link beside `current`, renamed over it), in
/// this process, `n` times alternating two releases: (symlink, rename) samples, µs.
fn switch_calls(dir: &Path, n: usize) -> (Vec<f64>, Vec<f64>) {
    let d = dir.join("switch-calls");
    for r in ["r0", "r1"] {
        std::fs::create_dir_all(d.join("releases").join(r)).expect("mkdir");
    }
    let current = d.join("current");
    std::os::unix::fs::symlink("releases/r0", &current).expect("symlink");
    let tmp = d.join(".current-tmp");
    let (mut link, mut rename) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let target = if i % 2 == 0 { "releases/r1" } else { "releases/r0" };
        let t0 = Instant::now();
        std::os::unix::fs::symlink(target, &tmp).expect("symlink");
        let t1 = Instant::now();
        std::fs::rename(&tmp, &current).expect("rename");
        let t2 = Instant::now();
        link.push((t1 - t0).as_secs_f64() * 1e6);
        rename.push((t2 - t1).as_secs_f64() * 1e6);
    }
    (link, rename)
}

// ---------------------------------------------------------------------------------------------
// (b) runbook against the script
// ---------------------------------------------------------------------------------------------

struct ScriptRun {
    start: f64,
    end: f64,
    marks: Vec<(String, f64)>,
}

fn script_deploy(script: &Path, args: &[String]) -> ScriptRun {
    let (start, end, out) = timed(Command::new("bash").arg(script).args(args).stdin(Stdio::null()));
    assert!(out.status.success(), "deploy.sh {args:?}: {}", text(&out));
    let marks = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("mark ")?.split_whitespace();
            let name = it.next()?.to_string();
            let t: f64 = it.next()?.replace(',', ".").parse().ok()?;
            Some((name, from_unix(t)))
        })
        .collect();
    ScriptRun { start, end, marks }
}

/// Phases as (name, seconds) from the start, the marks (or steps) in order, and the end.
fn phases(start: f64, marks: &[(String, f64)], end: f64, first: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut prev = (first.to_string(), start);
    for (name, t) in marks {
        out.push((prev.0.clone(), t - prev.1));
        prev = (name.clone(), *t);
    }
    out.push((prev.0, end - prev.1));
    out
}

/// Medians of each phase over rounds, in the order of the first round.
fn phase_medians(all: &[Vec<(String, f64)>]) -> Vec<(String, f64)> {
    let Some(first) = all.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|(name, _)| {
            let v: Vec<f64> = all
                .iter()
                .filter_map(|p| p.iter().find(|(n, _)| n == name).map(|(_, s)| *s))
                .collect();
            (name.clone(), median(&v))
        })
        .collect()
}

/// What each runbook phase is: the step recorded at its end names it.
fn rb_phase_name(after: &str) -> &'static str {
    match after {
        "spawn" => "process start, config, state file, lock, live-tree check (git status), resolve, deploy row",
        "started" => "git worktree add, step row",
        "release created" => "link shared, step row",
        "shared linked" => "switch (symlink, rename, fsync of the app dir), step row",
        "switched" => "restart, step row",
        "restarted" => "gate: load, baseline",
        "gate measuring" => "gate: the http check",
        "gate measured" => "gate: evidence written and synced, run recorded",
        "gate recorded" => "mark good",
        "finished" => "upkeep, exit",
        _ => "?",
    }
}

fn sh_phase_name(after: &str) -> &'static str {
    match after {
        "spawn" => "bash start",
        "start" => "git rev-parse, date",
        "resolve" => "git worktree add",
        "worktree" => "ln -s shared",
        "link" => "ln -s current.tmp && mv -T",
        "switch" => "restart",
        "restart" => "curl",
        "check" => "exit",
        _ => "?",
    }
}

struct Micro {
    name: &'static str,
    ms: Vec<f64>,
}

fn micro(name: &'static str, n: usize, mut f: impl FnMut() -> Command) -> Micro {
    let ms_: Vec<f64> = (0..n)
        .map(|_| {
            let (a, b, out) = timed(&mut f());
            assert!(out.status.success(), "{name}: {}", text(&out));
            ms(b - a)
        })
        .collect();
    Micro { name, ms: ms_ }
}

/// `git status` as runbook's live-tree check runs it, in `n` releases just made by `git
/// worktree add` (untimed): its first run in each (git re-reads every file whose timestamp
/// does not let the new index vouch for it, then writes the refreshed index) and its second.
fn fresh_status(repo: &Path, dir: &Path, n: usize) -> (Micro, Micro) {
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for k in 0..n {
        let tree = dir.join(format!("status-{k}"));
        git(
            repo,
            &["worktree", "add", "--detach", &tree.display().to_string(), "v1"],
        );
        for v in [&mut first, &mut second] {
            let (a, b, out) = timed(
                Command::new("git")
                    .arg("-C")
                    .arg(&tree)
                    .args(["status", "--porcelain", "--untracked-files=no"])
                    .stdin(Stdio::null()),
            );
            assert!(out.status.success(), "git status: {}", text(&out));
            v.push(ms(b - a));
        }
    }
    (
        Micro {
            name: "git status --porcelain --untracked-files=no in a release just made: first run",
            ms: first,
        },
        Micro {
            name: "git status --porcelain --untracked-files=no in a release just made: second run",
            ms: second,
        },
    )
}

struct OverheadResult {
    rb: Vec<f64>,
    sh: Vec<f64>,
    rb_phases: Vec<(String, f64)>,
    sh_phases: Vec<(String, f64)>,
    micro: Vec<Micro>,
    check: &'static str,
}

fn bench_overhead(root: &Path, repo: &Path, rounds: usize, py: &str, restart_sh: &Path) -> OverheadResult {
    let dir = root.join("b");
    let (rb_app, sh_app) = (dir.join("app-runbook"), dir.join("app-script"));
    app_dir(&rb_app);
    app_dir(&sh_app);
    let pidfile = dir.join("run.pid");
    let _service = Service {
        pidfile: pidfile.clone(),
    };
    let port = free_port();
    let restart = format!(
        "{{ run: [bash, \"{}\", \"{port}\", \"{}\", \"{py}\"] }}",
        restart_sh.display(),
        pidfile.display()
    );
    let cfg = config(&dir, repo, &rb_app, port, &restart);
    let script = dir.join("deploy.sh");
    std::fs::write(&script, DEPLOY_SH).expect("write deploy.sh");
    let check = if has("curl") { "curl" } else { "python" };
    let script_args = |tag: &str| -> Vec<String> {
        vec![
            sh_app.display().to_string(),
            repo.display().to_string(),
            tag.to_string(),
            port.to_string(),
            pidfile.display().to_string(),
            py.to_string(),
            restart_sh.display().to_string(),
            check.to_string(),
        ]
    };

    // Warm-up, untimed: each side's first release (no live tree yet, a fresh state file).
    let mut last_end: HashMap<(&str, &str), i64> = HashMap::new();
    rb_deploy(&cfg, "v1");
    last_end.insert(("runbook", "v1"), unix_second());
    script_deploy(&script, &script_args("v1"));
    last_end.insert(("script", "v1"), unix_second());

    let db_path = dir.join("state/runbook.db");
    let (mut rb, mut sh) = (Vec::new(), Vec::new());
    let (mut rb_phases, mut sh_phases) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let tag = if round % 2 == 0 { "v2" } else { "v1" };
        let order = if round % 2 == 0 {
            ["runbook", "script"]
        } else {
            ["script", "runbook"]
        };
        for side in order {
            next_second_after(last_end.get(&(side, tag)).copied());
            // Each side starts with the last deploy's files written back, not being written.
            rustix::fs::sync();
            if side == "runbook" {
                let d = rb_deploy(&cfg, tag);
                let db = rusqlite::Connection::open_with_flags(&db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .expect("open the state file");
                let steps = recorded_steps(&db, &d);
                rb.push(ms(d.end - d.start));
                rb_phases.push(phases(d.start, &steps, d.end, "spawn"));
            } else {
                let s = script_deploy(&script, &script_args(tag));
                sh.push(ms(s.end - s.start));
                sh_phases.push(phases(s.start, &s.marks, s.end, "spawn"));
            }
            last_end.insert((side, tag), unix_second());
        }
        println!(
            "    round {}: {tag}, {} first: runbook {:.0} ms, script {:.0} ms ({:.2}×)",
            round + 1,
            order[0],
            rb[round],
            sh[round],
            rb[round] / sh[round]
        );
    }

    // Where runbook's extra time may go, each on its own (after the rounds, untimed there).
    let live = rb_app.join("current");
    let micros = vec![
        micro("runbook --version (process start)", 5, || {
            let mut c = Command::new(BIN);
            c.arg("--version").stdin(Stdio::null());
            c
        }),
        micro(
            "runbook deploy status site (start, config, state, git rev-parse + git status of the live tree)",
            5,
            || runbook(&cfg, &["deploy", "status", "site", "--json"]),
        ),
        micro(
            "git status --porcelain --untracked-files=no in the live release (its index refreshed by the runs above)",
            5,
            || {
                let mut c = Command::new("git");
                c.arg("-C")
                    .arg(&live)
                    .args(["status", "--porcelain", "--untracked-files=no"]);
                c
            },
        ),
        micro(
            "runbook gate run after (start, the http check, evidence, record)",
            5,
            || runbook(&cfg, &["gate", "run", "after", "--json"]),
        ),
    ];
    let (first, second) = fresh_status(repo, &dir, 5);
    let mut micros = micros;
    micros.push(first);
    micros.push(second);
    OverheadResult {
        rb,
        sh,
        rb_phases: phase_medians(&rb_phases),
        sh_phases: phase_medians(&sh_phases),
        micro: micros,
        check,
    }
}

// ---------------------------------------------------------------------------------------------

fn print_switch(r: &SwitchResult) {
    println!("  {} service: {}", r.name, r.service);
    let b = &r.baseline;
    println!(
        "    baseline (1 s, no deploy): {} sent, {} answered, {} unanswered, longest gap between answers {:.1} ms",
        b.sent,
        b.answered,
        b.unanswered(),
        ms(b.longest_gap)
    );
    println!(
        "    #  tag | deploy ms | sent | answered | unanswered (kinds)            | unanswered span ms | longest gap ms | switch at ms (poll bracket µs) | restart ms | first new answer ms"
    );
    for (i, s) in r.deploys.iter().enumerate() {
        let kinds =
            s.w.failed
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ");
        println!(
            "    {:<2} {} | {:>9.0} | {:>4} | {:>8} | {:>4} {:<25} | {:>18.1} | {:>14.1} | {:>12} ({:>6}) | {:>10} | {:>8}",
            i + 1,
            s.d.tag,
            ms(s.d.end - s.d.start),
            s.w.sent,
            s.w.answered,
            s.w.unanswered(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!("({kinds})")
            },
            ms(s.w.span),
            ms(s.w.longest_gap),
            s.switched_at.map_or("?".into(), |t| format!("{:.0}", ms(t))),
            s.seen_switch
                .as_ref()
                .map_or("-".into(), |c| format!("{:.1}", (c.after - c.before) * 1e6)),
            s.restart.map_or("?".into(), |t| format!("{:.0}", ms(t))),
            s.w.first_new.map_or("-".into(), |t| format!("{:.0}", ms(t))),
        );
    }
    let p = &r.polled;
    println!(
        "    poller: {} polls in {:.1} s ({:.0}/s, mean {:.2} µs apart, longest gap {:.1} ms); current missing {} times, pointing nowhere {} times; {} changes seen for {} deploys",
        p.polls,
        p.secs,
        p.polls as f64 / p.secs,
        p.secs / p.polls.max(1) as f64 * 1e6,
        ms(p.max_gap),
        p.missing,
        p.dangling,
        p.changes.len(),
        r.deploys.len()
    );
    match r.rename_us {
        Some(us) => println!(
            "    rename(2) of current under strace -T: {us:.0} µs ({} rename of current in the deploy)",
            r.rename_calls
        ),
        None => println!("    rename(2) of current: not traced here (traced in a1; the same code)"),
    }
}

fn switch_json(r: &SwitchResult) -> Value {
    let spans: Vec<f64> = r.deploys.iter().map(|s| ms(s.w.span)).collect();
    let unanswered: Vec<f64> = r.deploys.iter().map(|s| s.w.unanswered() as f64).collect();
    json!({
        "service": r.service,
        "baseline": r.baseline.json(),
        "deploys": r.deploys.iter().map(|s| json!({
            "tag": s.d.tag,
            "release": s.d.release,
            "deploy_ms": r3(ms(s.d.end - s.d.start)),
            "clients": s.w.json(),
            "switched_at_ms": s.switched_at.map(|t| r3(ms(t))),
            "poll_bracket_us": s.seen_switch.as_ref().map(|c| r3((c.after - c.before) * 1e6)),
            "restart_ms": s.restart.map(|t| r3(ms(t))),
        })).collect::<Vec<_>>(),
        "unanswered_per_deploy": { "median": median(&unanswered), "max": max(&unanswered) },
        "unanswered_span_ms": { "median": r3(median(&spans)), "max": r3(max(&spans)) },
        "poller": {
            "polls": r.polled.polls,
            "secs": r3(r.polled.secs),
            "missing": r.polled.missing,
            "dangling": r.polled.dangling,
            "changes": r.polled.changes.len(),
            "max_bracket_us": r3(r.polled.changes.iter().map(|c| (c.after - c.before) * 1e6).fold(0.0, f64::max)),
            "longest_gap_ms": r3(ms(r.polled.max_gap)),
        },
        "rename_us_strace": r.rename_us.map(r3),
    })
}

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 9);
    let files = env_usize("BENCH_FILES", 10_000);
    let switch_deploys = env_usize("BENCH_SWITCH_DEPLOYS", 10);
    let threads = env_usize("BENCH_LOAD_THREADS", 4);
    let pace = Duration::from_micros(
        std::env::var("BENCH_LOAD_PACE_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
    );
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    epoch();
    let load_at_start = loadavg();

    println!("runbook deploy benchmark");
    println!("  binary     {BIN}");
    println!("  machine    {cores} core(s), {}", cpu_model());
    println!("  git        {}", version_of("git", "--version"));
    println!("  bash       {}", version_of("bash", "--version"));
    let py = python();
    println!("  python     {} ({py})", version_of(&py, "--version"));
    println!("  curl       {}", version_of("curl", "--version"));
    println!("  loadavg    {load_at_start} (at start)");

    let tmp;
    let root = match std::env::var("BENCH_DIR") {
        Ok(d) => {
            let p = PathBuf::from(d).join(format!("deploy-bench-{}", std::process::id()));
            std::fs::create_dir_all(&p).expect("BENCH_DIR");
            tmp = None;
            p
        }
        Err(_) => {
            let t = tempfile::tempdir().expect("tempdir");
            let p = t.path().to_path_buf();
            tmp = Some(t);
            p
        }
    };
    println!("  work dir   {}", root.display());
    let t = Instant::now();
    let repo = make_repo(&root, files);
    println!(
        "  repository {files} files (index.html + src/dNN/sNN/fNNNNN.txt), tags v1 and v2 (v2 changes {} files); made in {:.1} s",
        1 + files.saturating_sub(1).div_ceil(100),
        t.elapsed().as_secs_f64()
    );
    let restart_sh = root.join("restart.sh");
    std::fs::write(&restart_sh, RESTART_SH).expect("write restart.sh");
    println!();

    // (a)
    println!(
        "(a) the switch: {switch_deploys} deploys per service alternating v2/v1 (the first release went live before), 500 ms apart;"
    );
    println!(
        "    load: {threads} threads, a fresh TCP connection per GET /index.html, one request per thread every {} µs{}",
        pace.as_micros(),
        if pace.is_zero() { " (back to back)" } else { "" }
    );
    println!("    poller: readlink(current) + stat(current) in a tight loop, one thread");
    let a1 = bench_switch(&root, &repo, "a1", switch_deploys, threads, pace, &py, &restart_sh);
    print_switch(&a1);
    let a2 = bench_switch(&root, &repo, "a2", switch_deploys, threads, pace, &py, &restart_sh);
    print_switch(&a2);
    let (link_us, rename_us) = switch_calls(&root, 1000);
    let (link_us, rename_us) = (Stats::of(&link_us), Stats::of(&rename_us));
    println!(
        "  the switch's calls in this process, 1000 times, no load: symlink median {:.1} µs (p99 {:.1}), rename median {:.1} µs (p99 {:.1}, max {:.1})",
        link_us.median, link_us.p99, rename_us.median, rename_us.p99, rename_us.max
    );
    println!();

    // (b)
    println!(
        "(b) runbook deploy --apply (gate after: one http check, evidence) against deploy.sh, {rounds} rounds, alternating tags and which side goes first"
    );
    let b = bench_overhead(&root, &repo, rounds, &py, &restart_sh);
    let (rb, sh) = (Stats::of(&b.rb), Stats::of(&b.sh));
    let ratio = rb.median / sh.median;
    let ratios: Vec<f64> = b.rb.iter().zip(&b.sh).map(|(a, s)| a / s).collect();
    println!(
        "    runbook  min {:.0}  median {:.0}  max {:.0} ms",
        rb.min, rb.median, rb.max
    );
    println!(
        "    script   min {:.0}  median {:.0}  max {:.0} ms  (check: {})",
        sh.min, sh.median, sh.max, b.check
    );
    println!(
        "    ratio of medians {ratio:.2}× (per round {}), runbook {:+.0} ms",
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        rb.median - sh.median
    );
    println!(
        "    target ≤ {TARGET_RATIO}× the script's wall time: {}",
        verdict(ratio <= TARGET_RATIO)
    );
    println!("    runbook's phases (median ms, from its state file: step rows, the gate run, audit events):");
    for (after, s) in &b.rb_phases {
        println!("      {:>7.1}  {}", ms(*s), rb_phase_name(after));
    }
    println!("    the script's phases (median ms, from its $EPOCHREALTIME marks):");
    for (after, s) in &b.sh_phases {
        println!("      {:>7.1}  {}", ms(*s), sh_phase_name(after));
    }
    println!("    on their own, after the rounds (median of 5, ms):");
    for m in &b.micro {
        println!("      {:>7.1}  {}", median(&m.ms), m.name);
    }
    // The live-tree check meets a release whose index git cannot vouch for yet (the previous
    // deploy made it): what runbook would take were that index refreshed, as an estimate: its
    // first phase replaced by `deploy status` on a refreshed index (start, config, state,
    // git rev-parse, git status).
    let first_phase = b.rb_phases.first().map_or(0.0, |(_, s)| ms(*s));
    let status_refreshed = median(&b.micro[1].ms);
    let estimate = rb.median - first_phase + status_refreshed;
    println!(
        "    estimate: runbook with its first phase ({first_phase:.0} ms) as long as `deploy status` on a refreshed index ({status_refreshed:.0} ms) = {estimate:.0} ms = {:.2}× the script",
        estimate / sh.median
    );
    println!();

    // (c)
    println!(
        "(c) after kill -9 of runbook half-way: `deploy site --resume` and `deploy rollback --apply`, timed (3 each)"
    );
    let c = bench_resume(&root, &repo);
    for (what, secs) in &c {
        println!(
            "    {:<62} median {:>7.0} ms  max {:>7.0} ms",
            what,
            ms(median(secs)),
            ms(max(secs))
        );
    }
    let worst = c.iter().map(|(_, v)| max(v)).fold(0.0, f64::max);
    println!("    target: each under 5 s: {}", verdict(worst < 5.0));
    let load_at_end = loadavg();
    println!();
    println!("  loadavg  {load_at_end} (at end)");

    let summary = json!({
        "bench": "deploy",
        "cores": cores,
        "cpu": cpu_model(),
        "loadavg_start": load_at_start,
        "loadavg_end": load_at_end,
        "files": files,
        "switch": {
            "deploys_per_service": switch_deploys,
            "load_threads": threads,
            "pace_us": pace.as_micros() as u64,
            "a1": switch_json(&a1),
            "a2": switch_json(&a2),
            "in_process_symlink_us": link_us.json(),
            "in_process_rename_us": rename_us.json(),
        },
        "overhead": {
            "rounds": rounds,
            "runbook_ms": rb.json(),
            "script_ms": sh.json(),
            "ratio": r3(ratio),
            "ratios": ratios.iter().map(|r| r3(*r)).collect::<Vec<_>>(),
            "check": b.check,
            "runbook_phases_ms": b.rb_phases.iter().map(|(n, s)| json!({"phase": rb_phase_name(n), "ms": r3(ms(*s))})).collect::<Vec<_>>(),
            "script_phases_ms": b.sh_phases.iter().map(|(n, s)| json!({"phase": sh_phase_name(n), "ms": r3(ms(*s))})).collect::<Vec<_>>(),
            "on_their_own_ms": b.micro.iter().map(|m| json!({"what": m.name, "median": r3(median(&m.ms))})).collect::<Vec<_>>(),
            "estimate_refreshed_index_ms": r3(estimate),
            "estimate_refreshed_index_ratio": r3(estimate / sh.median),
            "target_ratio": TARGET_RATIO,
            "met": ratio <= TARGET_RATIO,
        },
        "recovery_ms": c.iter().map(|(w, v)| json!({"what": w, "median": r3(ms(median(v))), "max": r3(ms(max(v)))})).collect::<Vec<_>>(),
    });
    println!("BENCH_JSON {summary}");
    match tmp {
        Some(t) => drop(t),
        None => {
            let _ = std::fs::remove_dir_all(&root);
        }
    }
}
