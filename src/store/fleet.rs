//! Fleet mode as stored: hosts and their heartbeats, the leader lease and its terms, and the
//! fence that makes a former leader's late writes fail.
//!
//! Times are milliseconds of the database's clock (`Conn::now_ms`), never a host's: a host
//! whose clock is wrong cannot take or keep a lease it should not.
//! Invariants: a lease is taken only when it is free or expired, and its term grows by one at
//! every change of holder; on PostgreSQL a write transaction begun under `Store::fenced(term)`
//! fails, in a trigger of the database, when `term` is not the current, unexpired term of the
//! leader lease (so a paused holder that wakes up cannot record a run or queue, claim or mark a
//! notification).

use std::cell::Cell;

use serde::Serialize;

use super::Result;
use super::connection::Store;
use super::db::{OptionalExtension, params};

/// The lease that makes a daemon the fleet's leader.
pub const LEADER: &str = "leader";

/// The PostgreSQL channel a resigning leader wakes the other daemons on.
pub const WAKE: &str = "runbook_fleet";

thread_local! {
    /// The lease term the write transactions of this thread are fenced by (`Store::fenced`).
    static FENCE: Cell<Option<i64>> = const { Cell::new(None) };
}

/// The term write transactions on this thread are fenced by, if any.
pub(super) fn current_fence() -> Option<i64> {
    FENCE.with(Cell::get)
}

thread_local! {
    /// Set while this thread runs work of this host alone (a `run_on: all` or host-named
    /// profile): what it judges is this host's, not the fleet's.
    static PER_HOST: Cell<bool> = const { Cell::new(false) };
}

/// The lease term this process holds and until when (this host's monotonic clock) it is
/// surely its own: set by the daemon's lease loop after each renewal.
static LEASE: std::sync::Mutex<Option<(i64, std::time::Instant)>> = std::sync::Mutex::new(None);

/// Records the term held and until when it is surely this process's (`None`: none held);
/// returns the term recorded before.
pub fn set_lease(held: Option<(i64, std::time::Instant)>) -> Option<i64> {
    std::mem::replace(&mut *LEASE.lock().unwrap_or_else(|e| e.into_inner()), held).map(|(t, _)| t)
}

/// The term this process holds now, before its local deadline.
pub fn held_term() -> Option<i64> {
    LEASE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .filter(|(_, d)| std::time::Instant::now() < *d)
        .map(|(t, _)| t)
}

/// Whether this thread may act on the world (send a message) now: always outside a fence;
/// inside one, only before the lease's local deadline. Checked just before each side effect
/// the database cannot fence, so a holder that was paused past its lease stops at once.
pub fn may_act() -> bool {
    match current_fence() {
        None => true,
        fence => held_term() == fence,
    }
}

/// PostgreSQL only, applied after the migrations: the fence trigger on the tables whose rows a
/// leader writes under its term (stamped with it: runs, notifications), and on the alert
/// episodes and check states it judges (refused, not stamped: a paused leader cannot flip an
/// alert from an observation older than the new leader's). SQLite has no fleet (one host), so
/// no trigger.
pub(super) const PG_FENCE: &str = r#"
CREATE OR REPLACE FUNCTION runbook_fenced_term() RETURNS bigint AS $fence$
DECLARE
    t text := current_setting('runbook.term', true);
BEGIN
    IF t IS NULL OR t = '' THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM leases
        WHERE name = 'leader' AND term = t::bigint
          AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    ) THEN
        RAISE EXCEPTION 'fenced: lease term % is no longer the leader''s', t;
    END IF;
    RETURN t::bigint;
END
$fence$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION runbook_fence() RETURNS trigger AS $fence$
DECLARE
    t bigint := runbook_fenced_term();
BEGIN
    IF t IS NOT NULL THEN
        NEW.term := t;
    END IF;
    RETURN NEW;
END
$fence$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION runbook_fence_only() RETURNS trigger AS $fence$
BEGIN
    PERFORM runbook_fenced_term();
    RETURN COALESCE(NEW, OLD);
END
$fence$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS runs_fence ON runs;
CREATE TRIGGER runs_fence BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runbook_fence();
DROP TRIGGER IF EXISTS notifications_fence ON notifications;
CREATE TRIGGER notifications_fence BEFORE INSERT OR UPDATE ON notifications FOR EACH ROW EXECUTE FUNCTION runbook_fence();
DROP TRIGGER IF EXISTS alerts_fence ON alerts;
CREATE TRIGGER alerts_fence BEFORE INSERT OR UPDATE OR DELETE ON alerts FOR EACH ROW EXECUTE FUNCTION runbook_fence_only();
DROP TRIGGER IF EXISTS check_state_fence ON check_state;
CREATE TRIGGER check_state_fence BEFORE INSERT OR UPDATE OR DELETE ON check_state FOR EACH ROW EXECUTE FUNCTION runbook_fence_only();
"#;

/// A host of the fleet as its heartbeats describe it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetHost {
    pub host: String,
    pub instance: String,
    pub labels: Vec<String>,
    pub pid: Option<i64>,
    pub version: String,
    pub started_ms: i64,
    pub heartbeat_ms: i64,
    pub stopped_ms: Option<i64>,
}

/// A lease: who holds it, in which term, until when (database milliseconds).
#[derive(Debug, Clone, Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: Option<String>,
    pub instance: Option<String>,
    pub term: i64,
    pub acquired_ms: i64,
    pub expires_ms: i64,
}

/// The fleet as the state holds it, with the database's clock at the time of reading.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub now_ms: i64,
    pub hosts: Vec<FleetHost>,
    pub leases: Vec<Lease>,
}

/// What a daemon says of itself in each heartbeat.
#[derive(Debug, Clone)]
pub struct HostBeat<'a> {
    pub host: &'a str,
    pub instance: &'a str,
    pub labels: &'a [String],
    pub pid: i64,
    pub version: &'a str,
}

/// Runs `f` with the thread-local `cell` set to `value`, and puts the value before back
/// after, even when `f` panics.
fn with_cell<V: Copy + 'static, T>(
    cell: &'static std::thread::LocalKey<Cell<V>>,
    value: V,
    f: impl FnOnce() -> T,
) -> T {
    struct Reset<V: Copy + 'static>(&'static std::thread::LocalKey<Cell<V>>, V);
    impl<V: Copy + 'static> Drop for Reset<V> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _reset = Reset(cell, cell.with(|c| c.replace(value)));
    f()
}

impl Store {
    /// Runs `f` with every write transaction it makes on this thread fenced by `term`.
    pub fn fenced<T>(&self, term: i64, f: impl FnOnce() -> T) -> T {
        with_cell(&FENCE, Some(term), f)
    }

    /// Whether outcomes judged on this thread now are the fleet's rather than this host's:
    /// on a shared state (PostgreSQL) everything is, whichever host judges it (the leader's
    /// runs, a ping to any host's API, `runbook check` on any host), except the work of one
    /// host (`Store::per_host`). On a state file, nothing is.
    pub fn judges_for_fleet(&self) -> bool {
        self.lock_pool().is_some() && !PER_HOST.with(Cell::get)
    }

    /// Runs `f` as the work of this host alone (see `judges_for_fleet`).
    pub fn per_host<T>(&self, f: impl FnOnce() -> T) -> T {
        with_cell(&PER_HOST, true, f)
    }

    /// Records a heartbeat of this host and, in the same transaction, takes or renews lease
    /// `name` for `ttl_ms`: the term held, or `None` while another host's lease runs. A
    /// daemon restarted on the host that holds the lease takes it at once, in a new term (one
    /// daemon per host: the one before it is gone, and its term is fenced).
    pub fn beat_and_lease(&self, beat: &HostBeat, name: &str, ttl_ms: i64) -> Result<Option<i64>> {
        let labels = serde_json::to_string(beat.labels).unwrap_or_else(|_| "[]".into());
        self.write("renewing the fleet lease", |tx| {
            let now = tx.now_ms();
            tx.execute(
                &format!(
                    "INSERT INTO fleet_hosts (host, instance, labels, pid, version, started_ms, heartbeat_ms, stopped_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, {now}, {now}, NULL) \
                     ON CONFLICT (host) DO UPDATE SET \
                       started_ms = CASE WHEN fleet_hosts.instance = excluded.instance THEN fleet_hosts.started_ms ELSE excluded.started_ms END, \
                       instance = excluded.instance, labels = excluded.labels, pid = excluded.pid, \
                       version = excluded.version, heartbeat_ms = excluded.heartbeat_ms, stopped_ms = NULL"
                ),
                params![beat.host, beat.instance, labels, beat.pid, beat.version],
            )?;
            tx.query_row(
                &format!(
                    "INSERT INTO leases (name, holder, instance, term, acquired_ms, expires_ms) \
                     VALUES (?1, ?2, ?3, 1, {now}, {now} + ?4) \
                     ON CONFLICT (name) DO UPDATE SET \
                       term = CASE WHEN leases.instance = excluded.instance AND leases.expires_ms > {now} \
                              THEN leases.term ELSE leases.term + 1 END, \
                       acquired_ms = CASE WHEN leases.instance = excluded.instance AND leases.expires_ms > {now} \
                              THEN leases.acquired_ms ELSE excluded.acquired_ms END, \
                       holder = excluded.holder, instance = excluded.instance, expires_ms = excluded.expires_ms \
                     WHERE leases.instance = excluded.instance OR leases.instance IS NULL OR leases.expires_ms <= {now} \
                        OR leases.holder = excluded.holder \
                     RETURNING term"
                ),
                params![name, beat.host, beat.instance, ttl_ms],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Gives lease `name` up at once if `instance` holds it, and marks the host stopped; on
    /// PostgreSQL the other daemons are woken (`NOTIFY runbook_fleet`) to take it.
    pub fn resign(&self, name: &str, host: &str, instance: &str) -> Result<()> {
        self.write("resigning the fleet lease", |tx| {
            let now = tx.now_ms();
            tx.execute(
                &format!("UPDATE leases SET instance = NULL, expires_ms = {now} WHERE name = ?1 AND instance = ?2"),
                params![name, instance],
            )?;
            tx.execute(
                &format!("UPDATE fleet_hosts SET stopped_ms = {now} WHERE host = ?1 AND instance = ?2"),
                params![host, instance],
            )?;
            tx.notify(WAKE)
        })
    }

    /// The hosts, the leases and the database's clock.
    pub fn fleet(&self) -> Result<Fleet> {
        let conn = self.conn()?;
        let now_sql = conn.db().now_ms();
        drop(conn);
        let now_ms = self
            .row("reading the database clock", &format!("SELECT {now_sql}"), (), |r| {
                r.get(0)
            })?
            .unwrap_or(0);
        let hosts = self.rows(
            "reading the fleet's hosts",
            "SELECT host, instance, labels, pid, version, started_ms, heartbeat_ms, stopped_ms FROM fleet_hosts ORDER BY host",
            (),
            |r| {
                Ok(FleetHost {
                    host: r.get(0)?,
                    instance: r.get(1)?,
                    labels: serde_json::from_str(&r.get::<_, String>(2)?).unwrap_or_default(),
                    pid: r.get(3)?,
                    version: r.get(4)?,
                    started_ms: r.get(5)?,
                    heartbeat_ms: r.get(6)?,
                    stopped_ms: r.get(7)?,
                })
            },
        )?;
        let leases = self.rows(
            "reading the fleet's leases",
            "SELECT name, holder, instance, term, acquired_ms, expires_ms FROM leases ORDER BY name",
            (),
            |r| {
                Ok(Lease {
                    name: r.get(0)?,
                    holder: r.get(1)?,
                    instance: r.get(2)?,
                    term: r.get(3)?,
                    acquired_ms: r.get(4)?,
                    expires_ms: r.get(5)?,
                })
            },
        )?;
        Ok(Fleet { now_ms, hosts, leases })
    }

    /// On PostgreSQL, a connection that sends `()` on `wake` each time a leader resigns;
    /// `None` on SQLite (one host: nobody to wake).
    pub fn listen_for_resignations(
        &self,
        wake: std::sync::mpsc::Sender<()>,
    ) -> Result<Option<super::postgres::Listener>> {
        let Some((pool, _)) = self.lock_pool() else {
            return Ok(None);
        };
        pool.listen(WAKE, wake)
            .map(Some)
            .map_err(|source| super::StoreError::Open {
                what: self.label().to_string(),
                source,
            })
    }

    /// Runs of other hosts than `host` still `running` that were started under a lease term
    /// before `term`: (id, profile). (This host's own are `jobs recover-stale`'s: it can
    /// tell whether their processes live.)
    pub fn running_before_term(&self, term: i64, host: &str) -> Result<Vec<(i64, String)>> {
        self.rows(
            "reading runs of former leaders",
            "SELECT id, profile FROM runs WHERE status = 'running' AND term IS NOT NULL AND term < ?1 AND host <> ?2 ORDER BY id",
            params![term, host],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
    }

    /// The newest result of each check on each host since `since`: (host, check, ok, at).
    pub fn latest_checks_by_host(&self, since: &str) -> Result<Vec<(String, String, bool, String)>> {
        self.rows(
            "reading check results per host",
            "SELECT host, check_name, ok, at FROM check_results WHERE id IN \
             (SELECT max(id) FROM check_results WHERE at >= ?1 GROUP BY check_name, host) ORDER BY host, check_name",
            params![since],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? != 0, r.get(3)?)),
        )
    }

    /// Whether some daemon holds the leader lease now (by the database's clock).
    pub fn leader_alive(&self) -> Result<bool> {
        let conn = self.conn()?;
        let now = conn.db().now_ms();
        drop(conn);
        Ok(self
            .row(
                "reading the leader lease",
                &format!("SELECT count(*) FROM leases WHERE name = ?1 AND instance IS NOT NULL AND expires_ms > {now}"),
                params![LEADER],
                |r| r.get::<_, i64>(0),
            )?
            .unwrap_or(0)
            > 0)
    }

    /// The newest tick of `profile` recorded in the ledger (claimed, run, skipped or missed).
    pub fn last_tick(&self, profile: &str) -> Result<Option<String>> {
        Ok(self
            .row(
                "reading the last tick",
                "SELECT max(tick) FROM runs WHERE profile = ?1 AND tick IS NOT NULL AND parent_id IS NULL",
                params![profile],
                |r| r.get::<_, Option<String>>(0),
            )?
            .flatten())
    }
}
