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

use serde::Serialize;

use super::Result;
use super::connection::Store;
use super::db::{OptionalExtension, params};
use super::fence;
pub use super::fence::{held_term, may_act, set_lease};

/// The lease that makes a daemon the fleet's leader.
pub const LEADER: &str = "leader";

/// The PostgreSQL channel a resigning leader wakes the other daemons on.
pub const WAKE: &str = "runbook_fleet";

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

impl Store {
    /// Runs `f` with every write transaction it makes on this thread fenced by `term`.
    pub fn fenced<T>(&self, term: i64, f: impl FnOnce() -> T) -> T {
        fence::fenced(term, f)
    }

    /// Whether outcomes judged on this thread now are the fleet's rather than this host's:
    /// on a shared state (PostgreSQL) everything is, whichever host judges it (the leader's
    /// runs, a ping to any host's API, `runbook check` on any host), except the work of one
    /// host (`Store::per_host`). On a state file, nothing is.
    pub fn judges_for_fleet(&self) -> bool {
        self.lock_pool().is_some() && !fence::is_per_host()
    }

    /// Runs `f` as the work of this host alone (see `judges_for_fleet`).
    pub fn per_host<T>(&self, f: impl FnOnce() -> T) -> T {
        fence::per_host(f)
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
