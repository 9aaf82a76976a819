//! SQL for API tokens. Only hashes are stored; the token itself is shown once, at creation.

use super::db::params;
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub name: String,
    #[serde(skip)]
    pub hash: String,
    pub scope: String,
    pub created_at: String,
    pub created_by: String,
}

impl Store {
    /// Adds a token (by hash) with an audit event; false if the name is taken.
    pub fn add_token(&self, token: &ApiToken, audit: &Draft) -> Result<bool> {
        self.write("adding an API token", |tx| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO api_tokens (name, hash, scope, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![token.name, token.hash, token.scope, token.created_at, token.created_by],
            )?;
            if n == 1 {
                append_audit(tx, audit)?;
            }
            Ok(n == 1)
        })
    }

    /// Removes a token with an audit event; false if there was none.
    pub fn revoke_token(&self, name: &str, audit: &Draft) -> Result<bool> {
        self.write("revoking an API token", |tx| {
            let n = tx.execute("DELETE FROM api_tokens WHERE name = ?1", [name])?;
            if n == 1 {
                append_audit(tx, audit)?;
            }
            Ok(n == 1)
        })
    }

    pub fn tokens(&self) -> Result<Vec<ApiToken>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT name, hash, scope, created_at, created_by FROM api_tokens ORDER BY name")
            .map_err(self.err("listing API tokens"))?;
        stmt.query_map((), |r| {
            Ok(ApiToken {
                name: r.get(0)?,
                hash: r.get(1)?,
                scope: r.get(2)?,
                created_at: r.get(3)?,
                created_by: r.get(4)?,
            })
        })
        .and_then(|r| r.collect())
        .map_err(self.err("listing API tokens"))
    }
}

impl Store {
    /// Publishes a liveness fact (no audit event: it is not a change anyone makes).
    pub fn set_daemon_status(&self, key: &str, value: &str, at: &str) -> Result<()> {
        self.write("publishing daemon status", |tx| {
            tx.execute(
                "INSERT INTO daemon_status (key, value, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![key, value, at],
            )?;
            Ok(())
        })
    }

    /// (value, updated_at) of a liveness fact.
    pub fn daemon_status(&self, key: &str) -> Result<Option<(String, String)>> {
        use super::db::OptionalExtension;
        self.conn()?
            .query_row(
                "SELECT value, updated_at FROM daemon_status WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("reading daemon status"))
    }
}

/// Aggregates `/metrics` reads, computed by the store in a few queries.
#[derive(Debug, Default, Clone)]
pub struct MetricsSnapshot {
    /// (profile, status, count) over task and profile runs of kind `profile`.
    pub runs: Vec<(String, String, i64)>,
    /// (profile, last duration ms, last success time) per profile.
    pub profiles: Vec<(String, Option<i64>, Option<String>)>,
    /// (severity, status, count) of open alerts.
    pub alerts: Vec<(String, String, i64)>,
    /// (channel, status, count) in the outbox.
    pub notifications: Vec<(String, String, i64)>,
}

impl Store {
    pub fn metrics_snapshot(&self) -> Result<MetricsSnapshot> {
        let conn = self.conn()?;
        let q = |sql: &str| -> super::db::Result<Vec<(String, String, i64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        };
        let runs = q(
            "SELECT profile, status, count(*) FROM runs WHERE kind = 'profile' GROUP BY profile, status ORDER BY 1, 2",
        )
        .map_err(self.err("reading metrics"))?;
        let alerts =
            q("SELECT severity, status, count(*) FROM alerts WHERE status != 'resolved' GROUP BY 1, 2 ORDER BY 1, 2")
                .map_err(self.err("reading metrics"))?;
        let notifications = q("SELECT channel, status, count(*) FROM notifications GROUP BY 1, 2 ORDER BY 1, 2")
            .map_err(self.err("reading metrics"))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT p.profile, \
                 (SELECT duration_ms FROM runs r WHERE r.kind = 'profile' AND r.profile = p.profile AND r.finished_at IS NOT NULL \
                  AND r.status != 'skipped' ORDER BY r.id DESC LIMIT 1), \
                 (SELECT max(finished_at) FROM runs r WHERE r.kind = 'profile' AND r.profile = p.profile AND r.status = 'ok') \
                 FROM (SELECT DISTINCT profile FROM runs WHERE kind = 'profile') p ORDER BY 1",
            )
            .map_err(self.err("reading metrics"))?;
        let profiles = stmt
            .query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading metrics"))?;
        Ok(MetricsSnapshot {
            runs,
            profiles,
            alerts,
            notifications,
        })
    }
}

impl Store {
    /// Per check, hourly buckets of the last `hours` hours: (check, hour index 0 = oldest,
    /// results, failures).
    pub fn check_history(&self, since: &str) -> Result<Vec<(String, String, i64, i64)>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT check_name, substr(at, 1, 13) AS hour, count(*), count(CASE WHEN ok = 0 THEN 1 END) FROM check_results \
                 WHERE at >= ?1 GROUP BY check_name, hour ORDER BY check_name, hour",
            )
            .map_err(self.err("reading check history"))?;
        stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading check history"))
    }
}

impl Store {
    /// Failures since a time: (failing check results, failed profile runs, notifications that
    /// failed at least once).
    pub fn failures_since(&self, since: &str) -> Result<(i64, i64, i64)> {
        self.conn()?
            .query_row(
                "SELECT (SELECT count(*) FROM check_results WHERE ok = 0 AND at >= ?1), \
                 (SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'failed' AND finished_at >= ?1), \
                 (SELECT count(*) FROM notifications WHERE last_error IS NOT NULL AND created_at >= ?1)",
                [since],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.err("counting failures"))
    }
}
