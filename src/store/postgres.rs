//! The PostgreSQL backend: a small pool of connections to the state database, its schema
//! version and migrations, and write transactions.
//!
//! Connections follow libpq's rules where users expect them: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`, with `sslrootcert`), the password from the URL,
//! `PGPASSWORD` or `~/.pgpass` (`PGPASSFILE`), the user from `PGUSER` or the login name, and the
//! local socket when no host is named. Each connection's task runs on the shared runtime; the
//! store's callers block on their replies, as they do on SQLite.
//! Invariants: a write transaction first takes one transaction-scoped advisory lock (so writes
//! are serialized exactly as SQLite's `BEGIN IMMEDIATE` serializes them, and the audit chain
//! never forks) and bumps the state version; a connection that fails or is dropped inside a
//! transaction is closed, never returned to the pool.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::db::{self, Conn, DbError, PgConn, block_on, pg_schema};
use super::sqlite::MIGRATIONS;

/// The advisory lock every write transaction holds ("runbook" in ASCII); locks are per
/// database, so two states on one server never wait on each other.
const WRITE_LOCK: i64 = 0x72_75_6e_62_6f_6f_6b;

/// Reads the state version (see `Store::data_version`).
pub(super) const STATE_VERSION: &str = "SELECT v FROM runbook_state_version";

/// Connections open at most; a caller past it waits for one to come back.
pub(super) const POOL_MAX: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed connection attempt the next one waits this long, doubling up to
/// `RETRY_MAX`: while the server is away, callers are told at once instead of each waiting
/// out a connection timeout, and the server is not hammered when it comes back.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(8);

const BOOTSTRAP: &str = "CREATE TABLE IF NOT EXISTS runbook_schema (version BIGINT NOT NULL); \
    CREATE TABLE IF NOT EXISTS runbook_state_version (v BIGINT NOT NULL); \
    INSERT INTO runbook_state_version (v) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM runbook_state_version); \
    INSERT INTO runbook_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM runbook_schema)";

pub(super) struct Pool {
    config: tokio_postgres::Config,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    idle: Mutex<Vec<PgConn>>,
    returned: Condvar,
    open: AtomicUsize,
    in_use: AtomicUsize,
    max: usize,
    down: Mutex<Option<Down>>,
}

/// The server could not be reached: since when, how many attempts failed, when the next may be
/// made, and why the last failed.
struct Down {
    since: Instant,
    failures: u32,
    retry_at: Instant,
    error: String,
}

/// A connection taken from the pool; it goes back when dropped (unless broken or mid-transaction).
pub(super) struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<PgConn>,
    in_tx: bool,
}

impl Pool {
    /// A pool of at most `max` connections to the database of `url` (none opened yet).
    pub(super) fn new(url: &str, max: usize) -> db::Result<Pool> {
        let (config, tls) = config(url)?;
        Ok(Pool {
            config,
            tls,
            idle: Mutex::new(Vec::new()),
            returned: Condvar::new(),
            open: AtomicUsize::new(0),
            in_use: AtomicUsize::new(0),
            max,
            down: Mutex::new(None),
        })
    }

    /// (connections in use, connections open).
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.in_use.load(Ordering::Relaxed), self.open.load(Ordering::Relaxed))
    }

    pub(super) fn get(&self) -> db::Result<Pooled<'_>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while let Some(conn) = idle.pop() {
                if conn.client.is_closed() {
                    self.open.fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
                self.in_use.fetch_add(1, Ordering::Relaxed);
                return Ok(self.pooled(conn));
            }
            if self.open.load(Ordering::Relaxed) < self.max {
                self.open.fetch_add(1, Ordering::Relaxed);
                drop(idle);
                return match self.connect_with_backoff() {
                    Ok(conn) => {
                        self.in_use.fetch_add(1, Ordering::Relaxed);
                        Ok(self.pooled(conn))
                    }
                    Err(e) => {
                        self.open.fetch_sub(1, Ordering::Relaxed);
                        Err(e)
                    }
                };
            }
            let (guard, timeout) = self
                .returned
                .wait_timeout(idle, CONNECT_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            idle = guard;
            if timeout.timed_out() && idle.is_empty() {
                return Err(DbError::Message(format!(
                    "all {} connections to the state database stayed busy for {}s",
                    self.max,
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        }
    }

    fn pooled(&self, conn: PgConn) -> Pooled<'_> {
        Pooled {
            pool: self,
            conn: Some(conn),
            in_tx: false,
        }
    }

    /// Connects, unless the last attempt failed and its backoff has not passed yet (then the
    /// last error is returned at once). The first failure and the recovery are logged.
    fn connect_with_backoff(&self) -> db::Result<PgConn> {
        {
            let down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = down.as_ref() {
                let now = Instant::now();
                if now < d.retry_at {
                    return Err(DbError::Message(format!(
                        "{} (unreachable for {}s; next attempt in {:.1}s)",
                        d.error,
                        now.duration_since(d.since).as_secs(),
                        (d.retry_at - now).as_secs_f64()
                    )));
                }
            }
        }
        let result = self.connect();
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => {
                if let Some(d) = down.take() {
                    tracing::info!(
                        after = %format!("{:.1}s", d.since.elapsed().as_secs_f64()),
                        attempts = d.failures,
                        "the state database is reachable again"
                    );
                }
            }
            Err(e) => {
                let now = Instant::now();
                let d = down.get_or_insert_with(|| {
                    tracing::warn!(error = %e, "the state database is unreachable; retrying with backoff");
                    Down {
                        since: now,
                        failures: 0,
                        retry_at: now,
                        error: String::new(),
                    }
                });
                d.failures += 1;
                let wait = RETRY_FIRST.saturating_mul(1 << (d.failures - 1).min(16)).min(RETRY_MAX);
                d.retry_at = now + wait;
                d.error = e.to_string();
            }
        }
        result
    }

    fn connect(&self) -> db::Result<PgConn> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let client = block_on(runtime().spawn(open(config, tls, Driver::Plain)))
            .map_err(|e| DbError::Message(format!("the connection task failed: {e}")))??;
        let conn = PgConn::new(client);
        conn.batch("SET application_name = 'runbook'")?;
        Ok(conn)
    }
}

/// A connection that listens on a channel (`LISTEN`); it stops when dropped.
pub struct Listener {
    _client: tokio_postgres::Client,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Listener {
    /// Whether the connection still listens (false once it broke).
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }
}

impl Pool {
    /// Listens on `channel` on a connection of its own: each notification sends `()` on `wake`.
    pub(super) fn listen(&self, channel: &str, wake: std::sync::mpsc::Sender<()>) -> db::Result<Listener> {
        let config = self.config.clone();
        let tls = self.tls.clone();
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = alive.clone();
        let sql = format!("LISTEN {channel}");
        let connecting = async move {
            let client = open(config, tls, Driver::Relay { wake, alive: flag }).await?;
            client.batch_execute(&sql).await?;
            Ok::<_, tokio_postgres::Error>(client)
        };
        let client = block_on(runtime().spawn(connecting))
            .map_err(|e| DbError::Message(format!("the connection task failed: {e}")))??;
        Ok(Listener { _client: client, alive })
    }
}

/// What drives a new connection's messages: plainly, or passing each notification on.
enum Driver {
    Plain,
    Relay {
        wake: std::sync::mpsc::Sender<()>,
        alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
    },
}

/// A new client on `config` (over TLS when `tls` is set), its connection driven on this
/// runtime by `driver`.
async fn open(
    config: tokio_postgres::Config,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    driver: Driver,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    Ok(match tls {
        None => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            driver.spawn(connection);
            client
        }
        Some(tls) => {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone());
            let (client, connection) = config.connect(tls).await?;
            driver.spawn(connection);
            client
        }
    })
}

impl Driver {
    fn spawn<S, T>(self, connection: tokio_postgres::Connection<S, T>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        match self {
            Driver::Plain => tokio::spawn(drive(connection)),
            Driver::Relay { wake, alive } => tokio::spawn(relay(connection, wake, alive)),
        };
    }
}

/// Drives a listening connection, passing each notification on.
async fn relay<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    wake: std::sync::mpsc::Sender<()>,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => {
                if wake.send(()).is_err() {
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    alive.store(false, Ordering::Relaxed);
}

/// The runtime the connections' tasks run on: its own thread, which nothing else blocks (a
/// caller waiting for a reply on a worker of a shared runtime would otherwise starve the
/// very task that reads the reply).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("state-db")
            .enable_all()
            .build()
            .expect("cannot start the state database runtime")
    })
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::debug!(error = %db::pg_message(&e), "the state database connection closed");
    }
}

impl Pooled<'_> {
    pub(super) fn conn(&self) -> &PgConn {
        self.conn
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }

    /// Closes this connection when it is dropped instead of pooling it.
    pub(super) fn discard(&mut self) {
        self.in_tx = true;
    }

    /// Runs `f` in a transaction holding the state's write lock, and commits.
    pub(super) fn write<T>(&mut self, f: impl FnOnce(&Conn) -> db::Result<T>) -> db::Result<T> {
        self.in_tx = true;
        let conn = self
            .conn
            .as_ref()
            .expect("a pooled connection is present until dropped");
        // A fenced transaction names its lease term; the fence trigger checks it (see `fleet`).
        let fence = super::fence::current_fence()
            .map(|t| format!("; SET LOCAL runbook.term = '{t}'"))
            .unwrap_or_default();
        conn.batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK}){fence}; UPDATE runbook_state_version SET v = v + 1"
        ))?;
        match f(&Conn::Pg(conn)) {
            Ok(value) => {
                conn.batch("COMMIT")?;
                self.in_tx = false;
                Ok(value)
            }
            Err(e) => {
                if conn.batch("ROLLBACK").is_ok() {
                    self.in_tx = false;
                }
                Err(e)
            }
        }
    }

    /// Applies pending migrations, each in its own transaction under the write lock.
    pub(super) fn migrate(&mut self) -> db::Result<()> {
        self.conn().batch(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK}); {BOOTSTRAP}; COMMIT"
        ))?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            self.write(|tx| {
                let Conn::Pg(c) = tx else {
                    return Err(DbError::Message("not a PostgreSQL connection".into()));
                };
                // Re-check inside the write lock: another process may have migrated meanwhile.
                if (self::version(c)? as i64) < version {
                    c.batch(&pg_schema(sql))?;
                    c.batch(&format!("UPDATE runbook_schema SET version = {version}"))?;
                }
                Ok(())
            })?;
        }
        self.write(|tx| {
            // Applied again whenever a fence trigger is missing (one a newer version added).
            let fenced: i64 = tx.query_row(
                "SELECT count(*) FROM pg_trigger WHERE tgname IN ('runs_fence', 'notifications_fence', 'alerts_fence', 'check_state_fence')",
                (),
                |r| r.get(0),
            )?;
            if fenced < 4 {
                tx.execute_batch(super::fence::PG_FENCE)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        self.pool.in_use.fetch_sub(1, Ordering::Relaxed);
        let Some(conn) = self.conn.take() else { return };
        if self.in_tx || conn.client.is_closed() {
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.pool.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        self.pool.returned.notify_one();
    }
}

/// One connection to the database of `url`, outside any pool (for tools and tests that
/// read a state directly).
pub fn connect(url: &str) -> db::Result<PgConn> {
    Pool::new(url, 1)?.connect()
}

/// The schema version of the database (0 before runbook's first migration).
pub(super) fn version(conn: &PgConn) -> db::Result<u32> {
    let c = Conn::Pg(conn);
    let exists: bool = c.query_row("SELECT to_regclass('runbook_schema') IS NOT NULL", (), |r| r.get(0))?;
    if !exists {
        return Ok(0);
    }
    c.query_row("SELECT coalesce(max(version), 0) FROM runbook_schema", (), |r| r.get(0))
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    crate::config::model::StateConfig {
        url: url.to_string(),
        ..Default::default()
    }
    .display()
}

/// The connection settings of `url`, as libpq would read them.
/// How long the server lets one of runbook's connections sit idle inside a transaction.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

fn config(url: &str) -> db::Result<(tokio_postgres::Config, Option<std::sync::Arc<rustls::ClientConfig>>)> {
    let bad = |m: String| DbError::Message(m);
    let mut parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
    // sslmode and sslrootcert are read here: tokio-postgres knows neither verify-* nor a
    // root file.
    let mut sslmode = "prefer".to_string();
    let mut rootcert: Option<PathBuf> = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| match &*k {
            "sslmode" => {
                sslmode = v.into_owned();
                None
            }
            "sslrootcert" => {
                rootcert = Some(PathBuf::from(v.into_owned()));
                None
            }
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let mut config: tokio_postgres::Config = parsed
        .as_str()
        .parse()
        .map_err(|e: tokio_postgres::Error| bad(db::pg_message(&e)))?;
    if config.get_hosts().is_empty() {
        match std::env::var("PGHOST") {
            Ok(h) if h.starts_with('/') => config.host_path(h),
            Ok(h) if !h.is_empty() => config.host(h),
            _ if std::path::Path::new("/var/run/postgresql").is_dir() => config.host_path("/var/run/postgresql"),
            _ => config.host("localhost"),
        };
    }
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "postgres".into());
        config.user(user);
    }
    if config.get_password().is_none() {
        if let Some(p) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
            config.password(p);
        } else if let Some(p) = pgpass(&config) {
            config.password(p);
        }
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    // A peer gone without a word (a host cut off, a server frozen) is noticed in seconds, not
    // after the kernel's two hours, unless the URL says otherwise.
    let named = |key: &str| parsed.query_pairs().any(|(k, _)| k == key);
    if !named("keepalives_idle") {
        config.keepalives_idle(Duration::from_secs(5));
    }
    if !named("keepalives_interval") {
        config.keepalives_interval(Duration::from_secs(2));
    }
    if !named("keepalives_retries") {
        config.keepalives_retries(3);
    }
    if !named("tcp_user_timeout") {
        config.tcp_user_timeout(Duration::from_secs(15));
    }
    // A process stopped inside a transaction (SIGSTOP, a frozen VM) would hold the state's
    // write lock until it resumes, and every other process's writes (a fleet's lease among
    // them) would wait for it: the server ends such a transaction after 10 s, less than a
    // lease lasts.
    if !named("options") {
        config.options(format!(
            "-c idle_in_transaction_session_timeout={}",
            IDLE_IN_TRANSACTION.as_millis()
        ));
    }
    let (mode, verify) = match sslmode.as_str() {
        "disable" => (tokio_postgres::config::SslMode::Disable, None),
        "allow" | "prefer" => (tokio_postgres::config::SslMode::Prefer, Some(false)),
        "require" => (tokio_postgres::config::SslMode::Require, Some(rootcert.is_some())),
        "verify-ca" | "verify-full" => (tokio_postgres::config::SslMode::Require, Some(true)),
        other => {
            return Err(bad(format!(
                "sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    config.ssl_mode(mode);
    let tls = match verify {
        None => None,
        Some(verify) => Some(crate::util::tls::client_config(verify, rootcert.as_deref(), b"postgresql").map_err(bad)?),
    };
    Ok((config, tls))
}

/// The password `~/.pgpass` (or `PGPASSFILE`) holds for this host, port, database and user;
/// the file is ignored, as libpq ignores it, when others can read it.
fn pgpass(config: &tokio_postgres::Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(file = %path.display(), "ignoring a password file that group or others can read (chmod 0600)");
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default().to_string();
    let dbname = config.get_dbname().map(str::to_string).unwrap_or_else(|| user.clone());
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass(line);
            let [h, p, d, u, pw] = <[String; 5]>::try_from(fields).ok()?;
            let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
            (matches(&h, &host) && matches(&p, &port) && matches(&d, &dbname) && matches(&u, &user)).then_some(pw)
        })
}

/// The colon-separated fields of a `.pgpass` line (`\:` and `\\` escape).
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    fields.last_mut().expect("one field at least").push(n);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field at least").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_split_on_unescaped_colons() {
        assert_eq!(
            split_pgpass("h:5432:db:u:pa\\:ss"),
            vec!["h", "5432", "db", "u", "pa:ss"]
        );
        assert_eq!(split_pgpass("*:*:*:u:a:b"), vec!["*", "*", "*", "u", "a:b"]);
    }

    #[test]
    fn a_password_never_shows_in_messages() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/state"),
            "postgres://app:[REDACTED]@db:5432/state"
        );
        assert_eq!(redact("postgres://app@db/state"), "postgres://app@db/state");
    }

    /// A scratch database on the machine's PostgreSQL, dropped at the end; `None` without one.
    fn scratch_db() -> Option<(String, impl Drop)> {
        struct Dropper(String);
        impl Drop for Dropper {
            fn drop(&mut self) {
                psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
            }
        }
        fn psql(sql: &str) -> bool {
            std::process::Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAc", sql])
                .output()
                .is_ok_and(|o| o.status.success())
        }
        let name = format!("rb_unit_idle_{}", std::process::id());
        psql(&format!("CREATE DATABASE {name}")).then(|| (name.clone(), Dropper(name)))
    }

    #[test]
    fn a_writer_stopped_inside_its_transaction_does_not_hold_the_write_lock_for_ever() {
        let Some((name, _drop)) = scratch_db() else {
            if std::env::var("RUNBOOK_TEST_REQUIRE").is_ok_and(|v| v == "1") {
                panic!("no PostgreSQL on 127.0.0.1:5432");
            }
            return;
        };
        let url = format!("postgres://postgres@127.0.0.1:5432/{name}?sslmode=disable");
        let dir = tempfile::tempdir().unwrap();
        let location = crate::store::Location::Postgres {
            url,
            local: dir.path().join("state"),
        };
        let store = std::sync::Arc::new(crate::store::Store::open_at(&location).unwrap());
        let (stalled, other) = (store.clone(), store.clone());
        // One writer takes the write lock and then does nothing, as a process stopped there.
        let stuck = std::thread::spawn(move || {
            stalled.write("stalling", |_| {
                std::thread::sleep(IDLE_IN_TRANSACTION + Duration::from_secs(3));
                Ok(())
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        // Another writes meanwhile: the server ended the stalled transaction, so this one gets
        // the lock while the first is still "stopped".
        let done = std::thread::spawn(move || other.write("writing", |_| Ok(())));
        let wrote = done.join().unwrap();
        assert!(wrote.is_ok(), "{wrote:?}");
        assert!(!stuck.is_finished(), "the second writer waited for the first to resume");
        assert!(
            stuck.join().unwrap().is_err(),
            "the stalled transaction was ended by the server"
        );
    }

    #[test]
    fn an_unknown_sslmode_is_refused_by_name() {
        let e = config("postgres://u@127.0.0.1/x?sslmode=sometimes").err().unwrap();
        assert!(e.to_string().contains("sslmode `sometimes`"), "{e}");
    }
}
