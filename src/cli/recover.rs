//! `runbook recover`: the host rebuild drill into a scratch root (see `backup::recover`).

use std::path::PathBuf;

use clap::Args;

use super::{CliError, Ctx, Outcome};
use crate::backup::recover::{self, Origin, RecoverReport};
use crate::util::text::duration_ms;

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The empty root to rebuild the host into (a scratch directory, or a new disk)
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Where the archives come from: `offsite` (each target's offsite store) or a directory
    #[arg(long, value_name = "offsite|DIR")]
    pub from: String,
    /// Do it (without it: the plan, and nothing is written)
    #[arg(long)]
    pub execute: bool,
}

pub fn run(cx: &Ctx, args: RecoverArgs) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    let from = Origin::parse(&args.from);
    if args.execute && std::fs::read_dir(&args.root).is_ok_and(|mut d| d.next().is_some()) {
        return Err(CliError::usage(
            format!(
                "{}: not empty; recover rebuilds into an empty root",
                args.root.display()
            ),
            Some("give a new directory, or empty this one".into()),
        ));
    }
    let bar = super::backup::Bar::new(cx);
    let report = recover::recover(
        &config,
        &store,
        &args.root,
        from,
        args.execute,
        &crate::backup::recover::installed,
        &|p| bar.report(p),
    )?;
    drop(bar);
    cx.out.either(&report, || print(cx, &report));
    Ok(if report.ok { Outcome::Ok } else { Outcome::Failed })
}

fn print(cx: &Ctx, r: &RecoverReport) {
    if !r.executed {
        cx.out
            .line(format!("plan: rebuild this host into {}", r.root.display()));
        for p in &r.plan {
            cx.out.line(format!("  {p}"));
        }
        for t in r.targets.iter().filter(|t| !t.ok) {
            cx.out.line(format!("  PROBLEM {}: {}", t.target, t.detail));
        }
        cx.out.line("dry run: nothing written; add --execute");
        return;
    }
    for p in &r.phases {
        let mark = if p.ok { "ok" } else { "FAILED" };
        cx.out
            .line(format!("{:10} {:>9}  {mark:6} {}", p.name, duration_ms(p.ms), p.detail));
    }
    for c in &r.checks {
        let mark = if c.ok { "ok" } else { "FAILED" };
        cx.out.line(format!("  check {:<20} {mark} {}", c.name, c.detail));
    }
    for t in &r.targets {
        let rpo = t
            .rpo_s
            .map(|s| duration_ms(s.max(0) as u64 * 1000))
            .unwrap_or_else(|| "-".into());
        cx.out.line(format!(
            "target {}: {} (RPO {rpo}) {}",
            t.target,
            t.archive.as_deref().unwrap_or("no archive"),
            if t.ok { "restored" } else { t.detail.as_str() }
        ));
    }
    let goal = r
        .rto_goal_ms
        .map(|g| format!(" (goal {})", duration_ms(g)))
        .unwrap_or_default();
    cx.out.line(format!(
        "RTO {}{goal}: {}",
        duration_ms(r.rto_ms),
        if r.ok { "recovered" } else { "NOT recovered" }
    ));
    if let Some(e) = &r.evidence {
        cx.out.line(format!("evidence: {}", e.display()));
    }
}
