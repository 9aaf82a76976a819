//! `runbook jobs list | show | recover-stale | retry`.

use clap::Subcommand;
use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::jobs;
use crate::schedule::runner::{self, Runner};
use crate::store::{Run, RunFilter, RunStatus};
use crate::util::duration_ms;

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Recent runs, newest first
    List {
        /// How many runs to show
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs with this status: running, ok, failed, skipped, stale, retryable
        #[arg(long)]
        status: Option<crate::store::RunStatus>,
        /// Only runs of this profile
        #[arg(long)]
        profile: Option<String>,
    },
    /// One run with its output excerpt (and its tasks, for a profile run)
    Show { id: i64 },
    /// Find runs still marked running whose process is gone or that are too old; --apply marks them retryable
    ///
    /// A run is stale when it is still `running` in the ledger but the runbook process that
    /// recorded it is gone on this host (after a reboot, a crash or kill -9), or when it
    /// started more than --older-than-minutes ago on any host. Without --apply the stale runs
    /// are only listed. With --apply each is marked `retryable`, with one audit event each,
    /// in one transaction; then `runbook jobs retry ID --apply` runs it again.
    RecoverStale {
        /// Runs started longer ago than this are stale even if their process seems alive
        #[arg(long, value_name = "N")]
        older_than_minutes: u64,
        /// Mark them retryable (default: only list them)
        #[arg(long)]
        apply: bool,
    },
    /// Run a failed or retryable run again, linked to the original
    ///
    /// A task run re-runs that task, a profile run the whole profile, as configured now (so a
    /// fix deployed since runs), under the profile's non-overlap lock. The new run records
    /// `retry_of` = ID; `jobs show ID` lists its retries. Without --apply prints what would run.
    Retry {
        id: i64,
        /// Run it (default: print what would run)
        #[arg(long)]
        apply: bool,
    },
}

pub fn run(cx: &Ctx, cmd: JobsCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        JobsCmd::List { limit, status, profile } => {
            let runs = store.list_runs(&RunFilter {
                limit,
                status,
                profile,
                all_kinds: true,
                before: None,
            })?;
            cx.out.either(&runs, || {
                let mut t = output::table(&[
                    "ID",
                    "RUN",
                    "KIND",
                    "TRIGGER",
                    "STATUS",
                    "STARTED (UTC)",
                    "DURATION",
                    "DETAIL",
                ]);
                for r in &runs {
                    t.add_row(vec![
                        r.id.to_string(),
                        r.label(),
                        r.kind.as_str().to_string(),
                        r.trigger.as_str().to_string(),
                        r.status.to_string(),
                        r.started_at.clone(),
                        r.duration_ms
                            .map(|d| duration_ms(d as u64))
                            .unwrap_or_else(|| "-".into()),
                        one_line(r.error.as_deref().unwrap_or(""), 50),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        JobsCmd::Show { id } => {
            let run = store.get_run(id)?.ok_or(jobs::JobsError::NotFound(id))?;
            let children = store.child_runs(id)?;
            let retries = store.retries_of(id)?;
            let value = json!({ "run": run, "tasks": children, "retried_by": retries });
            cx.out.either(&value, || show(cx, &run, &children, &retries));
            Ok(Outcome::Ok)
        }
        JobsCmd::RecoverStale {
            older_than_minutes,
            apply,
        } => {
            let stale = jobs::find_stale(&store, &config.host, older_than_minutes)?;
            if apply && !stale.is_empty() {
                jobs::recover(&store, &config, &stale)?;
            }
            let value = json!({ "apply": apply, "older_than_minutes": older_than_minutes, "stale": stale, "marked_retryable": if apply { stale.len() } else { 0 } });
            cx.out.either(&value, || {
                if stale.is_empty() {
                    cx.out.line(format!(
                        "no stale runs (none running with a dead process or for more than {older_than_minutes} min)"
                    ));
                    return;
                }
                let mut t = output::table(&["ID", "RUN", "HOST", "PID", "STARTED (UTC)", "WHY"]);
                for s in &stale {
                    t.add_row(vec![
                        s.id.to_string(),
                        s.label.clone(),
                        s.host.clone(),
                        s.pid.map(|p| p.to_string()).unwrap_or_default(),
                        s.started_at.clone(),
                        s.reason.clone(),
                    ]);
                }
                output::print_table(&t);
                if apply {
                    cx.out.line(format!(
                        "marked {} run(s) retryable; retry one with `runbook jobs retry ID --apply`",
                        stale.len()
                    ));
                } else {
                    cx.out.line(format!(
                        "dry run: {} run(s) would be marked retryable; re-run with --apply",
                        stale.len()
                    ));
                }
            });
            Ok(Outcome::Ok)
        }
        JobsCmd::Retry { id, apply } => {
            let plan = jobs::plan_retry(&store, id)?;
            let steps: Vec<_> = runner::plan(&config, &plan.profile)?
                .into_iter()
                .filter(|s| plan.task.as_ref().is_none_or(|t| &s.name == t))
                .collect();
            if !apply {
                let value = json!({ "apply": false, "retry_of": id, "profile": plan.profile, "task": plan.task, "steps": steps });
                cx.out.either(&value, || {
                    cx.out.line(format!(
                        "dry run: would retry run #{id} ({}, {}):",
                        plan.run.label(),
                        plan.run.status
                    ));
                    for s in &steps {
                        cx.out.line(format!("  {:<12} {}", s.name, s.command));
                    }
                    cx.out.line("re-run with --apply to run it");
                });
                return Ok(Outcome::Ok);
            }
            let mut r = Runner::new(&config, &store);
            let progress = super::schedule::progress_printer(cx.out.json);
            r.on_step = Some(&progress);
            let report = jobs::retry(&r, &plan)?;
            cx.out.either(&report, || super::schedule::print_summary(cx, &report));
            Ok(if report.status == RunStatus::Ok {
                Outcome::Ok
            } else {
                Outcome::Failed
            })
        }
    }
}

fn show(cx: &Ctx, run: &Run, children: &[Run], retries: &[i64]) {
    let field = |k: &str, v: String| cx.out.line(format!("{k:<12} {v}"));
    field("run", format!("#{} {}", run.id, run.label()));
    field("kind", run.kind.as_str().into());
    field("status", run.status.to_string());
    field("trigger", run.trigger.as_str().into());
    field(
        "host",
        format!(
            "{} (pid {})",
            run.host,
            run.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
        ),
    );
    field("started", run.started_at.clone());
    field("finished", run.finished_at.clone().unwrap_or_else(|| "-".into()));
    if let Some(d) = run.duration_ms {
        field("duration", duration_ms(d as u64));
    }
    if let Some(c) = &run.command {
        field("command", c.clone());
    }
    if let Some(code) = run.exit_code {
        field("exit code", code.to_string());
    }
    if let Some(sig) = run.signal {
        field("signal", sig.to_string());
    }
    if let Some(e) = &run.error {
        field("error", e.clone());
    }
    if let Some(r) = run.retry_of {
        field("retry of", format!("#{r}"));
    }
    if !retries.is_empty() {
        field(
            "retried by",
            retries.iter().map(|r| format!("#{r}")).collect::<Vec<_>>().join(", "),
        );
    }
    if !children.is_empty() {
        cx.out.line("");
        let mut t = output::table(&["ID", "TASK", "KIND", "STATUS", "DURATION", "DETAIL"]);
        for c in children {
            t.add_row(vec![
                c.id.to_string(),
                c.task.clone().unwrap_or_default(),
                c.kind.as_str().into(),
                c.status.to_string(),
                c.duration_ms
                    .map(|d| duration_ms(d as u64))
                    .unwrap_or_else(|| "-".into()),
                one_line(c.error.as_deref().unwrap_or(""), 50),
            ]);
        }
        output::print_table(&t);
    }
    if let Some(out) = run.output.as_deref().filter(|o| !o.is_empty()) {
        cx.out.line("");
        cx.out.line("output:");
        for line in out.lines() {
            cx.out.line(format!("  {line}"));
        }
    }
}
