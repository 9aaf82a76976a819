//! The command line: parse, call the domain, render. No business logic lives here.
//!
//! Owns the clap definitions (the user's vocabulary, a public contract: names and flags do
//! not change), one dispatch `match`, and rendering. Each command group has its own file.

mod alerts;
mod audit;
mod backup;
mod check;
mod config_cmd;
mod daemon;
mod db;
pub mod error;
mod jobs;
mod notify;
pub mod output;
mod schedule;
mod serve;
mod session;
mod state;

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

pub use error::CliError;
use output::Printer;

use crate::config::{self, Config};
use crate::store::Store;

const ABOUT: &str = "Executable runbooks for single-host services";
const LONG_ABOUT: &str = "\
runbook runs the operations of a service from one file, runbook.yaml: profiles of tasks on cron
schedules that never overlap themselves, a jobs ledger of every run with stale-run recovery and
retry, script state, and a hash-chained audit log of every change, all in one SQLite file.

Commands that change state are dry runs unless given --apply. Every command takes --json.

Exit status: 0 ok · 1 a task, check or verification failed · 2 usage or configuration error ·
3 internal error (state file, I/O).";

const AFTER_HELP: &str = "\
Configuration is read from --config FILE, else $RUNBOOK_CONFIG, else ./runbook.yaml, else
/etc/runbook/runbook.yaml. Start from examples/quickstart.yaml.

Examples:
  runbook config check                  validate runbook.yaml, every error with file:line:col
  runbook list                          profiles, cadence, next and last run
  runbook run hourly --dry-run          print exactly what would run
  runbook jobs recover-stale --older-than-minutes 180          dry run; add --apply to act
  runbook audit verify                  check the hash chain of the audit log";

#[derive(Debug, Parser)]
#[command(name = "runbook", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Configuration file
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr [default: text on a terminal, json under systemd]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Record alerts but send no notification (the log says so); the log level never does this
    #[arg(long, global = true)]
    pub no_notify: bool,
    /// Log level: error, warn, info, debug, trace [default: info for the daemon, warn otherwise]
    #[arg(long, global = true, env = "RUNBOOK_LOG", value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler: every enabled profile at its cron times (systemd Type=notify)
    ///
    /// Profiles run concurrently, each on its own thread; a profile never overlaps itself (a
    /// tick that finds it still running is recorded as `skipped`). SIGHUP reloads runbook.yaml
    /// after validating it (a bad file is logged and ignored). SIGTERM or SIGINT stop
    /// scheduling, let running tasks finish for --shutdown-grace, then kill them and record
    /// them as `failed (shutdown)`. With NOTIFY_SOCKET set, sends READY=1, WATCHDOG=1 and
    /// STOPPING=1. One daemon per state file.
    Daemon(DaemonArgs),
    /// Ask the running daemon to reload runbook.yaml (validated first; a bad file is not applied)
    Reload,
    /// Serve the HTTP API alone over the same state (the daemon serves it too)
    ///
    /// Health, readiness, alerts, runs and checks as JSON. Stopping it does not stop scheduled
    /// monitoring, and the other way round. Everything but api.public paths needs a token.
    Serve {
        /// Address to listen on [default: api.listen, 127.0.0.1:8923]; port 0 takes a free
        /// port, which the log line `serving the API … addr=` names
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// API bearer tokens: create (shown once), list, revoke
    #[command(subcommand)]
    Token(TokenCmd),
    /// Validate or print the configuration
    #[command(subcommand)]
    Config(ConfigCmd),
    /// List profiles: cadence, task count, next run, last run
    List,
    /// Probe checks now (all, or the named ones) and print their outcomes; exit 1 if any fails
    ///
    /// Checks run concurrently, each bounded by its timeout. Outcomes are recorded in the
    /// state file (check history); failing checks open alerts (and passing ones resolve
    /// them), and the notifications this queues are sent before the command exits.
    Check {
        /// Checks to run [default: every check]
        names: Vec<String>,
    },
    /// Print the crontab that runs the same schedule through `runbook run`
    RenderCrontab(RenderArgs),
    /// Run a profile now (skipped if a run of it is still going)
    ///
    /// Runs the profile's pre-run git sync (if any), then every task in order, each bounded by
    /// its timeout and limits; a failed task does not stop the ones after it. Records one run
    /// for the profile and one per task in the jobs ledger. Exit 1 if any task failed; a start
    /// skipped because the profile is already running exits 0.
    ///
    /// --dry-run prints every step with the exact command, working directory, timeout and
    /// limits, and runs and writes nothing (not even the state file).
    Run(RunArgs),
    /// Alerts raised by failing checks and tasks: list, silence, acknowledge
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// The jobs ledger: list, show, recover stale runs, retry
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Script state: namespaced keys kept between runs
    #[command(subcommand)]
    State(StateCmd),
    /// The hash-chained audit log
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Notification channels: send a test message, see the outbox and delivery health
    #[command(subcommand)]
    Notify(NotifyCmd),
    /// The state file's schema version and migrations
    #[command(subcommand)]
    Db(DbCmd),
    /// Guarded operator sessions: read-only diagnosis by default, changes only when approved
    ///
    /// `session start` opens a session (diagnostic or maintenance) and prints its id for
    /// RUNBOOK_SESSION. `session exec -- CMD ARGS…` runs a command under it: read-only
    /// commands run; state-changing ones run only in a maintenance session with an approved
    /// change request naming exactly that command (refused with exit 2 otherwise, showing the
    /// request to file); persistent privileged shells never run. Every command is bounded by
    /// sessions.limits, its output redacted, and recorded with its decision in the audit log.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Change requests: what a maintenance session may run, approved by another person
    #[command(subcommand)]
    Change(ChangeCmd),
    /// Backups that are known to restore: create, verify, drill, restore, prune, offsite copies
    ///
    /// Each target under `backups:` in runbook.yaml names its sources (SQLite databases as
    /// consistent snapshots taken through SQLite, PostgreSQL through pg_dump, directory trees, any dump
    /// command), a destination directory and a retention. An archive is one
    /// `<target>-<UTC time>.tar.zst` file with `manifest.json` first and a `.sha256` sidecar.
    /// `verify` reads every byte back; `drill` restores into scratch space, checks the data and
    /// times it (the recovery-time figure); `restore` prints its plan unless `--execute`;
    /// `prune` lists what goes unless `--apply`; `push` and `pull` keep an offsite copy.
    #[command(subcommand)]
    Backup(BackupCmd),
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Open a session; prints its id (export it as RUNBOOK_SESSION)
    Start {
        /// diagnostic (read-only) or maintenance (approved changes)
        #[arg(long, default_value = "diagnostic")]
        mode: String,
        /// Why: the issue being diagnosed
        #[arg(long)]
        reason: String,
        /// The incident this session belongs to
        #[arg(long, value_name = "ID")]
        incident: Option<String>,
    },
    /// Run one command under the session (no shell: pipes and redirections are refused)
    Exec {
        /// The session [default: RUNBOOK_SESSION]
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
        /// The command and its arguments, after `--`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// The session: mode, reason, commands so far
    Status {
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
    },
    /// Close the session and print the end-of-session record
    End {
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
        /// The next safest step, for the record
        #[arg(long, value_name = "TEXT")]
        next: Option<String>,
    },
    /// Recent sessions, newest first
    List,
    /// Every command of a session with its decision, exit code and redacted output, in order
    Show { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ChangeCmd {
    /// Ask to run one state-changing command in a session; prints the request's id
    Request {
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
        /// What the change is for
        #[arg(long)]
        objective: String,
        /// The exact command, as one string (split like a shell would, no shell features)
        #[arg(long)]
        command: String,
        /// What it affects
        #[arg(long)]
        impact: String,
        /// How to undo it
        #[arg(long)]
        rollback: String,
        /// How many times the approval may be used
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// Change requests, newest first
    List,
    /// One request in full
    Show {
        id: i64,
        /// Print only the text an approver signs (`| ssh-keygen -Y sign -n runbook-change`)
        #[arg(long)]
        payload: bool,
    },
    /// Approve a pending request (not your own); on a terminal, type its id to confirm
    ///
    /// With `sessions.approvers` set, the approval must be signed with an approver's SSH key:
    /// `runbook change show ID --payload | ssh-keygen -Y sign -f ~/.ssh/id_ed25519 -n
    /// runbook-change > ID.sig`, then `runbook change approve ID --signature ID.sig`.
    Approve {
        id: i64,
        /// An `ssh-keygen -Y sign` signature of the request's payload (a file, or - for stdin)
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
    /// Deny a pending request
    Deny {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write a new archive of TARGET, verify nothing yet, record it (exit 0 when written)
    ///
    /// Snapshots the sources, writes the archive under a temporary name, fsyncs it, writes
    /// the sidecar, then renames it into place: an interrupted create leaves nothing that
    /// list shows or verify accepts, and the next create removes its leftovers. Records the
    /// archive and an audit event with its SHA-256. An archive under `min_size_ratio` of the
    /// median size of the last 7 opens an alert. Shows progress on a terminal.
    Create {
        /// Target name (a key of `backups:`)
        target: String,
    },
    /// Recorded archives, newest first: size, age, last verification
    List {
        /// Only this target's archives
        target: Option<String>,
    },
    /// Read every byte of an archive and check it; exit 1 naming the first problem
    ///
    /// Checks the file against its sidecar, every entry against the manifest (size and
    /// SHA-256, nothing missing or extra), runs PRAGMA integrity_check on each SQLite
    /// snapshot restored to a scratch directory and pg_restore --list on each PostgreSQL
    /// dump. The outcome is recorded with the archive.
    Verify {
        /// Path of the archive
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        archive: Option<PathBuf>,
        /// Verify the newest archive of this target instead
        #[arg(long, value_name = "TARGET")]
        latest: Option<String>,
    },
    /// Restore an archive into scratch space, check the data, measure the recovery time
    ///
    /// Phases, each timed: the archive against its sidecar, every entry unpacked and
    /// checked against the manifest, PRAGMA integrity_check of each SQLite database, each
    /// PostgreSQL dump restored into a scratch database (dropped after), then the target's
    /// drill.checks run in the restored tree with RUNBOOK_DRILL_DIR (and
    /// RUNBOOK_DRILL_DATABASE_URL). Writes evidence JSON under drill.evidence_dir and records
    /// the outcome with the archive. Exit 1 if any phase or check failed.
    Drill {
        /// Path of the archive
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        archive: Option<PathBuf>,
        /// Drill the newest archive of this target instead
        #[arg(long, value_name = "TARGET")]
        latest: Option<String>,
        /// Fetch the archive from the target's offsite copy first (ARCHIVE is then a file
        /// name there; with --latest, the newest one there)
        #[arg(long)]
        from_offsite: bool,
    },
    /// Copy archives not yet offsite (by SHA-256) to the target's `offsite:` store
    ///
    /// S3-compatible buckets (s3://bucket/prefix, with `endpoint` for MinIO, Ceph, Wasabi…)
    /// or another directory. Each archive is uploaded in parts, then its sidecar: an archive
    /// counts as offsite once its sidecar is there with the same hash, so an interrupted push
    /// is resumed by the next one, from its last stored part. A copy there under the same hash
    /// whose size cannot be the archive's (cut short) is pushed again (listed as replaced).
    /// Exit 1 if any archive could not go (listed with the reason); the others still do.
    Push {
        /// Target name (a key of `backups:`)
        target: String,
        /// Also read back every copy offsite and hash it (decrypting one encrypted on the way,
        /// with offsite.identity_file); a copy that is not its archive any more is pushed
        /// again, or listed as damaged (exit 1) when its archive is no longer here.
        /// Downloads them all: run it now and then, not every push
        #[arg(long)]
        check: bool,
    },
    /// Copy offsite archives that are not here back into the target's `dest`
    ///
    /// Each is written under a temporary name, hashed as it arrives, checked against its
    /// offsite sidecar, then renamed and recorded.
    Pull {
        /// Target name (a key of `backups:`)
        target: String,
        /// Only this archive (a file name offsite)
        #[arg(long, value_name = "NAME")]
        archive: Option<String>,
    },
    /// Put an archive's data back where it came from (a plan unless --execute)
    ///
    /// Without --execute, prints what is replaced, where the safety copy of the current data
    /// goes and which pre/post commands run, and touches nothing. With --execute: a
    /// preflight (archive matches its sidecar; destinations and the safety directory are
    /// writable) that stops before anything changes; the target's pre commands; safety
    /// copies; the archive unpacked and checked; each source put back; post commands; then
    /// restore_checks. Exit 1 if anything failed.
    Restore {
        /// Path of the archive
        archive: PathBuf,
        /// Do it (default: print the plan)
        #[arg(long)]
        execute: bool,
    },
    /// Remove archives the target's `keep:` policy does not keep (dry run unless --apply)
    ///
    /// keep: { last, daily, weekly, monthly }: an archive stays if any rule keeps it (UTC
    /// days, ISO weeks, months). The newest verified archive always stays, and so does the
    /// one a scheduled drill takes next, until it is drilled. Records of archives whose file
    /// is gone are listed as gone and forgotten; when none of the target's archives is there
    /// (a backup disk not mounted) --apply refuses. An archive that cannot be removed is
    /// listed with the reason (exit 1); the others still go. One backup.pruned audit event.
    Prune {
        /// Target name (a key of `backups:`)
        target: String,
        /// Delete the archives listed (default: only list them)
        #[arg(long)]
        apply: bool,
        /// With --apply: forget the records of missing archives even when none of the
        /// target's archives is there (removed on purpose); otherwise that is refused, as a
        /// backup disk that is not mounted
        #[arg(long)]
        forget_missing: bool,
    },
    /// Make an age key pair for encrypted archives: the identity file and its recipient
    ///
    /// Writes the identity (the private key) to --out with mode 0600, refusing a file that
    /// exists, and prints the recipient (`age1…`) to put under the target's `encrypt_to` (or
    /// `offsite.encrypt_to`). Keep a copy of the identity file off this host: without it no
    /// encrypted archive can be read back. Needs no configuration.
    Keygen {
        /// Where to write the identity file (must not exist)
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// After SIGTERM, how long running tasks may go on before they are killed
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: config::HumanDuration,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Path of the runbook binary in the crontab lines [default: this binary]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Profile to run
    pub profile: String,
    /// Print every task and the exact command it would run; run nothing, write nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration; report every error with file:line:col (exit 2)
    Check,
    /// Print the resolved configuration, secrets redacted
    Show,
    /// Print the JSON Schema of runbook.yaml, for editors
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Recent runs, newest first
    List {
        /// How many runs to show
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs with this status: running, ok, failed, skipped, stale, retryable
        #[arg(long)]
        status: Option<crate::store::RunStatus>,
        /// Only runs of this profile
        #[arg(long)]
        profile: Option<String>,
    },
    /// One run with its output excerpt (and its tasks, for a profile run)
    Show { id: i64 },
    /// Find runs still marked running whose process is gone or that are too old; --apply marks them retryable
    ///
    /// A run is stale when it is still `running` in the ledger but the runbook process that
    /// recorded it is gone on this host (after a reboot, a crash or kill -9), or when it
    /// started more than --older-than-minutes ago on any host. Without --apply the stale runs
    /// are only listed. With --apply each is marked `retryable`, with one audit event each,
    /// in one transaction; then `runbook jobs retry ID --apply` runs it again.
    RecoverStale {
        /// Runs started longer ago than this are stale even if their process seems alive
        #[arg(long, value_name = "N")]
        older_than_minutes: u64,
        /// Mark them retryable (default: only list them)
        #[arg(long)]
        apply: bool,
    },
    /// Run a failed or retryable run again, linked to the original
    ///
    /// A task run re-runs that task, a profile run the whole profile, as configured now (so a
    /// fix deployed since runs), under the profile's non-overlap lock. The new run records
    /// `retry_of` = ID; `jobs show ID` lists its retries. Without --apply prints what would run.
    Retry {
        id: i64,
        /// Run it (default: print what would run)
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// Open alerts first, then resolved ones, newest first
    List {
        /// Only alerts with this status: firing, silenced, resolved
        #[arg(long)]
        status: Option<crate::store::AlertStatus>,
        /// Only alerts from this source: check, task, channel
        #[arg(long)]
        source: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Silence an alert key or a check name for a while (dry run unless --apply)
    ///
    /// A silenced alert is kept and still tracked, but not notified. Open alerts that match
    /// become `silenced`; alerts that open while the silence lasts open `silenced`.
    Silence {
        /// An alert key (web@vps-1) or a check name (web)
        target: String,
        /// How long: 30m, 2h, 1d
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: config::HumanDuration,
        /// Why; recorded in the audit log
        #[arg(long)]
        reason: String,
        #[arg(long)]
        apply: bool,
    },
    /// Acknowledge the open alerts matching an alert key or check name
    Ack { target: String },
}

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Print a key's value (exit 1 if it is not set)
    Get { namespace: String, key: String },
    /// Set a key (dry run unless --apply)
    Set {
        namespace: String,
        key: String,
        value: String,
        #[arg(long)]
        apply: bool,
    },
    /// List keys, optionally of one namespace
    List { namespace: Option<String> },
    /// Import legacy text cache files from a directory; existing keys are kept unless --overwrite
    ///
    /// Each regular file is one key (its name without extension; the value is its content
    /// without the final newline), or, when every line is `key=value`, one key per line.
    /// Hidden files are ignored; files over 1 MiB or not UTF-8 are reported and skipped.
    /// Idempotent: a second identical import writes nothing. Dry run unless --apply.
    Import {
        dir: PathBuf,
        /// Namespace of the imported keys [default: the directory's name]
        #[arg(long)]
        namespace: Option<String>,
        /// Replace keys that already hold a different value
        #[arg(long)]
        overwrite: bool,
        /// Write (default: print the plan)
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Recent audit events, newest first
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only events of this kind (e.g. run.finished, run.recovered, state.set)
        #[arg(long)]
        kind: Option<String>,
    },
    /// Check the hash chain and every checkpoint: exit 1 naming what is wrong
    ///
    /// Recomputes every event's hash from its content and the previous event's hash. An
    /// edited, deleted or reordered event breaks the chain at that event; the report names
    /// its sequence number and what is wrong. Then holds every signed checkpoint (those in
    /// the state file, and the one given with --against) against the chain: a checkpoint
    /// past the end of the log shows a cut tail, one whose hash differs shows a rewrite.
    /// Only a checkpoint kept elsewhere can show a cut tail: whoever cuts the log can delete
    /// the checkpoints in the same file.
    Verify {
        /// A checkpoint kept elsewhere: a file, or an http(s) URL serving it
        #[arg(long, value_name = "FILE|URL")]
        against: Option<String>,
        /// Trust only checkpoints signed by this key (hex; adds to audit.public_keys)
        #[arg(long = "public-key", value_name = "HEX")]
        public_keys: Vec<String>,
    },
    /// Make a signing key for checkpoints: writes the private key, prints the public key
    ///
    /// The key file (mode 0600) is what `audit checkpoint` signs with; it can live off the
    /// host. Put the printed public key under audit.public_keys where logs are verified.
    Keygen {
        /// Where to write the private key (must not exist)
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Sign (seq, head hash, time) of the chain as it is now, and keep the checkpoint
    ///
    /// Refuses a chain that does not verify. The checkpoint is kept in the state file and
    /// printed; copy it somewhere else (--out, a ticket, a chat) so a cut tail can be shown
    /// later with `audit verify --against`.
    Checkpoint {
        /// Signing key [default: audit.signing_key]
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
        /// Also write the checkpoint to this file
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Every event in seq order, streamed: a JSON array, or one event per line
    Export {
        /// json or jsonl
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Only events at or after this time (RFC 3339)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Counts by kind and by actor, the time span, and whether the chain verifies
    Summary,
    /// Move events older than a date into a compressed file (dry run unless --apply)
    ///
    /// The file (`audit-<first>-<last>.jsonl.zst`) holds the events exactly as hashed; the
    /// state file keeps its last event's seq and hash as the anchor the rest of the chain
    /// continues from, and the file's SHA-256, so `audit verify` still checks the chain, and
    /// the file too when it is there. Refuses a chain that does not verify.
    Archive {
        /// Events before this time (RFC 3339, or a date: 2026-01-01)
        #[arg(long, value_name = "DATE")]
        before: String,
        /// Where the files go [default: next to the state file, <state>.audit/]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Do it (default: say what would move)
        #[arg(long)]
        apply: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once and only its hash is kept
    Create {
        name: String,
        /// read (GET only) or write
        #[arg(long, default_value = "read")]
        scope: String,
    },
    /// Tokens by name and scope (never the tokens themselves)
    List,
    /// Revoke a token; requests with it are refused from then on
    Revoke { name: String },
}

#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Send one test message to a channel now and report the result (exit 1 if it failed)
    Test { channel: String },
    /// The outbox, newest first: what was queued, sent, retried or given up
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Per channel: last success, last error, failing since
    Health,
}

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Schema version of the state file: current and head
    Status,
    /// Apply pending migrations (dry run unless --apply)
    Migrate {
        #[arg(long)]
        apply: bool,
    },
}

fn parse_duration(s: &str) -> Result<config::HumanDuration, String> {
    config::HumanDuration::parse(s)
}

/// What a command reports when it did not fail outright.
pub enum Outcome {
    Ok,
    /// Exit 1: a task, check or verification failed (the output already says which).
    Failed,
    /// This exit status (a session command's own, or 2 for a refused one).
    Code(u8),
}

pub struct Ctx {
    pub config_path: Option<PathBuf>,
    pub out: Printer,
    pub no_notify: bool,
}

impl Ctx {
    pub fn load(&self) -> Result<Config, CliError> {
        let path = config::discover(self.config_path.as_deref())?;
        let mut config = config::load(&path)?;
        if self.no_notify {
            config.notify.enabled = false;
            tracing::warn!("--no-notify: alerts are recorded, no notification is queued or sent");
        }
        Ok(config)
    }

    pub fn open_store(&self, config: &Config) -> Result<Store, CliError> {
        Ok(Store::open(&config.state.path)?)
    }
}

pub fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    let cx = Ctx {
        config_path: cli.config,
        out: Printer { json: cli.json },
        no_notify: cli.no_notify,
    };
    match cli.command {
        Command::Daemon(args) => schedule::daemon(&cx, args),
        Command::Reload => schedule::reload(&cx),
        Command::Serve { listen } => serve::serve(&cx, listen),
        Command::Token(cmd) => serve::token(&cx, cmd),
        Command::Config(cmd) => config_cmd::run(&cx, cmd),
        Command::List => schedule::list(&cx),
        Command::Check { names } => check::run(&cx, names),
        Command::RenderCrontab(args) => schedule::render_crontab(&cx, args),
        Command::Run(args) => schedule::run(&cx, args),
        Command::Alerts(cmd) => alerts::run(&cx, cmd),
        Command::Jobs(cmd) => jobs::run(&cx, cmd),
        Command::State(cmd) => state::run(&cx, cmd),
        Command::Audit(cmd) => audit::run(&cx, cmd),
        Command::Notify(cmd) => notify::run(&cx, cmd),
        Command::Db(cmd) => db::run(&cx, cmd),
        // Needs no configuration: a key is made before the config that names it.
        Command::Backup(BackupCmd::Keygen { out }) => backup::keygen(&cx, &out),
        Command::Backup(cmd) => backup::run(&cx, cmd),
        Command::Session(cmd) => session::run(&cx, cmd),
        Command::Change(cmd) => session::change(&cx, cmd),
    }
}

/// Writes a new private key file (`audit keygen`, `backup keygen`): mode 0600, never over an
/// existing file, fsynced; a file that could not be written whole is removed again.
fn write_key_file(path: &std::path::Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                CliError::usage(format!("{shown}: already exists; keygen never overwrites a key"), None)
            }
            _ => CliError::usage(format!("{shown}: {e}"), None),
        })?;
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(CliError::internal(format!("{shown}: {e}"), None));
    }
    Ok(())
}
