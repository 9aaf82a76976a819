//! Repeats: notifications again while an alert keeps firing.
//!
//! A route's `repeat_every` re-notifies firing, unacknowledged, unsuppressed alerts. An
//! Alertmanager channel is refreshed every `ALERTMANAGER_REFRESH` whatever the routes say:
//! Alertmanager resolves an alert by itself when nobody re-sends it.
//! Invariant: the n-th repeat of an alert on a channel has its own idempotency key, so a
//! repeat is queued once however often this runs.

use std::time::Duration;

use super::{Message, route_repeats};
use crate::clock;
use crate::config::Config;
use crate::config::notify::Channel;
use crate::store::{AlertFilter, AlertStatus, NewNotification, Store, StoreError};

pub const ALERTMANAGER_REFRESH: Duration = Duration::from_secs(15 * 60);

/// Queues the repeats that are due now; returns how many were queued.
pub fn queue_due(config: &Config, store: &Store) -> Result<usize, StoreError> {
    let notify = &config.notify;
    let has_am = notify.channels.values().any(|c| matches!(c, Channel::Alertmanager(_)));
    if !notify.enabled || (!has_am && notify.routes.iter().all(|r| r.repeat_every.is_none())) {
        return Ok(0);
    }
    let now = clock::now();
    let firing = store.list_alerts(&AlertFilter {
        status: Some(AlertStatus::Firing),
        ..Default::default()
    })?;
    let mut due: Vec<NewNotification> = Vec::new();
    for a in firing.iter().filter(|a| a.suppressed_by.is_none()) {
        let Some(since) = clock::from_text(&a.first_seen) else {
            continue;
        };
        let age = Duration::from_secs((now.as_second() - since.as_second()).max(0) as u64);
        let severity = crate::config::Severity::parse(&a.severity).unwrap_or(crate::config::Severity::Warning);
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(a.labels.clone()).unwrap_or_default();
        for (channel, every) in route_repeats(notify, severity, &a.source, &labels) {
            let is_am = matches!(notify.channels.get(&channel), Some(Channel::Alertmanager(_)));
            // An acknowledged alert stops paging people, but Alertmanager must keep seeing it.
            let every = match (every, is_am) {
                (_, true) => Some(every.unwrap_or(ALERTMANAGER_REFRESH).min(ALERTMANAGER_REFRESH)),
                (Some(e), false) if a.acked_by.is_none() => Some(e),
                _ => None,
            };
            let Some(every) = every.filter(|e| !e.is_zero()) else {
                continue;
            };
            let n = age.as_secs() / every.as_secs().max(1);
            if n == 0 {
                continue;
            }
            let message = Message {
                change: "repeat".into(),
                alert_id: Some(a.id),
                key: a.key.clone(),
                name: a.name.clone(),
                source: a.source.clone(),
                host: a.host.clone(),
                severity: a.severity.clone(),
                summary: a.summary.clone(),
                labels: labels.clone(),
                starts_at: a.first_seen.clone(),
                ends_at: None,
                test_route: notify.test_route.is_some(),
                note: None,
                group: false,
            };
            due.push(NewNotification {
                idempotency_key: format!("{}:repeat{n}:{channel}", a.id),
                alert_id: Some(a.id),
                change: "repeat".into(),
                channel,
                payload: serde_json::to_string(&message).unwrap_or_default(),
                at: clock::to_text(now),
                send_after: None,
            });
        }
    }
    if due.is_empty() {
        return Ok(0);
    }
    store.alerts_tx(|tx| {
        let mut queued = 0;
        for n in &due {
            queued += usize::from(tx.enqueue(n)?);
        }
        Ok(queued)
    })
}
