//! Notifications: routing alert transitions to channels through a persisted outbox.
//!
//! Owns the message a transition becomes, the routing rules (test route, routes, defaults),
//! queueing (inside the alert transaction), and the dispatcher that sends with retries and
//! backoff. Channels (`telegram`, `webhook`, `alertmanager`) only know how to deliver.
//! Invariant: nothing is sent twice for one (alert, change, channel): the idempotency key
//! makes queueing idempotent, and a send interrupted by a crash is retried only on channels
//! that can recognise the repeat.

mod alertmanager;
pub mod digest;
pub mod dispatch;
mod email;
mod hmac;
pub mod repeat;
mod telegram;
pub mod watch;
mod webhook;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::alert::{Change, Transition};
use crate::config::notify::{Channel, NotifyConfig};
use crate::config::{Config, Severity};
use crate::store::{AlertStatus, AlertTx, NewNotification};

/// What a channel delivers: the facts of one alert transition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// opened, resolved or test
    pub change: String,
    pub alert_id: Option<i64>,
    pub key: String,
    pub name: String,
    pub source: String,
    pub host: String,
    pub severity: String,
    pub summary: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    /// Set under the test route: `[name]` before the text, no topic threading.
    #[serde(default)]
    pub test_route: bool,
    /// Added at send time, e.g. "3 dependent checks suppressed".
    #[serde(default)]
    pub note: Option<String>,
    /// Sent through a route with `group_wait`: may be merged with others due together.
    #[serde(default)]
    pub group: bool,
}

impl Message {
    pub fn firing(&self) -> bool {
        self.change != "resolved"
    }

    /// The plain text a person reads.
    pub fn text(&self) -> String {
        let head = match self.change.as_str() {
            "resolved" => format!("RESOLVED {}", self.key),
            "repeat" => format!(
                "STILL FIRING [{}] {} (since {})",
                self.severity, self.key, self.starts_at
            ),
            "digest" => format!("FAILING {}", self.key),
            "group" => format!("{} notifications from runbook on {}", self.name, self.host),
            "test" => format!("TEST from runbook on {}", self.host),
            "gate" => format!("GATE {} did not pass on {}", self.name, self.host),
            _ => format!("FIRING [{}] {}", self.severity, self.key),
        };
        let mut text = if self.test_route {
            format!("[{}] {head}", self.name)
        } else {
            head
        };
        if !self.summary.is_empty() {
            text.push('\n');
            text.push_str(&self.summary);
        }
        if let Some(note) = &self.note {
            text.push('\n');
            text.push_str(note);
        }
        text
    }

    /// A message about something that is not an alert (`change`: gate, incident), now.
    pub fn event(change: &str, name: &str, host: &str, severity: &str, summary: String) -> Message {
        Message {
            change: change.into(),
            alert_id: None,
            key: format!("{change}:{name}@{host}"),
            name: name.to_string(),
            source: change.into(),
            host: host.to_string(),
            severity: severity.to_string(),
            summary,
            labels: BTreeMap::new(),
            starts_at: crate::clock::to_text(crate::clock::now()),
            ends_at: None,
            test_route: false,
            note: None,
            group: false,
        }
    }

    /// A test message for `runbook notify test`.
    pub fn test(host: &str, channel: &str) -> Message {
        let summary = format!("This is a test notification to channel `{channel}`. If you can read this, it works.");
        Message {
            key: format!("test@{host}"),
            ..Message::event("test", "test", host, "info", summary)
        }
    }
}

/// Queues `message` (a gate verdict, an incident update: not an alert transition) to each of
/// `channels`, once per `key` and channel.
pub fn queue_event(
    store: &crate::store::Store,
    channels: &[String],
    message: &Message,
    key: &str,
) -> crate::store::Result<()> {
    let payload = serde_json::to_string(message).unwrap_or_default();
    store.alerts_tx(|tx| {
        for channel in channels {
            tx.enqueue(&NewNotification {
                idempotency_key: format!("{key}:{channel}"),
                alert_id: None,
                change: message.change.clone(),
                channel: channel.clone(),
                payload: payload.clone(),
                at: message.starts_at.clone(),
                send_after: None,
            })?;
        }
        Ok(())
    })
}

/// The channels a transition goes to.
pub fn route(
    notify: &NotifyConfig,
    severity: Severity,
    source: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<String> {
    route_repeats(notify, severity, source, labels)
        .into_iter()
        .map(|(c, _)| c)
        .collect()
}

/// A channel a transition goes to, with the timing of the route that sent it there.
#[derive(Debug, Clone)]
pub struct Hit {
    pub channel: String,
    pub repeat_every: Option<std::time::Duration>,
    pub group_wait: Option<std::time::Duration>,
}

/// The channels a transition goes to: the test route, else the routes, else every channel.
pub fn route_hits(
    notify: &NotifyConfig,
    severity: Severity,
    source: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Hit> {
    let plain = |c: &String| Hit {
        channel: c.clone(),
        repeat_every: None,
        group_wait: None,
    };
    if let Some(test) = &notify.test_route {
        return vec![plain(test)];
    }
    if notify.routes.is_empty() {
        return notify.channels.keys().map(plain).collect();
    }
    let mut out: Vec<Hit> = Vec::new();
    for r in &notify.routes {
        let m = &r.matcher;
        let hit = m.severity.is_none_or(|s| s == severity)
            && m.source.as_deref().is_none_or(|s| s == source)
            && m.labels.iter().all(|(k, v)| labels.get(k) == Some(v));
        if hit {
            for c in &r.channels {
                if !out.iter().any(|h| &h.channel == c) {
                    out.push(Hit {
                        channel: c.clone(),
                        repeat_every: r.repeat_every.map(|d| d.0),
                        group_wait: r.group_wait.map(|d| d.0),
                    });
                }
            }
            if !r.continue_matching {
                break;
            }
        }
    }
    out
}

/// The channels a transition goes to, each with its route's `repeat_every`.
pub fn route_repeats(
    notify: &NotifyConfig,
    severity: Severity,
    source: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<(String, Option<std::time::Duration>)> {
    route_hits(notify, severity, source, labels)
        .into_iter()
        .map(|h| (h.channel, h.repeat_every))
        .collect()
}

/// Judges observations into alert transitions (`alert::observe`) and queues the
/// notifications of each in the transaction that records it.
pub fn observe(
    store: &crate::store::Store,
    config: &Config,
    observations: &[crate::alert::Observation],
) -> Result<Vec<Transition>, crate::store::StoreError> {
    crate::alert::observe(store, config, observations, &|tx, t, labels, at| {
        enqueue(tx, config, t, labels, at)
    })
}

/// Records check outcomes and judges them (`alert::record_and_observe`), queueing the
/// notifications of each transition in the same transaction.
pub fn record_and_observe(
    store: &crate::store::Store,
    config: &Config,
    outcomes: &[crate::check::Outcome],
    run_ids: &[Option<i64>],
) -> Result<Vec<Transition>, crate::store::StoreError> {
    crate::alert::record_and_observe(store, config, outcomes, run_ids, &|tx, t, labels, at| {
        enqueue(tx, config, t, labels, at)
    })
}

/// Queues the notifications of one transition, inside the alert transaction.
pub fn enqueue(
    tx: &AlertTx,
    config: &Config,
    t: &Transition,
    labels: &BTreeMap<String, String>,
    at: &str,
) -> crate::store::db::Result<()> {
    let notify = &config.notify;
    // Suppressed by a failing dependency, or silenced: recorded, not notified.
    if !notify.enabled || t.suppressed_by.is_some() || t.status == AlertStatus::Silenced {
        return Ok(());
    }
    let change = match t.change {
        Change::Opened => "opened",
        Change::Resolved => "resolved",
    };
    let routed = route_hits(notify, t.severity, t.source.as_str(), labels);
    let hits = match t.change {
        Change::Opened => routed,
        // A resolution goes where the firing went, whatever the routes say now (a test route
        // turned off since, a route edited): nobody is told of the end of what they never saw.
        // A firing that went out in a profile run's digest is not recorded per alert: its
        // resolution follows the routes.
        Change::Resolved => match tx.notified_channels(t.alert_id)? {
            went if went.is_empty() => routed,
            went => went
                .into_iter()
                .filter(|c| notify.channels.contains_key(c))
                .map(|c| {
                    routed.iter().find(|h| h.channel == c).cloned().unwrap_or(Hit {
                        channel: c,
                        repeat_every: None,
                        group_wait: None,
                    })
                })
                .collect(),
        },
    };
    for hit in hits {
        let channel = hit.channel;
        // A broken channel is told about on the others, not on itself.
        if t.source == crate::alert::Source::Channel && t.name == format!("channel:{channel}") {
            continue;
        }
        let message = Message {
            change: change.into(),
            alert_id: Some(t.alert_id),
            key: t.key.clone(),
            name: t.name.clone(),
            source: t.source.as_str().into(),
            host: config.host.clone(),
            severity: t.severity.as_str().into(),
            summary: t.summary.clone(),
            labels: labels.clone(),
            starts_at: t.started_at.clone(),
            ends_at: (t.change == Change::Resolved).then(|| at.to_string()),
            test_route: notify.test_route.is_some(),
            note: None,
            group: hit.group_wait.is_some(),
        };
        let send_after = hit.group_wait.and_then(|wait| {
            let at = crate::clock::from_text(at)?;
            at.checked_add(jiff::SignedDuration::try_from(wait).ok()?)
                .ok()
                .map(crate::clock::to_text)
        });
        tx.enqueue(&NewNotification {
            // Re-opening after a resolve is a new alert id, so a new key: sent again, rightly.
            idempotency_key: format!("{}:{}:{}:{}", t.alert_id, change, t.episode, channel),
            alert_id: Some(t.alert_id),
            change: change.into(),
            channel,
            payload: serde_json::to_string(&message).unwrap_or_default(),
            at: at.to_string(),
            send_after,
        })?;
    }
    Ok(())
}

/// Why a channel did not take a message: what decides whether it is sent again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// No answer: the connection refused, a name that does not resolve, TLS, a timeout.
    /// Sent again later.
    #[error("{0}")]
    Unreachable(String),
    /// The receiver answered no. `retry` when it may say yes later (HTTP 5xx, 408, 429; an
    /// SMTP 4xx); otherwise sending again changes nothing (a bad token, a chat that does
    /// not exist, a mailbox refused).
    #[error("{detail}")]
    Refused { detail: String, retry: bool },
    /// The channel's own settings are wrong (an address that does not parse, an unreadable
    /// CA file): no send can succeed until the configuration changes.
    #[error("{0}")]
    Misconfigured(String),
}

impl SendError {
    /// Whether a later attempt may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Unreachable(_) => true,
            SendError::Refused { retry, .. } => *retry,
            SendError::Misconfigured(_) => false,
        }
    }
}

/// Sends one message through a channel; `Ok` carries a one-line receipt (HTTP status).
pub async fn send(channel: &Channel, message: &Message, idempotency_key: &str) -> Result<String, SendError> {
    match channel {
        Channel::Telegram(c) => telegram::send(c, message).await,
        Channel::Webhook(c) => webhook::send(c, message, idempotency_key).await,
        Channel::Alertmanager(c) => alertmanager::send(c, message).await,
        Channel::Email(c) => email::send(c, message).await,
    }
}

/// The HTTP client of notifications: bounded, shared, built once.
pub(crate) fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap_or_default()
    })
}

/// A transport error with its innermost cause, and whether it timed out: "timed out" and
/// "connection refused" call for different fixes.
pub(crate) fn transport_error(e: &reqwest::Error) -> String {
    let cause = crate::util::innermost(e);
    if e.is_timeout() {
        format!("timed out ({cause})")
    } else {
        cause
    }
}

/// `HTTP 500 …: body…` (cut for logs), and whether the status invites another try.
async fn http_error(resp: reqwest::Response) -> SendError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    refused(status, format!("HTTP {status}: {}", body.trim()))
}

/// The receiver's no, sent again only for a status that may change (5xx, 408, 429).
fn refused(status: reqwest::StatusCode, detail: String) -> SendError {
    let retry = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
    SendError::Refused { detail, retry }
}
