//! Digests: the task alerts of one profile run go out as one message; a run with a single
//! transition sends that transition as itself.
//!
//! Invariant: one digest per (profile run, channel), by idempotency key.

use std::collections::BTreeMap;

use super::{Message, enqueue, route};
use crate::alert::{Change, Transition};
use crate::config::{Config, Severity};
use crate::store::{AlertStatus, AlertTx, NewNotification};

pub fn enqueue_run(
    tx: &AlertTx,
    config: &Config,
    profile: &str,
    run_id: i64,
    transitions: &[Transition],
    at: &str,
) -> crate::store::db::Result<()> {
    let notify = &config.notify;
    let shown: Vec<&Transition> = transitions
        .iter()
        .filter(|t| t.suppressed_by.is_none() && t.status != AlertStatus::Silenced)
        .collect();
    if !notify.enabled || shown.is_empty() {
        return Ok(());
    }
    if let [one] = shown.as_slice() {
        return enqueue(tx, config, one, &BTreeMap::new(), at);
    }
    let failed: Vec<&&Transition> = shown.iter().filter(|t| t.change == Change::Opened).collect();
    let recovered: Vec<&&Transition> = shown.iter().filter(|t| t.change == Change::Resolved).collect();
    let task = |t: &Transition| {
        t.name
            .split_once('/')
            .map(|(_, task)| task.to_string())
            .unwrap_or_else(|| t.name.clone())
    };
    let mut lines = Vec::new();
    for t in &failed {
        lines.push(format!("- {}: {}", task(t), t.summary));
    }
    for t in &recovered {
        lines.push(format!("- {}: recovered", task(t)));
    }
    let mut head = Vec::new();
    if !failed.is_empty() {
        head.push(format!("{} task(s) failed", failed.len()));
    }
    if !recovered.is_empty() {
        head.push(format!("{} recovered", recovered.len()));
    }
    let summary = format!(
        "{} in profile {profile} (run #{run_id}):\n{}",
        head.join(", "),
        lines.join("\n")
    );
    let severity = Severity::Warning;
    for channel in route(notify, severity, "task", &BTreeMap::new()) {
        let message = Message {
            change: if failed.is_empty() {
                "resolved".into()
            } else {
                "digest".into()
            },
            alert_id: None,
            key: format!("profile:{profile}@{}", config.host),
            name: profile.to_string(),
            source: "task".into(),
            host: config.host.clone(),
            severity: severity.as_str().into(),
            summary: summary.clone(),
            labels: BTreeMap::new(),
            starts_at: at.to_string(),
            ends_at: None,
            test_route: notify.test_route.is_some(),
            note: None,
            group: false,
        };
        tx.enqueue(&NewNotification {
            idempotency_key: format!("digest:{run_id}:{channel}"),
            alert_id: None,
            change: message.change.clone(),
            channel,
            payload: serde_json::to_string(&message).unwrap_or_default(),
            at: at.to_string(),
            send_after: None,
        })?;
    }
    Ok(())
}
