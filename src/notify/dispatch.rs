//! The dispatcher: sends due notifications from the outbox, with retries and backoff.
//!
//! Each notification is claimed (`sending`, attempt counted) before it is sent and marked
//! `sent`, retried later, or `dead` after `max_attempts`. After a crash, `recover` puts
//! interrupted sends back in the queue only for channels that deduplicate; for the others
//! (Telegram) a second message could reach a person twice, so the send is given up instead.

use std::time::Duration;

use serde::Serialize;

use super::{Message, send};
use crate::clock;
use crate::config::Config;
use crate::store::{Notification, Store, StoreError};
use crate::util::runtime::runtime;

/// First retry delay; doubles per attempt, capped at `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Notifications sent per pass.
const BATCH: usize = 50;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Pass {
    pub sent: usize,
    pub retried: usize,
    pub dead: usize,
}

fn backoff(attempts: i64) -> Duration {
    let shift = attempts.clamp(1, 20) as u32 - 1;
    BASE_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// One send: a single notification, or several due together through a `group_wait` route.
struct Job {
    channel: String,
    items: Vec<Notification>,
    message: Message,
}

fn merge(items: &[(Notification, Message)]) -> Message {
    let first = &items[0].1;
    let mut merged = first.clone();
    let all_resolved = items.iter().all(|(_, m)| m.change == "resolved");
    merged.change = if all_resolved {
        "resolved".into()
    } else {
        "group".into()
    };
    merged.alert_id = None;
    merged.name = items.len().to_string();
    merged.key = format!("{} notifications", items.len());
    merged.summary = items.iter().map(|(_, m)| m.text()).collect::<Vec<_>>().join("\n\n");
    merged.labels = Default::default();
    merged.note = None;
    merged
}

/// Sends what is due now; returns what happened.
pub fn dispatch_due(config: &Config, store: &Store) -> Result<Pass, StoreError> {
    let mut pass = Pass::default();
    if !config.notify.enabled {
        return Ok(pass);
    }
    let now = clock::now();
    let mut jobs: Vec<Job> = Vec::new();
    let mut groups: std::collections::BTreeMap<String, Vec<(Notification, Message)>> = Default::default();
    for n in store.claim_due_notifications(&clock::to_text(now), BATCH)? {
        let (id, channel_name) = (n.id, n.channel.clone());
        let problem = match (
            config.notify.channels.get(&n.channel),
            serde_json::from_str::<Message>(&n.payload),
        ) {
            (None, _) => Some(format!("channel `{}` is no longer configured", n.channel)),
            (_, Err(e)) => Some(format!("unreadable queued message: {e}")),
            (Some(_), Ok(mut message)) => {
                if message.change == "opened" && message.source == "check" {
                    let dependents = store.suppressed_dependents(&message.name)?;
                    if !dependents.is_empty() {
                        message.note = Some(format!(
                            "{} down; {} dependent check(s) suppressed: {}",
                            message.name,
                            dependents.len(),
                            dependents.join(", ")
                        ));
                    }
                }
                // Alertmanager takes alerts one by one (it groups them itself).
                let merges = !matches!(
                    config.notify.channels.get(&n.channel),
                    Some(crate::config::notify::Channel::Alertmanager(_))
                );
                if message.group && merges {
                    groups.entry(n.channel.clone()).or_default().push((n, message));
                } else {
                    jobs.push(Job {
                        channel: n.channel.clone(),
                        items: vec![n],
                        message,
                    });
                }
                None
            }
        };
        if let Some(error) = problem {
            store.mark_failed(id, &channel_name, &error, &clock::to_text(clock::now()), None)?;
            pass.dead += 1;
        }
    }
    for (channel, items) in groups {
        let message = if items.len() == 1 {
            items[0].1.clone()
        } else {
            merge(&items)
        };
        jobs.push(Job {
            channel,
            items: items.into_iter().map(|(n, _)| n).collect(),
            message,
        });
    }
    for job in jobs {
        let Some(channel) = config.notify.channels.get(&job.channel) else {
            continue;
        };
        if !crate::store::fleet::may_act() {
            // The lease may be another host's now: what is claimed is left to the next leader,
            // which takes over rows left `sending` (with their idempotency keys).
            tracing::warn!("the fleet lease ran out mid-pass: the rest is left to the next leader");
            break;
        }
        let key = job
            .items
            .iter()
            .map(|n| n.idempotency_key.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let result = runtime().block_on(send(channel, &job.message, &key));
        let at = clock::to_text(clock::now());
        for n in &job.items {
            match &result {
                Ok(receipt) => {
                    store.mark_sent(n.id, &n.channel, &at)?;
                    tracing::info!(channel = %n.channel, notification = n.id, %receipt, "notification sent");
                    pass.sent += 1;
                }
                Err(failure) => {
                    let error = config.redactor.redact(&failure.to_string()).into_owned();
                    if !failure.retryable() {
                        // The receiver's final no, or the channel's own settings: sending the
                        // same again cannot succeed.
                        store.mark_failed(n.id, &n.channel, &error, &at, None)?;
                        tracing::error!(channel = %n.channel, notification = n.id, attempts = n.attempts, %error, "notification refused: not sent again");
                        pass.dead += 1;
                    } else if n.attempts >= config.notify.max_attempts as i64 {
                        store.mark_failed(n.id, &n.channel, &error, &at, None)?;
                        tracing::error!(channel = %n.channel, notification = n.id, attempts = n.attempts, %error, "notification dead: giving up");
                        pass.dead += 1;
                    } else {
                        let delay = backoff(n.attempts);
                        let next = clock::now()
                            .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
                            .unwrap_or_else(|_| clock::now());
                        store.mark_failed(n.id, &n.channel, &error, &at, Some(&clock::to_text(next)))?;
                        tracing::warn!(channel = %n.channel, notification = n.id, attempts = n.attempts, retry_in = ?delay, %error, "notification failed; will retry");
                        pass.retried += 1;
                    }
                }
            }
        }
    }
    Ok(pass)
}

/// Handles sends a dead process left half-done (status `sending`).
pub fn recover(config: &Config, store: &Store) -> Result<(), StoreError> {
    // A claim older than the longest send (10 s client timeout) belongs to a dead process.
    let before = clock::now()
        .checked_sub(jiff::SignedDuration::from_secs(60))
        .unwrap_or_else(|_| clock::now());
    for n in store.interrupted_notifications(&clock::to_text(before))? {
        let dedupes = config.notify.channels.get(&n.channel).is_some_and(|c| c.dedupes());
        let at = clock::to_text(clock::now());
        if dedupes {
            store.requeue_notification(n.id)?;
            tracing::warn!(channel = %n.channel, notification = n.id, "send interrupted by a crash: queued again (the receiver deduplicates)");
        } else {
            let error = "send interrupted by a crash; not sent again, since this channel cannot tell a repeat apart";
            store.mark_failed(n.id, &n.channel, error, &at, None)?;
            tracing::warn!(channel = %n.channel, notification = n.id, "{error}");
        }
    }
    Ok(())
}

/// Sends what is due until nothing is, or `limit` passes (for `runbook run` without a daemon).
pub fn drain(config: &Config, store: &Store, limit: Duration) -> Result<Pass, StoreError> {
    let deadline = std::time::Instant::now() + limit;
    let mut total = Pass::default();
    while std::time::Instant::now() < deadline {
        let p = dispatch_due(config, store)?;
        total.sent += p.sent;
        total.retried += p.retried;
        total.dead += p.dead;
        if p.sent + p.retried + p.dead == 0 {
            // Held back by a route's group_wait and due before the limit: wait for it. Retries
            // of a failing channel are left to the next run or the daemon.
            let due = store.next_first_attempt()?.and_then(|t| clock::from_text(&t));
            let wait =
                due.map(|t| Duration::from_millis((t.as_millisecond() - clock::now().as_millisecond()).max(0) as u64));
            match wait {
                Some(w) if std::time::Instant::now() + w < deadline => {
                    std::thread::sleep(w + Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(4), Duration::from_secs(16));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
