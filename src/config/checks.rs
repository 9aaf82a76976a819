//! Checks as configured: what to probe and what counts as healthy.
//!
//! Owns the validated shape of the `checks:` section (one struct per probe kind), its
//! serialization and JSON Schema. Probing itself lives in `check/`. Invariant: regexes and
//! JSON pointers here have been compiled/validated, references (`depends_on`) resolve.

use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

use super::program::Program;
use super::run_on::RunOn;
use super::units::{ByteSize, HumanDuration, Percent};

/// Timeout of a check when it sets none.
pub const DEFAULT_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// A named check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    #[serde(flatten)]
    pub probe: Probe,
    /// The probe gives up after this long and counts as failing. Default: 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Severity of the alert this check opens. Default: warning.
    #[serde(default = "warning")]
    pub severity: Severity,
    /// Consecutive failures before an alert opens. Default: 1.
    #[serde(default = "one")]
    pub fail_after: u32,
    /// Consecutive successes before the alert resolves. Default: 1.
    #[serde(default = "one")]
    pub recover_after: u32,
    /// Checks this one depends on: while one of them fails, this one's failure is recorded
    /// but not notified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Labels carried by the alert (and used by notification routes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Fleet mode: `any` (default) probes it wherever the profile naming it runs, once per
    /// tick; `all` or host names and labels probe it on each of those hosts at the profile's
    /// ticks, judged per host (a disk, a local service).
    #[serde(default, skip_serializing_if = "RunOn::is_any")]
    pub run_on: RunOn,
}

fn warning() -> Severity {
    Severity::Warning
}
fn one() -> u32 {
    1
}

impl Check {
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout.map(|d| d.0).unwrap_or(DEFAULT_CHECK_TIMEOUT)
    }
}

/// What a check probes: exactly one of these keys.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    Http(HttpProbe),
    Tcp(TcpProbe),
    Command(CommandProbe),
    Systemd(SystemdProbe),
    Disk(DiskProbe),
    Cert(CertProbe),
    FileAge(FileAgeProbe),
    GitRef(GitRefProbe),
    Sql(SqlProbe),
    Heartbeat(HeartbeatProbe),
    BackupAge(BackupAgeProbe),
    /// The host against `baseline:` (`drift: {}`): fails while anything drifted.
    Drift(DriftProbe),
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Command(_) => "command",
            Probe::Systemd(_) => "systemd",
            Probe::Disk(_) => "disk",
            Probe::Cert(_) => "cert",
            Probe::FileAge(_) => "file_age",
            Probe::GitRef(_) => "git_ref",
            Probe::Sql(_) => "sql",
            Probe::Heartbeat(_) => "heartbeat",
            Probe::BackupAge(_) => "backup_age",
            Probe::Drift(_) => "drift",
        }
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HttpProbe {
    pub url: String,
    /// Default: GET.
    #[serde(default)]
    pub method: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Follow redirects (up to 10). Default: true.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Verify the server's certificate. Default: true.
    #[serde(default = "yes")]
    pub tls_verify: bool,
    /// Extra CA certificate (PEM) to trust, e.g. an internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Keep the connection for the next probe (default: a fresh connection every probe, as a
    /// user's first request makes it: the connect and TLS time count, and a listener that no
    /// longer accepts fails the probe).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reuse_connection: bool,
    #[serde(default)]
    pub expect: HttpExpect,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct HttpExpect {
    /// Accepted statuses: 200, [200, 204], "2xx", "200-399". Default: 2xx.
    #[serde(default)]
    pub status: StatusSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// JSON pointer → expected value, e.g. { "/status": "ok" }.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Header → expected value; `"*"` means only that it is present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Slower responses count as failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<HumanDuration>,
}

/// Inclusive status ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(pub Vec<(u16, u16)>);

impl Default for StatusSet {
    fn default() -> Self {
        StatusSet(vec![(200, 299)])
    }
}

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// One item: `200`, `2xx`, `200-299`.
    pub fn parse_item(text: &str) -> Result<(u16, u16), String> {
        let t = text.trim();
        let bad = || format!("`{t}` is not a status (200), a class (2xx) or a range (200-399)");
        if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            let d: u16 = class.parse().map_err(|_| bad())?;
            return if (1..=5).contains(&d) {
                Ok((d * 100, d * 100 + 99))
            } else {
                Err(bad())
            };
        }
        if let Some((a, b)) = t.split_once('-') {
            let (a, b): (u16, u16) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            return if (100..=599).contains(&a) && a <= b && b <= 599 {
                Ok((a, b))
            } else {
                Err(bad())
            };
        }
        let n: u16 = t.parse().map_err(|_| bad())?;
        if (100..=599).contains(&n) {
            Ok((n, n))
        } else {
            Err(bad())
        }
    }
}

impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

impl Serialize for StatusSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for StatusSet {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusSet".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A status (200), a class (\"2xx\"), a range (\"200-399\"), or a list of them",
            "anyOf": [
                { "type": "integer" },
                { "type": "string" },
                { "type": "array", "items": { "type": ["integer", "string"] } }
            ]
        })
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TcpProbe {
    /// host:port
    pub address: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CommandProbe {
    #[serde(flatten)]
    pub program: Program,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub expect: CommandExpect,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct CommandExpect {
    /// Expected exit code. Default: 0.
    #[serde(default)]
    pub exit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_regex: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SystemdProbe {
    pub unit: String,
    /// Expected ActiveState (active, inactive, failed…), optionally with SubState:
    /// `active/running`. Default: active.
    #[serde(default)]
    pub expect: String,
}

/// Free space: a percentage (`10%`) or an absolute amount (`5G`; a plain number for inodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threshold {
    Percent(Percent),
    Amount(u64),
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Percent(p) => write!(f, "{p}"),
            Threshold::Amount(n) => write!(f, "{}", ByteSize(*n)),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Threshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Threshold".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "integer"], "description": "10% or an amount: 5G, 100000" })
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiskProbe {
    pub path: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_inodes: Option<Threshold>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CertProbe {
    /// host:port
    pub host: String,
    /// Name sent in SNI and checked against the certificate. Default: the host part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Fail when the certificate expires in fewer days. Default: 14.
    #[serde(default)]
    pub min_days: u32,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct DriftProbe {}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BackupAgeProbe {
    /// A backup target (a key of `backups:`).
    pub target: String,
    /// Its newest verified archive must be younger than this.
    pub max_age: HumanDuration,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FileAgeProbe {
    /// A file, or a pattern with `*` and `?` in its last component: /var/backups/app-*.tar.zst
    pub path: String,
    /// The newest matching file must be younger than this.
    pub max_age: HumanDuration,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct GitRefProbe {
    pub repo: PathBuf,
    /// A commit (full or abbreviated sha), a ref (`refs/tags/v1.2`, `main`), or a tag pattern
    /// with `*` (`deploy-*`) that a tag pointing at HEAD must match.
    pub expect: String,
    /// Also require a clean working tree (no tracked changes).
    #[serde(default)]
    pub clean: bool,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SqlProbe {
    /// `sqlite:///path/app.db` (opened read-only) or `postgres://user@host/db` (queried in a
    /// read-only transaction).
    pub url: String,
    /// A query returning one row with one value.
    pub query: String,
    pub expect: SqlExpect,
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct SqlExpect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

/// Keeps `ByteSize` referenced for thresholds given as sizes.
pub fn size_threshold(text: &str) -> Result<Threshold, String> {
    if text.trim().ends_with('%') {
        Percent::parse(text).map(Threshold::Percent)
    } else {
        ByteSize::parse(text).map(|b| Threshold::Amount(b.0))
    }
}

/// A dead-man's switch: the job pings `POST /ping/NAME`; no ping for `period + grace` fails.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HeartbeatProbe {
    /// How often the job is expected to ping.
    pub period: HumanDuration,
    /// Extra time before a missing ping counts. Default: 10% of period, at least 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<HumanDuration>,
    /// Secret the job puts in the ping URL (`?key=…`); without it, pings need an API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl HeartbeatProbe {
    pub fn grace(&self) -> std::time::Duration {
        self.grace
            .map(|g| g.0)
            .unwrap_or_else(|| (self.period.0 / 10).max(std::time::Duration::from_secs(60)))
    }
}

/// A regex for output and bodies: `^` and `$` match at line starts and ends, as with grep,
/// so `^ready$` matches a command that prints `ready` and a newline.
pub fn line_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).multi_line(true).build()
}
