//! The jobs ledger: listing runs, recovering stale ones, retrying failed ones.
//!
//! Owns the rules of recovery (a `running` row whose process is gone, or that is older than a
//! threshold) and of retry (only `failed` or `retryable` runs; the new run links back).
//! Invariant: nothing changes without `apply`; a dry run returns the same plan it would execute.

use serde::Serialize;
use serde_json::json;

use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::exec::process;
use crate::schedule::runner::{ProfileReport, RunError, Runner};
use crate::store::{Run, RunFilter, RunKind, RunStatus, Store, StoreError};
use crate::util::{ExitClass, Explain};

#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error("no run with id {0}")]
    NotFound(i64),
    #[error("run {id} is {status}; only failed or retryable runs can be retried")]
    NotRetryable { id: i64, status: RunStatus },
    #[error("run {id} is a {kind} run; retry its profile run instead")]
    NotATask { id: i64, kind: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl Explain for JobsError {
    fn class(&self) -> ExitClass {
        match self {
            JobsError::Store(s) => s.class(),
            JobsError::Run(r) => r.class(),
            _ => ExitClass::Usage,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            JobsError::Store(s) => s.kind(),
            JobsError::Run(r) => r.kind(),
            _ => self.class().name(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            JobsError::NotFound(_) => Some("see `runbook jobs list`".into()),
            JobsError::Store(s) => s.hint(),
            JobsError::Run(r) => r.hint(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StaleRun {
    pub id: i64,
    pub label: String,
    pub host: String,
    pub pid: Option<i64>,
    pub started_at: String,
    pub age_minutes: i64,
    pub reason: String,
}

/// Runs still marked `running` whose process is gone (on this host) or older than the limit.
pub fn find_stale(store: &Store, host: &str, older_than_minutes: u64) -> Result<Vec<StaleRun>, JobsError> {
    let now = clock::now();
    let running = store.list_runs(&RunFilter {
        status: Some(RunStatus::Running),
        all_kinds: true,
        ..Default::default()
    })?;
    let mut stale = Vec::new();
    for run in running {
        let age = clock::from_text(&run.started_at)
            .map(|t| (now.as_second() - t.as_second()) / 60)
            .unwrap_or(i64::MAX);
        let gone = run.host == host
            && run
                .pid
                .is_some_and(|pid| !process::is_alive(pid as u32, run.pid_start.map(|s| s as u64)));
        let reason = if gone {
            format!("process {} is gone", run.pid.unwrap_or_default())
        } else if age >= older_than_minutes as i64 {
            format!("running for {age} min (limit {older_than_minutes})")
        } else {
            continue;
        };
        stale.push(StaleRun {
            id: run.id,
            label: run.label(),
            host: run.host.clone(),
            pid: run.pid,
            started_at: run.started_at.clone(),
            age_minutes: age,
            reason,
        });
    }
    stale.sort_by_key(|s| s.id);
    Ok(stale)
}

/// Marks the given stale runs `retryable`, one audit event each, in one transaction.
pub fn recover(store: &Store, config: &Config, stale: &[StaleRun]) -> Result<(), JobsError> {
    let changes: Vec<_> = stale
        .iter()
        .map(|s| {
            let draft = Draft::new(
                "run.recovered",
                &s.label,
                json!({ "run_id": s.id, "reason": s.reason, "new_status": "retryable" }),
                &config.redactor,
            );
            (
                s.id,
                RunStatus::Retryable,
                format!("recovered as stale: {}", s.reason),
                draft,
            )
        })
        .collect();
    store.mark_runs(&changes)?;
    Ok(())
}

/// What a retry would run.
#[derive(Debug, Clone, Serialize)]
pub struct RetryPlan {
    pub run: Run,
    pub profile: String,
    /// `None`: the whole profile.
    pub task: Option<String>,
}

pub fn plan_retry(store: &Store, id: i64) -> Result<RetryPlan, JobsError> {
    let run = store.get_run(id)?.ok_or(JobsError::NotFound(id))?;
    if !matches!(run.status, RunStatus::Failed | RunStatus::Retryable) {
        return Err(JobsError::NotRetryable { id, status: run.status });
    }
    let task = match run.kind {
        RunKind::Profile => None,
        RunKind::Task => run.task.clone(),
        RunKind::Sync => return Err(JobsError::NotATask { id, kind: "sync" }),
    };
    Ok(RetryPlan {
        profile: run.profile.clone(),
        task,
        run,
    })
}

/// Executes a retry plan: the task (or the whole profile) runs again, linked to the original.
pub fn retry(runner: &Runner, plan: &RetryPlan) -> Result<ProfileReport, JobsError> {
    let report = match &plan.task {
        Some(task) => runner.retry_task(&plan.profile, task, plan.run.id)?,
        None => runner.retry_profile(&plan.profile, plan.run.id)?,
    };
    Ok(report)
}
