//! Checks as profile tasks: a run of consecutive checks is probed concurrently.
//!
//! Owns recording them: one ledger row per check (written in one transaction for the batch),
//! the check results, and alert evaluation of the whole batch at once (so dependencies are
//! judged before their dependents). Invariant: rows are finished even when probes fail.

use std::sync::Arc;

use crate::check;
use crate::clock;
use crate::config::CheckTask;
use crate::store::{RunFinish, RunKind, RunStatus, Trigger};

use super::runner::{RunError, Runner, TaskReport};
use crate::config::{Config, Task};
use crate::store::Store;

/// The checks of `profile` that this host probes at each of the profile's ticks while another
/// host leads and runs the profile: those whose own `run_on` includes this host.
pub fn host_checks(config: &Config, profile: &str) -> Vec<String> {
    let Some(p) = config.profiles.get(profile) else {
        return Vec::new();
    };
    let mut names: Vec<String> = p
        .tasks
        .iter()
        .filter_map(|t| match t {
            Task::Check(c) => Some(c.check.clone()),
            _ => None,
        })
        .filter(|c| {
            let run_on = &config.checks[c].run_on;
            !run_on.is_any() && run_on.includes(&config.host, &config.host_labels)
        })
        .collect();
    names.dedup();
    names
}

/// Probes this host's `checks` (see `host_checks`) and judges them for this host; the outcomes
/// go to the check history (no ledger row: the leader's run of the profile holds the tick).
pub fn probe_host_checks(config: &Arc<Config>, store: &Store, checks: &[String]) {
    store.per_host(|| {
        let outcomes = check::probe_blocking(config, checks);
        if let Err(e) = crate::notify::record_and_observe(store, config, &outcomes, &[]) {
            tracing::error!(error = %e, "cannot record this host's checks");
        }
    })
}

impl Runner<'_> {
    pub(super) fn run_checks(
        &self,
        parent: i64,
        profile: &str,
        batch: &[&CheckTask],
        trigger: Trigger,
        retry_of: Option<i64>,
    ) -> Result<Vec<TaskReport>, RunError> {
        let redactor = &self.config.redactor;
        let commands: Vec<String> = batch
            .iter()
            .map(|t| {
                redactor
                    .redact(&format!(
                        "check {}: {}",
                        t.check,
                        check::describe(&self.config.checks[&t.check])
                    ))
                    .into_owned()
            })
            .collect();
        let rows: Vec<_> = batch
            .iter()
            .zip(&commands)
            .map(|(t, command)| {
                let mut new = self.new_run(profile, Some(&t.name), RunKind::Task, trigger);
                new.parent_id = Some(parent);
                new.command = Some(command.clone());
                new.retry_of = retry_of;
                new
            })
            .collect();
        let ids = self.store.insert_runs(&rows)?;

        let names: Vec<String> = batch.iter().map(|t| t.check.clone()).collect();
        let outcomes = if batch.len() == 1 {
            let c = &self.config.checks[&names[0]];
            vec![crate::util::runtime::runtime().block_on(check::probe(self.config, &names[0], c))]
        } else {
            check::probe_blocking(
                &self.shared.clone().unwrap_or_else(|| Arc::new(self.config.clone())),
                &names,
            )
        };

        let run_ids: Vec<Option<i64>> = ids.iter().map(|id| Some(*id)).collect();
        crate::notify::record_and_observe(self.store, self.config, &outcomes, &run_ids)?;
        let finished = clock::to_text(clock::now());
        let finishes: Vec<(i64, RunFinish)> = outcomes
            .iter()
            .zip(&ids)
            .map(|(o, id)| {
                let status = if o.ok { RunStatus::Ok } else { RunStatus::Failed };
                let finish = RunFinish {
                    status: Some(status),
                    finished_at: finished.clone(),
                    duration_ms: Some(o.latency_ms as i64),
                    output: Some(o.detail.clone()),
                    error: (!o.ok).then(|| o.detail.clone()),
                    ..Default::default()
                };
                (*id, finish)
            })
            .collect();
        self.store.finish_runs(&finishes)?;

        let failing = outcomes.iter().filter(|o| !o.ok).count();
        tracing::info!(profile, checks = batch.len(), failing, "checks probed");
        let mut reports = Vec::with_capacity(batch.len());
        for ((task, outcome), (id, command)) in batch.iter().zip(outcomes).zip(ids.into_iter().zip(commands)) {
            let status = if outcome.ok { RunStatus::Ok } else { RunStatus::Failed };
            if outcome.ok {
                tracing::debug!(profile, task = %task.name, run = id, detail = %outcome.detail, "check ok");
            } else {
                tracing::info!(profile, task = %task.name, run = id, detail = %outcome.detail, "check failing");
            }
            let report = TaskReport {
                run_id: id,
                name: task.name.clone(),
                kind: RunKind::Task,
                status,
                summary: outcome.detail.clone(),
                exit_code: None,
                duration_ms: outcome.latency_ms,
                command,
                output: outcome.detail,
                stopped_by_shutdown: false,
            };
            if let Some(cb) = self.on_step {
                cb(&report);
            }
            reports.push(report);
        }
        Ok(reports)
    }
}
