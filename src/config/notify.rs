//! Notifications as configured: channels, routes, the test route.
//!
//! Owns the validated shape of the `notify:` section. Sending lives in `notify/`.
//! Invariant: every channel a route or the test route names exists.

use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

use super::checks::Severity;
use super::units::HumanDuration;

/// Attempts before a notification is given up as `dead`.
/// With backoff doubling from 2s to a 10m cap, 16 attempts keep trying for about 75 minutes.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NotifyConfig {
    /// false: nothing is queued or sent (and the daemon says so in its log). Default: true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Attempts per notification before it is marked dead. Default: 16 (about 75 minutes).
    #[serde(default)]
    pub max_attempts: u32,
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    /// First matching route wins (unless it says `continue: true`). No routes: every channel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// When set (a channel name), every notification goes to that channel only, prefixed with
    /// its source, without topics: production routing is bypassed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_route: Option<String>,
    /// A channel failing for longer than this raises an alert, sent to the other channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_silent_after: Option<HumanDuration>,
    /// Pinged (GET) by the daemon every `heartbeat_every`, for an outside dead-man's switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_url: Option<String>,
    /// Default: 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_every: Option<HumanDuration>,
}

fn yes() -> bool {
    true
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            channels: BTreeMap::new(),
            routes: Vec::new(),
            test_route: None,
            channel_silent_after: None,
            heartbeat_url: None,
            heartbeat_every: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Telegram(TelegramChannel),
    Webhook(WebhookChannel),
    Alertmanager(AlertmanagerChannel),
    Email(EmailChannel),
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Telegram(_) => "telegram",
            Channel::Webhook(_) => "webhook",
            Channel::Alertmanager(_) => "alertmanager",
            Channel::Email(_) => "email",
        }
    }

    /// Whether the receiver can recognise a repeated delivery (so a send interrupted by a
    /// crash may be retried without a duplicate reaching a person).
    pub fn dedupes(&self) -> bool {
        !matches!(self, Channel::Telegram(_) | Channel::Email(_))
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TelegramChannel {
    pub bot_token: String,
    pub chat_id: String,
    /// Forum topic (message_thread_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<i64>,
    /// Bot API base URL. Default: https://api.telegram.org
    #[serde(default)]
    pub api_url: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WebhookChannel {
    pub url: String,
    /// When set, each request carries `X-Runbook-Signature: sha256=HMAC(secret, body)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AlertmanagerChannel {
    /// Base URL of Alertmanager, e.g. http://127.0.0.1:9093
    pub url: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EmailChannel {
    /// SMTP server host name.
    pub host: String,
    /// Default: 587 for starttls, 465 for tls, 25 for none.
    #[serde(default)]
    pub port: u16,
    /// starttls (default), tls (implicit TLS), or none (a local relay only).
    #[serde(default)]
    pub tls: EmailTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    /// Extra CA certificate (PEM) to trust for the server, e.g. an internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EmailTls {
    #[default]
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Route {
    #[serde(default, rename = "match")]
    pub matcher: RouteMatch,
    pub channels: Vec<String>,
    /// Send again while the alert is still firing and not acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_every: Option<HumanDuration>,
    /// Hold notifications this long; what is due together for a channel goes out as one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<HumanDuration>,
    /// Keep matching later routes after this one.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct RouteMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// check or task
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
