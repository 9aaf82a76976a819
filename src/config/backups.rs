//! The `backups:` section: named targets, their sources, destination and retention.

use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;

use super::program::{Program, RunArgs};
use super::units::HumanDuration;

/// Default share of the median size of the last archives under which a new one raises an alert.
pub const DEFAULT_MIN_SIZE_RATIO: f64 = 0.5;
/// Default time allowed to a dump command (`pg_dump`, `command:`).
pub const DEFAULT_DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

/// One backup target: what goes into each archive, where archives go, how many stay.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupTarget {
    /// Restore setuid, setgid and world-writable modes as archived (default: stripped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_special_modes: bool,
    /// What each archive holds, in order.
    pub sources: Vec<Source>,
    /// Directory of the archives (created if missing).
    pub dest: PathBuf,
    /// Which archives `backup prune` keeps. Default: the last 7.
    #[serde(default)]
    pub keep: KeepPolicy,
    /// An archive smaller than this share of the median of the last 7 raises an alert
    /// (an empty dump that "succeeded"). Default: 0.5.
    pub min_size_ratio: f64,
    /// zstd level, 1 (fastest, the default: about 300 MB/s on two cores) to 19.
    pub level: i32,
    /// Time allowed to each dump command (pg_dump, command sources). Default: 2h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// What `backup drill` runs against the restored data.
    #[serde(default)]
    pub drill: DrillConfig,
    /// Commands `backup restore --execute` runs before replacing anything (stop the units).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre: Vec<Program>,
    /// Commands run after the data is back (start the units).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post: Vec<Program>,
    /// Checks (names under `checks:`) that must pass after a restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restore_checks: Vec<String>,
    /// Where `backup push` copies archives to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<Offsite>,
    /// age recipients (`age1…`): archives are written as `<name>.tar.zst.age`, encrypted to
    /// them. Verify, drill and restore decrypt with `identity_file`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypt_to: Vec<String>,
    /// The age identity file that decrypts this target's archives (kept off the host if
    /// only drills elsewhere need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
}

/// An offsite copy: an S3-compatible bucket or another directory.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Offsite {
    /// `s3://bucket/prefix`, or a directory (`/mnt/offsite/app`, `file:///mnt/offsite/app`).
    pub url: String,
    /// An S3-compatible server (MinIO, Ceph, Wasabi, …): `https://s3.example.net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Default: us-east-1.
    #[serde(default)]
    pub region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// Redacted in `config show` when it comes from an env file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// age recipients (`age1…`): offsite copies are encrypted to them (`<archive>.age`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypt_to: Vec<String>,
    /// An age identity file, to decrypt offsite copies on `pull` and `drill --from-offsite`
    /// (it can live off the host and be brought for a restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// Upload at most this many bytes per second (`10MiB`), so a push leaves the uplink to
    /// the service. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate: Option<super::units::ByteSize>,
}

/// The restore drill of a target.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// Commands run in the restored tree (as working directory), with `RUNBOOK_DRILL_DIR`
    /// set to it and, for a target with a postgres source, `RUNBOOK_DRILL_DATABASE_URL` set
    /// to a scratch database the dump was restored into. Each must exit 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<DrillCheck>,
    /// Directory of the evidence files. Default: `evidence/drills` next to runbook.yaml.
    #[serde(default)]
    pub evidence_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillCheck {
    /// Name in the evidence. Default: the command line.
    pub name: String,
    #[serde(flatten)]
    pub program: Program,
    /// Default: 10m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

/// One source of an archive.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A SQLite database, snapshotted through SQLite itself, consistent while the application
    /// writes: streamed in one read transaction (WAL mode) or copied with the online backup
    /// API (rollback-journal modes).
    Sqlite(PathBuf),
    /// A PostgreSQL database URL, dumped with `pg_dump --format=custom`.
    Postgres(String),
    /// A directory tree: files, directories, symlinks, modes and mtimes.
    Dir(DirSource),
    /// A command whose standard output is the dump.
    Command(CommandSource),
}

/// `recover:`: what `runbook recover` does after the data is back in the new root.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverConfig {
    /// Commands that start the services, or stand-ins for them, run in the root (working
    /// directory) with `RUNBOOK_RECOVER_ROOT` set to it, in order; each must exit 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start: Vec<Program>,
    /// The post-recovery validation, run the same way after `start`; each must exit 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<DrillCheck>,
    /// The recovery time the whole rebuild should stay under; longer is reported (exit 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_goal: Option<HumanDuration>,
    /// Directory of the evidence files. Default: `evidence/recover` next to runbook.yaml.
    #[serde(default)]
    pub evidence_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirSource {
    pub path: PathBuf,
    /// Wildcards (`*`, `?`): a pattern without `/` matches any name in the tree, one with `/`
    /// the path relative to `path`. An excluded directory is skipped whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    /// argv, or a string split like a shell would (no shell features).
    pub run: RunArgs,
    /// File name of the dump inside the archive. Default: `command-N.out`.
    #[serde(default)]
    pub name: String,
}

impl Source {
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Sqlite(_) => "sqlite",
            Source::Postgres(_) => "postgres",
            Source::Dir(_) => "dir",
            Source::Command(_) => "command",
        }
    }
}

/// Retention: an archive stays if any rule keeps it. The newest verified archive always stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    /// The newest N archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    /// The newest archive of each of the last N days that have one (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// The newest archive of each of the last N ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// The newest archive of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
}

impl KeepPolicy {
    pub fn is_empty(&self) -> bool {
        self.last.is_none() && self.daily.is_none() && self.weekly.is_none() && self.monthly.is_none()
    }
}
