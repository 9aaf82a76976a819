//! SQL for drift: items as they appear and go, and their acknowledgements.

use super::db::params;
use serde::Serialize;

use super::Result;
use super::audit_log::append_audit;
use super::connection::Store;
use crate::audit::Draft;

/// A drift item seen now: (`kind:key:attribute`, change, expected, actual).
pub type Seen = (String, String, String, String);

#[derive(Debug, Clone, Serialize)]
pub struct DriftRecord {
    pub item: String,
    pub change: String,
    pub expected: String,
    pub actual: String,
    pub first_seen: String,
    pub last_seen: String,
    pub gone_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftAck {
    pub item: String,
    pub reason: String,
    pub actor: String,
    pub created_at: String,
    pub expires_at: String,
}

impl Store {
    /// Records what drifted now: new items appear (with an audit event), items still there
    /// are seen again, items no longer there are gone (with an audit event).
    pub fn record_drift(
        &self,
        seen: &[Seen],
        at: &str,
        appeared: &dyn Fn(&[String], &[String]) -> Draft,
    ) -> Result<()> {
        self.write("recording drift", |tx| {
            let open: Vec<String> = {
                let mut stmt = tx.prepare("SELECT item FROM drift_items WHERE gone_at IS NULL")?;
                stmt.query_map((), |r| r.get(0))?.collect::<super::db::Result<_>>()?
            };
            let mut new = Vec::new();
            for (item, change, expected, actual) in seen {
                let n = tx.execute(
                    "UPDATE drift_items SET last_seen = ?2, actual = ?3 WHERE item = ?1 AND gone_at IS NULL",
                    params![item, at, actual],
                )?;
                if n == 0 {
                    tx.execute(
                        "INSERT INTO drift_items (item, change, expected, actual, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![item, change, expected, actual, at],
                    )?;
                    new.push(item.clone());
                }
            }
            let gone: Vec<String> = open.into_iter().filter(|o| !seen.iter().any(|s| &s.0 == o)).collect();
            for g in &gone {
                tx.execute("UPDATE drift_items SET gone_at = ?2 WHERE item = ?1 AND gone_at IS NULL", params![g, at])?;
            }
            if !new.is_empty() || !gone.is_empty() {
                append_audit(tx, &appeared(&new, &gone))?;
            }
            Ok(())
        })
    }

    /// Drift history, newest first.
    pub fn drift_history(&self, limit: i64) -> Result<Vec<DriftRecord>> {
        self.rows(
            "reading drift history",
            "SELECT item, change, expected, actual, first_seen, last_seen, gone_at FROM drift_items ORDER BY id DESC LIMIT ?1",
            [limit],
            |r| {
                Ok(DriftRecord {
                    item: r.get(0)?,
                    change: r.get(1)?,
                    expected: r.get(2)?,
                    actual: r.get(3)?,
                    first_seen: r.get(4)?,
                    last_seen: r.get(5)?,
                    gone_at: r.get(6)?,
                })
            },
        )
    }

    pub fn ack_drift(&self, a: &DriftAck, draft: &Draft) -> Result<()> {
        self.write("acknowledging drift", |tx| {
            tx.execute(
                "INSERT INTO drift_acks (item, reason, actor, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.item, a.reason, a.actor, a.created_at, a.expires_at],
            )?;
            append_audit(tx, draft)?;
            Ok(())
        })
    }

    /// Acknowledgements in force at `now`.
    pub fn drift_acks(&self, now: &str) -> Result<Vec<DriftAck>> {
        self.rows(
            "reading drift acknowledgements",
            "SELECT item, reason, actor, created_at, expires_at FROM drift_acks WHERE expires_at > ?1 ORDER BY id",
            [now],
            |r| {
                Ok(DriftAck {
                    item: r.get(0)?,
                    reason: r.get(1)?,
                    actor: r.get(2)?,
                    created_at: r.get(3)?,
                    expires_at: r.get(4)?,
                })
            },
        )
    }
}
