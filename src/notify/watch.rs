//! Watching the watcher: a channel that stays broken raises an alert on the other channels,
//! and an outgoing heartbeat lets an outside dead-man's switch notice when runbook stops.

use std::time::Duration;

use crate::alert::{Observation, Source};
use crate::clock;
use crate::config::{Config, Severity};
use crate::store::{Store, StoreError};
use crate::util::runtime::runtime;

pub const DEFAULT_HEARTBEAT_EVERY: Duration = Duration::from_secs(300);

/// Opens (or resolves) an alert per channel that has failed for longer than
/// `channel_silent_after`. Only a change of state is recorded.
pub fn channels(config: &Config, store: &Store) -> Result<(), StoreError> {
    let Some(after) = config.notify.channel_silent_after else {
        return Ok(());
    };
    let now = clock::now();
    let health = store.channel_health()?;
    let mut seen = Vec::new();
    for name in config.notify.channels.keys() {
        let h = health.iter().find(|h| &h.channel == name);
        let since = h.and_then(|h| h.failing_since.as_deref()).and_then(clock::from_text);
        let silent = since.is_some_and(|s| now.as_second() - s.as_second() >= after.0.as_secs() as i64);
        let open = !store.open_alerts_matching(&format!("channel:{name}"))?.is_empty();
        if silent == open {
            continue;
        }
        let detail = match (since, h.and_then(|h| h.last_error.clone())) {
            (Some(s), Some(e)) => format!("channel `{name}` has failed since {}: {e}", clock::to_text(s)),
            _ => format!("channel `{name}` delivers again"),
        };
        seen.push(Observation::immediate(
            Source::Channel,
            format!("channel:{name}"),
            !silent,
            &detail,
            Severity::Critical,
        ));
    }
    if !seen.is_empty() {
        super::observe(store, config, &seen)?;
    }
    Ok(())
}

/// Pings `heartbeat_url` once; logs the outcome.
pub fn heartbeat(url: &str) {
    let result = runtime().block_on(async { super::client().get(url).send().await });
    match result {
        Ok(r) if r.status().is_success() => tracing::debug!(status = %r.status(), "heartbeat sent"),
        Ok(r) => tracing::warn!(status = %r.status(), "heartbeat URL answered with an error"),
        Err(e) => tracing::warn!(error = %e.without_url(), "heartbeat failed"),
    }
}
