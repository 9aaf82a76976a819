//! `runbook deploy APP REF [--apply]`, `deploy status | history | verify | rollback APP`.

use std::io::IsTerminal;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};
use crate::deploy;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub cmd: Option<DeployCmd>,
    /// The app (a key of `deploy:`)
    #[arg(required = true)]
    pub app: Option<String>,
    /// The tag (refs: tags) or commit (refs: sha) to deploy
    #[arg(required_unless_present = "resume", value_name = "REF")]
    pub reference: Option<String>,
    /// Finish the deploy whose runbook died half-way: after the switch, restart and the gate
    /// after; before it, start that deploy again (nothing live had changed)
    #[arg(long, conflicts_with = "reference")]
    pub resume: bool,
    /// Deploy (default: print the plan)
    #[arg(long)]
    pub apply: bool,
    /// Accept a branch name (a branch moves: the commit deployed is recorded)
    #[arg(long)]
    pub allow_branch: bool,
    /// Leave a release that fails the gate after the switch live instead of rolling back
    #[arg(long)]
    pub no_rollback: bool,
    /// Deploy even though the live release's tracked files were changed by hand
    #[arg(long)]
    pub allow_dirty: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeployCmd {
    /// What is live: release, commit, whether the tree is clean, since when
    Status { app: String },
    /// Deploys and rollbacks of an app, newest first
    History {
        app: String,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Exit 0 when the live release is at REF and its tree is clean
    Verify {
        app: String,
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Remove old releases: never the live one nor the previous good one; bad ones first,
    /// then good ones beyond `keep`
    Prune {
        app: String,
        /// Remove them (default: list what would go)
        #[arg(long)]
        apply: bool,
    },
    /// Put the last good release (or --to RELEASE) back live: switch, restart, gate after
    Rollback {
        app: String,
        #[arg(long, value_name = "RELEASE")]
        to: Option<String>,
        /// Do it (default: say which release would go live)
        #[arg(long)]
        apply: bool,
    },
}

pub fn run(cx: &Ctx, args: DeployArgs) -> Result<Outcome, CliError> {
    let config = Arc::new(cx.load()?);
    let store = cx.open_store(&config)?;
    let tty = std::io::stderr().is_terminal();
    let progress = |line: &str| {
        if tty {
            eprintln!("  {line}");
        }
    };
    match args.cmd {
        Some(DeployCmd::Status { app }) => {
            let s = deploy::status(&config, &store, &app)?;
            cx.out.either(&s, || {
                match (&s.release, &s.sha) {
                    (Some(r), Some(sha)) => cx.out.line(format!("{app}: live release {r} at {sha}")),
                    (Some(r), None) => cx.out.line(format!("{app}: live release {r} (no git checkout)")),
                    _ => cx.out.line(format!("{app}: nothing deployed yet")),
                }
                if s.clean == Some(false) {
                    cx.out.line(format!("  NOT CLEAN: {}", s.changes.join("; ")));
                }
                if let Some(since) = &s.since {
                    cx.out.line(format!("  live since {since}"));
                }
            });
            Ok(Outcome::Ok)
        }
        Some(DeployCmd::History { app, limit }) => {
            let rows = store.deploys(&app, limit)?;
            cx.out.either(&rows, || {
                let mut t = output::table(&["ID", "REF", "RELEASE", "STATUS", "STEP", "STARTED (UTC)", "ERROR"]);
                for d in &rows {
                    t.add_row(vec![
                        d.id.to_string(),
                        d.reference.clone(),
                        d.release.clone(),
                        d.status.clone(),
                        d.step.clone(),
                        d.started_at.clone(),
                        output::one_line(d.error.as_deref().unwrap_or(""), 50),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        Some(DeployCmd::Verify { app, reference }) => {
            let (s, sha, ok) = deploy::verify(&config, &store, &app, &reference)?;
            let value = json!({ "ok": ok, "ref": reference, "sha": sha, "live": s });
            cx.out.either(&value, || {
                if ok {
                    cx.out.line(format!("{app} is live at {reference} ({sha}), clean"));
                } else {
                    cx.out.line(format!(
                        "{app} is NOT at {reference} ({sha}): live {} at {}{}",
                        s.release.as_deref().unwrap_or("nothing"),
                        s.sha.as_deref().unwrap_or("-"),
                        if s.clean == Some(false) {
                            format!(", not clean: {}", s.changes.join("; "))
                        } else {
                            String::new()
                        }
                    ));
                }
            });
            Ok(if ok { Outcome::Ok } else { Outcome::Failed })
        }
        Some(DeployCmd::Prune { app, apply }) => {
            let p = deploy::prune(&config, &store, &app, apply)?;
            let value = json!({ "app": app, "applied": apply, "removed": p.removed, "kept": p.kept });
            cx.out.either(&value, || {
                for r in &p.removed {
                    cx.out.line(format!(
                        "  {} releases/{r}",
                        if apply { "removed" } else { "would remove" }
                    ));
                }
                cx.out.line(format!("  kept: {}", p.kept.join(", ")));
                if !apply && !p.removed.is_empty() {
                    cx.out.line("dry run: nothing removed; add --apply");
                }
            });
            Ok(Outcome::Ok)
        }
        Some(DeployCmd::Rollback { app, to, apply }) => {
            let (target, report) = deploy::rollback(&config, &store, &app, to.as_deref(), apply, &progress)?;
            let value = json!({ "app": app, "to": target, "applied": apply, "report": report });
            cx.out.either(&value, || match &report {
                Some(_) => cx.out.line(format!("{app}: {target} is live again")),
                None => cx.out.line(format!("{app}: {target} would go back live; add --apply")),
            });
            Ok(Outcome::Ok)
        }
        None => {
            let (app, reference) = (args.app.unwrap_or_default(), args.reference.unwrap_or_default());
            let options = deploy::Options {
                allow_branch: args.allow_branch,
                no_rollback: args.no_rollback,
                allow_dirty: args.allow_dirty,
            };
            if args.resume {
                let report = deploy::resume(&config, &store, &app, options, &progress);
                return finished(cx, &config, &store, report, &app);
            }
            if !args.apply {
                let plan = deploy::plan(&config, &app, &reference, args.allow_branch)?;
                cx.out.either(&plan, || {
                    cx.out.line(format!("deploy plan for {app} {reference}:"));
                    for (i, s) in plan.steps.iter().enumerate() {
                        cx.out.line(format!("  {:>2}. {s}", i + 1));
                    }
                    cx.out.line("dry run: nothing changed; add --apply to deploy");
                });
                return Ok(Outcome::Ok);
            }
            let report = deploy::apply(&config, &store, &app, &reference, options, &progress);
            finished(cx, &config, &store, report, &format!("{app} {reference}"))
        }
    }
}

/// Sends what the deploy queued (its gates' notifications), then says what is live.
fn finished(
    cx: &Ctx,
    config: &crate::config::Config,
    store: &crate::store::Store,
    report: Result<deploy::Report, deploy::DeployError>,
    what: &str,
) -> Result<Outcome, CliError> {
    crate::schedule::upkeep::after_command(config, store);
    let report = report?;
    cx.out.either(&report, || {
        for l in &report.log {
            cx.out.line(format!("  {l}"));
        }
        cx.out.line(format!(
            "{what}: {} is live ({})",
            report.deploy.release, report.deploy.status
        ));
    });
    Ok(Outcome::Ok)
}
