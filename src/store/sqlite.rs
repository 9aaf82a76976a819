//! The SQLite backend: one embedded file, WAL mode, one connection per process.
//!
//! Owns the SQL. Writes use `BEGIN IMMEDIATE` so concurrent runbook processes serialize on the
//! write lock instead of failing halfway; the busy timeout absorbs short waits.
//! Invariant: every method leaves the file consistent; an error rolls its transaction back.

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::head::{self, Head};
use super::types::*;
use super::{Result, StoreError};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::{self, Draft, Event};
use crate::clock;

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
];
/// A check's latency histogram: non-cumulative counts per bucket, sum (ms), count.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    pub check: String,
    pub counts: Vec<i64>,
    pub sum_ms: i64,
    pub count: i64,
}

/// Upper bounds (ms) of the check latency histogram's buckets; one more bucket catches the rest.
pub const LATENCY_BOUNDS_MS: &[i64] = &[5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// An archive file of audit events, as the state file records it.
#[derive(Debug, Clone)]
pub struct AuditArchive {
    pub first_seq: i64,
    pub last_seq: i64,
    /// The anchor: the hash of the last event in the file.
    pub last_hash: String,
    pub file: String,
    pub sha256: String,
}

pub struct Store {
    /// One connection: SQLite allows one writer at a time, and a mutex is cheaper than a pool.
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Where the newest committed audit event is recorded after each commit (see `head`).
    head: head::HeadFile,
}

/// WAL size past which closing a connection checkpoints and truncates it (about 60 pages:
/// rebuilding the index of a WAL this size costs a new process ~0.1 ms).
const WAL_TRUNCATE_AT: u64 = 256 * 1024;

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
    static APPENDED: std::cell::RefCell<Option<(Option<Head>, Head)>> = const { std::cell::RefCell::new(None) };
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

const RUN_COLUMNS: &str = "id, parent_id, profile, task, kind, trigger, status, host, pid, pid_start, \
    started_at, finished_at, exit_code, signal, duration_ms, command, output, error, retry_of";

fn run_from_row(r: &Row) -> rusqlite::Result<Run> {
    let status: String = r.get(6)?;
    Ok(Run {
        id: r.get(0)?,
        parent_id: r.get(1)?,
        profile: r.get(2)?,
        task: r.get(3)?,
        kind: RunKind::parse(&r.get::<_, String>(4)?),
        trigger: Trigger::parse(&r.get::<_, String>(5)?),
        status: status.parse().unwrap_or(RunStatus::Failed),
        host: r.get(7)?,
        pid: r.get(8)?,
        pid_start: r.get(9)?,
        started_at: r.get(10)?,
        finished_at: r.get(11)?,
        exit_code: r.get(12)?,
        signal: r.get(13)?,
        duration_ms: r.get(14)?,
        command: r.get(15)?,
        output: r.get(16)?,
        error: r.get(17)?,
        retry_of: r.get(18)?,
    })
}

fn event_from_row(r: &Row) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: r.get(0)?,
        ts: r.get(1)?,
        actor: r.get(2)?,
        kind: r.get(3)?,
        subject: r.get(4)?,
        data: r.get(5)?,
        prev_hash: r.get(6)?,
        hash: r.get(7)?,
    })
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
    fn record_head(&self, conn: &Connection, before: Option<&Head>, new: &Head) {
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

    pub fn insert_run(&self, run: &NewRun, audit: Option<&Draft>) -> Result<i64> {
        self.write("recording a run", |tx| {
            let id = insert_run(tx, run)?;
            if let Some(d) = audit {
                append_audit(tx, d)?;
            }
            Ok(id)
        })
    }

    /// Records many starting runs in one transaction.
    pub fn insert_runs(&self, runs: &[NewRun]) -> Result<Vec<i64>> {
        self.write("recording runs", |tx| runs.iter().map(|r| insert_run(tx, r)).collect())
    }

    /// Records the end of many runs in one transaction.
    pub fn finish_runs(&self, done: &[(i64, RunFinish)]) -> Result<()> {
        self.write("recording the end of runs", |tx| {
            done.iter().try_for_each(|(id, fin)| finish_run(tx, *id, fin))
        })
    }

    pub fn finish_run(&self, id: i64, fin: &RunFinish, audit: Option<&Draft>) -> Result<()> {
        self.write("recording the end of a run", |tx| {
            finish_run(tx, id, fin)?;
            if let Some(d) = audit {
                append_audit(tx, d)?;
            }
            Ok(())
        })
    }

    /// Marks runs with a new status in one transaction, one audit event each.
    pub fn mark_runs(&self, changes: &[(i64, RunStatus, String, Draft)]) -> Result<()> {
        let finished = clock::to_text(clock::now());
        self.write("updating runs", |tx| {
            for (id, status, error, draft) in changes {
                tx.execute(
                    "UPDATE runs SET status = ?2, error = ?3, finished_at = COALESCE(finished_at, ?4) WHERE id = ?1",
                    params![id, status.as_str(), error, finished],
                )?;
                append_audit(tx, draft)?;
            }
            Ok(())
        })
    }

    pub fn get_run(&self, id: i64) -> Result<Option<Run>> {
        self.conn()
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()
            .map_err(self.err("reading a run"))
    }

    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 OR kind = 'profile') AND (?2 IS NULL OR status = ?2) \
             AND (?3 IS NULL OR profile = ?3) AND (?5 IS NULL OR id < ?5) ORDER BY id DESC LIMIT ?4"
        );
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            filter.limit as i64
        };
        let mut stmt = conn.prepare_cached(&sql).map_err(self.err("listing runs"))?;
        let rows = stmt
            .query_map(
                params![
                    filter.all_kinds,
                    filter.status.map(|s| s.as_str()),
                    filter.profile,
                    limit,
                    filter.before
                ],
                run_from_row,
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err("listing runs"))?;
        Ok(rows)
    }

    pub fn child_runs(&self, parent: i64) -> Result<Vec<Run>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ?1 ORDER BY id"
            ))
            .map_err(self.err("listing task runs"))?;
        stmt.query_map([parent], run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing task runs"))
    }

    /// Runs that link back to `id` through `retry_of`.
    pub fn retries_of(&self, id: i64) -> Result<Vec<i64>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id FROM runs WHERE retry_of = ?1 ORDER BY id")
            .map_err(self.err("listing retries"))?;
        stmt.query_map([id], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing retries"))
    }

    /// The latest finished-or-running profile run of each profile (skipped starts excluded).
    pub fn last_profile_runs(&self) -> Result<Vec<Run>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN \
             (SELECT MAX(id) FROM runs WHERE kind = 'profile' AND status != 'skipped' GROUP BY profile)"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(self.err("reading last runs"))?;
        stmt.query_map([], run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading last runs"))
    }

    // ---- check results ----

    /// Records check outcomes (one transaction for the batch).
    pub fn record_check_results(&self, host: &str, results: &[CheckResult]) -> Result<()> {
        self.write("recording check results", |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO check_results (check_name, host, kind, ok, latency_ms, detail, data, at, run_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for r in results {
                stmt.execute(params![
                    r.check,
                    host,
                    r.kind,
                    r.ok,
                    r.latency_ms,
                    r.detail,
                    r.data,
                    r.at,
                    r.run_id
                ])?;
            }
            let mut latest = tx.prepare_cached(
                "INSERT INTO check_latest (check_name, kind, ok, latency_ms, detail, data, at, run_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (check_name) DO UPDATE SET kind = excluded.kind, \
                 ok = excluded.ok, latency_ms = excluded.latency_ms, detail = excluded.detail, data = excluded.data, \
                 at = excluded.at, run_id = excluded.run_id",
            )?;
            for r in results {
                latest.execute(params![r.check, r.kind, r.ok, r.latency_ms, r.detail, r.data, r.at, r.run_id])?;
            }
            let mut read = tx.prepare_cached("SELECT buckets, sum_ms, count FROM check_latency WHERE check_name = ?1")?;
            let mut write = tx.prepare_cached(
                "INSERT INTO check_latency (check_name, buckets, sum_ms, count) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (check_name) DO UPDATE SET buckets = excluded.buckets, sum_ms = excluded.sum_ms, count = excluded.count",
            )?;
            for r in results {
                let (buckets, sum, count): (String, i64, i64) =
                    read.query_row([&r.check], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).optional()?.unwrap_or_default();
                let mut counts: Vec<i64> = buckets.split(',').filter_map(|c| c.parse().ok()).collect();
                counts.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
                let slot = LATENCY_BOUNDS_MS.iter().position(|b| r.latency_ms <= *b).unwrap_or(LATENCY_BOUNDS_MS.len());
                counts[slot] += 1;
                let text = counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
                write.execute(params![r.check, text, sum + r.latency_ms, count + 1])?;
            }
            Ok(())
        })
    }

    /// The latest outcome of each check.
    pub fn latest_check_results(&self) -> Result<Vec<CheckResult>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT check_name, kind, ok, latency_ms, detail, data, at, run_id FROM check_latest ORDER BY check_name",
            )
            .map_err(self.err("reading check results"))?;
        stmt.query_map([], |r| {
            Ok(CheckResult {
                check: r.get(0)?,
                kind: r.get(1)?,
                ok: r.get(2)?,
                latency_ms: r.get(3)?,
                detail: r.get(4)?,
                data: r.get(5)?,
                at: r.get(6)?,
                run_id: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading check results"))
    }

    /// Per check: non-cumulative counts per `LATENCY_BOUNDS_MS` bucket (+1 overflow), sum (ms), count.
    pub fn check_latency(&self) -> Result<Vec<LatencyHistogram>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT check_name, buckets, sum_ms, count FROM check_latency ORDER BY check_name")
            .map_err(self.err("reading check latency"))?;
        stmt.query_map([], |r| {
            let text: String = r.get(1)?;
            let mut counts: Vec<i64> = text.split(',').filter_map(|c| c.parse().ok()).collect();
            counts.resize(LATENCY_BOUNDS_MS.len() + 1, 0);
            Ok(LatencyHistogram {
                check: r.get(0)?,
                counts,
                sum_ms: r.get(2)?,
                count: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading check latency"))
    }

    // ---- monitor_state ----

    pub fn state_get(&self, namespace: &str, key: &str) -> Result<Option<StateEntry>> {
        self.conn()
            .query_row(
                "SELECT namespace, key, value, updated_at FROM monitor_state WHERE namespace = ?1 AND key = ?2",
                [namespace, key],
                |r| {
                    Ok(StateEntry {
                        namespace: r.get(0)?,
                        key: r.get(1)?,
                        value: r.get(2)?,
                        updated_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err("reading state"))
    }

    pub fn state_list(&self, namespace: Option<&str>) -> Result<Vec<StateEntry>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT namespace, key, value, updated_at FROM monitor_state \
                 WHERE (?1 IS NULL OR namespace = ?1) ORDER BY namespace, key",
            )
            .map_err(self.err("listing state"))?;
        stmt.query_map([namespace], |r| {
            Ok(StateEntry {
                namespace: r.get(0)?,
                key: r.get(1)?,
                value: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("listing state"))
    }

    /// Writes entries (insert or replace) and one audit event, in one transaction.
    pub fn state_put(&self, entries: &[(String, String, String)], audit: &Draft) -> Result<()> {
        let now = clock::to_text(clock::now());
        self.write("writing state", |tx| {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO monitor_state (namespace, key, value, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?;
            for (ns, key, value) in entries {
                stmt.execute(params![ns, key, value, now])?;
            }
            append_audit(tx, audit)?;
            Ok(())
        })
    }

    // ---- audit ----

    pub fn audit_append(&self, draft: &Draft) -> Result<Event> {
        self.write("appending an audit event", |tx| append_audit(tx, draft))
    }

    /// Group commit: appends every draft in one transaction (one commit for all).
    pub fn audit_append_all(&self, drafts: &[Draft]) -> Result<Vec<Event>> {
        self.write("appending audit events", |tx| {
            drafts.iter().map(|d| append_audit(tx, d)).collect()
        })
    }

    /// The newest events first.
    pub fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<Event>> {
        let conn = self.conn();
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            filter.limit as i64
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, ts, actor, kind, subject, data, prev_hash, hash FROM audit_events \
                 WHERE (?1 IS NULL OR kind = ?1) AND (?3 IS NULL OR seq < ?3) AND (?4 = '' OR instr(?4, ',' || kind || ',') > 0) ORDER BY seq DESC LIMIT ?2",
            )
            .map_err(self.err("listing audit events"))?;
        stmt.query_map(
            params![
                filter.kind,
                limit,
                filter.before,
                if filter.kinds.is_empty() {
                    String::new()
                } else {
                    format!(",{},", filter.kinds.join(","))
                }
            ],
            event_from_row,
        )
        .and_then(|rows| rows.collect())
        .map_err(self.err("listing audit events"))
    }

    /// Event counts by kind and by actor, and the time span of the log.
    pub fn audit_summary(&self) -> Result<AuditSummary> {
        let conn = self.conn();
        let pairs = |sql: &str| -> rusqlite::Result<Vec<(String, i64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        let by_kind = pairs("SELECT kind, count(*) FROM audit_events GROUP BY kind ORDER BY 2 DESC, 1")
            .map_err(self.err("summarising the audit log"))?;
        let by_actor = pairs("SELECT actor, count(*) FROM audit_events GROUP BY actor ORDER BY 2 DESC, 1")
            .map_err(self.err("summarising the audit log"))?;
        let (events, first, last) = conn
            .query_row("SELECT count(*), min(ts), max(ts) FROM audit_events", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(self.err("summarising the audit log"))?;
        Ok(AuditSummary {
            events,
            first,
            last,
            by_kind,
            by_actor,
        })
    }

    /// Where the chain in the state file continues from: the last archived event (seq, hash).
    pub fn audit_anchor(&self) -> Result<Option<(i64, String)>> {
        use rusqlite::OptionalExtension;
        self.conn()
            .query_row(
                "SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("reading the audit anchor"))
    }

    /// Every archive file recorded, oldest first.
    pub fn audit_archives(&self) -> Result<Vec<AuditArchive>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT first_seq, last_seq, last_hash, file, sha256 FROM audit_archives ORDER BY first_seq")
            .map_err(self.err("reading audit archives"))?;
        stmt.query_map([], |r| {
            Ok(AuditArchive {
                first_seq: r.get(0)?,
                last_seq: r.get(1)?,
                last_hash: r.get(2)?,
                file: r.get(3)?,
                sha256: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading audit archives"))
    }

    /// Events older than `before` (a stored timestamp), the oldest first: a prefix of the chain.
    pub fn audit_before(&self, before: &str, f: &mut dyn FnMut(&Event) -> bool) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT seq, ts, actor, kind, subject, data, prev_hash, hash FROM audit_events \
                 WHERE seq <= (SELECT coalesce(max(seq), 0) FROM audit_events WHERE ts < ?1) ORDER BY seq",
            )
            .map_err(self.err("reading the audit log"))?;
        let mut rows = stmt.query([before]).map_err(self.err("reading the audit log"))?;
        while let Some(row) = rows.next().map_err(self.err("reading the audit log"))? {
            let event = event_from_row(row).map_err(self.err("reading the audit log"))?;
            if !f(&event) {
                break;
            }
        }
        Ok(())
    }

    /// Records an archive file and removes the events it holds, with an audit event, at once.
    pub fn seal_audit_archive(&self, a: &AuditArchive, at: &str, draft: &Draft) -> Result<()> {
        self.write("archiving audit events", |tx| {
            tx.execute(
                "INSERT INTO audit_archives (first_seq, last_seq, last_hash, file, sha256, archived_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![a.first_seq, a.last_seq, a.last_hash, a.file, a.sha256, at],
            )?;
            tx.execute("DELETE FROM audit_events WHERE seq <= ?1", [a.last_seq])?;
            append_audit(tx, draft).map(|_| ())
        })
    }

    /// Keeps a signed checkpoint.
    pub fn add_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        self.write("keeping an audit checkpoint", |tx| {
            tx.execute(
                "INSERT INTO audit_checkpoints (seq, head_hash, time, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![cp.seq, cp.head_hash, cp.time, cp.public_key, cp.signature],
            )
            .map(|_| ())
        })
    }

    /// Every kept checkpoint, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, head_hash, time, public_key, signature FROM audit_checkpoints ORDER BY id")
            .map_err(self.err("reading audit checkpoints"))?;
        stmt.query_map([], |r| {
            Ok(Checkpoint {
                seq: r.get(0)?,
                head_hash: r.get(1)?,
                time: r.get(2)?,
                public_key: r.get(3)?,
                signature: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("reading audit checkpoints"))
    }

    /// Feeds every event in seq order to `f`, streaming; stops when `f` returns false.
    pub fn audit_scan(&self, f: &mut dyn FnMut(&Event) -> bool) -> Result<()> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT seq, ts, actor, kind, subject, data, prev_hash, hash FROM audit_events ORDER BY seq")
            .map_err(self.err("reading the audit log"))?;
        let mut rows = stmt.query([]).map_err(self.err("reading the audit log"))?;
        while let Some(row) = rows.next().map_err(self.err("reading the audit log"))? {
            let event = event_from_row(row).map_err(self.err("reading the audit log"))?;
            if !f(&event) {
                break;
            }
        }
        Ok(())
    }
}

fn insert_run(tx: &Transaction, run: &NewRun) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO runs (parent_id, profile, task, kind, trigger, status, host, pid, pid_start, started_at, command, retry_of) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            run.parent_id,
            run.profile,
            run.task,
            run.kind.as_str(),
            run.trigger.as_str(),
            run.status.as_str(),
            run.host,
            run.pid,
            run.pid_start,
            run.started_at,
            run.command,
            run.retry_of
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

fn finish_run(tx: &Transaction, id: i64, fin: &RunFinish) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE runs SET status = COALESCE(?2, status), finished_at = ?3, exit_code = ?4, signal = ?5, \
         duration_ms = ?6, output = ?7, error = ?8 WHERE id = ?1",
        params![
            id,
            fin.status.map(|s| s.as_str()),
            fin.finished_at,
            fin.exit_code,
            fin.signal,
            fin.duration_ms,
            fin.output,
            fin.error
        ],
    )?;
    Ok(())
}

pub(super) fn append_audit(tx: &Transaction, draft: &Draft) -> rusqlite::Result<Event> {
    // The chain continues from the newest event, or, when every event was archived, from the
    // archive's anchor.
    let last: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT seq, hash FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events) \
             UNION ALL SELECT last_seq, last_hash FROM audit_archives \
             WHERE NOT EXISTS (SELECT 1 FROM audit_events) AND last_seq = (SELECT max(last_seq) FROM audit_archives)",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, audit::GENESIS.to_string()),
    };
    let event = audit::seal(seq, clock::to_text(clock::now()), draft, prev);
    APPENDED.with(|a| {
        let mut a = a.borrow_mut();
        let before = match a.take() {
            Some((before, _)) => before,
            None => (seq > 1).then(|| Head {
                seq: seq - 1,
                hash: event.prev_hash.clone(),
            }),
        };
        *a = Some((
            before,
            Head {
                seq,
                hash: event.hash.clone(),
            },
        ));
    });
    tx.prepare_cached(
        "INSERT INTO audit_events (seq, ts, actor, kind, subject, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![event.seq, event.ts, event.actor, event.kind, event.subject, event.data, event.prev_hash, event.hash])?;
    Ok(event)
}
