//! Values the store reads and writes: runs, state entries, migration state.
//!
//! Plain data with serde for `--json`. Invariant: a status's text form is the one stored and
//! the one users type (`--status failed`).

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Ok,
    Failed,
    Skipped,
    Stale,
    Retryable,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Ok,
        RunStatus::Failed,
        RunStatus::Skipped,
        RunStatus::Stale,
        RunStatus::Retryable,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Stale => "stale",
            RunStatus::Retryable => "retryable",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown status `{s}` (one of: running, ok, failed, skipped, stale, retryable)"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Profile,
    Task,
    Sync,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Profile => "profile",
            RunKind::Task => "task",
            RunKind::Sync => "sync",
        }
    }
    pub fn parse(s: &str) -> RunKind {
        match s {
            "profile" => RunKind::Profile,
            "sync" => RunKind::Sync,
            _ => RunKind::Task,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Manual,
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
        }
    }
    pub fn parse(s: &str) -> Trigger {
        match s {
            "schedule" => Trigger::Schedule,
            "retry" => Trigger::Retry,
            _ => Trigger::Manual,
        }
    }
}

/// A row of the jobs ledger.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: i64,
    pub parent_id: Option<i64>,
    pub profile: String,
    pub task: Option<String>,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub host: String,
    pub pid: Option<i64>,
    #[serde(skip)]
    pub pid_start: Option<i64>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub duration_ms: Option<i64>,
    pub command: Option<String>,
    pub output: Option<String>,
    pub error: Option<String>,
    pub retry_of: Option<i64>,
}

impl Run {
    /// `profile` or `profile/task`.
    pub fn label(&self) -> String {
        match &self.task {
            Some(t) => format!("{}/{}", self.profile, t),
            None => self.profile.clone(),
        }
    }
}

/// A run about to start (or, for `skipped`, already over).
#[derive(Debug, Clone)]
pub struct NewRun {
    pub parent_id: Option<i64>,
    pub profile: String,
    pub task: Option<String>,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub status: RunStatus,
    pub host: String,
    pub pid: Option<i64>,
    pub pid_start: Option<i64>,
    pub started_at: String,
    pub command: Option<String>,
    pub retry_of: Option<i64>,
    /// The scheduled time this run is for (fleet mode): a profile's tick is claimed once.
    pub tick: Option<String>,
}

impl NewRun {
    /// A scheduled run of a whole profile, by this process on `host`, at `started_at`: how
    /// a missed tick is recorded.
    pub fn scheduled(profile: &str, host: &str, status: RunStatus, started_at: &str) -> NewRun {
        NewRun {
            parent_id: None,
            profile: profile.to_string(),
            task: None,
            kind: RunKind::Profile,
            trigger: Trigger::Schedule,
            status,
            host: host.to_string(),
            pid: Some(i64::from(std::process::id())),
            pid_start: None,
            started_at: started_at.to_string(),
            command: None,
            retry_of: None,
            tick: None,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunFinish {
    pub status: Option<RunStatus>,
    pub finished_at: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub duration_ms: Option<i64>,
    pub output: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub limit: usize,
    pub status: Option<RunStatus>,
    pub profile: Option<String>,
    /// Include task and sync rows, not only profile runs.
    pub all_kinds: bool,
    /// Only runs with an id below this (paging).
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StateEntry {
    pub namespace: String,
    pub key: String,
    pub value: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub limit: usize,
    pub kind: Option<String>,
    /// Paging: only events with a seq below this.
    pub before: Option<i64>,
    /// Only events of these kinds (empty: all).
    pub kinds: Vec<String>,
    /// Only events about this subject (`session 12`).
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct MigrationState {
    pub current: u32,
    pub head: u32,
}

impl MigrationState {
    pub fn status(&self) -> &'static str {
        use std::cmp::Ordering::*;
        match self.current.cmp(&self.head) {
            Equal => "head",
            Less => "behind",
            Greater => "ahead",
        }
    }
}

/// One recorded check outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub check: String,
    pub kind: String,
    pub ok: bool,
    pub latency_ms: i64,
    pub detail: String,
    /// JSON text.
    pub data: String,
    pub at: String,
    pub run_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditSummary {
    pub events: i64,
    pub first: Option<String>,
    pub last: Option<String>,
    pub by_kind: Vec<(String, i64)>,
    pub by_actor: Vec<(String, i64)>,
}
