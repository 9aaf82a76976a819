//! The command line: parse, call the domain, render. No business logic lives here.
//!
//! Owns the top of the clap tree (the user's vocabulary, a public contract: names and flags
//! do not change) and one dispatch `match`. Each command group has its own file: its clap
//! definition beside its handler.

mod alerts;
mod audit;
mod backup;
mod check;
mod config_cmd;
mod daemon;
mod db;
mod deploy;
mod doctor;
mod drift;
pub mod error;
mod fleet;
mod gate;
mod incident;
mod install;
mod jobs;
mod manual;
mod mcp;
mod notify;
pub mod output;
mod recover;
mod schedule;
mod serve;
mod session;
mod state;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use alerts::AlertsCmd;
use audit::AuditCmd;
use backup::BackupCmd;
use config_cmd::ConfigCmd;
use db::DbCmd;
use deploy::DeployArgs;
use drift::{BaselineCmd, DriftArgs};
pub use error::CliError;
use gate::GateCmd;
use incident::IncidentCmd;
use jobs::JobsCmd;
use notify::NotifyCmd;
use output::Printer;
use schedule::{DaemonArgs, RenderArgs, RunArgs};
use serve::TokenCmd;
use session::{ChangeCmd, SessionCmd};
use state::StateCmd;

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

/// `runbook --version`: the release, the commit and the day it was built.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RUNBOOK_COMMIT"),
    ", built ",
    env!("RUNBOOK_BUILD_DATE"),
    ")"
);

#[derive(Debug, Parser)]
#[command(name = "runbook", version = VERSION, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP, propagate_version = true)]
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
    /// The state: backend, schema version, migrations, and copying it between SQLite and PostgreSQL
    #[command(subcommand)]
    Db(DbCmd),
    /// Fleet mode: the hosts sharing a PostgreSQL state, the leader lease, what runs where
    #[command(subcommand)]
    Fleet(fleet::FleetCmd),
    /// Make this host ready to run the daemon: user, directories, env file, binary, systemd units
    ///
    /// Creates the system user and group (`--user`, default runbook), /etc/runbook (0750),
    /// /var/lib/runbook and /var/backups/runbook (0750, the user's), the env file
    /// /etc/runbook/runbook.env (0640 root:runbook) and a starter /etc/runbook/runbook.yaml
    /// when missing (never rewritten), copies this binary to /usr/local/bin/runbook, and writes
    /// runbook.service (Type=notify, WatchdogSec, Restart=on-failure, StartLimitBurst,
    /// NoNewPrivileges, ProtectSystem=strict with ReadWritePaths for the state and backup
    /// directories, PrivateTmp, ProtectHome, no capabilities) and, with --serve,
    /// runbook-serve.service. Without --apply it prints every file with its content, mode and
    /// owner and changes nothing. A second run changes nothing and says so; a unit someone
    /// changed is left alone (exit 1) unless --force. `--root DIR` installs into a directory
    /// tree (packaging, tests). `systemd-analyze verify` checks the units where it is installed.
    Install(install::InstallArgs),
    /// Is this host ready and healthy? Each problem with the command that fixes it
    ///
    /// The configuration is valid; the state exists, is at the schema head and writable; env
    /// files are not open to other users; runbook.service is installed, enabled and active and
    /// the scheduler ticked within two minutes; the clock is synchronised; each backup
    /// destination has room for another archive as big as its newest; the API listens on
    /// loopback or tokens guard it; each offsite remote answers. Changes nothing. Exit 1 on any
    /// problem.
    Doctor,
    /// The host rebuild drill: from an empty root, install, fetch, restore, start, validate
    ///
    /// Into `--root DIR`, as on a new VPS: installs runbook (`runbook install --root`) with this
    /// configuration, fetches the newest archive of every backup target `--from offsite` (each
    /// target's offsite store) or `--from DIR`, verifies every byte, restores each under the
    /// root (every path of the configuration taken under it; `pre`/`post` hooks do not run),
    /// runs `recover.start` and then `recover.checks` in the root (RUNBOOK_RECOVER_ROOT set),
    /// and reports the RTO (each phase's wall time and the total, against `recover.rto_goal`)
    /// and the RPO (the age of each target's data restored). Evidence JSON in
    /// `recover.evidence_dir` and a `recover.drilled` audit event. Without --execute, the plan.
    /// Exit 1 when a phase failed or the goal was missed.
    Recover(recover::RecoverArgs),
    /// Shell completions for bash, zsh or fish, on stdout
    ///
    /// bash: `runbook completions bash > /etc/bash_completion.d/runbook`; zsh: into a
    /// directory of `$fpath` as `_runbook`; fish: `~/.config/fish/completions/runbook.fish`.
    /// Reads no configuration.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The manual page (roff) on stdout, or with --dir one page per command in DIR
    ///
    /// `runbook man | man -l -` reads it now; `runbook man --dir /usr/share/man/man1` installs
    /// runbook.1, runbook-db.1, runbook-db-copy.1, … Reads no configuration.
    Man {
        /// Write runbook.1 and a page per subcommand into this directory
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
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
    /// Serve a guarded session to an assistant over the Model Context Protocol (stdio)
    ///
    /// An MCP client (an assistant's host program) starts `runbook mcp --reason TEXT` (a new
    /// diagnostic session) or `runbook mcp --session ID` (a session a person opened) and talks
    /// JSON-RPC on its standard input and output. Tools: status, check, alerts, jobs, job,
    /// logs, session_exec, change_request, change_status, incident_log, incident_timeline,
    /// drift, backup_list, gate_run (those `mcp.tools` offers). `session_exec` runs under the
    /// session's policy and the kernel's sandbox; `change_request` files a request a person
    /// approves (`runbook change approve ID`); no tool approves, or changes the configuration,
    /// the policy or a token. Every call is an `mcp.call` audit event, listed by `runbook
    /// session show`. `runbook session end` stops the server.
    Mcp(mcp::McpArgs),
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
    /// Release and rollback gates: measure what a change needs, keep sealed evidence
    ///
    /// A gate under `gates:` in runbook.yaml names checks (sampled `count` times `interval`
    /// apart, with failure, inconclusive and error limits, and values compared with the last
    /// passing run) and built-in conditions (migration_at_head, backup_verified_within,
    /// config_valid, git_clean, disk_free, no_open_alerts). `gate run NAME` (or `gate NAME`)
    /// exits 0 only when it passes and writes evidence/releases/<gate>-<UTC>.json, whose
    /// SHA-256 the audit log records; `gate verify FILE` checks one.
    #[command(subcommand)]
    Gate(GateCmd),
    /// Deploy a pinned ref: a release of its own, one atomic switch, rollback on a failed gate
    ///
    /// `deploy APP REF` prints the plan; `--apply` runs it: resolve REF (a tag, or a commit
    /// with `refs: sha`; a branch only with --allow-branch), verify its signature, create
    /// releases/<sha>-<UTC> as a git worktree, link shared entries, build, the `before` gate,
    /// a backup when the migration is not expand-only, migrate, switch `current` with one
    /// rename, restart, the `after` gate, and mark the release good. If the gate after fails,
    /// the previous release goes back live (unless --no-rollback) and this one is marked bad.
    /// One deploy of an app at a time; every step is an audit event.
    Deploy(DeployArgs),
    /// Incidents: a note from a template, a lifecycle, a timeline from the audit chain
    ///
    /// `incident open SLUG --severity S --title T` writes incidents.dir/YYYY-MM-DD-SLUG.md from
    /// incidents.template; `status` moves it along triage → investigating → mitigated →
    /// resolved (no skipping, or cancelled); `close` needs incidents.verify to pass now;
    /// `timeline` and `export` assemble what happened from the audit chain, each line with
    /// the hash of its event. ID is the slug or the number.
    #[command(subcommand)]
    Incident(IncidentCmd),
    /// Compare the host with `baseline:`: every difference, exit 1 on drift
    ///
    /// Each declared resource (file, port, service, package, user, group, kernel_param,
    /// command, git, mount) is observed now and each attribute matched (a value, `!value`,
    /// `/regex/`, `{ gt: N }`, `{ lt: N }`, a list it must contain, a version constraint).
    /// `ports: { closed: true }` makes any other listening port drift; `services: {
    /// enabled_closed: true }` any other enabled unit. A file's content is never shown.
    /// `drift ack ITEM --reason --expires 7d` keeps one reported without failing;
    /// `drift history` says when each difference came and went.
    Drift(DriftArgs),
    /// The declared host: capture today's as a baseline
    #[command(subcommand)]
    Baseline(BaselineCmd),
}

fn parse_duration(s: &str) -> Result<crate::config::HumanDuration, String> {
    crate::config::HumanDuration::parse(s)
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
        Ok(Store::open_state(&config.state)?)
    }
}

pub fn dispatch(cli: Cli) -> Result<Outcome, CliError> {
    // The scheduled host rebuild drill installs the way `runbook install` does.
    crate::backup::recover::set_installer(install::into_root);
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
        Command::Fleet(cmd) => fleet::run(&cx, cmd),
        Command::Install(args) => install::install(&cx, args),
        Command::Doctor => doctor::doctor(&cx),
        Command::Recover(args) => recover::run(&cx, args),
        Command::Completions { shell } => manual::completions(&cx, shell),
        Command::Man { dir } => manual::man(&cx, dir.as_deref()),
        // Needs no configuration: a key is made before the config that names it.
        Command::Backup(BackupCmd::Keygen { out }) => backup::keygen(&cx, &out),
        Command::Backup(cmd) => backup::run(&cx, cmd),
        Command::Session(cmd) => session::run(&cx, cmd),
        Command::Change(cmd) => session::change(&cx, cmd),
        Command::Mcp(args) => mcp::run(&cx, args),
        Command::Gate(cmd) => gate::run(&cx, cmd),
        Command::Deploy(args) => deploy::run(&cx, args),
        Command::Incident(cmd) => incident::run(&cx, cmd),
        Command::Drift(args) => drift::drift(&cx, args),
        // Reads the host, not runbook.yaml.
        Command::Baseline(cmd) => drift::baseline(&cx, cmd),
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
            // A missing directory, no permission, a full disk: the host's, not the command's.
            _ => CliError::internal(
                format!("{shown}: {e}"),
                Some("create the directory, or give --out a path this user can write".into()),
            ),
        })?;
    if let Err(e) = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(CliError::internal(format!("{shown}: {e}"), None));
    }
    Ok(())
}
