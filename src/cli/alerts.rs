//! `runbook alerts list | silence | ack`.

use clap::Subcommand;
use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::audit::Draft;
use crate::clock;
use crate::store::AlertFilter;

#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// Open alerts first, then resolved ones, newest first
    List {
        /// Only alerts with this status: firing, silenced, resolved
        #[arg(long)]
        status: Option<crate::store::AlertStatus>,
        /// Only alerts from this source: check, task, channel, backup
        #[arg(long, value_parser = crate::alert::Source::parse)]
        source: Option<crate::alert::Source>,
        /// Only alerts with this label, KEY:VALUE (`--label protocol:smtp`)
        #[arg(long, value_name = "KEY:VALUE", value_parser = crate::alert::parse_label)]
        label: Option<(String, String)>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Silence an alert key or a check name for a while (dry run unless --apply)
    ///
    /// A silenced alert is kept and still tracked, but not notified. Open alerts that match
    /// become `silenced`; alerts that open while the silence lasts open `silenced`.
    Silence {
        /// An alert key (web@vps-1) or a check name (web)
        target: String,
        /// How long: 30m, 2h, 1d
        #[arg(long = "for", value_name = "DURATION", value_parser = super::parse_duration)]
        duration: crate::config::HumanDuration,
        /// Why; recorded in the audit log
        #[arg(long)]
        reason: String,
        #[arg(long)]
        apply: bool,
    },
    /// Acknowledge the open alerts matching an alert key or check name
    Ack { target: String },
}

pub fn run(cx: &Ctx, cmd: AlertsCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        AlertsCmd::List {
            status,
            source,
            label,
            limit,
        } => {
            let alerts = store.list_alerts(&AlertFilter {
                status,
                source: source.map(|s| s.as_str().to_string()),
                label,
                limit,
                ..Default::default()
            })?;
            cx.out.either(&alerts, || {
                let mut t = output::table(&[
                    "ID",
                    "KEY",
                    "SEVERITY",
                    "STATUS",
                    "SINCE (UTC)",
                    "COUNT",
                    "NOTIFIED",
                    "SUMMARY",
                ]);
                for a in &alerts {
                    let mut status = a.status.as_str().to_string();
                    if let Some(dep) = &a.suppressed_by {
                        status.push_str(&format!(" (suppressed: {dep} down)"));
                    }
                    if a.acked_by.is_some() {
                        status.push_str(" (acked)");
                    }
                    t.add_row(vec![
                        a.id.to_string(),
                        a.key.clone(),
                        a.severity.clone(),
                        status,
                        a.first_seen.clone(),
                        a.count.to_string(),
                        delivery(a.delivery.unwrap_or_default()),
                        one_line(&a.summary, 60),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        AlertsCmd::Silence {
            target,
            duration,
            reason,
            apply,
        } => {
            let now = clock::now();
            let until = now
                .checked_add(jiff::SignedDuration::try_from(duration.0).unwrap_or(jiff::SignedDuration::MAX))
                .unwrap_or(jiff::Timestamp::MAX);
            let (now_text, until_text) = (clock::to_text(now), clock::to_text(until));
            let open = store.open_alerts_matching(&target)?;
            if !apply {
                let value = json!({ "apply": false, "target": target, "until": until_text, "reason": reason, "open_alerts": open.len() });
                cx.out.either(&value, || {
                    cx.out.line(format!(
                        "dry run: would silence `{target}` until {} ({} open alert(s) now); re-run with --apply",
                        clock::human(until),
                        open.len()
                    ))
                });
                return Ok(Outcome::Ok);
            }
            let draft = Draft::new(
                "alert.silenced",
                &target,
                json!({ "until": until_text, "reason": reason, "open_alerts": open.iter().map(|a| a.id).collect::<Vec<_>>() }),
                &config.redactor,
            );
            let (id, silenced) = store.add_silence(&target, &until_text, &reason, &now_text, &draft)?;
            let value = json!({ "apply": true, "silence_id": id, "target": target, "until": until_text, "silenced_alerts": silenced });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "silenced `{target}` until {} ({silenced} open alert(s) silenced)",
                    clock::human(until)
                ))
            });
            Ok(Outcome::Ok)
        }
        AlertsCmd::Ack { target } => {
            let actor = crate::audit::actor::current();
            let now = clock::to_text(clock::now());
            let draft = Draft::new("alert.acked", &target, json!({}), &config.redactor);
            let n = store.ack_alerts(&target, &actor, &now, &draft)?;
            if n == 0 {
                return Err(CliError::usage(
                    format!("no open alert matches `{target}`"),
                    Some("see `runbook alerts list --status firing`".into()),
                ));
            }
            cx.out
                .either(&json!({ "acked": n, "target": target, "by": actor }), || {
                    cx.out
                        .line(format!("acknowledged {n} alert(s) matching `{target}` as {actor}"))
                });
            Ok(Outcome::Ok)
        }
    }
}

/// `sent`, `2 pending`, `1 DEAD, 1 sent`, `-` (nothing queued).
fn delivery(d: crate::store::Delivery) -> String {
    let mut parts = Vec::new();
    if d.dead > 0 {
        parts.push(format!("{} DEAD", d.dead));
    }
    if d.pending > 0 {
        parts.push(format!("{} pending", d.pending));
    }
    if d.sent > 0 {
        parts.push(if parts.is_empty() {
            "sent".to_string()
        } else {
            format!("{} sent", d.sent)
        });
    }
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}
