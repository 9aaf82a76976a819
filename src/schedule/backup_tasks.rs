//! Backup tasks of a profile: `{ backup: T }`, `{ verify: T }`, `{ prune: T }`, `{ drill: T }`,
//! `{ push: T }`.
//!
//! Owns running them inside a profile run: one ledger row each, the outcome as the task's
//! status, the task alert on failure. Invariant: every archive is drilled before retention
//! removes it (a drill takes `backup::next_to_drill`, and prune holds that one).

use std::time::Instant;

use crate::alert::Observation;
use crate::backup;
use crate::clock;
use crate::config::{BackupAction, BackupTask};
use crate::store::{RunFinish, RunKind, RunStatus, Trigger};
use crate::util::duration_ms;

use super::plan::{RunError, describe};
use super::runner::{Runner, TaskReport};

impl Runner<'_> {
    pub(super) fn run_backup_task(
        &self,
        parent: i64,
        profile: &str,
        task: &BackupTask,
        trigger: Trigger,
        retry_of: Option<i64>,
    ) -> Result<TaskReport, RunError> {
        let command = describe(task);
        let mut new = self.new_run(profile, Some(&task.name), RunKind::Task, trigger);
        new.parent_id = Some(parent);
        new.command = Some(command.clone());
        new.retry_of = retry_of;
        let id = self.store.insert_run(&new, None)?;
        let started = Instant::now();
        let result = self.backup_action(task);
        let duration = started.elapsed();
        let (status, summary) = match result {
            Ok((true, s)) => (RunStatus::Ok, s),
            Ok((false, s)) => (RunStatus::Failed, s),
            Err(e) => (RunStatus::Failed, e),
        };
        let summary = self.config.redactor.redact(&summary).into_owned();
        self.store.finish_run(
            id,
            &RunFinish {
                status: Some(status),
                finished_at: clock::to_text(clock::now()),
                duration_ms: Some(duration.as_millis() as i64),
                output: Some(summary.clone()),
                error: (status != RunStatus::Ok).then(|| summary.clone()),
                ..Default::default()
            },
            None,
        )?;
        tracing::info!(profile, task = task.name, run = id, status = %status, detail = %summary, "task finished");
        let seen = Observation::from_task(profile, &task.name, status == RunStatus::Ok, &summary);
        crate::notify::observe(self.store, self.config, &[seen])?;
        let report = TaskReport {
            run_id: id,
            name: task.name.clone(),
            kind: RunKind::Task,
            status,
            summary,
            exit_code: None,
            duration_ms: duration.as_millis() as u64,
            command,
            output: String::new(),
            stopped_by_shutdown: false,
        };
        if let Some(cb) = self.on_step {
            cb(&report);
        }
        Ok(report)
    }

    /// (ok, one line) of the action; `Err` for an error that stopped it.
    fn backup_action(&self, task: &BackupTask) -> Result<(bool, String), String> {
        let (config, store) = (self.config, self.store);
        let none = |_: backup::Progress| {};
        match task.action {
            BackupAction::Backup => {
                let c = backup::create(config, store, &task.target, &self.cancel, &none).map_err(|e| e.to_string())?;
                if let Some(v) = &c.size_verdict {
                    let seen = Observation::backup_size(&task.target, v.ok, &v.detail);
                    crate::notify::observe(store, config, &[seen]).map_err(|e| e.to_string())?;
                }
                let mut line = format!("{} ({} bytes, sha256 {})", c.path.display(), c.size, c.sha256);
                if let Some(small) = &c.too_small {
                    line = format!("{line}; {small}");
                }
                for d in &c.damaged {
                    line = format!("{line}; {d}");
                }
                Ok((c.too_small.is_none() && c.damaged.is_empty(), line))
            }
            BackupAction::Verify => {
                let latest = backup::latest(config, store, &task.target).map_err(|e| e.to_string())?;
                let path = std::path::PathBuf::from(&latest.path);
                let r = backup::verify::verify_and_record(config, store, &path, &none).map_err(|e| e.to_string())?;
                let line = match r.problems.first() {
                    None => format!(
                        "{}: ok, {} files, {} bytes of data",
                        path.display(),
                        r.files_checked,
                        r.data_bytes
                    ),
                    Some(first) => format!("{}: FAILED: {first}", path.display()),
                };
                Ok((r.ok, line))
            }
            BackupAction::Push => {
                let r = backup::offsite::push(config, store, &task.target, false, &none).map_err(|e| e.to_string())?;
                let refused: String = r
                    .refused
                    .iter()
                    .map(|(f, why)| format!("; {f} not pushed: {why}"))
                    .collect();
                let replaced: String = r
                    .replaced
                    .iter()
                    .map(|(f, why)| format!("; {f} replaced offsite: {why}"))
                    .collect();
                Ok((
                    r.refused.is_empty(),
                    format!(
                        "pushed {} ({} bytes{}), {} already offsite{replaced}{refused}",
                        r.pushed.len(),
                        r.bytes,
                        if r.resumed.is_empty() {
                            String::new()
                        } else {
                            format!(", {} resumed", r.resumed.len())
                        },
                        r.skipped.len()
                    ),
                ))
            }
            BackupAction::Prune => {
                let p = backup::prune(config, store, &task.target, true, false).map_err(|e| e.to_string())?;
                let mut line = format!("removed {}, kept {}", p.remove.len(), p.keep.len());
                if !p.gone.is_empty() {
                    line.push_str(&format!(", forgot {} missing", p.gone.len()));
                }
                for (path, why) in &p.failed {
                    line.push_str(&format!("; {path} could not be removed: {why}"));
                }
                Ok((p.failed.is_empty(), line))
            }
            BackupAction::Drill => {
                let Some(archive) = backup::next_to_drill(config, store, &task.target).map_err(|e| e.to_string())?
                else {
                    return Err(format!("no archive of `{}` to drill", task.target));
                };
                let target = backup::target(config, &task.target).map_err(|e| e.to_string())?;
                let r = backup::drill::drill(config, store, &task.target, target, archive.as_ref(), &none)
                    .map_err(|e| e.to_string())?;
                let failed = backup::drill::failed(r.phases.iter().chain(&r.checks));
                let line = if r.ok {
                    format!("{}: recovery {} ms", r.archive.display(), r.recovery_ms)
                } else {
                    format!("{}: failed ({})", r.archive.display(), failed.join(", "))
                };
                Ok((r.ok, line))
            }
            BackupAction::RecoverDrill => self.recover_drill(&task.target),
        }
    }

    /// The host rebuild drill into a scratch root beside the state, removed afterwards: one
    /// line with the RTO against its goal, and the RPO of each target.
    fn recover_drill(&self, from: &str) -> Result<(bool, String), String> {
        use backup::recover::{Origin, recover};
        let dir = self.config.state.path.parent().unwrap_or(std::path::Path::new("."));
        let stamp = clock::now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let root = dir.join(format!("recover-drill-{stamp}"));
        let from = Origin::parse(from);
        let result = recover(
            self.config,
            self.store,
            &root,
            from,
            true,
            &backup::recover::installed,
            &|_| {},
        );
        let _ = std::fs::remove_dir_all(&root);
        let r = result.map_err(|e| e.to_string())?;
        let goal = r
            .rto_goal_ms
            .map(|g| format!(" (goal {})", duration_ms(g)))
            .unwrap_or_default();
        let rpo: Vec<String> = r
            .targets
            .iter()
            .map(|t| match t.rpo_s {
                Some(s) => format!("{} RPO {}", t.target, duration_ms(s.max(0) as u64 * 1000)),
                None => format!("{}: {}", t.target, t.detail),
            })
            .collect();
        let failed = backup::drill::failed(r.phases.iter().chain(&r.checks));
        let mut line = format!("RTO {}{goal}; {}", duration_ms(r.rto_ms), rpo.join(", "));
        if !failed.is_empty() {
            line.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        Ok((r.ok, line))
    }
}
