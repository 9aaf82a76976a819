//! `runbook drift` and `runbook baseline capture`.

use clap::Subcommand;
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};

#[derive(Debug, clap::Args)]
pub struct DriftArgs {
    #[command(subcommand)]
    pub cmd: Option<DriftCmd>,
}

#[derive(Debug, Subcommand)]
pub enum DriftCmd {
    /// Acknowledge one difference (`kind:key:attribute`, as `drift --json` names it): it is
    /// still reported, and no longer fails, until it expires
    Ack {
        item: String,
        #[arg(long)]
        reason: String,
        /// How long the acknowledgement lasts: 1h, 7d…
        #[arg(long, value_parser = super::parse_duration, default_value = "7d")]
        expires: crate::config::HumanDuration,
    },
    /// When each difference appeared and when it went, newest first
    History {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum BaselineCmd {
    /// Print a Goss file's resources as a `baseline:` section (file, port, service, package,
    /// user, group, kernel-param, command, mount); what has no equivalent is listed on stderr
    Import { file: std::path::PathBuf },
    /// Print today's host as a baseline (YAML under `baseline:`): listening ports (closed
    /// world), enabled services, users, groups, and the files given (modes, owners and
    /// SHA-256, never their content)
    Capture {
        /// Only these kinds: port, service, user, group, file (comma-separated or repeated)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// A file to include (repeatable)
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<String>,
    },
}

pub fn drift(cx: &Ctx, args: DriftArgs) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match args.cmd {
        Some(DriftCmd::Ack { item, reason, expires }) => {
            let a = crate::drift::ack(&config, &store, &item, &reason, expires.0)?;
            cx.out.either(&a, || {
                cx.out
                    .line(format!("{item} acknowledged until {}: {reason}", a.expires_at))
            });
            return Ok(Outcome::Ok);
        }
        Some(DriftCmd::History { limit }) => {
            let rows = store.drift_history(limit)?;
            cx.out.either(&rows, || {
                let mut t = output::table(&["ITEM", "CHANGE", "APPEARED", "GONE", "EXPECTED", "ACTUAL"]);
                for r in &rows {
                    t.add_row(vec![
                        r.item.clone(),
                        r.change.clone(),
                        r.first_seen.clone(),
                        r.gone_at.clone().unwrap_or_else(|| "still there".into()),
                        output::one_line(&r.expected, 30),
                        output::one_line(&r.actual, 30),
                    ]);
                }
                output::print_table(&t);
            });
            return Ok(Outcome::Ok);
        }
        None => {}
    }
    let j = crate::drift::judge(&config, &store)?;
    let items: Vec<serde_json::Value> = j
        .items
        .iter()
        .zip(&j.acked)
        .map(|(i, a)| {
            let mut v = json!(i);
            v["item"] = json!(i.id());
            if let Some(a) = a {
                v["acked"] = json!(a);
            }
            v
        })
        .collect();
    let value = json!({ "drift": j.failing > 0, "failing": j.failing, "declared": config.baseline.resources.len(), "items": items });
    cx.out.either(&value, || {
        if j.items.is_empty() {
            cx.out.line(format!(
                "no drift: {} declared resource(s) as declared",
                config.baseline.resources.len()
            ));
            return;
        }
        let mut t = output::table(&["CHANGE", "KIND", "KEY", "ATTRIBUTE", "EXPECTED", "ACTUAL", "ACK"]);
        for (i, a) in j.items.iter().zip(&j.acked) {
            t.add_row(vec![
                i.change.clone(),
                i.kind.clone(),
                i.key.clone(),
                i.attribute.clone(),
                output::one_line(&i.expected, 40),
                output::one_line(&i.actual, 40),
                a.as_ref()
                    .map(|a| format!("until {}", a.expires_at))
                    .unwrap_or_default(),
            ]);
        }
        output::print_table(&t);
        cx.out.line(format!(
            "{} difference(s), {} not acknowledged",
            j.items.len(),
            j.failing
        ));
    });
    Ok(if j.failing == 0 { Outcome::Ok } else { Outcome::Failed })
}

pub fn baseline(cx: &Ctx, cmd: BaselineCmd) -> Result<Outcome, CliError> {
    match cmd {
        BaselineCmd::Import { file } => {
            let src = std::fs::read_to_string(&file)
                .map_err(|e| CliError::internal(format!("{}: {e}", file.display()), None))?;
            let (yaml, skipped) = crate::drift::goss::import(&src)
                .map_err(|e| CliError::usage(format!("{}: {e}", file.display()), None))?;
            if cx.out.json {
                cx.out.json(&json!({ "yaml": yaml, "left_out": skipped }));
            } else {
                print!("{yaml}");
                for s in &skipped {
                    eprintln!("left out: {s}");
                }
            }
            Ok(Outcome::Ok)
        }
        BaselineCmd::Capture { only, files } => {
            let yaml = crate::drift::capture(&only, &files);
            if cx.out.json {
                cx.out.json(&json!({ "yaml": yaml }));
            } else {
                print!("{yaml}");
            }
            Ok(Outcome::Ok)
        }
    }
}
