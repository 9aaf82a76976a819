//! `runbook notify test | list | health`, and sending what a command queued.

use serde_json::json;
use std::time::Duration;

use super::output::{self, one_line};
use super::{CliError, Ctx, NotifyCmd, Outcome};
use crate::config::Config;
use crate::notify::{self, Message, dispatch};
use crate::store::Store;
use crate::util::runtime::runtime;

/// After `run` or `check`, sends the notifications they queued (a daemon, if one runs, may
/// send some of them first; each is claimed once). Failures stay queued for a later pass.
pub fn drain_after(config: &Config, store: &Store) {
    // Without a daemon (cron, supercronic), this command does the daemon's upkeep.
    if crate::schedule::lock::running_daemon(&config.state.path).is_none() {
        if let Err(e) = dispatch::recover(config, store) {
            tracing::error!(error = %e, "cannot recover interrupted notifications");
        }
        if let Err(e) = crate::alert::retention::prune(config, store) {
            tracing::error!(error = %e, "cannot prune history");
        }
    }
    if let Err(e) = notify::repeat::queue_due(config, store) {
        tracing::error!(error = %e, "cannot queue repeat notifications");
    }
    match dispatch::drain(config, store, Duration::from_secs(20)) {
        Ok(p) if p.retried + p.dead > 0 => {
            tracing::warn!(
                sent = p.sent,
                retrying = p.retried,
                dead = p.dead,
                "some notifications could not be sent"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot send queued notifications"),
    }
}

pub fn run(cx: &Ctx, cmd: NotifyCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    match cmd {
        NotifyCmd::Test { channel } => {
            let Some(c) = config.notify.channels.get(&channel) else {
                let known: Vec<&str> = config.notify.channels.keys().map(String::as_str).collect();
                let hint = crate::config::diagnostic::suggest(&channel, known.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "channels: {}",
                            if known.is_empty() {
                                "(none)".into()
                            } else {
                                known.join(", ")
                            }
                        ))
                    });
                return Err(CliError::usage(format!("no channel named `{channel}`"), hint));
            };
            let message = Message::test(&config.host, &channel);
            let key = format!("test:{}:{channel}", crate::clock::to_text(crate::clock::now()));
            let result = runtime().block_on(notify::send(c, &message, &key));
            let (ok, detail) = match &result {
                Ok(r) => (true, r.clone()),
                Err(e) => (false, config.redactor.redact(e).into_owned()),
            };
            cx.out.either(
                &json!({ "channel": channel, "kind": c.kind(), "ok": ok, "result": detail }),
                || {
                    if ok {
                        cx.out
                            .line(format!("sent a test message to `{channel}` ({}): {detail}", c.kind()));
                    } else {
                        cx.out
                            .line(format!("FAILED to send to `{channel}` ({}): {detail}", c.kind()));
                    }
                },
            );
            Ok(if ok { Outcome::Ok } else { Outcome::Failed })
        }
        NotifyCmd::List { limit } => {
            let store = cx.open_store(&config)?;
            let rows = store.list_notifications(None, limit)?;
            cx.out.either(&rows, || {
                let mut t = output::table(&[
                    "ID",
                    "ALERT",
                    "CHANGE",
                    "CHANNEL",
                    "STATUS",
                    "ATTEMPTS",
                    "CREATED (UTC)",
                    "LAST ERROR",
                ]);
                for n in &rows {
                    t.add_row(vec![
                        n.id.to_string(),
                        n.alert_id.map(|a| a.to_string()).unwrap_or_default(),
                        n.change.clone(),
                        n.channel.clone(),
                        n.status.clone(),
                        n.attempts.to_string(),
                        n.created_at.clone(),
                        one_line(n.last_error.as_deref().unwrap_or(""), 60),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        NotifyCmd::Health => {
            let store = cx.open_store(&config)?;
            let health = store.channel_health()?;
            cx.out.either(&health, || {
                let mut t = output::table(&["CHANNEL", "LAST SUCCESS (UTC)", "FAILING SINCE", "LAST ERROR"]);
                for name in config.notify.channels.keys() {
                    let h = health.iter().find(|h| &h.channel == name);
                    t.add_row(vec![
                        name.clone(),
                        h.and_then(|h| h.last_success.clone()).unwrap_or_else(|| "never".into()),
                        h.and_then(|h| h.failing_since.clone()).unwrap_or_else(|| "-".into()),
                        one_line(h.and_then(|h| h.last_error.as_deref()).unwrap_or(""), 60),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
    }
}
