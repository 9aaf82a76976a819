//! The SQLite backend: one embedded file, WAL mode, one connection per process.
//!
//! Owns opening, the schema version (`PRAGMA user_version`) and migrations, and write
//! transactions. Writes use `BEGIN IMMEDIATE` so concurrent runbook processes serialize on the
//! write lock instead of failing halfway; the busy timeout absorbs short waits.
//! Invariant: every method leaves the file consistent; an error rolls its transaction back.

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::db::{self, Conn};

pub(super) const MIGRATIONS: &[&str] = &[
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
    include_str!("migrations/0020_fleet.sql"),
];
/// The mode of a state file runbook creates: its owner writes, its group reads.
const STATE_MODE: u32 = 0o640;

pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL size past which closing a connection checkpoints and truncates it (about 60 pages:
/// rebuilding the index of a WAL this size costs a new process ~0.1 ms).
pub(super) const WAL_TRUNCATE_AT: u64 = 256 * 1024;

/// One connection: SQLite allows one writer at a time, and a mutex is cheaper than a pool.
pub(super) struct Sqlite {
    conn: Mutex<Connection>,
    path: PathBuf,
}

pub(super) enum OpenError {
    Dir(std::io::Error),
    Db(rusqlite::Error),
}

impl Drop for Sqlite {
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

impl Sqlite {
    /// Opens the state file; with `create`, makes it (and its directory) first if absent.
    pub(super) fn open(path: &Path, create: bool) -> Result<Sqlite, OpenError> {
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(OpenError::Dir)?;
            }
            // A new state file is made here, closed to other users (it holds the audit log,
            // task output and tokens' hashes); SQLite gives its -wal and -shm the same mode.
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(STATE_MODE)
                .open(path);
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = Connection::open_with_flags(path, flags).map_err(OpenError::Db)?;
        configure(&conn).map_err(OpenError::Db)?;
        Ok(Sqlite {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer. NORMAL sync is durable across process crashes.
    let mode = wal_mode(conn)?;
    if mode != "wal" {
        tracing::debug!(mode, "state file is not in WAL mode");
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")?;
    // A short-lived CLI process would otherwise checkpoint and delete the WAL on every
    // exit (fsyncs each time). Instead the WAL stays, and `Drop` truncates it once it
    // has grown past WAL_TRUNCATE_AT: the first connection of every process rebuilds the
    // WAL index by reading every frame, so a WAL left to grow would cost every command.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    Ok(())
}

/// Runs `f` in an IMMEDIATE transaction and commits.
pub(super) fn write<T>(conn: &mut Connection, f: impl FnOnce(&Conn) -> db::Result<T>) -> db::Result<T> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = f(&Conn::Sqlite(&tx))?;
    tx.commit()?;
    Ok(value)
}

pub(super) fn version(conn: &Connection) -> db::Result<u32> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies pending migrations, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> db::Result<()> {
    let start = version(conn)? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let version = i as u32 + 1;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-check inside the write lock: another process may have migrated meanwhile.
        if self::version(&tx)? < version {
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        }
        tx.commit()?;
    }
    Ok(())
}
