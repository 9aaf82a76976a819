//! The audit log: an append-only, hash-chained record of every state change.
//!
//! Owns the event shape, its canonical hashing, chain verification, signed checkpoints and
//! the lost-tail verdict: the format, pure. The store seals and persists events inside the
//! same transaction as the change they describe, and scans, archives and signs the chain it
//! holds (`store::chain`, `store::archive`). Invariant:
//! `hash = sha256(prev_hash ‖ canonical(seq, ts, actor, kind, subject, data))`, where `data` is
//! hashed as the exact text stored, so no re-serialization can break the chain.

pub mod actor;
pub mod checkpoint;
pub mod tail;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Redactor;

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: i64,
    pub ts: String,
    pub actor: String,
    pub kind: String,
    pub subject: String,
    /// Redacted JSON text, exactly as hashed.
    #[serde(serialize_with = "as_json")]
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

fn as_json<S: serde::Serializer>(data: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(data) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(data),
    }
}

/// An event about to be appended: the store assigns seq, time and hashes.
#[derive(Debug, Clone)]
pub struct Draft {
    pub actor: String,
    pub kind: String,
    pub subject: String,
    pub data: String,
}

impl Draft {
    /// A draft by the current OS user, with secrets redacted from subject and data.
    pub fn new(kind: &str, subject: &str, data: serde_json::Value, redactor: &Redactor) -> Self {
        let mut data = data;
        redactor.redact_json(&mut data);
        Draft {
            actor: actor::current(),
            kind: kind.to_string(),
            subject: redactor.redact(subject).into_owned(),
            data: data.to_string(),
        }
    }
}

/// Feeds what is written straight into the hash.
struct Hashing<'h>(&'h mut Sha256);

impl std::io::Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The hash of an event: SHA-256 of the previous hash and the compact JSON array
/// `[seq, ts, actor, kind, subject, data]`, serialized straight into the hasher.
pub fn hash(prev_hash: &str, seq: i64, ts: &str, actor: &str, kind: &str, subject: &str, data: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    // A tuple serializes to the same bytes as `json!([…]).to_string()`, without building it.
    let _ = serde_json::to_writer(Hashing(&mut h), &(seq, ts, actor, kind, subject, data));
    crate::util::hex(&h.finalize())
}

/// Seals a draft as event `seq` after `prev_hash`.
pub fn seal(seq: i64, ts: String, draft: &Draft, prev_hash: String) -> Event {
    let hash = hash(
        &prev_hash,
        seq,
        &ts,
        &draft.actor,
        &draft.kind,
        &draft.subject,
        &draft.data,
    );
    Event {
        seq,
        ts,
        actor: draft.actor.clone(),
        kind: draft.kind.clone(),
        subject: draft.subject.clone(),
        data: draft.data.clone(),
        prev_hash,
        hash,
    }
}

/// The first problem found in a chain.
#[derive(Debug, Clone, Serialize)]
pub struct Break {
    pub seq: i64,
    pub reason: String,
}

/// Checks events fed in seq order; keeps only the last hash, so memory is constant.
#[derive(Debug, Default)]
pub struct Verifier {
    last: Option<(i64, String)>,
    pub checked: u64,
    pub first_break: Option<Break>,
}

impl Verifier {
    /// A verifier for a chain that continues from `anchor` (the last archived event), or
    /// from the start.
    pub fn after(anchor: Option<(i64, String)>) -> Self {
        Verifier {
            last: anchor,
            ..Verifier::default()
        }
    }

    /// Feeds the next event; returns false once the chain is broken (stop feeding).
    pub fn feed(&mut self, e: &Event) -> bool {
        let (expected_seq, expected_prev) = match &self.last {
            None => (1, GENESIS.to_string()),
            Some((seq, hash)) => (seq + 1, hash.clone()),
        };
        let reason = if e.seq != expected_seq {
            Some(if e.seq > expected_seq {
                format!("event {expected_seq} is missing (found {} next)", e.seq)
            } else {
                format!("event {} is out of order (expected {expected_seq})", e.seq)
            })
        } else if e.prev_hash != expected_prev {
            Some("prev_hash does not match the previous event's hash (events deleted or reordered)".into())
        } else if hash(&e.prev_hash, e.seq, &e.ts, &e.actor, &e.kind, &e.subject, &e.data) != e.hash {
            Some("hash does not match the event's content (event edited)".into())
        } else {
            None
        };
        if let Some(reason) = reason {
            self.first_break = Some(Break {
                seq: expected_seq.min(e.seq),
                reason,
            });
            return false;
        }
        self.checked += 1;
        self.last = Some((e.seq, e.hash.clone()));
        true
    }

    pub fn head(&self) -> Option<&(i64, String)> {
        self.last.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<Event> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let d = Draft {
                    actor: "ops".into(),
                    kind: "k".into(),
                    subject: "s".into(),
                    data: format!("{{\"n\":{seq}}}"),
                };
                let e = seal(seq, format!("t{seq}"), &d, prev.clone());
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn first_break(events: &[Event]) -> Option<i64> {
        let mut v = Verifier::default();
        for e in events {
            if !v.feed(e) {
                break;
            }
        }
        v.first_break.map(|b| b.seq)
    }

    #[test]
    fn the_hash_input_is_the_compact_json_array_it_always_was() {
        let fields = (
            7i64,
            "2026-11-28T00:00:00.000Z",
            "ops \"root\"",
            "k\u{7}",
            "sübject\n",
            "{\"a\":[1,2]}",
        );
        let old = serde_json::json!([fields.0, fields.1, fields.2, fields.3, fields.4, fields.5]).to_string();
        let mut h = Sha256::new();
        h.update(b"prev");
        h.update(old.as_bytes());
        assert_eq!(
            hash("prev", fields.0, fields.1, fields.2, fields.3, fields.4, fields.5),
            crate::util::hex(&h.finalize())
        );
    }

    #[test]
    fn detects_edit_delete_and_reorder() {
        let good = chain(5);
        assert_eq!(first_break(&good), None);
        let mut edited = good.clone();
        edited[2].data = "{\"n\":99}".into();
        assert_eq!(first_break(&edited), Some(3));
        let mut deleted = good.clone();
        deleted.remove(1);
        assert_eq!(first_break(&deleted), Some(2));
        let mut swapped = good.clone();
        swapped.swap(2, 3);
        assert_eq!(first_break(&swapped), Some(3));
    }
}
