//! Running a profile: lock, optional git sync, each task through `exec`, every step recorded.
//!
//! Owns turning configured tasks into bounded process specs (the same function serves the
//! dry-run plan and the real run, so the plan is exactly what runs) and the ledger rows of a
//! run. Invariant: every run row this module opens is finished by it, unless the process dies.

use serde::Serialize;
use serde_json::json;
use std::time::Duration;

use crate::alert::Observation;
use crate::audit::Draft;
use crate::clock;
use crate::config::{CheckTask, Config, GitSync, Task};
use crate::exec::{self, Cancel, Spec, Stop};
use crate::notify;
use crate::store::{NewRun, RunFinish, RunKind, RunStatus, Store, Trigger};

pub use super::plan::{PlanStep, RunError, plan};
use super::plan::{find_profile, profile_bound, sync_specs, task_spec};

#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub run_id: i64,
    pub name: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub summary: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    pub command: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub output: String,
    #[serde(skip)]
    pub stopped_by_shutdown: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    pub profile: String,
    pub run_id: i64,
    pub trigger: Trigger,
    pub status: RunStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<TaskReport>,
    pub tasks: Vec<TaskReport>,
    pub duration_ms: u64,
}

/// Runs profiles against one configuration and store.
pub struct Runner<'a> {
    pub config: &'a Config,
    pub store: &'a Store,
    pub cancel: Cancel,
    /// Called after each task (and the sync) finishes, for live progress.
    pub on_step: Option<&'a (dyn Fn(&TaskReport) + Sync)>,
    /// The same configuration, shared: concurrent probes borrow it instead of a copy.
    pub shared: Option<std::sync::Arc<Config>>,
    /// Fleet mode: the leader's lease term and the scheduled tick this run is for. The tick is
    /// claimed once across the fleet, and every write of the run is fenced by the term.
    pub fence: Option<Fence>,
}

/// A scheduled run of the fleet's leader (see `Runner::fence`).
#[derive(Debug, Clone)]
pub struct Fence {
    pub term: i64,
    pub tick: String,
}

impl<'a> Runner<'a> {
    pub fn new(config: &'a Config, store: &'a Store) -> Self {
        Runner {
            config,
            store,
            cancel: Cancel::default(),
            on_step: None,
            shared: None,
            fence: None,
        }
    }

    pub(super) fn new_run(&self, profile: &str, task: Option<&str>, kind: RunKind, trigger: Trigger) -> NewRun {
        let (pid, start) = exec::process::current();
        NewRun {
            parent_id: None,
            profile: profile.to_string(),
            task: task.map(str::to_string),
            kind,
            trigger,
            status: RunStatus::Running,
            host: self.config.host.clone(),
            pid: Some(pid as i64),
            pid_start: start.map(|s| s as i64),
            started_at: clock::to_text(clock::now()),
            command: None,
            retry_of: None,
            tick: None,
        }
    }

    /// The profile's non-overlap lock, shared by every process on this state (see
    /// `Store::try_lock`); `None` while a run of it is going.
    /// A profile that runs on several hosts (`run_on` other than `any`) has a lock per host.
    fn lock(&self, profile: &str) -> Result<Option<crate::store::StateLock<'a>>, RunError> {
        let per_host = self
            .config
            .profile(profile)
            .is_some_and(|p| p.run_on != crate::config::model::RunOn::Any);
        let name = if per_host {
            format!("{profile}@{}", self.config.host)
        } else {
            profile.to_string()
        };
        Ok(self.store.try_lock(&name)?)
    }

    /// Runs every task of a profile, unless a run of it is already going (then: `skipped`).
    /// Under a fence, every write is fenced by its term, and a tick already in the ledger is
    /// not run again (`RunError::TickTaken`).
    pub fn run_profile(&self, name: &str, trigger: Trigger) -> Result<ProfileReport, RunError> {
        let per_host = self
            .config
            .profile(name)
            .is_some_and(|p| p.run_on != crate::config::model::RunOn::Any);
        match &self.fence {
            Some(f) => self.store.fenced(f.term, || self.run(name, trigger, None, None)),
            // A profile of each host (`run_on: all` or named hosts) judges for its host.
            None if per_host => self.store.per_host(|| self.run(name, trigger, None, None)),
            None => self.run(name, trigger, None, None),
        }
    }

    /// Records the start of a profile run: for a fenced tick, only if no host recorded it.
    fn start(&self, name: &str, new: &mut NewRun, audit: &Draft) -> Result<i64, RunError> {
        let Some(fence) = &self.fence else {
            return Ok(self.store.insert_run(new, Some(audit))?);
        };
        new.tick = Some(fence.tick.clone());
        self.store
            .claim_tick(new, Some(audit))?
            .ok_or_else(|| RunError::TickTaken {
                profile: name.to_string(),
                tick: fence.tick.clone(),
            })
    }

    /// Runs one task of a profile under the profile's lock, as a retry of `retry_of`.
    pub fn retry_task(&self, name: &str, task: &str, retry_of: i64) -> Result<ProfileReport, RunError> {
        let profile = find_profile(self.config, name)?;
        if !profile.tasks.iter().any(|t| t.name() == task) {
            return Err(RunError::UnknownTask {
                profile: name.into(),
                task: task.into(),
            });
        }
        self.run(name, Trigger::Retry, Some(task), Some(retry_of))
    }

    fn run(
        &self,
        name: &str,
        trigger: Trigger,
        only: Option<&str>,
        retry_of: Option<i64>,
    ) -> Result<ProfileReport, RunError> {
        let profile = find_profile(self.config, name)?;
        let redactor = &self.config.redactor;
        let started = std::time::Instant::now();

        let Some(_lock) = self.lock(name)? else {
            let reason = "the previous run of this profile is still running".to_string();
            let mut new = self.new_run(name, None, RunKind::Profile, trigger);
            new.status = RunStatus::Skipped;
            new.retry_of = retry_of;
            let draft = Draft::new(
                "run.skipped",
                name,
                json!({ "trigger": trigger.as_str(), "reason": reason }),
                redactor,
            );
            let id = self.start(name, &mut new, &draft)?;
            self.store.finish_run(
                id,
                &RunFinish {
                    finished_at: new.started_at.clone(),
                    error: Some(reason.clone()),
                    duration_ms: Some(0),
                    ..Default::default()
                },
                None,
            )?;
            tracing::info!(profile = name, run = id, "skipped: previous run still running");
            return Ok(ProfileReport {
                profile: name.into(),
                run_id: id,
                trigger,
                status: RunStatus::Skipped,
                reason: Some(reason),
                sync: None,
                tasks: Vec::new(),
                duration_ms: 0,
            });
        };

        let mut new = self.new_run(name, None, RunKind::Profile, trigger);
        new.retry_of = retry_of.filter(|_| only.is_none());
        let start_event = Draft::new(
            "run.started",
            name,
            json!({ "trigger": trigger.as_str(), "pid": new.pid, "retry_of": retry_of, "task": only }),
            redactor,
        );
        let run_id = self.start(name, &mut new, &start_event)?;
        tracing::info!(
            profile = name,
            run = run_id,
            trigger = trigger.as_str(),
            "profile run started"
        );
        let mut report = ProfileReport {
            profile: name.into(),
            run_id,
            trigger,
            status: RunStatus::Ok,
            reason: None,
            sync: None,
            tasks: Vec::new(),
            duration_ms: 0,
        };

        if only.is_none()
            && let Some(sync) = &profile.sync_before_run
        {
            let step = self.run_sync(run_id, name, trigger, sync)?;
            if step.status != RunStatus::Ok {
                tracing::warn!(profile = name, detail = %step.summary, "pre-run git sync failed; running tasks against the existing checkout");
            }
            report.sync = Some(step);
        }
        let mut not_started = 0;
        let mut task_transitions = Vec::new();
        let maintenance = self.begin_maintenance(
            &profile.silences,
            profile_bound(self.config, profile),
            format!("maintenance: profile {name} run #{run_id}"),
        )?;
        let selected: Vec<&Task> = profile
            .tasks
            .iter()
            .filter(|t| only.is_none_or(|o| t.name() == o))
            .collect();
        let mut next = 0;
        while next < selected.len() {
            if self.cancel.is_cancelled() {
                not_started = selected.len() - next;
                break;
            }
            let task = selected[next];
            next += 1;
            let step = match task {
                Task::Command(c) => {
                    let spec = task_spec(self.config, profile, c);
                    let task_maintenance = self.begin_maintenance(
                        &c.silences,
                        spec.timeout + spec.kill_grace + Duration::from_secs(60),
                        format!("maintenance: task {name}/{} in run #{run_id}", c.name),
                    )?;
                    let step =
                        self.run_step(run_id, name, &c.name, RunKind::Task, trigger, &spec, only.and(retry_of))?;
                    self.end_maintenance(task_maintenance)?;
                    // A task stopped by shutdown did not fail on its own: no alert for it.
                    if !step.stopped_by_shutdown {
                        let seen = Observation::from_task(name, &c.name, step.status == RunStatus::Ok, &step.summary);
                        task_transitions.extend(crate::notify::observe(self.store, self.config, &[seen])?);
                    }
                    step
                }
                Task::Backup(b) => self.run_backup_task(run_id, name, b, trigger, only.and(retry_of))?,
                Task::Check(first) => {
                    // Consecutive checks are probed together, concurrently.
                    let mut batch = vec![first];
                    while let Some(Task::Check(c)) = selected.get(next) {
                        batch.push(c);
                        next += 1;
                    }
                    // A check of some hosts (its `run_on`) is probed on those only, and judged
                    // for the host; the others in the batch are the profile's.
                    let (of_host, of_profile) = split_by_host(self.config, batch);
                    let retry = only.and(retry_of);
                    if !of_profile.is_empty() {
                        report
                            .tasks
                            .extend(self.run_checks(run_id, name, &of_profile, trigger, retry)?);
                    }
                    if !of_host.is_empty() {
                        let host = self
                            .store
                            .per_host(|| self.run_checks(run_id, name, &of_host, trigger, retry))?;
                        report.tasks.extend(host);
                    }
                    continue;
                }
            };
            report.tasks.push(step);
        }

        self.end_maintenance(maintenance)?;
        if !task_transitions.is_empty() {
            let at = clock::to_text(clock::now());
            self.store
                .alerts_tx(|tx| notify::digest::enqueue_run(tx, self.config, name, run_id, &task_transitions, &at))?;
        }
        let failed = report.tasks.iter().filter(|t| t.status != RunStatus::Ok).count();
        report.status = if failed == 0 && not_started == 0 {
            RunStatus::Ok
        } else {
            RunStatus::Failed
        };
        if self.cancel.is_cancelled() {
            report.reason = Some(format!("shutdown ({not_started} task(s) not started)"));
        } else if failed > 0 {
            report.reason = Some(format!("{failed} of {} task(s) failed", report.tasks.len()));
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        let tasks: Vec<_> = report
            .tasks
            .iter()
            .map(|t| json!({ "name": t.name, "status": t.status, "summary": t.summary }))
            .collect();
        let draft = Draft::new(
            "run.finished",
            name,
            json!({ "run_id": run_id, "trigger": trigger.as_str(), "status": report.status, "tasks": tasks, "duration_ms": report.duration_ms, "retry_of": retry_of }),
            redactor,
        );
        self.store.finish_run(
            run_id,
            &RunFinish {
                status: Some(report.status),
                finished_at: clock::to_text(clock::now()),
                duration_ms: Some(report.duration_ms as i64),
                error: report.reason.clone(),
                ..Default::default()
            },
            Some(&draft),
        )?;
        tracing::info!(profile = name, run = run_id, status = %report.status, duration_ms = report.duration_ms, "profile run finished");
        Ok(report)
    }

    fn run_sync(&self, parent: i64, profile: &str, trigger: Trigger, sync: &GitSync) -> Result<TaskReport, RunError> {
        let [fetch, reset] = sync_specs(self.config, sync);
        let step = self.run_step(parent, profile, "git-sync", RunKind::Sync, trigger, &fetch, None)?;
        if step.status != RunStatus::Ok {
            return Ok(step);
        }
        let mut second = self.run_step(parent, profile, "git-sync", RunKind::Sync, trigger, &reset, None)?;
        second.duration_ms += step.duration_ms;
        Ok(second)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        parent: i64,
        profile: &str,
        task: &str,
        kind: RunKind,
        trigger: Trigger,
        spec: &Spec,
        retry_of: Option<i64>,
    ) -> Result<TaskReport, RunError> {
        let redactor = &self.config.redactor;
        let command = redactor.redact(&crate::util::display(&spec.argv)).into_owned();
        let mut new = self.new_run(profile, Some(task), kind, trigger);
        new.parent_id = Some(parent);
        new.command = Some(command.clone());
        new.retry_of = retry_of;
        let id = self.store.insert_run(&new, None)?;

        let mut spec = spec.clone();
        spec.env.extend([
            ("RUNBOOK_PROFILE".to_string(), profile.to_string()),
            ("RUNBOOK_TASK".to_string(), task.to_string()),
            ("RUNBOOK_RUN_ID".to_string(), id.to_string()),
        ]);
        let mut stopped_by_shutdown = false;
        let (status, summary, exit_code, signal, output, duration) = match exec::run(&spec, &self.cancel) {
            Ok(o) => {
                let mut output = redactor.redact_cut(&o.combined_output(), exec::OMITTED_START, exec::OMITTED_END);
                if o.output_detached {
                    output.push_str("\n[output capture ended: a background process that left the task's process group kept the output open]\n");
                }
                let status = if o.success() { RunStatus::Ok } else { RunStatus::Failed };
                let mut summary = o.summary(spec.timeout);
                if o.stopped == Some(Stop::Shutdown) {
                    summary = "failed (shutdown)".into();
                    stopped_by_shutdown = true;
                }
                (status, summary, o.exit_code, o.signal, output, o.duration)
            }
            Err(e) => (
                RunStatus::Failed,
                redactor.redact(&e.to_string()).into_owned(),
                None,
                None,
                String::new(),
                Duration::ZERO,
            ),
        };
        let error = (status != RunStatus::Ok).then(|| summary.clone());
        self.store.finish_run(
            id,
            &RunFinish {
                status: Some(status),
                finished_at: clock::to_text(clock::now()),
                exit_code: exit_code.map(i64::from),
                signal: signal.map(i64::from),
                duration_ms: Some(duration.as_millis() as i64),
                output: Some(output.clone()),
                error,
            },
            None,
        )?;
        tracing::info!(profile, task, run = id, status = %status, detail = %summary, "task finished");
        let report = TaskReport {
            run_id: id,
            name: task.to_string(),
            kind,
            status,
            summary,
            exit_code,
            duration_ms: duration.as_millis() as u64,
            command,
            output,
            stopped_by_shutdown,
        };
        if let Some(cb) = self.on_step {
            cb(&report);
        }
        Ok(report)
    }
}

impl Runner<'_> {
    /// Runs a whole profile again as a retry of profile run `retry_of`.
    pub fn retry_profile(&self, name: &str, retry_of: i64) -> Result<ProfileReport, RunError> {
        self.run(name, Trigger::Retry, None, Some(retry_of))
    }
}

/// Splits consecutive check tasks by their check's `run_on`: (this host's checks, the
/// profile's). A check whose `run_on` leaves this host out is in neither.
fn split_by_host<'c>(config: &Config, batch: Vec<&'c CheckTask>) -> (Vec<&'c CheckTask>, Vec<&'c CheckTask>) {
    batch
        .into_iter()
        .filter(|t| {
            config.checks[&t.check]
                .run_on
                .includes(&config.host, &config.host_labels)
        })
        .partition(|t| !config.checks[&t.check].run_on.is_any())
}
