//! The audit chain's rows: appended (sealed in the caller's transaction), listed, summed up,
//! scanned, archived, and the checkpoints kept beside them.

use super::db::{OptionalExtension, Row, Transaction, params};

use super::Result;
use super::connection::{APPENDED, Store};
use super::head::Head;
use super::types::*;
use crate::audit::checkpoint::Checkpoint;
use crate::audit::{self, Draft, Event};
use crate::clock;

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

pub(super) fn event_from_row(r: &Row) -> super::db::Result<Event> {
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

pub(super) fn append_audit(tx: &Transaction, draft: &Draft) -> super::db::Result<Event> {
    let mut events = append_audits(tx, std::slice::from_ref(draft))?;
    Ok(events.pop().expect("one event per draft"))
}

/// Seals `drafts` as the next events of the chain and inserts them: one read of the chain's
/// end and one INSERT per 100 events, whatever the backend's round trip costs.
pub(super) fn append_audits(tx: &Transaction, drafts: &[Draft]) -> super::db::Result<Vec<Event>> {
    // The chain continues from the newest event, or, when every event was archived, from the
    // archive's anchor.
    let last: Option<(i64, String)> = tx
        .prepare_cached(
            "SELECT seq, hash FROM audit_events WHERE seq = (SELECT max(seq) FROM audit_events) \
             UNION ALL SELECT last_seq, last_hash FROM audit_archives \
             WHERE NOT EXISTS (SELECT 1 FROM audit_events) AND last_seq = (SELECT max(last_seq) FROM audit_archives)",
        )?
        .query_row((), |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, mut prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, audit::GENESIS.to_string()),
    };
    let ts = clock::to_text(clock::now());
    let mut events = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let event = audit::seal(seq, ts.clone(), draft, prev);
        prev = event.hash.clone();
        seq += 1;
        events.push(event);
    }
    let Some(newest) = events.last() else {
        return Ok(events);
    };
    APPENDED.with(|a| {
        let mut a = a.borrow_mut();
        let first = &events[0];
        let before = match a.take() {
            Some((before, _)) => before,
            None => (first.seq > 1).then(|| Head {
                seq: first.seq - 1,
                hash: first.prev_hash.clone(),
            }),
        };
        *a = Some((
            before,
            Head {
                seq: newest.seq,
                hash: newest.hash.clone(),
            },
        ));
    });
    for chunk in events.chunks(100) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=8).map(|c| format!("?{}", i * 8 + c)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let values: Vec<super::db::Value> = chunk
            .iter()
            .flat_map(|e| {
                use super::db::ToValue;
                [
                    e.seq.to_value(),
                    e.ts.to_value(),
                    e.actor.to_value(),
                    e.kind.to_value(),
                    e.subject.to_value(),
                    e.data.to_value(),
                    e.prev_hash.to_value(),
                    e.hash.to_value(),
                ]
            })
            .collect();
        tx.prepare_cached(&format!(
            "INSERT INTO audit_events (seq, ts, actor, kind, subject, data, prev_hash, hash) VALUES {}",
            rows.join(", ")
        ))?
        .execute(values)?;
    }
    Ok(events)
}

impl Store {
    pub fn audit_append(&self, draft: &Draft) -> Result<Event> {
        self.write("appending an audit event", |tx| append_audit(tx, draft))
    }

    /// Group commit: appends every draft in one transaction (one commit for all).
    pub fn audit_append_all(&self, drafts: &[Draft]) -> Result<Vec<Event>> {
        self.write("appending audit events", |tx| append_audits(tx, drafts))
    }

    /// The newest events first.
    pub fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<Event>> {
        let conn = self.conn()?;
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            filter.limit as i64
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, ts, actor, kind, subject, data, prev_hash, hash FROM audit_events \
                 WHERE (CAST(?1 AS TEXT) IS NULL OR kind = ?1) AND (CAST(?3 AS BIGINT) IS NULL OR seq < ?3) AND (?4 = '' OR instr(?4, ',' || kind || ',') > 0) \
                 AND (CAST(?5 AS TEXT) IS NULL OR subject = ?5) ORDER BY seq DESC LIMIT ?2",
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
                },
                filter.subject
            ],
            event_from_row,
        )
        .and_then(|rows| rows.collect())
        .map_err(self.err("listing audit events"))
    }

    /// Event counts by kind and by actor, and the time span of the log.
    pub fn audit_summary(&self) -> Result<AuditSummary> {
        let conn = self.conn()?;
        let pairs = |sql: &str| -> super::db::Result<Vec<(String, i64)>> {
            let mut stmt = conn.prepare_cached(sql)?;
            let rows = stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        };
        let by_kind = pairs("SELECT kind, count(*) FROM audit_events GROUP BY kind ORDER BY 2 DESC, 1")
            .map_err(self.err("summarising the audit log"))?;
        let by_actor = pairs("SELECT actor, count(*) FROM audit_events GROUP BY actor ORDER BY 2 DESC, 1")
            .map_err(self.err("summarising the audit log"))?;
        let (events, first, last) = conn
            .query_row("SELECT count(*), min(ts), max(ts) FROM audit_events", (), |r| {
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
        use super::db::OptionalExtension;
        self.conn()?
            .query_row(
                "SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1",
                (),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err("reading the audit anchor"))
    }

    /// Every archive file recorded, oldest first.
    pub fn audit_archives(&self) -> Result<Vec<AuditArchive>> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT first_seq, last_seq, last_hash, file, sha256 FROM audit_archives ORDER BY first_seq")
            .map_err(self.err("reading audit archives"))?;
        stmt.query_map((), |r| {
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
        self.each(
            "reading the audit log",
            "SELECT seq, ts, actor, kind, subject, data, prev_hash, hash FROM audit_events \
             WHERE seq <= (SELECT coalesce(max(seq), 0) FROM audit_events WHERE ts < ?1) ORDER BY seq",
            [before],
            &mut |row| Ok(f(&event_from_row(row)?)),
        )
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
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT seq, head_hash, time, public_key, signature FROM audit_checkpoints ORDER BY id")
            .map_err(self.err("reading audit checkpoints"))?;
        stmt.query_map((), |r| {
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
        self.each(
            "reading the audit log",
            "SELECT seq, ts, actor, kind, subject, data, prev_hash, hash FROM audit_events ORDER BY seq",
            (),
            &mut |row| Ok(f(&event_from_row(row)?)),
        )
    }
}
