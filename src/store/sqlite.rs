//! The SQLite connection: one embedded file, WAL mode, one connection per process.
//!
//! Owns opening, migrations and transactions; the queries of each area are in the files
//! beside it (`runs`, `check_results`, `script_state`, `audit_log`, `alerts`, …), each an
//! `impl Store` over `write` and `read` here. Writes use `BEGIN IMMEDIATE` so concurrent runbook processes serialize on the
//! write lock instead of failing halfway; the busy timeout absorbs short waits.
//! Invariant: every method leaves the file consistent; an error rolls its transaction back.

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::head::{self, Head};
use super::types::*;
use super::{Result, StoreError};

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_foundation.sql"),
    include_str!("migrations/0002_checks.sql"),
    include_str!("migrations/0003_alerts.sql"),
    include_str!("migrations/0004_notifications.sql"),
    include_str!("migrations/0005_api_tokens.sql"),
    include_str!("migrations/0006_heartbeats.sql"),
    include_str!("migrations/0007_check_latency.sql"),
    include_str!("migrations/0008_read_paths.sql"),
    include_str!("migrations/0009_backups.sql"),
    include_str!("migrations/0010_audit_checkpoints.sql"),
    include_str!("migrations/0011_sessions.sql"),
    include_str!("migrations/0012_audit_archives.sql"),
    include_str!("migrations/0013_offsite_uploads.sql"),
    include_str!("migrations/0014_offsite_upload_failures.sql"),
    include_str!("migrations/0015_gates.sql"),
    include_str!("migrations/0016_waivers.sql"),
    include_str!("migrations/0017_deploys.sql"),
    include_str!("migrations/0018_incidents.sql"),
    include_str!("migrations/0019_drift.sql"),
];
/// The mode of a state file runbook creates: its owner writes, its group reads.
const STATE_MODE: u32 = 0o640;

pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Store {
    /// One connection: SQLite allows one writer at a time, and a mutex is cheaper than a pool.
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Where the newest committed audit event is recorded after each commit (see `head`).
    head: head::HeadFile,
}

/// WAL size past which closing a connection checkpoints and truncates it (about 60 pages:
/// rebuilding the index of a WAL this size costs a new process ~0.1 ms).
pub(super) const WAL_TRUNCATE_AT: u64 = 256 * 1024;

impl Drop for Store {
    fn drop(&mut self) {
        // Only a stat of the WAL: opening (and so closing) a descriptor of the database, its
        // `-wal` or its `-shm` would drop every POSIX lock this process holds on it, SQLite's
        // own included, and let the checkpoint below run unprotected.
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) <= WAL_TRUNCATE_AT {
            return;
        }
        let conn = self.conn.get_mut().unwrap_or_else(|e| e.into_inner());
        // The checkpoint goes through SQLite, under SQLite's locks; it never waits at exit:
        // when another process is busy with the file, it gives up and a later close tries.
        let _ = conn.busy_timeout(std::time::Duration::ZERO);
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

thread_local! {
    /// The audit head before and after the events appended by the write transaction running
    /// on this thread (`Store::write` holds the connection for its whole length, so one
    /// transaction at a time per thread).
    pub(super) static APPENDED: std::cell::RefCell<Option<(Option<Head>, Head)>> = const { std::cell::RefCell::new(None) };
}

/// Puts the file in WAL mode (a no-op once it is). Turning a new file to WAL needs its
/// exclusive lock, and SQLite answers BUSY at once, without its busy handler, to a connection
/// that must upgrade a read lock to get it (waiting could deadlock): when several processes
/// open a new state file at the same moment, all but one are told so. They try again here,
/// within the busy timeout.
fn wal_mode(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (creating if needed) the state file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        // A new state file is made here, closed to other users (it holds the audit log, task
        // output and tokens' hashes); SQLite gives its -wal and -shm the same mode.
        {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(STATE_MODE)
                .open(path);
        }
        let store = Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE)?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing state file without creating or migrating it; `None` if absent.
    pub fn open_existing(path: &Path) -> Result<Option<Store>> {
        if !path.exists() {
            return Ok(None);
        }
        Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map(Some)
    }

    fn connect(path: &Path, flags: OpenFlags) -> Result<Store> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        // WAL: readers never block the writer. NORMAL sync is durable across process crashes.
        let mode = wal_mode(&conn).map_err(open_err)?;
        if mode != "wal" {
            tracing::debug!(mode, "state file is not in WAL mode");
        }
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
            .map_err(open_err)?;
        // A short-lived CLI process would otherwise checkpoint and delete the WAL on every
        // exit (fsyncs each time). Instead the WAL stays, and `Drop` truncates it once it
        // has grown past WAL_TRUNCATE_AT: the first connection of every process rebuilds the
        // WAL index by reading every frame, so a WAL left to grow would cost every command.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(open_err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            head: head::HeadFile::new(path),
            path: path.to_path_buf(),
        })
    }

    /// The schema version this binary migrates to.
    pub fn head_version() -> u32 {
        MIGRATIONS.len() as u32
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SQLite's `PRAGMA data_version`: changes whenever another connection (of this process
    /// or any other) commits to the file. A connection that never writes sees every commit.
    pub fn data_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(self.err("reading the data version"))
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn err(&self, context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            context,
            source,
        }
    }

    /// Every row of `sql` (a cached statement) with `params`, each mapped by `f`.
    pub(super) fn rows<T, P: rusqlite::Params>(
        &self,
        context: &'static str,
        sql: &str,
        params: P,
        f: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(self.err(context))?;
        stmt.query_map(params, f)
            .and_then(|rows| rows.collect())
            .map_err(self.err(context))
    }

    /// The row of `sql` (a cached statement, as in `rows`) with `params`, mapped by `f`;
    /// `None` when there is none.
    pub(super) fn row<T, P: rusqlite::Params>(
        &self,
        context: &'static str,
        sql: &str,
        params: P,
        f: impl FnOnce(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(sql).map_err(self.err(context))?;
        stmt.query_row(params, f).optional().map_err(self.err(context))
    }

    /// Runs `f` in an IMMEDIATE transaction and commits.
    pub(super) fn write<T>(
        &self,
        context: &'static str,
        f: impl FnOnce(&Transaction) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err(context))?;
        APPENDED.with(|a| a.borrow_mut().take());
        let value = f(&tx).map_err(self.err(context))?;
        tx.commit().map_err(self.err(context))?;
        if let Some((before, new)) = APPENDED.with(|a| a.borrow_mut().take()) {
            self.record_head(&conn, before.as_ref(), &new);
        }
        Ok(value)
    }

    /// Moves the audit head file to `new` after a commit. The commit stands whatever happens
    /// here: a head file left behind only makes a lost tail harder to prove.
    pub(super) fn record_head(&self, conn: &Connection, before: Option<&Head>, new: &Head) {
        let mut hash_at = |seq: i64| -> Option<Option<String>> {
            let found: Option<String> = conn
                .query_row("SELECT hash FROM audit_events WHERE seq = ?1", [seq], |r| r.get(0))
                .optional()
                .ok()?;
            match found {
                Some(h) => Some(Some(h)),
                None => conn
                    .query_row(
                        "SELECT 1 FROM audit_archives WHERE ?1 BETWEEN first_seq AND last_seq",
                        [seq],
                        |_| Ok(()),
                    )
                    .optional()
                    .ok()?
                    .map(|()| None),
            }
        };
        match self.head.advance(before, new, &mut hash_at) {
            Ok(head::Advance::Recorded) => {}
            Ok(head::Advance::Diverged(h)) => tracing::warn!(
                recorded = h.seq,
                now = new.seq,
                "the audit head file names an event this state file does not hold: committed events were lost; run `runbook audit verify`"
            ),
            Err(e) => tracing::debug!(error = %e, "cannot record the audit head"),
        }
    }

    pub fn migration_state(&self) -> Result<MigrationState> {
        let current: u32 = self
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(self.err("reading the schema version"))?;
        Ok(MigrationState {
            current,
            head: MIGRATIONS.len() as u32,
        })
    }

    /// Applies pending migrations, each in its own transaction.
    pub fn migrate(&self) -> Result<MigrationState> {
        let state = self.migration_state()?;
        if state.current > state.head {
            return Err(StoreError::Ahead {
                path: self.path.clone(),
                current: state.current,
                head: state.head,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(state.current as usize) {
            let version = i + 1;
            self.write("applying a migration", |tx| {
                // Re-check inside the write lock: another process may have migrated meanwhile.
                let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                if (now as usize) < version {
                    tx.execute_batch(sql)?;
                    tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
                }
                Ok(())
            })?;
        }
        self.migration_state()
    }

    // ---- runs ----
}
