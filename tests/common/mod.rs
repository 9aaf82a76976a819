//! Shared helpers for integration tests: a temp directory with a runbook.yaml, the real
//! binary, direct access to the real SQLite state file, and deadline-based waiting.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod corpus;
pub mod http;
pub mod in_process;
pub mod netns;
pub mod receiver;
pub mod relay;

pub const BIN: &str = env!("CARGO_BIN_EXE_runbook");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The database of this test's state when the suite runs on PostgreSQL.
    pub pg: Option<PgDb>,
}

/// A program of PostgreSQL's server package (`/usr/lib/postgresql/VERSION/bin/NAME`), which
/// Debian keeps off PATH.
pub fn pg_bin(name: &str) -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server programs (/usr/lib/postgresql)")
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not under /usr/lib/postgresql/*/bin"))
}

/// Whether the suite keeps each test's state in PostgreSQL (`RUNBOOK_TEST_STATE=postgres`):
/// the machine's server on 127.0.0.1:5432, one database per test, dropped after it.
pub fn on_postgres() -> bool {
    std::env::var("RUNBOOK_TEST_STATE").as_deref() == Ok("postgres")
}

/// A database of its own on the machine's PostgreSQL, dropped (with its connections) on drop.
pub struct PgDb {
    pub name: String,
}

impl PgDb {
    pub fn create() -> PgDb {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "rb_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        psql("test", &format!("CREATE DATABASE {name}"));
        PgDb { name }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}?sslmode=disable", self.name)
    }

    /// The first column of the first row of `sql`, as text.
    pub fn query(&self, sql: &str) -> String {
        psql(&self.name, sql)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qtAc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .output();
    }
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(o: Output) -> Out {
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }
}

impl Env {
    /// A temp dir holding `runbook.yaml` with `yaml`; `{dir}` in it becomes the temp dir's path.
    /// The state file is `state/runbook.db` inside the temp dir unless the yaml sets `state:`.
    pub fn new(yaml: &str) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut text = yaml.replace("{dir}", &dir.path().display().to_string());
        let mut pg = None;
        if !text.contains("state:") {
            let url = if on_postgres() {
                let db = PgDb::create();
                let url = db.url();
                pg = Some(db);
                url
            } else {
                "sqlite://state/runbook.db".to_string()
            };
            // On PostgreSQL this host's own files (locks, audit archives) stay in state/.
            text = if pg.is_some() {
                format!("state: {{ url: \"{url}\", dir: state }}\n{text}")
            } else {
                format!("state: {{ url: \"{url}\" }}\n{text}")
            };
        }
        let config = dir.path().join("runbook.yaml");
        std::fs::write(&config, text).expect("write config");
        Env { dir, config, pg }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// File names in a directory of the temp dir, sorted; empty if it does not exist.
    pub fn names(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Replaces `from` with `to` in runbook.yaml.
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        assert!(text.contains(from), "`{from}` is not in the config");
        std::fs::write(&self.config, text.replace(from, to)).expect("write config");
    }

    /// Writes `len` bytes that no compressor can shrink (xorshift) to `rel`.
    pub fn write_incompressible(&self, rel: &str, len: usize) -> PathBuf {
        let mut data = vec![0u8; len];
        let mut x = 0x9e3779b97f4a7c15u64;
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, &data).expect("write");
        p
    }

    pub fn state_db(&self) -> PathBuf {
        self.path("state/runbook.db")
    }

    /// What this host's own files (locks, audit archives) are named after: the state file,
    /// or with PostgreSQL `state/runbook`.
    pub fn state_anchor(&self) -> PathBuf {
        if self.pg.is_some() {
            self.path("state/runbook")
        } else {
            self.state_db()
        }
    }

    /// The `state:` line this env's runbook.yaml starts with.
    pub fn state_line(&self) -> String {
        match &self.pg {
            Some(db) => format!("state: {{ url: \"{}\", dir: state }}", db.url()),
            None => "state: { url: \"sqlite://state/runbook.db\" }".to_string(),
        }
    }

    /// The real binary with `--config` set and a clean environment for runbook's own variables.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(&self.config).current_dir(self.dir.path());
        c.env_remove("RUNBOOK_CONFIG")
            .env_remove("RUNBOOK_LOG")
            .env_remove("NOTIFY_SOCKET");
        c.stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Out {
        Out::from(self.cmd().args(args).output().expect("run runbook"))
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let out = self.run(&[args, &["--json"]].concat());
        let code = out.code;
        (code, out.json())
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn runbook")
    }

    /// The state, opened directly (for assertions and for tampering): the SQLite file, or
    /// the test's PostgreSQL database. Queries are written in SQLite's dialect.
    pub fn db(&self) -> StateDb {
        match &self.pg {
            Some(db) => {
                StateDb::Pg(runbook::store::postgres::connect(&db.url()).expect("connect to the state database"))
            }
            None => StateDb::Sqlite(rusqlite::Connection::open(self.state_db()).expect("open state db")),
        }
    }

    /// Whether the state is sound, "ok" or what is wrong: SQLite's `PRAGMA integrity_check`;
    /// on PostgreSQL, pg_amcheck over every table and index (heap pages, B-trees, and that
    /// each index holds every row).
    pub fn integrity(&self) -> String {
        match &self.pg {
            Some(db) => {
                let out = Command::new(pg_bin("pg_amcheck"))
                    .args([
                        "--install-missing",
                        "--heapallindexed",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        "postgres",
                    ])
                    .arg(&db.name)
                    .output()
                    .expect("run pg_amcheck");
                if out.status.success() {
                    "ok".into()
                } else {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    )
                }
            }
            None => self.db().query_row("PRAGMA integrity_check", (), |r| r.get(0)).unwrap(),
        }
    }

    /// SQL for the length of a JSON array kept as text in `column`, on this env's backend.
    pub fn json_len(&self, column: &str) -> String {
        match self.pg {
            Some(_) => format!("json_array_length({column}::json)"),
            None => format!("json_array_length({column})"),
        }
    }

    /// Every byte the state keeps at rest: its files under state/ and, on PostgreSQL, a dump
    /// of the whole database.
    pub fn state_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        if let Ok(dir) = std::fs::read_dir(self.path("state")) {
            for entry in dir.flatten() {
                if entry.path().is_file() {
                    all.extend(std::fs::read(entry.path()).unwrap_or_default());
                }
            }
        }
        if let Some(db) = &self.pg {
            let dump = Command::new("pg_dump")
                .args(["-h", "127.0.0.1", "-U", "postgres", &db.name])
                .output()
                .expect("pg_dump");
            assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
            all.extend(dump.stdout);
        }
        all
    }

    /// The SQLite state file itself, for tests of the file (its mode, WAL, tampering with
    /// sqlite3): such a test does not run on PostgreSQL.
    pub fn sqlite_file(&self) -> rusqlite::Connection {
        assert!(self.pg.is_none(), "this test is about the SQLite state file");
        rusqlite::Connection::open(self.state_db()).expect("open state db")
    }

    /// The first column of the first row of `sql` on the state, as a number (SQLite's
    /// dialect, which PostgreSQL shares for these).
    pub fn count(&self, sql: &str) -> i64 {
        self.db().query_row(sql, (), |r| r.get(0)).expect(sql)
    }
}

/// A state opened directly by a test, on either backend, with rusqlite's calls.
pub enum StateDb {
    Sqlite(rusqlite::Connection),
    Pg(runbook::store::db::PgConn),
}

impl StateDb {
    pub fn conn(&self) -> runbook::store::db::Conn<'_> {
        match self {
            StateDb::Sqlite(c) => runbook::store::db::Conn::Sqlite(c),
            StateDb::Pg(c) => runbook::store::db::Conn::Pg(c),
        }
    }

    pub fn query_row<T, P: runbook::store::db::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&runbook::store::db::Row) -> runbook::store::db::Result<T>,
    ) -> runbook::store::db::Result<T> {
        self.conn().query_row(sql, params, f)
    }

    pub fn execute<P: runbook::store::db::Params>(&self, sql: &str, params: P) -> runbook::store::db::Result<usize> {
        self.conn().execute(sql, params)
    }

    pub fn execute_batch(&self, sql: &str) -> runbook::store::db::Result<()> {
        self.conn().execute_batch(sql)
    }

    pub fn prepare(&self, sql: &str) -> runbook::store::db::Result<runbook::store::db::Stmt<'_>> {
        self.conn().prepare(sql)
    }
}

/// The stored form of the time `secs` seconds ago (`runbook::clock::to_text`).
pub fn ago(secs: i64) -> String {
    runbook::clock::to_text(runbook::clock::now() - jiff::SignedDuration::from_secs(secs))
}

/// Polls `f` until it is true or `limit` passes.
/// Adds an indexed table to the SQLite database at `path`, then scribbles over the header of
/// its last page (an index page): the database still opens, and `PRAGMA integrity_check`
/// reports the damage. Archived as it is, it matches its manifest; only a database check can
/// tell.
pub fn damage_sqlite(path: &Path) {
    rusqlite::Connection::open(path)
        .unwrap()
        .execute_batch(
            "PRAGMA journal_mode=DELETE; CREATE TABLE big(b TEXT); CREATE INDEX big_b ON big(b); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
             INSERT INTO big SELECT printf('%08d', i) FROM n;",
        )
        .unwrap();
    let mut db = std::fs::read(path).unwrap();
    let at = db.len() - 4096;
    db[at..at + 8].fill(0x55);
    std::fs::write(path, &db).unwrap();
}

pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

pub fn file_exists(p: &Path) -> bool {
    p.exists()
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

/// The fenced code blocks of a markdown page: (info string, first line number, text).
pub fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (fence, open.take()) {
            (Some(_), Some(block)) => out.push(block),
            (Some(info), None) => open = Some((info.trim().to_string(), i + 2, String::new())),
            (None, Some(mut block)) => {
                block.2.push_str(line);
                block.2.push('\n');
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    out
}

/// Runs SQL with psql against the machine's PostgreSQL (127.0.0.1, user postgres); returns
/// its unaligned output, trimmed. Fails the test if psql does.
pub fn psql(dbname: &str, sql: &str) -> String {
    let out = psql_output(dbname, sql);
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether psql ran `sql` (one transaction of its statements) without an error.
pub fn psql_ok(dbname: &str, sql: &str) -> bool {
    psql_output(dbname, sql).status.success()
}

fn psql_output(dbname: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            dbname,
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql")
}

/// `promtool check metrics` accepts the exposition (checked when promtool is installed).
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("note: promtool not installed; exposition not validated by it");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `runbook serve` process, stopped when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `runbook serve` on a port the kernel picks (`--listen 127.0.0.1:0`) and returns
/// the port its log names, once it listens. No other test can take the port in between.
pub fn serve(env: &Env) -> (Server, u16) {
    start_api(env, &["serve", "--listen", "127.0.0.1:0"])
}

/// Starts `runbook ARGS` (`serve` or `daemon`; `api.listen` on port 0 unless the arguments
/// say otherwise) and returns the port its log names once it listens.
pub fn start_api(env: &Env, args: &[&str]) -> (Server, u16) {
    let mut child = env
        .cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn runbook");
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let port = announced_port(stderr, api_port).expect("runbook did not say where it serves the API");
    (server, port)
}

/// Which of the state file and its WAL hold `needle` anywhere in their bytes (a secret that
/// must never be stored).
pub fn state_files_holding(env: &Env, needle: &str) -> Vec<String> {
    ["state/runbook.db", "state/runbook.db-wal"]
        .into_iter()
        .filter(|f| {
            std::fs::read(env.path(f))
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .map(str::to_string)
        .collect()
}

/// A test that cannot run here (no Landlock, not root) says why and returns; under
/// `RUNBOOK_TEST_REQUIRE=1` (CI) it fails instead, so a missing capability is never a pass.
pub fn cannot_run(why: &str) {
    if std::env::var("RUNBOOK_TEST_REQUIRE").is_ok_and(|v| v == "1") {
        panic!("RUNBOOK_TEST_REQUIRE=1 and this test cannot run here: {why}");
    }
    eprintln!("note: skipping: {why}");
}

/// Whether the kernel's read-only sandbox can hold a test's commands here: Landlock, and root
/// (masking secrets takes a mount namespace). If not, says why through `cannot_run`.
pub fn sandbox_here(what: &str) -> bool {
    if runbook::exec::sandbox::abi().is_some() && rustix::process::geteuid().is_root() {
        return true;
    }
    cannot_run(&format!("{what} needs Landlock and root (for deny_read masking)"));
    false
}

/// A new API token of `scope` (read or write) named `name`, as `token create` prints it.
pub fn create_token(env: &Env, name: &str, scope: &str) -> String {
    let out = env.run(&["token", "create", name, "--scope", scope]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout.trim().to_string()
}

/// The port a daemon or `serve` logging to `log` (a file) says it serves the API on, once it
/// does (at most 30 s).
pub fn api_port_in_log(log: &Path) -> u16 {
    let mut port = 0;
    assert!(
        wait_for(Duration::from_secs(30), || {
            port = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .find_map(api_port)
                .unwrap_or(0);
            port != 0
        }),
        "no `serving the API` line in {}",
        log.display()
    );
    port
}

/// The port in runbook's `serving the API … addr=127.0.0.1:PORT` log line (`serve` and
/// `daemon` both log it, with the port bound, so `127.0.0.1:0` works).
pub fn api_port(line: &str) -> Option<u16> {
    line.contains("serving the API")
        .then(|| line.split("addr=").nth(1)?.split_whitespace().next()?.parse().ok())
        .flatten()
        .map(|a: std::net::SocketAddr| a.port())
}

/// Reads `out` line by line until `port_of` finds a port in a line (at most 20 s), then keeps
/// draining it in a thread so the child never blocks on a full pipe.
pub fn announced_port(
    out: impl std::io::Read + Send + 'static,
    port_of: impl Fn(&str) -> Option<u16> + Send + 'static,
) -> Option<u16> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if !sent && let Some(p) = port_of(&line) {
                sent = tx.send(p).is_ok();
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20)).ok()
}

/// Starts a third-party server that only takes its port on the command line (Alertmanager,
/// moto): `spawn(port)` on a port that was free a moment ago, then waits until `ready(port)`.
/// Another process can take that port in between; the server then exits, and the start is
/// tried again on another port (up to five times).
pub fn spawn_listening(
    what: &str,
    mut spawn: impl FnMut(u16) -> Child,
    mut ready: impl FnMut(u16) -> bool,
) -> (Server, u16) {
    for _ in 0..5 {
        let port = http::free_port();
        let mut server = Server(spawn(port));
        let mut exited = false;
        let up = wait_for(Duration::from_secs(30), || {
            exited = !matches!(server.0.try_wait(), Ok(None));
            exited || ready(port)
        });
        if up && !exited {
            return (server, port);
        }
        if !exited {
            panic!("{what} did not become ready on 127.0.0.1:{port}");
        }
        let _ = server.0.wait();
    }
    panic!("{what} exited at start five times (is it installed?)")
}

/// Runs `script` in a private mount namespace with a small tmpfs at `$MNT`; `None` when this
/// machine does not allow mounting (the caller then skips with a note).
#[allow(dead_code)]
pub fn in_tmpfs(env: &Env, size: &str, script: &str) -> Option<String> {
    let mnt = env.path("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let probe = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            &format!("mount -t tmpfs -o size={size} tmpfs {}", mnt.display()),
        ])
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        eprintln!("note: cannot mount a tmpfs here (needs root and mount namespaces); skipping");
        return None;
    }
    let full = format!(
        "set -u; mount -t tmpfs -o size={size} tmpfs \"$MNT\"; R() {{ \"$BIN\" --config \"$CFG\" \"$@\"; }}\n{script}"
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &full])
        .env("MNT", &mnt)
        .env("BIN", BIN)
        .env("CFG", &env.config)
        .env_remove("RUNBOOK_LOG")
        .output()
        .unwrap();
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A new age identity: (the identity file's text, its recipient).
#[allow(dead_code)]
pub fn age_key() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    (
        format!("{}\n", identity.to_string().expose_secret()),
        identity.to_public().to_string(),
    )
}

/// `runbook daemon` as a child process logging (as text) to a file of its own, killed on drop
/// (also when a test panics).
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(env: &Env) -> Daemon {
        Daemon::start_with(env, &[], None)
    }

    /// With more arguments after `daemon`, and `NOTIFY_SOCKET` when given.
    pub fn start_with(env: &Env, extra: &[&str], notify_socket: Option<&Path>) -> Daemon {
        Daemon::start_via(env, &[], extra, notify_socket)
    }

    /// Started through `wrapper` (`ip netns exec NAME`, say), which ends by running the
    /// program after it.
    pub fn start_via(env: &Env, wrapper: &[&str], extra: &[&str], notify_socket: Option<&Path>) -> Daemon {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let log = env.path(&format!("daemon-{}.log", STARTS.fetch_add(1, Ordering::SeqCst)));
        let mut cmd = env.cmd();
        if let [program, args @ ..] = wrapper {
            let mut wrapped = Command::new(program);
            wrapped
                .args(args)
                .arg(cmd.get_program())
                .args(cmd.get_args())
                .current_dir(env.dir.path())
                .stdin(Stdio::null());
            for (k, v) in cmd.get_envs() {
                match v {
                    Some(v) => wrapped.env(k, v),
                    None => wrapped.env_remove(k),
                };
            }
            cmd = wrapped;
        }
        cmd.args(["daemon", "--log-format", "text"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(sock) = notify_socket {
            cmd.env("NOTIFY_SOCKET", sock);
        }
        Daemon {
            child: Some(cmd.spawn().expect("start the daemon")),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait: the exit code, how long stopping took, and the log.
    pub fn stop(mut self) -> (i32, Duration, String) {
        let mut child = self.child.take().unwrap();
        let t = Instant::now();
        signal(child.id(), "TERM");
        let status = child.wait().unwrap();
        (status.code().unwrap_or(-1), t.elapsed(), self.log())
    }

    /// SIGKILL and wait.
    pub fn kill_9(mut self) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), "KILL");
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A CA and a server certificate for `localhost` signed by it; `None` without openssl.
pub fn certificates(dir: &std::path::Path) -> Option<()> {
    let sh = |script: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let ok = sh(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=runbook-test-ca 2>/dev/null",
    ) && sh(
        "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null",
    ) && sh(
        "printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf",
    ) && sh(
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null",
    );
    ok.then_some(())
}

/// Runs git in `dir` with a fixed identity and no signing; returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.org")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.org")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A write token created by another OS user (`nobody`), as a second operator would: the
/// state directory is opened to that user first.
pub fn token_of_another_user(env: &Env, name: &str) -> String {
    std::fs::create_dir_all(env.path("state")).unwrap();
    let opened = std::process::Command::new("chmod")
        .args(["-R", "a+rwX"])
        .arg(env.path("state"))
        .status()
        .unwrap();
    assert!(opened.success());
    let out = Out::from(
        std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(BIN)
            .arg("--config")
            .arg(&env.config)
            .args(["token", "create", name, "--scope", "write"])
            .current_dir(env.dir.path())
            .env_remove("RUNBOOK_CONFIG")
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.trim().to_string()
}
