//! The timeline of an incident: the audit events of its window, each named by its source and
//! cited by its hash, so `audit verify` vouches for the document built from it.

use serde::Serialize;

use crate::audit::Event;
use crate::store::{Incident, Store, StoreError};

/// Kinds that say nothing about the incident (pings, tokens, state keys of scripts).
const NOISE: &[&str] = &[
    "heartbeat.pinged",
    "token.created",
    "token.revoked",
    "state.set",
    "session.command_started",
];

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub seq: i64,
    pub at: String,
    /// alert, run, session, change, deploy, gate, backup, incident…
    pub source: String,
    pub kind: String,
    pub actor: String,
    pub what: String,
    /// A line a person typed (`incident log`), not a fact recorded by runbook.
    pub typed: bool,
    /// The audit event's hash.
    pub hash: String,
}

fn text(v: &serde_json::Value, key: &str) -> String {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// One line for a person: the facts of the event that matter most, by kind.
fn what(e: &Event) -> String {
    let d: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
    let pick = |keys: &[&str]| {
        keys.iter()
            .map(|k| (k, text(&d, k)))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    crate::util::escape_controls(&v).chars().take(160).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let detail = match e.kind.as_str() {
        // A typed line is shown as it was typed.
        "incident.log" => return text(&d, "text"),
        k if k.starts_with("incident.") => pick(&[
            "state", "note", "title", "severity", "from", "to", "class", "cause", "forced",
        ]),
        k if k.starts_with("alert.") => pick(&["summary", "severity", "status", "source"]),
        k if k.starts_with("run.") => pick(&["status", "task", "error", "trigger"]),
        k if k.starts_with("session.") => pick(&["command", "decision", "reason", "exit_code", "mode"]),
        k if k.starts_with("change.") => pick(&["command", "objective", "reason"]),
        k if k.starts_with("deploy.") => pick(&["ref", "step", "detail", "status", "error", "to"]),
        "gate.run" => pick(&["verdict", "release", "failing"]),
        // An assistant's call through `runbook mcp` (the actor names the client).
        "mcp.call" => pick(&["tool", "outcome", "detail"]),
        k if k.starts_with("backup.") => pick(&["target", "path", "ok", "detail"]),
        _ => String::new(),
    };
    if detail.is_empty() {
        e.subject.clone()
    } else {
        format!("{} — {detail}", e.subject)
    }
}

/// The incident's window (opened to closed, or now), every event in it but noise, and every
/// event of the sessions started for it (`session start --incident`), whenever they happened.
pub fn timeline(store: &Store, i: &Incident) -> Result<Vec<Entry>, StoreError> {
    let subject = format!("incident {}", i.slug);
    let end = i.closed_at.clone();
    // The sessions linked to the incident, by their subject (`session 7`): a session's start
    // comes before its other events, so one pass finds them all.
    let mut linked: Vec<String> = Vec::new();
    let mut out = Vec::new();
    store.audit_scan(&mut |e| {
        if e.kind == "session.started"
            && serde_json::from_str::<serde_json::Value>(&e.data).is_ok_and(|d| d["incident"] == i.slug.as_str())
        {
            linked.push(e.subject.clone());
        }
        let inside = e.ts.as_str() >= i.opened_at.as_str() && end.as_deref().is_none_or(|c| e.ts.as_str() <= c);
        if (inside && !NOISE.contains(&e.kind.as_str())) || e.subject == subject || linked.contains(&e.subject) {
            out.push(Entry {
                seq: e.seq,
                at: e.ts.clone(),
                source: e.kind.split('.').next().unwrap_or_default().to_string(),
                kind: e.kind.clone(),
                actor: e.actor.clone(),
                what: what(e),
                typed: e.kind == "incident.log",
                hash: e.hash.clone(),
            });
        }
        true
    })?;
    Ok(out)
}
