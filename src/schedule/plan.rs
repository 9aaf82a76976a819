//! Plans: the exact process specs a profile's steps run with, shared by `--dry-run` and the
//! real run so that the plan printed is the plan executed.

use serde::Serialize;
use std::time::Duration;

use crate::check;
use crate::config::model::{DEFAULT_KILL_GRACE, DEFAULT_TASK_TIMEOUT};
use crate::config::{CommandTask, Config, GitSync, HumanDuration, Profile, Task};
use crate::exec::Spec;

use crate::config::backups::DEFAULT_DUMP_TIMEOUT;
use crate::config::{BackupAction, BackupTask};
use crate::store::StoreError;
use crate::util::{ExitClass, Explain};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no profile named `{name}`")]
    UnknownProfile { name: String, known: Vec<String> },
    #[error("profile `{profile}` has no task named `{task}`")]
    UnknownTask { profile: String, task: String },
    /// Fleet mode: another host recorded this tick of the profile first.
    #[error("tick {tick} of profile `{profile}` is in the ledger already")]
    TickTaken { profile: String, tick: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Explain for RunError {
    fn class(&self) -> ExitClass {
        match self {
            RunError::Store(s) => s.class(),
            _ => ExitClass::Usage,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            RunError::Store(s) => s.kind(),
            _ => self.class().name(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            RunError::UnknownProfile { known, name } => {
                crate::config::diagnostic::suggest(name, known.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "profiles: {}",
                            if known.is_empty() {
                                "(none)".into()
                            } else {
                                known.join(", ")
                            }
                        ))
                    })
            }
            RunError::UnknownTask { .. } => Some("the configuration changed since that run".into()),
            RunError::TickTaken { .. } => None,
            RunError::Store(s) => s.hint(),
        }
    }
}

pub(super) fn find_profile<'c>(config: &'c Config, name: &str) -> Result<&'c Profile, RunError> {
    config.profile(name).ok_or_else(|| RunError::UnknownProfile {
        name: name.to_string(),
        known: config.profiles.keys().cloned().collect(),
    })
}

/// The command line a backup task stands for, as shown in plans and the ledger.
pub(super) fn describe(task: &BackupTask) -> String {
    match task.action {
        BackupAction::Backup => format!("runbook backup create {}", task.target),
        BackupAction::Verify => format!("runbook backup verify --latest {}", task.target),
        BackupAction::Prune => format!("runbook backup prune {} --apply", task.target),
        BackupAction::Drill => format!(
            "runbook backup drill (the next archive of {} in the rotation: never drilled, else drilled longest ago)",
            task.target
        ),
        BackupAction::Push => format!("runbook backup push {}", task.target),
        BackupAction::RecoverDrill => format!(
            "runbook recover --root (a scratch root, removed after) --from {} --execute",
            task.target
        ),
    }
}

/// The longest a backup task may take (for the profile's bound).
pub(super) fn bound(config: &Config, task: &BackupTask) -> Duration {
    if task.action == BackupAction::RecoverDrill {
        // Every target fetched, verified and restored, and the start and checks after.
        let targets: Duration = config
            .backups
            .values()
            .map(|t| t.timeout.map_or(DEFAULT_DUMP_TIMEOUT, |d| d.0) * (t.sources.len() as u32 + 1))
            .sum();
        return targets
            + Duration::from_secs(600) * (config.recover.start.len() + config.recover.checks.len() + 1) as u32;
    }
    let t = &config.backups[&task.target];
    let per_dump = t.timeout.map_or(DEFAULT_DUMP_TIMEOUT, |d| d.0);
    per_dump * (t.sources.len() as u32 + 1)
}

/// Bound on each git command of a pre-run sync.
pub(super) const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// One step of a dry-run plan, exactly as it would run.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStep {
    pub name: String,
    pub kind: &'static str,
    pub argv: Vec<String>,
    pub command: String,
    pub cwd: String,
    pub timeout: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}

/// The exec spec of a command task: shared by the dry-run plan and the real run.
pub fn task_spec(config: &Config, profile: &Profile, task: &CommandTask) -> Spec {
    let base = config.base_dir();
    let mut spec = Spec::new(
        task.program.argv(),
        task.timeout
            .or(profile.timeout)
            .map(|d| d.0)
            .unwrap_or(DEFAULT_TASK_TIMEOUT),
    );
    spec.cwd = Some(task.cwd.as_ref().map(|c| base.join(c)).unwrap_or(base));
    spec.kill_grace = task.kill_grace.map(|d| d.0).unwrap_or(DEFAULT_KILL_GRACE);
    spec.env = config.env.clone();
    spec.env.extend(task.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    spec.limits = task.limits.clone();
    spec
}

pub(super) fn sync_specs(config: &Config, sync: &GitSync) -> [Spec; 2] {
    let repo = sync.repo.to_string_lossy().into_owned();
    let git = |args: &[&str]| {
        let mut argv = vec!["git".to_string(), "-C".to_string(), repo.clone()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut spec = Spec::new(argv, SYNC_TIMEOUT);
        spec.cwd = Some(config.base_dir());
        // Credentials for the remote (GIT_SSH_COMMAND, tokens) usually live in the env files.
        spec.env = config.env.clone();
        spec
    };
    [
        git(&["fetch", "--quiet", &sync.remote, &sync.branch]),
        git(&["reset", "--hard", "--quiet", "FETCH_HEAD"]),
    ]
}

fn limit_notes(spec: &Spec) -> Vec<String> {
    let l = &spec.limits;
    let mut notes = Vec::new();
    if let Some(m) = l.memory_max {
        notes.push(format!("memory_max={m}"));
    }
    if let Some(c) = l.cpu_time {
        notes.push(format!("cpu_time={c}"));
    }
    if let Some(n) = l.nofile {
        notes.push(format!("nofile={n}"));
    }
    if l.systemd_run {
        notes.push("systemd_run".into());
    }
    if let Some(q) = l.cpu_quota {
        notes.push(format!("cpu_quota={q}"));
    }
    notes
}

/// The longest a profile run can take: every task's timeout and grace, plus a margin.
pub(super) fn profile_bound(config: &Config, profile: &Profile) -> Duration {
    let tasks: Duration = profile
        .tasks
        .iter()
        .map(|t| match t {
            Task::Command(c) => {
                let spec = task_spec(config, profile, c);
                spec.timeout + spec.kill_grace
            }
            Task::Check(c) => config.checks[&c.check].timeout(),
            Task::Backup(b) => bound(config, b),
        })
        .sum();
    tasks + SYNC_TIMEOUT * 2 + Duration::from_secs(300)
}

/// What `run PROFILE` would do, step by step; runs and writes nothing.
pub fn plan(config: &Config, name: &str) -> Result<Vec<PlanStep>, RunError> {
    let profile = find_profile(config, name)?;
    let r = &config.redactor;
    let step = |name: String, kind, spec: &Spec| PlanStep {
        name,
        kind,
        argv: spec.argv.iter().map(|a| r.redact(a).into_owned()).collect(),
        command: r.redact(&crate::util::display(&spec.argv)).into_owned(),
        cwd: spec.cwd.as_ref().map(|c| c.display().to_string()).unwrap_or_default(),
        timeout: HumanDuration(spec.timeout).to_string(),
        limits: limit_notes(spec),
    };
    let mut steps = Vec::new();
    if let Some(sync) = &profile.sync_before_run {
        for spec in sync_specs(config, sync) {
            steps.push(step("git-sync".into(), "sync", &spec));
        }
    }
    for task in &profile.tasks {
        match task {
            Task::Command(c) => steps.push(step(c.name.clone(), "task", &task_spec(config, profile, c))),
            Task::Check(c) => {
                let check = &config.checks[&c.check];
                steps.push(PlanStep {
                    name: c.name.clone(),
                    kind: "check",
                    argv: Vec::new(),
                    command: r
                        .redact(&format!("check {}: {}", c.check, check::describe(check)))
                        .into_owned(),
                    cwd: config.base_dir().display().to_string(),
                    timeout: HumanDuration(check.timeout()).to_string(),
                    limits: Vec::new(),
                });
            }
            Task::Backup(b) => steps.push(PlanStep {
                name: b.name.clone(),
                kind: b.action.as_str(),
                argv: Vec::new(),
                command: describe(b),
                cwd: config.base_dir().display().to_string(),
                timeout: HumanDuration(bound(config, b)).to_string(),
                limits: Vec::new(),
            }),
        }
    }
    Ok(steps)
}
