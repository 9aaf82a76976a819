//! SQL for the notification outbox and the per-channel delivery log.
//!
//! Invariant: a notification is claimed (`sending`, attempts + 1) in its own committed
//! transaction before it is sent, so after a crash the store knows a send may have happened.

use super::db::{Row, params};
use serde::Serialize;

use super::Result;
use super::alerts::AlertTx;
use super::connection::Store;

#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: i64,
    pub idempotency_key: String,
    pub alert_id: Option<i64>,
    pub change: String,
    pub channel: String,
    /// JSON text of the message.
    #[serde(skip)]
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewNotification {
    pub idempotency_key: String,
    pub alert_id: Option<i64>,
    pub change: String,
    pub channel: String,
    pub payload: String,
    pub at: String,
    /// Not before this time (a route's group_wait); default: at once.
    pub send_after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelHealth {
    pub channel: String,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub failing_since: Option<String>,
}

const COLUMNS: &str = "id, idempotency_key, alert_id, change, channel, payload, status, attempts, next_attempt_at, \
    last_error, created_at, sent_at";

fn from_row(r: &Row) -> super::db::Result<Notification> {
    Ok(Notification {
        id: r.get(0)?,
        idempotency_key: r.get(1)?,
        alert_id: r.get(2)?,
        change: r.get(3)?,
        channel: r.get(4)?,
        payload: r.get(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        sent_at: r.get(11)?,
    })
}

impl AlertTx<'_> {
    /// Whether an announcement of this alert (opened, repeat) was ever queued.
    pub fn was_notified(&self, alert_id: i64) -> super::db::Result<bool> {
        self.tx().query_row(
            "SELECT EXISTS (SELECT 1 FROM notifications WHERE alert_id = ?1 AND change IN ('opened', 'repeat'))",
            [alert_id],
            |r| r.get(0),
        )
    }

    /// The channels the alert's firing went to (an `opened` or `repeat` notification queued or
    /// sent there, not given up), in name order.
    pub fn notified_channels(&self, alert_id: i64) -> super::db::Result<Vec<String>> {
        let mut stmt = self.tx().prepare_cached(
            "SELECT DISTINCT channel FROM notifications \
             WHERE alert_id = ?1 AND change IN ('opened', 'repeat') AND status != 'dead' ORDER BY channel",
        )?;
        stmt.query_map([alert_id], |r| r.get(0))?.collect()
    }

    /// Queues a notification; a second one with the same idempotency key is ignored.
    pub fn enqueue(&self, n: &NewNotification) -> super::db::Result<bool> {
        let inserted = self.tx().execute(
            "INSERT OR IGNORE INTO notifications (idempotency_key, alert_id, change, channel, payload, status, next_attempt_at, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', COALESCE(?7, ?6), ?6)",
            params![n.idempotency_key, n.alert_id, n.change, n.channel, n.payload, n.at, n.send_after],
        )?;
        Ok(inserted == 1)
    }
}

impl Store {
    /// Claims up to `limit` due notifications: each becomes `sending` with one more attempt.
    pub fn claim_due_notifications(&self, now: &str, limit: usize) -> Result<Vec<Notification>> {
        self.write("claiming notifications", |tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2{}",
                tx.skip_locked()
            ))?;
            let rows: Vec<Notification> = stmt.query_map(params![now, limit as i64], from_row)?.collect::<super::db::Result<_>>()?;
            let mut claim = tx.prepare_cached("UPDATE notifications SET status = 'sending', attempts = attempts + 1, claimed_at = ?2 WHERE id = ?1 AND status = 'pending'")?;
            let mut claimed = Vec::new();
            for mut n in rows {
                if claim.execute(params![n.id, now])? == 1 {
                    n.attempts += 1;
                    n.status = "sending".into();
                    claimed.push(n);
                }
            }
            Ok(claimed)
        })
    }

    pub fn mark_sent(&self, id: i64, channel: &str, now: &str) -> Result<()> {
        self.write("recording a delivery", |tx| {
            tx.execute(
                "UPDATE notifications SET status = 'sent', sent_at = ?2, last_error = NULL WHERE id = ?1",
                params![id, now],
            )?;
            tx.execute(
                "INSERT INTO channel_health (channel, last_success) VALUES (?1, ?2) \
                 ON CONFLICT (channel) DO UPDATE SET last_success = excluded.last_success, failing_since = NULL",
                params![channel, now],
            )?;
            Ok(())
        })
    }

    /// A failed attempt: retried at `next` or, when `next` is `None`, given up (`dead`).
    pub fn mark_failed(&self, id: i64, channel: &str, error: &str, now: &str, next: Option<&str>) -> Result<()> {
        self.write("recording a failed delivery", |tx| {
            match next {
                Some(at) => tx.execute(
                    "UPDATE notifications SET status = 'pending', last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
                    params![id, error, at],
                )?,
                None => tx.execute("UPDATE notifications SET status = 'dead', last_error = ?2 WHERE id = ?1", params![id, error])?,
            };
            tx.execute(
                "INSERT INTO channel_health (channel, last_error, last_error_at, failing_since) VALUES (?1, ?2, ?3, ?3) \
                 ON CONFLICT (channel) DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at, \
                 failing_since = COALESCE(channel_health.failing_since, excluded.failing_since)",
                params![channel, error, now],
            )?;
            Ok(())
        })
    }

    /// When the earliest never-attempted pending notification is due (held by group_wait).
    pub fn next_first_attempt(&self) -> Result<Option<String>> {
        self.conn()?
            .query_row(
                "SELECT min(next_attempt_at) FROM notifications WHERE status = 'pending' AND attempts = 0",
                (),
                |r| r.get(0),
            )
            .map_err(self.err("reading notifications"))
    }

    /// Notifications left `sending` by a process that died mid-send: claimed before `before`
    /// (or by a version that did not record claims).
    /// Sends left `sending`: claimed before `before`, or (fleet mode, under a fence) claimed
    /// by a leader of an earlier term, which can no longer record how they ended.
    pub fn interrupted_notifications(&self, before: &str) -> Result<Vec<Notification>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE status = 'sending' AND (claimed_at IS NULL OR claimed_at < ?1 \
                 OR (CAST(?2 AS BIGINT) IS NOT NULL AND term < ?2)) ORDER BY id"
            ))
            .map_err(self.err("reading notifications"))?;
        stmt.query_map(params![before, super::fence::current_fence()], from_row)
            .and_then(|r| r.collect())
            .map_err(self.err("reading notifications"))
    }

    /// Puts an interrupted notification back in the queue.
    pub fn requeue_notification(&self, id: i64) -> Result<()> {
        self.write("requeueing a notification", |tx| {
            tx.execute(
                "UPDATE notifications SET status = 'pending' WHERE id = ?1 AND status = 'sending'",
                [id],
            )?;
            Ok(())
        })
    }

    pub fn list_notifications(&self, alert_id: Option<i64>, limit: usize) -> Result<Vec<Notification>> {
        let conn = self.conn()?;
        let limit = if limit == 0 { i64::MAX } else { limit as i64 };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE (CAST(?1 AS BIGINT) IS NULL OR alert_id = ?1) ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(self.err("listing notifications"))?;
        stmt.query_map(params![alert_id, limit], from_row)
            .and_then(|r| r.collect())
            .map_err(self.err("listing notifications"))
    }

    pub fn channel_health(&self) -> Result<Vec<ChannelHealth>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT channel, last_success, last_error, last_error_at, failing_since FROM channel_health ORDER BY channel")
            .map_err(self.err("reading channel health"))?;
        stmt.query_map((), |r| {
            Ok(ChannelHealth {
                channel: r.get(0)?,
                last_success: r.get(1)?,
                last_error: r.get(2)?,
                last_error_at: r.get(3)?,
                failing_since: r.get(4)?,
            })
        })
        .and_then(|r| r.collect())
        .map_err(self.err("reading channel health"))
    }

    /// How many open alerts are suppressed because `name` is failing.
    pub fn suppressed_dependents(&self, name: &str) -> Result<Vec<String>> {
        self.rows(
            "listing suppressed alerts",
            "SELECT DISTINCT name FROM alerts WHERE status != 'resolved' AND suppressed_by = ?1 ORDER BY name",
            [name],
            |r| r.get(0),
        )
    }
}
