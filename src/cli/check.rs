//! `runbook check [NAME…]`: probe checks now and print their outcomes.

use std::sync::Arc;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::alert::Change;
use crate::check;

pub fn run(cx: &Ctx, names: Vec<String>) -> Result<Outcome, CliError> {
    let config = Arc::new(cx.load()?);
    for name in &names {
        if !config.checks.contains_key(name) {
            let known: Vec<&str> = config.checks.keys().map(String::as_str).collect();
            let hint = crate::config::diagnostic::suggest(name, known.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| {
                    Some(format!(
                        "checks: {}",
                        if known.is_empty() {
                            "(none)".into()
                        } else {
                            known.join(", ")
                        }
                    ))
                });
            return Err(CliError::usage(format!("no check named `{name}`"), hint));
        }
    }
    let names: Vec<String> = if names.is_empty() {
        config.checks.keys().cloned().collect()
    } else {
        names
    };
    if names.is_empty() {
        return Err(CliError::usage(
            "no checks are configured",
            Some("add them under `checks:` in runbook.yaml".into()),
        ));
    }
    let outcomes = check::probe_blocking(&config, &names);
    let store = cx.open_store(&config)?;
    let transitions = crate::notify::record_and_observe(&store, &config, &outcomes, &[])?;
    let failing = outcomes.iter().filter(|o| !o.ok).count();
    cx.out.either(&outcomes, || {
        let mut t = output::table(&["CHECK", "KIND", "STATUS", "LATENCY", "DETAIL"]);
        for o in &outcomes {
            t.add_row(vec![
                o.check.clone(),
                o.kind.to_string(),
                if o.ok { "ok".into() } else { "FAILING".into() },
                format!("{}ms", o.latency_ms),
                one_line(&o.detail, 90),
            ]);
        }
        output::print_table(&t);
        if failing > 0 {
            cx.out.line(format!("{failing} of {} check(s) failing", outcomes.len()));
        }
        for t in &transitions {
            let what = match t.change {
                Change::Opened => format!("alert opened ({}, {})", t.severity.as_str(), t.status.as_str()),
                Change::Resolved => "alert resolved".to_string(),
            };
            cx.out.line(format!("{what}: {}", t.key));
        }
    });
    crate::schedule::upkeep::after_command(&config, &store);
    Ok(if failing == 0 { Outcome::Ok } else { Outcome::Failed })
}
