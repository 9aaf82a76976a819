//! `runbook notify test | list | health`, and sending what a command queued.

use clap::Subcommand;
use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::notify::{self, Message};
use crate::util::runtime::runtime;

#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Send one test message to a channel now and report the result (exit 1 if it failed)
    Test { channel: String },
    /// The outbox, newest first: what was queued, sent, retried or given up
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Per channel: last success, last error, failing since
    Health,
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
                Err(e) => (false, config.redactor.redact(&e.to_string()).into_owned()),
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
