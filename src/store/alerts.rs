//! SQL for alerts, check state and silences.
//!
//! Alert logic lives in `alert/`; it runs inside `Store::alerts_tx`, whose `AlertTx` offers
//! domain-typed reads and writes on one IMMEDIATE transaction, so a state update, the alert
//! transition and its audit event commit together. Invariant: at most one open alert per key
//! (enforced by a partial unique index as well).

use super::db::{OptionalExtension, Row, Transaction, params};
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Silenced,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Silenced => "silenced",
            AlertStatus::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<AlertStatus> {
        match s {
            "firing" => Some(AlertStatus::Firing),
            "silenced" => Some(AlertStatus::Silenced),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

impl std::str::FromStr for AlertStatus {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        AlertStatus::parse(s).ok_or_else(|| format!("unknown alert status `{s}` (firing, silenced, resolved)"))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub key: String,
    pub source: String,
    pub name: String,
    pub host: String,
    pub severity: String,
    pub status: AlertStatus,
    pub labels: serde_json::Value,
    pub summary: String,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved_at: Option<String>,
    pub count: i64,
    pub suppressed_by: Option<String>,
    pub acked_by: Option<String>,
    pub acked_at: Option<String>,
    /// Delivery of this alert's notifications (filled by `list_alerts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// How an alert's notifications fared, by outbox status.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Delivery {
    pub sent: i64,
    pub pending: i64,
    pub dead: i64,
}

#[derive(Debug, Clone)]
pub struct NewAlert {
    pub key: String,
    pub source: String,
    pub name: String,
    pub host: String,
    pub severity: String,
    pub status: AlertStatus,
    pub labels: serde_json::Value,
    pub summary: String,
    pub at: String,
    pub suppressed_by: Option<String>,
}

/// Consecutive outcomes of a check on a host.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckState {
    /// The latest outcome; `None` before the first.
    pub ok: Option<bool>,
    pub fails: u32,
    pub oks: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub id: i64,
    pub target: String,
    pub until: String,
    pub reason: String,
    pub actor: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    pub source: Option<String>,
    pub limit: usize,
    /// Paging: newest first by id, only ids below this.
    pub before: Option<i64>,
    /// Only alerts seen at or after this time.
    pub since: Option<String>,
    /// Order by id only (paging), instead of open alerts first.
    pub by_id: bool,
    /// Only alerts with this label (key, value).
    pub label: Option<(String, String)>,
}

const ALERT_COLUMNS: &str = "id, key, source, name, host, severity, status, labels, summary, first_seen, last_seen, \
    resolved_at, count, suppressed_by, acked_by, acked_at";

fn alert_from_row(r: &Row) -> super::db::Result<Alert> {
    let labels: String = r.get(7)?;
    Ok(Alert {
        id: r.get(0)?,
        key: r.get(1)?,
        source: r.get(2)?,
        name: r.get(3)?,
        host: r.get(4)?,
        severity: r.get(5)?,
        status: AlertStatus::parse(&r.get::<_, String>(6)?).unwrap_or(AlertStatus::Firing),
        labels: serde_json::from_str(&labels).unwrap_or(serde_json::Value::Null),
        summary: r.get(8)?,
        first_seen: r.get(9)?,
        last_seen: r.get(10)?,
        resolved_at: r.get(11)?,
        count: r.get(12)?,
        suppressed_by: r.get(13)?,
        acked_by: r.get(14)?,
        acked_at: r.get(15)?,
        delivery: None,
    })
}

/// Domain-typed operations inside one alerts transaction.
pub struct AlertTx<'t> {
    tx: &'t Transaction<'t>,
}

impl AlertTx<'_> {
    pub(super) fn tx(&self) -> &Transaction<'_> {
        self.tx
    }

    pub fn check_state(&self, check: &str, host: &str) -> super::db::Result<CheckState> {
        Ok(self
            .tx
            .query_row(
                "SELECT ok, fails, oks FROM check_state WHERE check_name = ?1 AND host = ?2",
                [check, host],
                |r| {
                    Ok(CheckState {
                        ok: Some(r.get(0)?),
                        fails: r.get(1)?,
                        oks: r.get(2)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    pub fn put_check_state(&self, check: &str, host: &str, state: CheckState, at: &str) -> super::db::Result<()> {
        self.tx.execute(
            "INSERT INTO check_state (check_name, host, ok, fails, oks, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (check_name, host) DO UPDATE SET ok = excluded.ok, fails = excluded.fails, \
             oks = excluded.oks, updated_at = excluded.updated_at",
            params![check, host, state.ok.unwrap_or(true), state.fails, state.oks, at],
        )?;
        Ok(())
    }

    pub fn open_alert(&self, key: &str) -> super::db::Result<Option<Alert>> {
        self.tx
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE key = ?1 AND status != 'resolved'"),
                [key],
                alert_from_row,
            )
            .optional()
    }

    pub fn insert_alert(&self, a: &NewAlert) -> super::db::Result<i64> {
        self.tx.execute(
            "INSERT INTO alerts (key, source, name, host, severity, status, labels, summary, first_seen, last_seen, count, suppressed_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, 1, ?10)",
            params![a.key, a.source, a.name, a.host, a.severity, a.status.as_str(), a.labels.to_string(), a.summary, a.at, a.suppressed_by],
        )?;
        self.tx.last_insert_rowid()
    }

    /// Another failing observation of an open alert.
    pub fn touch_alert(&self, id: i64, summary: &str, at: &str) -> super::db::Result<()> {
        self.tx.execute(
            "UPDATE alerts SET summary = ?2, last_seen = ?3, count = count + 1 WHERE id = ?1",
            params![id, summary, at],
        )?;
        Ok(())
    }

    pub fn resolve_alert(&self, id: i64, at: &str) -> super::db::Result<()> {
        self.tx.execute(
            "UPDATE alerts SET status = 'resolved', resolved_at = ?2, last_seen = ?2 WHERE id = ?1",
            params![id, at],
        )?;
        Ok(())
    }

    pub fn clear_suppression(&self, id: i64) -> super::db::Result<()> {
        self.tx
            .execute("UPDATE alerts SET suppressed_by = NULL WHERE id = ?1", [id])?;
        Ok(())
    }

    pub fn set_alert_status(&self, id: i64, status: AlertStatus) -> super::db::Result<()> {
        self.tx.execute(
            "UPDATE alerts SET status = ?2 WHERE id = ?1",
            params![id, status.as_str()],
        )?;
        Ok(())
    }

    /// The silence covering an alert key or check name at `now`, if any.
    pub fn active_silence(&self, key: &str, name: &str, now: &str) -> super::db::Result<Option<Silence>> {
        self.tx
            .query_row(
                "SELECT id, target, until, reason, actor, created_at FROM silences \
                 WHERE (target = ?1 OR target = ?2) AND until > ?3 ORDER BY until DESC LIMIT 1",
                [key, name, now],
                |r| {
                    Ok(Silence {
                        id: r.get(0)?,
                        target: r.get(1)?,
                        until: r.get(2)?,
                        reason: r.get(3)?,
                        actor: r.get(4)?,
                        created_at: r.get(5)?,
                    })
                },
            )
            .optional()
    }

    pub fn audit(&self, draft: &Draft) -> super::db::Result<()> {
        append_audit(self.tx, draft).map(|_| ())
    }
}

impl Store {
    /// Runs `f` with an `AlertTx` in one transaction; an error from `f` rolls everything back.
    pub fn alerts_tx<T>(&self, f: impl FnOnce(&AlertTx) -> super::db::Result<T>) -> Result<T> {
        self.write("updating alerts", |tx| f(&AlertTx { tx }))
    }

    pub fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<Alert>> {
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            filter.limit as i64
        };
        let mut alerts = if filter.by_id || filter.status.is_some() {
            self.alerts_page(filter, None, limit)?
        } else {
            // Open alerts first, then resolved ones: two index walks instead of one big sort.
            let mut open = self.alerts_page(filter, Some("status IN ('firing', 'silenced')"), limit)?;
            let rest = limit - open.len() as i64;
            if rest > 0 {
                open.extend(self.alerts_page(filter, Some("status = 'resolved'"), rest)?);
            }
            open
        };
        self.fill_delivery(&mut alerts)?;
        Ok(alerts)
    }

    /// One page, newest first by id. The SQL names only the filters given, so SQLite walks
    /// the primary key (or `alerts_by_status`) and stops after `limit` rows.
    fn alerts_page(&self, filter: &AlertFilter, extra: Option<&str>, limit: i64) -> Result<Vec<Alert>> {
        use super::db::Value;
        let mut clauses: Vec<String> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |clause: &str, v: Value, clauses: &mut Vec<String>| {
            args.push(v);
            clauses.push(clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(st) = filter.status {
            arg("status = ?", Value::Text(st.as_str().into()), &mut clauses);
        }
        if let Some(src) = &filter.source {
            arg("source = ?", Value::Text(src.clone()), &mut clauses);
        }
        if let Some((key, value)) = &filter.label {
            // One placeholder for both: label keys are names, without `=`.
            let each = match self.backend() {
                super::Backend::Sqlite => "json_each(alerts.labels) AS l",
                super::Backend::Postgres => "json_each_text(alerts.labels::json) AS l",
            };
            arg(
                &format!("EXISTS (SELECT 1 FROM {each} WHERE l.key || '=' || l.value = ?)"),
                Value::Text(format!("{key}={value}")),
                &mut clauses,
            );
        }
        if let Some(before) = filter.before {
            arg("id < ?", Value::Integer(before), &mut clauses);
        }
        if let Some(since) = &filter.since {
            arg("last_seen >= ?", Value::Text(since.clone()), &mut clauses);
        }
        if let Some(e) = extra {
            clauses.push(e.to_string());
        }
        args.push(Value::Integer(limit));
        let where_ = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts {where_} ORDER BY id DESC LIMIT ?{}",
            args.len()
        );
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&sql).map_err(self.err("listing alerts"))?;
        stmt.query_map(args, alert_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("listing alerts"))
    }

    /// Delivery counts of a page of alerts, in one query.
    fn fill_delivery(&self, alerts: &mut [Alert]) -> Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        // One fixed statement (cached) over the page's id range, not an IN list compiled anew.
        let (lo, hi) = alerts
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), a| (lo.min(a.id), hi.max(a.id)));
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT alert_id, count(CASE WHEN status = 'sent' THEN 1 END), count(CASE WHEN status IN ('pending', 'sending') THEN 1 END), \
                 count(CASE WHEN status = 'dead' THEN 1 END) FROM notifications WHERE alert_id BETWEEN ?1 AND ?2 GROUP BY alert_id",
            )
            .map_err(self.err("counting notifications"))?;
        let counts: std::collections::HashMap<i64, Delivery> = stmt
            .query_map([lo, hi], |r| {
                Ok((
                    r.get(0)?,
                    Delivery {
                        sent: r.get(1)?,
                        pending: r.get(2)?,
                        dead: r.get(3)?,
                    },
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("counting notifications"))?;
        for a in alerts {
            a.delivery = Some(counts.get(&a.id).copied().unwrap_or_default());
        }
        Ok(())
    }

    /// Open alerts whose key or name is `target`.
    pub fn get_alert(&self, id: i64) -> Result<Option<Alert>> {
        use super::db::OptionalExtension;
        self.conn()?
            .query_row(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"),
                [id],
                alert_from_row,
            )
            .optional()
            .map_err(self.err("reading an alert"))
    }

    pub fn open_alerts_matching(&self, target: &str) -> Result<Vec<Alert>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts WHERE status != 'resolved' AND (key = ?1 OR name = ?1) ORDER BY id"
            ))
            .map_err(self.err("reading alerts"))?;
        stmt.query_map([target], alert_from_row)
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading alerts"))
    }

    /// Adds a silence and marks matching open alerts silenced, with one audit event.
    pub fn add_silence(
        &self,
        target: &str,
        until: &str,
        reason: &str,
        now: &str,
        audit: &Draft,
    ) -> Result<(i64, usize)> {
        self.write("adding a silence", |tx| {
            tx.execute(
                "INSERT INTO silences (target, until, reason, actor, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![target, until, reason, audit.actor, now],
            )?;
            let id = tx.last_insert_rowid()?;
            let n = tx.execute(
                "UPDATE alerts SET status = 'silenced' WHERE status = 'firing' AND (key = ?1 OR name = ?1)",
                [target],
            )?;
            append_audit(tx, audit)?;
            Ok((id, n))
        })
    }

    /// Acknowledges the open alerts matching `target`, with one audit event.
    pub fn ack_alerts(&self, target: &str, actor: &str, now: &str, audit: &Draft) -> Result<usize> {
        self.write("acknowledging alerts", |tx| {
            let n = tx.execute(
                "UPDATE alerts SET acked_by = ?2, acked_at = ?3 WHERE status != 'resolved' AND (key = ?1 OR name = ?1)",
                params![target, actor, now],
            )?;
            if n > 0 {
                append_audit(tx, audit)?;
            }
            Ok(n)
        })
    }

    pub fn silences(&self, now: &str) -> Result<Vec<Silence>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, target, until, reason, actor, created_at FROM silences WHERE until > ?1 ORDER BY until",
            )
            .map_err(self.err("listing silences"))?;
        stmt.query_map([now], |r| {
            Ok(Silence {
                id: r.get(0)?,
                target: r.get(1)?,
                until: r.get(2)?,
                reason: r.get(3)?,
                actor: r.get(4)?,
                created_at: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.err("listing silences"))
    }
}

/// What retention removes: keep the newest N, or rows newer than a cutoff time.
#[derive(Debug, Clone)]
pub enum Cutoff {
    Count(u64),
    Before(String),
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Pruned {
    pub check_results: usize,
    pub resolved_alerts: usize,
    pub notifications: usize,
}

impl Store {
    /// Deletes check results and resolved alerts (with their notifications) beyond retention;
    /// one audit event when anything went, all in one transaction.
    pub fn prune(&self, results: &Cutoff, alerts: &Cutoff, audit: impl FnOnce(&Pruned) -> Draft) -> Result<Pruned> {
        self.write("pruning history", |tx| {
            let check_results = match results {
                Cutoff::Count(n) => tx.execute(
                    "DELETE FROM check_results WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER \
                     (PARTITION BY check_name ORDER BY id DESC) AS rn FROM check_results) AS ranked WHERE rn > ?1)",
                    [*n as i64],
                )?,
                Cutoff::Before(t) => tx.execute("DELETE FROM check_results WHERE at < ?1", [t])?,
            };
            // Resolved alerts beyond retention, and their notifications (which reference them).
            let (doomed, arg) = match alerts {
                Cutoff::Count(n) => (
                    "SELECT id FROM alerts WHERE status = 'resolved' ORDER BY id DESC LIMIT 9223372036854775807 OFFSET ?1",
                    super::db::Value::Integer(*n as i64),
                ),
                Cutoff::Before(t) => (
                    "SELECT id FROM alerts WHERE status = 'resolved' AND resolved_at < ?1",
                    super::db::Value::Text(t.clone()),
                ),
            };
            let mut notifications = tx.execute(
                &format!("DELETE FROM notifications WHERE alert_id IN ({doomed})"),
                [&arg],
            )?;
            // Digests and groups belong to no alert: the same retention, applied to them directly.
            let loose = match alerts {
                Cutoff::Count(_) => {
                    "DELETE FROM notifications WHERE alert_id IS NULL AND status IN ('sent', 'dead') \
                     AND id NOT IN (SELECT id FROM notifications WHERE alert_id IS NULL ORDER BY id DESC LIMIT ?1)"
                }
                Cutoff::Before(_) => {
                    "DELETE FROM notifications WHERE alert_id IS NULL AND status IN ('sent', 'dead') \
                     AND created_at < ?1"
                }
            };
            notifications += tx.execute(loose, [&arg])?;
            let resolved_alerts = tx.execute(&format!("DELETE FROM alerts WHERE id IN ({doomed})"), [&arg])?;
            let p = Pruned {
                check_results,
                resolved_alerts,
                notifications,
            };
            if check_results + resolved_alerts + notifications > 0 {
                append_audit(tx, &audit(&p))?;
            }
            Ok(p)
        })
    }
}

impl Store {
    /// Removes silences (the end of a maintenance window), with one audit event.
    pub fn remove_silences(&self, ids: &[i64], audit: &Draft) -> Result<()> {
        self.write("removing silences", |tx| {
            for id in ids {
                tx.execute("DELETE FROM silences WHERE id = ?1", [id])?;
            }
            append_audit(tx, audit)?;
            Ok(())
        })
    }
}
