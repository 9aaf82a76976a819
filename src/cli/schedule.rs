//! `runbook list | render-crontab | run | daemon | reload`.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::daemon;
use super::output::{self, tail_lines};
use super::{CliError, Ctx, Outcome};
use crate::clock;
use crate::schedule::runner::{self, ProfileReport, Runner, TaskReport};
use crate::schedule::{self, crontab};
use crate::store::{RunStatus, Store, Trigger};
use crate::util::duration_ms;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// After SIGTERM, how long running tasks may go on before they are killed
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = super::parse_duration)]
    pub shutdown_grace: crate::config::HumanDuration,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Path of the runbook binary in the crontab lines [default: this binary]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Profile to run
    pub profile: String,
    /// Print every task and the exact command it would run; run nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub fn list(cx: &Ctx) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    // Reading only: never create or migrate the state file just to list.
    let last = match Store::open_existing_state(&config.state)? {
        Some(store) if store.migration_state()?.status() == "head" => store.last_profile_runs()?,
        _ => Vec::new(),
    };
    let now = clock::now();
    let rows: Vec<_> = config
        .profiles
        .iter()
        .map(|(name, p)| {
            let next = if p.enabled { p.schedule.as_ref().and_then(|s| schedule::next_after(s, now)) } else { None };
            let last = last.iter().find(|r| &r.profile == name);
            json!({
                "name": name,
                "cron": p.cron,
                "timezone": p.timezone,
                "enabled": p.enabled,
                "tasks": p.tasks.len(),
                "next_run": next.map(clock::to_text),
                "last_run": last.map(|r| json!({ "id": r.id, "status": r.status, "started_at": r.started_at, "finished_at": r.finished_at })),
            })
        })
        .collect();
    cx.out.either(&rows, || {
        let mut t = output::table(&["PROFILE", "CRON", "TZ", "TASKS", "NEXT RUN", "LAST RUN"]);
        for (name, p) in &config.profiles {
            let next = if p.enabled {
                p.schedule
                    .as_ref()
                    .and_then(|s| schedule::next_after(s, now))
                    .map(|t| format!("{} ({})", clock::human(t), clock::relative(t, now)))
                    .unwrap_or_else(|| "never".into())
            } else {
                "disabled".into()
            };
            let last = last
                .iter()
                .find(|r| &r.profile == name)
                .map(|r| {
                    let when = clock::from_text(&r.started_at)
                        .map(|t| clock::relative(t, now))
                        .unwrap_or_default();
                    format!("{} {when} (#{})", r.status, r.id)
                })
                .unwrap_or_else(|| "never".into());
            t.add_row(vec![
                name.clone(),
                p.cron.clone(),
                p.timezone.clone().unwrap_or_else(|| "local".into()),
                p.tasks.len().to_string(),
                next,
                last,
            ]);
        }
        output::print_table(&t);
    });
    Ok(Outcome::Ok)
}

pub fn render_crontab(cx: &Ctx, args: RenderArgs) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let binary = match args.binary {
        Some(b) => b,
        None => std::env::current_exe().map_err(|e| {
            CliError::internal(
                format!("cannot find this binary's path: {e}"),
                Some("pass --binary PATH".into()),
            )
        })?,
    };
    let text = crontab::render(&config, &binary);
    if cx.out.json {
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        cx.out.json(&json!({ "crontab": text, "lines": lines }));
    } else {
        output::emit(&text);
    }
    Ok(Outcome::Ok)
}

/// Prints each finished step as it happens, on a terminal and not under --json.
pub fn progress_printer(json: bool) -> impl Fn(&TaskReport) + Sync {
    let live = !json && std::io::stdout().is_terminal();
    move |t: &TaskReport| {
        if live {
            output::emit(&format!(
                "  {:<9} {:<20} {:>8}  {}\n",
                t.status.to_string(),
                t.name,
                duration_ms(t.duration_ms),
                t.summary
            ));
        }
    }
}

pub fn print_summary(cx: &Ctx, report: &ProfileReport) {
    let live = std::io::stdout().is_terminal();
    if report.status == RunStatus::Skipped {
        cx.out.line(format!(
            "profile {}: skipped ({}); recorded as run #{}",
            report.profile,
            report.reason.as_deref().unwrap_or(""),
            report.run_id
        ));
        return;
    }
    let steps: Vec<&TaskReport> = report.sync.iter().chain(report.tasks.iter()).collect();
    if !live {
        for t in &steps {
            cx.out.line(format!(
                "  {:<9} {:<20} {:>8}  {}",
                t.status.to_string(),
                t.name,
                duration_ms(t.duration_ms),
                t.summary
            ));
        }
    }
    for t in steps
        .iter()
        .filter(|t| t.status != RunStatus::Ok && !t.output.is_empty())
    {
        cx.out.line(format!("--- {} (run #{}) last output:", t.name, t.run_id));
        for line in tail_lines(&t.output, 10) {
            cx.out.line(format!("    {line}"));
        }
    }
    cx.out.line(format!(
        "profile {}: {} — {} task(s) in {}{}; run #{} (`runbook jobs show {}`)",
        report.profile,
        report.status,
        report.tasks.len(),
        duration_ms(report.duration_ms),
        report.reason.as_ref().map(|r| format!(", {r}")).unwrap_or_default(),
        report.run_id,
        report.run_id
    ));
}

pub fn run(cx: &Ctx, args: RunArgs) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    if args.dry_run {
        let steps = runner::plan(&config, &args.profile)?;
        let profile = &config.profiles[&args.profile];
        let value = json!({ "dry_run": true, "profile": args.profile, "cron": profile.cron, "enabled": profile.enabled, "steps": steps });
        cx.out.either(&value, || {
            cx.out.line(format!(
                "dry run of profile `{}` (cron \"{}\"): nothing is executed, nothing is written",
                args.profile, profile.cron
            ));
            for (i, s) in steps.iter().enumerate() {
                let limits = if s.limits.is_empty() {
                    String::new()
                } else {
                    format!(", {}", s.limits.join(", "))
                };
                cx.out.line(format!("  {:>2}. {:<16} {}", i + 1, s.name, s.command));
                cx.out
                    .line(format!("      {:<16} in {}, timeout {}{limits}", "", s.cwd, s.timeout));
            }
        });
        return Ok(Outcome::Ok);
    }
    let store = cx.open_store(&config)?;
    let mut r = Runner::new(&config, &store);
    let progress = progress_printer(cx.out.json);
    r.on_step = Some(&progress);
    let report = r.run_profile(&args.profile, Trigger::Manual)?;
    cx.out.either(&report, || print_summary(cx, &report));
    crate::schedule::upkeep::after_command(&config, &store);
    Ok(match report.status {
        RunStatus::Ok | RunStatus::Skipped => Outcome::Ok,
        _ => Outcome::Failed,
    })
}

pub fn daemon(cx: &Ctx, args: DaemonArgs) -> Result<Outcome, CliError> {
    let path = crate::config::discover(cx.config_path.as_deref())?;
    daemon::run(&daemon::Options {
        config_path: path,
        shutdown_grace: args.shutdown_grace.0,
        no_notify: cx.no_notify,
    })?;
    Ok(Outcome::Ok)
}

pub fn reload(cx: &Ctx) -> Result<Outcome, CliError> {
    // Validate first: a bad file is reported here, and the daemon is not disturbed.
    let config = cx.load()?;
    let (daemon_pid, serve_pid) = daemon::signal_reload(&config);
    if daemon_pid.is_none() && serve_pid.is_none() {
        return Err(CliError::failed(
            format!("no runbook daemon is running on {}", config.state.path.display()),
            Some("start it with `runbook daemon` (or systemctl start runbook)".into()),
        ));
    }
    cx.out.either(
        &json!({ "reloaded": true, "pid": daemon_pid.or(serve_pid), "daemon_pid": daemon_pid, "serve_pid": serve_pid }),
        || {
            for (what, pid) in [("the daemon", daemon_pid), ("runbook serve", serve_pid)] {
                if let Some(pid) = pid {
                    cx.out
                        .line(format!("configuration is valid; asked {what} (pid {pid}) to reload"));
                }
            }
        },
    );
    Ok(Outcome::Ok)
}
