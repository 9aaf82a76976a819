//! The validated configuration: the types the rest of runbook reads.
//!
//! Owns the shape of `runbook.yaml` after validation, its serialization (`config show`) and its
//! JSON Schema (`config schema`). It does not parse YAML (see `validate`). Invariant: a value of
//! these types is valid: crons parse, durations are positive, task names are unique.

use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::checks::Check;
use super::notify::NotifyConfig;
pub use super::program::{Program, RunArgs};
pub use super::run_on::RunOn;
use super::secrets::Redactor;
use super::units::{ByteSize, HumanDuration, Percent};

/// Timeout of a task when neither the task nor its profile sets one.
pub const DEFAULT_TASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Time between SIGTERM and SIGKILL when a task is stopped.
pub const DEFAULT_KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// runbook.yaml: executable runbooks for one host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "runbook.yaml")]
pub struct Config {
    /// Format version of this file. Always 1.
    pub version: u32,
    /// Name of this host in runs and audit events. Default: the machine's hostname.
    #[serde(default)]
    pub host: String,
    /// Labels of this host that `run_on` can name (fleet mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_labels: Vec<String>,
    /// Where runbook keeps its state.
    #[serde(default)]
    pub state: StateConfig,
    /// Env files whose values are secrets, and paths nobody may read without approval.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// Named probes: HTTP, TCP, command, systemd unit, disk, certificate, file age, git ref, SQL.
    #[serde(default)]
    pub checks: BTreeMap<String, Check>,
    /// The HTTP API of the daemon and of `runbook serve`.
    #[serde(default)]
    pub api: ApiConfig,
    /// How much check and alert history to keep.
    #[serde(default)]
    pub retention: Retention,
    /// Where alerts are sent: channels, routes, a test route.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// Named groups of tasks that run on a cron schedule.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
    /// Guarded operator sessions: limits of every command, extra read-only commands.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// Signed checkpoints of the audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Where incident notes live; a session that belongs to an incident appends its
    /// end-of-session record to that incident's note.
    #[serde(default)]
    pub incidents: IncidentsConfig,
    /// The host rebuild drill (`runbook recover`).
    #[serde(default)]
    pub recover: super::backups::RecoverConfig,
    /// Backup targets: sources, destination, retention.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backups: BTreeMap<String, super::backups::BackupTarget>,
    /// Release and rollback gates: what must hold before (and after) a change goes live.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, super::gates::Gate>,
    /// The host as declared: what `runbook drift` compares it with.
    #[serde(default)]
    pub baseline: super::baseline::Baseline,
    /// Applications deployed from pinned refs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deploy: BTreeMap<String, super::deploy::DeployApp>,
    /// What an assistant connected through `runbook mcp` may see and call.
    #[serde(default)]
    pub mcp: super::mcp::McpConfig,
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(skip)]
    pub redactor: Redactor,
    /// Variables from the env files, passed to every task's environment.
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    /// Set by a caller that must change nothing (an assistant's `check` and `gate_run`):
    /// how every command probe is held. Never read from the file.
    #[serde(skip)]
    pub confine: Option<Confine>,
}

/// How a command is held when its caller must change nothing (`exec::Spec::hold`).
#[derive(Debug, Clone, Default)]
pub struct Confine {
    /// In the kernel's read-only sandbox: no file written, no host setting changed.
    pub read_only: bool,
    /// Paths the command cannot reach (the secrets).
    pub masked: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `sqlite:///absolute/path.db`, `sqlite://relative/path.db` (to this file's directory), or a
    /// plain path. Default: sqlite:///var/lib/runbook/runbook.db
    /// `postgres://user@host:port/db?sslmode=…` keeps the state in PostgreSQL (password from
    /// the URL, `PGPASSWORD` or `~/.pgpass`).
    #[serde(default)]
    pub url: String,
    /// With PostgreSQL: the directory of this host's own files (profile locks, audit
    /// archives). Default: the directory of runbook.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The state file; with PostgreSQL, the stem of this host's own files (`DIR/runbook`).
    #[serde(skip)]
    pub path: PathBuf,
}

impl StateConfig {
    /// Whether `url` names a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        is_postgres_url(&self.url)
    }

    /// Where the state is, as messages name it: the file, or the URL without its password.
    pub fn display(&self) -> String {
        if !self.is_postgres() {
            return self.path.display().to_string();
        }
        match url::Url::parse(&self.url) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("REDACTED"));
                u.to_string().replace(":REDACTED@", ":[REDACTED]@")
            }
            _ => self.url.clone(),
        }
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// dotenv files (KEY=value). Their values expand `${KEY}`; those of credentials are
    /// redacted everywhere (see `secrets::is_secret`).
    #[serde(default)]
    pub env_files: Vec<PathBuf>,
    /// Glob patterns of files whose reading needs an approved change request.
    #[serde(default)]
    pub deny_read: Vec<String>,
    /// Env-file keys whose values are secrets although their names do not say so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
    /// Env-file keys whose values are not secrets although their names look like it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plain: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// 5 fields (min hour dom month dow), 6 with seconds first, or @hourly, @daily, @weekly…
    pub cron: String,
    /// IANA time zone the cron is read in. Default: the host's local time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// A disabled profile is not scheduled and not rendered in the crontab; `run` still works.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Default timeout of each task in this profile (a task may override). Default: 30m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// `git fetch` + `git reset --hard` of a checkout before the tasks; best effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_before_run: Option<GitSync>,
    /// Checks that do not notify while this profile runs (a backup, a deploy); they are
    /// probed again when it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silences: Vec<String>,
    /// The tasks, run in order; a failed task does not stop the ones after it.
    pub tasks: Vec<Task>,
    /// Where it runs when several hosts share a PostgreSQL state: `any` (once per tick
    /// across the fleet, by the leader), `all` (every host), or host names and labels.
    #[serde(default)]
    pub run_on: RunOn,
    /// Fleet mode: after a failover, the last tick missed is run if it is at most this old
    /// (default: whatever its age; `0s`: never); older missed ticks are recorded as missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<HumanDuration>,
    #[serde(skip)]
    pub schedule: Option<Schedule>,
}

fn yes() -> bool {
    true
}

/// A parsed cron expression with the time zone it is read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: croner::Cron,
    pub tz: jiff::tz::TimeZone,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitSync {
    /// Path of the git checkout.
    pub repo: PathBuf,
    /// Remote to fetch. Default: origin.
    #[serde(default)]
    pub remote: String,
    /// Branch to reset to.
    pub branch: String,
}

/// One step of a profile.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Task {
    /// A command: `{ run: [argv…] }`, `{ run: "string" }` or `{ sh: "script" }`.
    Command(CommandTask),
    /// A check by name: a bare string, or `{ check: NAME }`.
    Check(CheckTask),
    /// `{ backup: TARGET }`, `{ prune: TARGET }` or `{ drill: TARGET }`.
    Backup(BackupTask),
}

impl Task {
    pub fn name(&self) -> &str {
        match self {
            Task::Command(c) => &c.name,
            Task::Check(c) => &c.name,
            Task::Backup(b) => &b.name,
        }
    }
}

/// What a backup task does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackupAction {
    /// `backup create`.
    Backup,
    /// `backup verify --latest`: the newest archive read back and checked.
    Verify,
    /// `backup prune --apply`.
    Prune,
    /// `backup drill` of the next archive in the rotation: never drilled (those the next
    /// prune removes first), else drilled longest ago.
    Drill,
    /// `backup push`: offsite copies of what is not offsite yet.
    Push,
    /// `recover --execute` into a scratch root, removed afterwards: the host rebuild drill;
    /// the task's `target` is where the archives come from (`offsite` or a directory).
    RecoverDrill,
}

impl BackupAction {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupAction::Backup => "backup",
            BackupAction::Verify => "verify",
            BackupAction::Prune => "prune",
            BackupAction::Drill => "drill",
            BackupAction::Push => "push",
            BackupAction::RecoverDrill => "recover_drill",
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupTask {
    pub action: BackupAction,
    /// The target (a key of `backups:`).
    pub target: String,
    /// Name in runs and output. Default: `backup-TARGET`, `prune-TARGET`, `drill-TARGET`,
    /// `push-TARGET`.
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckTask {
    /// The check to run (a key of `checks:`).
    pub check: String,
    /// Name in runs and output. Default: the check's name.
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandTask {
    /// Name in runs and output. Default: the program's file name (`sh` for scripts).
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub program: Program,
    /// Kill the task's whole process group after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Time between SIGTERM and SIGKILL on timeout. Default: 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_grace: Option<HumanDuration>,
    /// Working directory. Default: the directory of runbook.yaml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Checks that do not notify while this task runs; probed again when it ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silences: Vec<String>,
    #[serde(flatten)]
    pub limits: Limits,
}

/// Resource limits of a task's process.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Limits {
    /// Address-space limit (RLIMIT_AS), or MemoryMax= under `systemd_run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<ByteSize>,
    /// CPU time limit (RLIMIT_CPU); the process gets SIGXCPU, then SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<HumanDuration>,
    /// Open file descriptor limit (RLIMIT_NOFILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// Run inside `systemd-run --scope` with MemoryMax= and CPUQuota= (needs systemd).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub systemd_run: bool,
    /// CPUQuota= under `systemd_run`, e.g. 25%.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<Percent>,
}

impl Config {
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// The directory relative paths in the config are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// How much history the state file keeps; the daemon prunes the rest.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Per check: a count of results (`1000`) or an age (`7d`). Default: 1000.
    #[serde(default)]
    pub check_results: Keep,
    /// Resolved alerts (and their notifications): a count or an age. Default: 90d.
    #[serde(default)]
    pub resolved_alerts: Keep,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            check_results: Keep::Count(1000),
            resolved_alerts: Keep::Age(HumanDuration(std::time::Duration::from_secs(90 * 86_400))),
        }
    }
}

/// Keep the newest N, or everything younger than an age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Count(u64),
    Age(HumanDuration),
}

impl Default for Keep {
    fn default() -> Self {
        Keep::Count(1000)
    }
}

impl Keep {
    pub fn parse(text: &str) -> Result<Keep, String> {
        let t = text.trim();
        if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
            return t.parse().map(Keep::Count).map_err(|_| format!("`{t}` is too large"));
        }
        HumanDuration::parse(t)
            .map(Keep::Age)
            .map_err(|_| format!("`{t}` is neither a count (1000) nor an age (30d)"))
    }
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Keep::Count(n) => write!(f, "{n}"),
            Keep::Age(d) => write!(f, "{d}"),
        }
    }
}

impl Serialize for Keep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Keep {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Keep".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["integer", "string"], "description": "A count (1000) or an age (30d)" })
    }
}

/// Guarded sessions (`runbook session …`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Every command of a session is killed after this long. Default: 120s.
    pub timeout: HumanDuration,
    /// Resource limits of every command (`cpu_quota` runs it under `systemd-run --scope`).
    #[serde(flatten)]
    pub limits: Limits,
    /// Extra read-only commands: wildcard patterns over the command line (`df *`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<String>,
    /// Approvers by name, each with an SSH public key line (`ssh-ed25519 AAAA… alice@laptop`).
    /// When set, every approval must be signed with one of these keys (`ssh-keygen -Y sign`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvers: BTreeMap<String, String>,
    /// How much of a command's output is shown and kept (`sessions.limits.output`): the
    /// first quarter and the last three quarters of it, the rest omitted with a marker.
    /// Default: 64K.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ByteSize>,
    /// Run read-only commands in the kernel's read-only sandbox (Landlock, capabilities
    /// dropped). `off` only where the kernel has no Landlock: every record then says
    /// `unsandboxed`. Default: on.
    #[serde(default = "on")]
    pub sandbox: bool,
}

fn on() -> bool {
    true
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            timeout: HumanDuration(std::time::Duration::from_secs(120)),
            limits: Limits::default(),
            read_only: Vec::new(),
            approvers: BTreeMap::new(),
            output: None,
            sandbox: true,
        }
    }
}

/// Incident notes (`incidents: { dir, template }`).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentsConfig {
    /// The directory of incident notes (markdown), e.g. `docs/operations/incidents`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The template a new note starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
    /// The severities an incident may have, with what each means.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub severities: BTreeMap<String, IncidentSeverity>,
    /// Checks that must pass before an incident closes (the public surface works again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<String>,
    /// How an incident may be classified. Default: storage, stale-state, config-drift,
    /// compatibility, other.
    #[serde(default)]
    pub classes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct IncidentSeverity {
    pub meaning: String,
    /// How soon someone must respond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond_within: Option<HumanDuration>,
    /// Channels told when an incident of this severity opens, and of each status update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// The audit log's checkpoints.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Key file from `runbook audit keygen`: `audit checkpoint` signs with it, and the daemon
    /// too every `checkpoint_every`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<PathBuf>,
    /// Public keys (hex) whose checkpoints `audit verify` trusts. Without any, a checkpoint
    /// is only checked against the key it carries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<String>,
    /// How often the daemon signs a checkpoint (needs `signing_key`). Default: 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<HumanDuration>,
}

/// Where the HTTP API listens and what it serves without a token.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on. Default: 127.0.0.1:8923. A non-loopback address needs a token.
    #[serde(default)]
    pub listen: String,
    /// Paths served without a token. Default: [/healthz, /v1/live].
    #[serde(default)]
    pub public: Vec<String>,
    /// Requests per second per client (token, or address without one); `None`: no limit.
    /// Default: 50 per second with bursts of 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8923";

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: DEFAULT_API_LISTEN.into(),
            public: vec!["/healthz".into(), "/v1/live".into()],
            rate_limit: Some(RateLimit {
                per_second: 50,
                burst: 100,
            }),
        }
    }
}
