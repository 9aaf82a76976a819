//! Command probe: run a program through `exec` and judge its exit code and stdout.

use std::time::Duration;

use serde_json::json;

use super::Finding;
use crate::config::Config;
use crate::config::checks::CommandProbe;
use crate::exec::{self, Cancel, Spec};

pub(super) async fn probe(config: &Config, p: &CommandProbe, timeout: Duration) -> Result<Finding, super::ProbeError> {
    let mut spec = Spec::new(p.program.argv(), timeout);
    spec.cwd = Some(p.cwd.clone().unwrap_or_else(|| config.base_dir()));
    spec.env = config.env.clone();
    spec.env.extend(p.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    spec.kill_grace = Duration::from_secs(1);
    if let Some(c) = &config.confine {
        spec.hold = c.clone();
    }
    let expect = p.expect.clone();
    let outcome = tokio::task::spawn_blocking(move || exec::run(&spec, &Cancel::default()))
        .await
        .map_err(|e| format!("the command probe crashed: {e}"))?
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if outcome.stopped.is_some() {
        problems.push(outcome.summary(timeout));
    } else if outcome.exit_code != Some(expect.exit) {
        problems.push(format!("{}, expected exit {}", outcome.summary(timeout), expect.exit));
    }
    if let Some(needle) = &expect.stdout_contains
        && !outcome.stdout.contains(needle.as_str())
    {
        problems.push(format!("stdout does not contain {needle:?}"));
    }
    if let Some(re) = &expect.stdout_regex {
        let re = crate::config::checks::line_regex(re).map_err(|e| e.to_string())?;
        if !re.is_match(&outcome.stdout) {
            problems.push(format!("stdout does not match /{}/", re.as_str()));
        }
    }
    let first_line = outcome
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string();
    let data = json!({ "exit_code": outcome.exit_code, "output": config.redactor.redact(&outcome.combined_output()) });
    Ok(if problems.is_empty() {
        let detail = if first_line.is_empty() {
            format!("exit {}", expect.exit)
        } else {
            format!("exit {}: {first_line}", expect.exit)
        };
        Finding::new(true, detail, data)
    } else {
        // What the command said is usually the reason: its first line of output (stderr when
        // stdout is empty) goes with the failure.
        let said = if first_line.is_empty() {
            outcome
                .stderr
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        } else {
            first_line
        };
        let detail = if said.is_empty() {
            problems.join("; ")
        } else {
            format!("{}: {said}", problems.join("; "))
        };
        Finding::new(false, detail, data)
    })
}
