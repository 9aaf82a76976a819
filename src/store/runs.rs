//! The jobs ledger's rows: runs inserted, finished, marked, listed, and their retries.

use super::db::{OptionalExtension, Row, Transaction, params};

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use super::types::*;
use crate::audit::Draft;
use crate::clock;

pub(super) const RUN_COLUMNS: &str = "id, parent_id, profile, task, kind, trigger, status, host, pid, pid_start, \
    started_at, finished_at, exit_code, signal, duration_ms, command, output, error, retry_of";

pub(super) fn run_from_row(r: &Row) -> super::db::Result<Run> {
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

pub(super) fn insert_run(tx: &Transaction, run: &NewRun) -> super::db::Result<i64> {
    tx.execute(
        "INSERT INTO runs (parent_id, profile, task, kind, trigger, status, host, pid, pid_start, started_at, command, retry_of, tick) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
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
            run.retry_of,
            run.tick
        ],
    )?;
    tx.last_insert_rowid()
}

/// Whether the tick of `run`'s profile is in the ledger already.
fn tick_taken(tx: &Transaction, run: &NewRun) -> super::db::Result<bool> {
    tx.query_row(
        "SELECT id FROM runs WHERE profile = ?1 AND tick = ?2 AND parent_id IS NULL",
        params![run.profile, run.tick],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|id| id.is_some())
}

pub(super) fn finish_run(tx: &Transaction, id: i64, fin: &RunFinish) -> super::db::Result<()> {
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

impl Store {
    pub fn insert_run(&self, run: &NewRun, audit: Option<&Draft>) -> Result<i64> {
        self.write("recording a run", |tx| {
            let id = insert_run(tx, run)?;
            if let Some(d) = audit {
                append_audit(tx, d)?;
            }
            Ok(id)
        })
    }

    /// Records a run for a scheduled tick unless that tick of its profile is in the ledger
    /// already (run, skipped or missed, by any host): `None` then. The unique index
    /// `runs_one_per_tick` holds the rule even against a writer that skipped this check.
    pub fn claim_tick(&self, run: &NewRun, audit: Option<&Draft>) -> Result<Option<i64>> {
        self.write("claiming a tick", |tx| {
            if tick_taken(tx, run)? {
                return Ok(None);
            }
            let id = insert_run(tx, run)?;
            if let Some(d) = audit {
                append_audit(tx, d)?;
            }
            Ok(Some(id))
        })
    }

    /// Records ticks no host ran (each `run` with its `tick`, status and error set), one audit
    /// event each, in one transaction; a tick already in the ledger is left as it is.
    /// Returns how many were recorded.
    pub fn record_missed_ticks(&self, missed: &[(NewRun, String, Draft)]) -> Result<usize> {
        self.write("recording missed ticks", |tx| {
            let mut recorded = 0;
            for (run, error, draft) in missed {
                if tick_taken(tx, run)? {
                    continue;
                }
                let id = insert_run(tx, run)?;
                tx.execute(
                    "UPDATE runs SET finished_at = started_at, duration_ms = 0, error = ?2 WHERE id = ?1",
                    params![id, error],
                )?;
                append_audit(tx, draft)?;
                recorded += 1;
            }
            Ok(recorded)
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
        self.conn()?
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()
            .map_err(self.err("reading a run"))
    }

    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 OR kind = 'profile') AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) \
             AND (CAST(?3 AS TEXT) IS NULL OR profile = ?3) AND (CAST(?5 AS BIGINT) IS NULL OR id < ?5) ORDER BY id DESC LIMIT ?4"
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
            .and_then(|rows| rows.collect::<super::db::Result<Vec<_>>>())
            .map_err(self.err("listing runs"))?;
        Ok(rows)
    }

    pub fn child_runs(&self, parent: i64) -> Result<Vec<Run>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ?1 ORDER BY id"
            ))
            .map_err(self.err("listing task runs"))?;
        stmt.query_map([parent], run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing task runs"))
    }

    /// Runs of `profile` (the profile's run and its tasks') that `host`/`pid` started between
    /// `from` and `to` and that are still marked running.
    pub fn running_runs_of(&self, profile: &str, host: &str, pid: i64, from: &str, to: &str) -> Result<Vec<i64>> {
        self.rows(
            "listing unfinished runs",
            "WITH mine AS (SELECT id FROM runs WHERE profile = ?1 AND host = ?2 AND pid = ?3 AND kind = 'profile' \
             AND started_at >= ?4 AND started_at <= ?5) \
             SELECT id FROM runs WHERE status = 'running' \
             AND (id IN (SELECT id FROM mine) OR parent_id IN (SELECT id FROM mine)) ORDER BY id",
            params![profile, host, pid, from, to],
            |r| r.get(0),
        )
    }

    /// Runs that link back to `id` through `retry_of`.
    pub fn retries_of(&self, id: i64) -> Result<Vec<i64>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT id FROM runs WHERE retry_of = ?1 ORDER BY id")
            .map_err(self.err("listing retries"))?;
        stmt.query_map([id], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing retries"))
    }

    /// The latest finished-or-running profile run of each profile (skipped starts excluded).
    pub fn last_profile_runs(&self) -> Result<Vec<Run>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN \
             (SELECT MAX(id) FROM runs WHERE kind = 'profile' AND status != 'skipped' GROUP BY profile)"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(self.err("reading last runs"))?;
        stmt.query_map((), run_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading last runs"))
    }

    // ---- check results ----
}
