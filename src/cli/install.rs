//! `runbook install`: a host made ready to run the daemon: the system user, the directories,
//! the env file, the binary and the systemd units, printed as a plan unless `--apply`.
//!
//! Invariants: a second run changes nothing and says so; a file runbook did not write, or
//! wrote and someone changed since, is never overwritten without `--force` (the units carry
//! the SHA-256 of what runbook wrote); the configuration and the env file are created when
//! missing and never rewritten; every write is atomic (a temporary file renamed into place).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{CliError, Ctx, Outcome};

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Make the changes (without it: every file with its content, mode and owner, and nothing
    /// changed)
    #[arg(long)]
    pub apply: bool,
    /// Install into this directory tree instead of / (packaging, a scratch host): no user is
    /// created, no owner is changed and systemd is not told
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The system user and group the daemon runs as
    #[arg(long, value_name = "NAME", default_value = "runbook")]
    pub user: String,
    /// Also a unit for `runbook serve` (the API and status page without the scheduler)
    #[arg(long)]
    pub serve: bool,
    /// Overwrite units and a binary that changed since runbook wrote them (or that it did not
    /// write)
    #[arg(long)]
    pub force: bool,
    /// Where the binary goes and what the units start (a package puts it in /usr/bin)
    #[arg(long, value_name = "PATH", default_value = BINARY)]
    pub exec: String,
}

/// Where things go on the host (under `--root` when given).
pub const ETC: &str = "/etc/runbook";
pub const CONFIG: &str = "/etc/runbook/runbook.yaml";
pub const ENV_FILE: &str = "/etc/runbook/runbook.env";
pub const STATE_DIR: &str = "/var/lib/runbook";
pub const BACKUP_DIR: &str = "/var/backups/runbook";
pub const BINARY: &str = "/usr/local/bin/runbook";
pub const UNIT_DIR: &str = "/etc/systemd/system";
pub const DAEMON_UNIT: &str = "runbook.service";
pub const SERVE_UNIT: &str = "runbook-serve.service";

/// The first line of every unit runbook writes; the hash is of the lines after it.
const MARK: &str = "# Written by `runbook install` (sha256 of the rest: ";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Create,
    Update,
    /// Only the mode or owner changes.
    Fix,
    Unchanged,
    /// Changed since runbook wrote it, or not runbook's: left alone without --force.
    Refused,
    Skipped,
}

#[derive(Debug, Serialize)]
struct Item {
    path: String,
    kind: &'static str,
    action: Action,
    mode: Option<String>,
    owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip)]
    bytes: Option<Vec<u8>>,
    #[serde(skip)]
    mode_bits: u32,
    #[serde(skip)]
    uid_gid: Option<(u32, u32)>,
}

#[derive(Debug, Serialize)]
struct Report {
    applied: bool,
    root: String,
    user: String,
    items: Vec<Item>,
    changes: usize,
    refused: usize,
    verify: Option<String>,
    next: Vec<String>,
}

pub fn install(cx: &Ctx, args: InstallArgs) -> Result<Outcome, CliError> {
    let report = build(cx, &args)?;
    cx.out.either(&report, || print(cx, &report));
    Ok(if report.refused > 0 {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// Installs runbook into `root` (as `runbook install --root ROOT --apply`): what changed.
pub fn into_root(root: &Path) -> Result<String, String> {
    let cx = Ctx {
        config_path: None,
        out: super::output::Printer { json: true },
        no_notify: false,
    };
    into_root_with(&cx, root)
}

fn into_root_with(cx: &Ctx, root: &Path) -> Result<String, String> {
    let args = InstallArgs {
        apply: true,
        root: Some(root.to_path_buf()),
        user: "runbook".into(),
        serve: false,
        force: false,
        exec: BINARY.into(),
    };
    build(cx, &args)
        .map_err(|e| e.message)
        .map(|r| format!("{} change(s), {} unchanged", r.changes, r.items.len() - r.changes))
}

/// Plans the install and, with `--apply`, carries it out.
fn build(cx: &Ctx, args: &InstallArgs) -> Result<Report, CliError> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let real = args.root.is_none();
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    // The writable places of the configuration installed (backup destinations, the state
    // directory): under --root, the one in that tree; else --config, or /etc/runbook's.
    let config = if real { cx.config_path.clone() } else { None }
        .or_else(|| at(CONFIG).exists().then(|| at(CONFIG)))
        .and_then(|p| crate::config::load(&p).ok());
    let ids = if real { user_ids(&args.user) } else { None };
    let root_ids = real.then_some((0, 0));
    let group_owned = ids.map(|(_, g)| (0, g));
    let mut items = Vec::new();

    items.push(user_item(&args.user, real, ids.is_some()));
    let mut writable = vec![STATE_DIR.to_string(), BACKUP_DIR.to_string()];
    if let Some(c) = &config {
        for t in c.backups.values() {
            writable.push(t.dest.display().to_string());
        }
        if !c.state.is_postgres()
            && let Some(dir) = c.state.path.parent()
        {
            writable.push(dir.display().to_string());
        }
    }
    writable.sort();
    writable.dedup();
    items.push(dir_item(
        &at(ETC),
        ETC,
        0o750,
        format!("root:{}", args.user),
        group_owned,
    ));
    for dir in [STATE_DIR, BACKUP_DIR] {
        items.push(dir_item(&at(dir), dir, 0o750, format!("{0}:{0}", args.user), ids));
    }
    items.push(kept_file(
        &at(ENV_FILE),
        ENV_FILE,
        ENV_TEMPLATE.as_bytes(),
        0o640,
        format!("root:{}", args.user),
        group_owned,
    ));
    items.push(kept_file(
        &at(CONFIG),
        CONFIG,
        config_template().as_bytes(),
        0o640,
        format!("root:{}", args.user),
        group_owned,
    ));
    let exe = std::env::current_exe()
        .map_err(|e| CliError::internal(format!("cannot find this program's file: {e}"), None))?;
    let bin = std::fs::read(&exe).map_err(|e| CliError::internal(format!("{}: {e}", exe.display()), None))?;
    items.push(owned_file(
        &at(&args.exec),
        &args.exec,
        bin,
        0o755,
        "root:root",
        root_ids,
        false,
        args.force,
    ));
    let units: Vec<(&str, String)> = std::iter::once((DAEMON_UNIT, daemon_unit(&args.user, &args.exec, &writable)))
        .chain(args.serve.then(|| (SERVE_UNIT, serve_unit(&args.user, &args.exec))))
        .collect();
    for (name, text) in &units {
        let path = format!("{UNIT_DIR}/{name}");
        items.push(owned_file(
            &at(&path),
            &path,
            marked(text).into_bytes(),
            0o644,
            "root:root",
            root_ids,
            true,
            args.force,
        ));
    }

    let changes = items
        .iter()
        .filter(|i| matches!(i.action, Action::Create | Action::Update | Action::Fix))
        .count();
    let refused = items.iter().filter(|i| i.action == Action::Refused).count();
    if args.apply {
        for item in &items {
            apply(item, &args.user, &root)?;
        }
        if real && changes > 0 && Path::new("/run/systemd/system").exists() {
            let _ = std::process::Command::new("systemctl").arg("daemon-reload").status();
        }
    }
    let verify = verify_units(&root, &units, args.apply);
    let mut next = Vec::new();
    if refused > 0 {
        next.push("runbook install --apply --force   # overwrite what changed since runbook wrote it".into());
    }
    if !args.apply && changes > 0 {
        next.push(format!(
            "runbook install --apply{}",
            args.root
                .as_ref()
                .map(|r| format!(" --root {}", r.display()))
                .unwrap_or_default()
        ));
    }
    if real {
        next.push(format!(
            "edit {CONFIG} (and secrets in {ENV_FILE}), then: runbook --config {CONFIG} config check"
        ));
        next.push(format!("systemctl enable --now {DAEMON_UNIT}"));
        next.push("runbook doctor".into());
    }
    for item in &mut items {
        if !args.apply && matches!(item.action, Action::Create | Action::Update) {
            item.content = item
                .bytes
                .as_ref()
                .filter(|_| item.kind != "binary")
                .map(|b| String::from_utf8_lossy(b).into_owned());
        }
    }
    Ok(Report {
        applied: args.apply,
        root: root.display().to_string(),
        user: args.user.clone(),
        items,
        changes,
        refused,
        verify,
        next,
    })
}

fn print(cx: &Ctx, r: &Report) {
    for i in &r.items {
        let action = match i.action {
            Action::Create => "create",
            Action::Update => "update",
            Action::Fix => "fix",
            Action::Unchanged => "ok",
            Action::Refused => "REFUSED",
            Action::Skipped => "skip",
        };
        let how = match &i.mode {
            Some(m) => format!("{m} {}", i.owner),
            None => i.owner.clone(),
        };
        let note = i.note.as_deref().map(|n| format!("  ({n})")).unwrap_or_default();
        cx.out.line(format!("{action:8} {:<40} {how}{note}", i.path));
        if let Some(c) = &i.content {
            for l in c.lines() {
                cx.out.line(format!("    | {l}"));
            }
        }
    }
    if let Some(v) = &r.verify {
        cx.out.line(format!("systemd-analyze verify: {v}"));
    }
    cx.out.line(match (r.applied, r.changes, r.refused) {
        (_, 0, 0) => "nothing to change: this host is installed".to_string(),
        (true, n, 0) => format!("{n} change(s) made"),
        (true, n, k) => format!("{n} change(s) made; {k} file(s) left alone (changed since runbook wrote them)"),
        (false, n, _) => format!("dry run: {n} change(s) to make, nothing changed"),
    });
    if !r.next.is_empty() {
        cx.out.line("next:");
        for n in &r.next {
            cx.out.line(format!("  {n}"));
        }
    }
}

/// (uid, gid) of user `name` on this host, from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

fn user_item(user: &str, real: bool, exists: bool) -> Item {
    let (action, note) = match (real, exists) {
        (false, _) => (
            Action::Skipped,
            Some("--root: the package's postinst or the host creates it".into()),
        ),
        (true, true) => (Action::Unchanged, None),
        (true, false) => (Action::Create, Some("useradd --system --user-group".into())),
    };
    Item {
        path: format!("user {user}"),
        kind: "user",
        action,
        mode: None,
        owner: user.to_string(),
        note,
        content: None,
        bytes: None,
        mode_bits: 0,
        uid_gid: None,
    }
}

fn current(path: &Path) -> Option<(u32, Option<(u32, u32)>)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))))
}

/// Whether the mode (and, when we manage it, the owner) differ from what is wanted.
fn needs_fix(path: &Path, mode: u32, ids: Option<(u32, u32)>) -> bool {
    current(path).is_some_and(|(m, owner)| m != mode || ids.is_some_and(|want| owner != Some(want)))
}

fn dir_item(path: &Path, shown: &str, mode: u32, owner: String, ids: Option<(u32, u32)>) -> Item {
    let action = if !path.is_dir() {
        Action::Create
    } else if needs_fix(path, mode, ids) {
        Action::Fix
    } else {
        Action::Unchanged
    };
    Item {
        path: shown.to_string(),
        kind: "directory",
        action,
        mode: Some(format!("{mode:04o}")),
        owner,
        note: None,
        content: None,
        bytes: None,
        mode_bits: mode,
        uid_gid: ids,
    }
}

/// A file created when missing and never rewritten (the configuration, the env file); a
/// mode more open than wanted is narrowed.
fn kept_file(path: &Path, shown: &str, bytes: &[u8], mode: u32, owner: String, ids: Option<(u32, u32)>) -> Item {
    let (action, note) = match current(path) {
        None => (Action::Create, None),
        Some((m, _)) if m & !mode != 0 || needs_fix(path, m, ids) => (
            Action::Fix,
            Some(format!("mode {m:04o} is wider than {mode:04o}: narrowed; content kept")),
        ),
        Some(_) => (Action::Unchanged, Some("kept as it is".into())),
    };
    Item {
        path: shown.to_string(),
        kind: "file",
        action,
        mode: Some(format!("{mode:04o}")),
        owner,
        note,
        content: None,
        bytes: Some(bytes.to_vec()),
        mode_bits: mode,
        uid_gid: ids,
    }
}

/// A file runbook owns (the binary, a unit): written when missing or when it differs, unless
/// it differs because someone changed it (`marked` units carry the hash of what was written).
#[allow(clippy::too_many_arguments)]
fn owned_file(
    path: &Path,
    shown: &str,
    bytes: Vec<u8>,
    mode: u32,
    owner: &str,
    ids: Option<(u32, u32)>,
    is_unit: bool,
    force: bool,
) -> Item {
    let (action, note) = match std::fs::read(path) {
        Err(_) => (Action::Create, None),
        Ok(now) if now == bytes => {
            if needs_fix(path, mode, ids) {
                (Action::Fix, None)
            } else {
                (Action::Unchanged, None)
            }
        }
        Ok(now) if !is_unit || untouched(&now) => (Action::Update, None),
        Ok(_) if force => (
            Action::Update,
            Some("--force: the changes made to it are overwritten".into()),
        ),
        Ok(_) => (
            Action::Refused,
            Some("changed since runbook wrote it, or not runbook's: left alone; --force overwrites".into()),
        ),
    };
    Item {
        path: shown.to_string(),
        kind: if is_unit { "unit" } else { "binary" },
        action,
        mode: Some(format!("{mode:04o}")),
        owner: owner.to_string(),
        note,
        content: None,
        bytes: Some(bytes),
        mode_bits: mode,
        uid_gid: ids,
    }
}

fn hash(text: &str) -> String {
    crate::util::text::hex(&Sha256::digest(text.as_bytes()))
}

/// A unit with its first line naming the hash of the rest.
fn marked(text: &str) -> String {
    format!("{MARK}{})\n{text}", hash(text))
}

/// Whether a unit is as runbook wrote it (its first line's hash matches the rest).
fn untouched(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((first, rest)) = text.split_once('\n') else {
        return false;
    };
    first
        .strip_prefix(MARK)
        .and_then(|h| h.strip_suffix(')'))
        .is_some_and(|h| h == hash(rest))
}

fn apply(item: &Item, user: &str, root: &Path) -> Result<(), CliError> {
    let target = root.join(item.path.trim_start_matches('/'));
    let fail = |e: std::io::Error| CliError::internal(format!("{}: {e}", target.display()), None);
    match (item.kind, item.action) {
        (_, Action::Unchanged | Action::Refused | Action::Skipped) => return Ok(()),
        ("user", Action::Create) => {
            let status = std::process::Command::new("useradd")
                .args(["--system", "--user-group", "--home-dir", STATE_DIR, "--no-create-home"])
                .args(["--shell", "/usr/sbin/nologin", user])
                .status()
                .map_err(|e| CliError::internal(format!("useradd: {e}"), None))?;
            if !status.success() {
                return Err(CliError::internal(format!("useradd {user} failed ({status})"), None));
            }
            return Ok(());
        }
        ("directory", _) => std::fs::create_dir_all(&target).map_err(fail)?,
        (_, Action::Create | Action::Update) => {
            let bytes = item.bytes.as_deref().unwrap_or_default();
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(fail)?;
            }
            write_file(&target, bytes, item.mode_bits).map_err(fail)?;
        }
        _ => {}
    }
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(item.mode_bits)).map_err(fail)?;
    // The user made a moment ago (or before) owns what is theirs.
    let ids = item.uid_gid.or_else(|| {
        (root == Path::new("/") && item.owner != "root:root")
            .then(|| user_ids(user))
            .flatten()
            .map(|(u, g)| {
                if item.owner.starts_with("root:") {
                    (0, g)
                } else {
                    (u, g)
                }
            })
    });
    if let Some((u, g)) = ids {
        std::os::unix::fs::chown(&target, Some(u), Some(g)).map_err(fail)?;
    }
    Ok(())
}

/// Writes through a temporary file made with `mode`, fsynced, renamed into place.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".runbook-new");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `systemd-analyze verify` on the units, where it is installed: `None` without it.
fn verify_units(root: &Path, units: &[(&str, String)], applied: bool) -> Option<String> {
    which("systemd-analyze")?;
    let dir = tempfile::tempdir().ok()?;
    let mut paths = Vec::new();
    for (name, text) in units {
        let p = if applied {
            root.join(UNIT_DIR.trim_start_matches('/')).join(name)
        } else {
            let p = dir.path().join(name);
            std::fs::write(&p, marked(text)).ok()?;
            p
        };
        paths.push(p);
    }
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr)
        .lines()
        // The binary and the manual page are looked for on this host: under --root, or before
        // the package put them there, they are elsewhere.
        .filter(|l| !l.contains("is not executable") && !l.contains("No such file") && !l.contains("Command 'man "))
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Some(if text.is_empty() { "ok".into() } else { text })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

const ENV_TEMPLATE: &str = "\
# Secrets for runbook.yaml (secrets.env_files), one NAME=value per line; ${NAME} in the
# configuration reads them. Readable by root and the runbook group only (0640).
";

fn config_template() -> String {
    format!(
        "\
# runbook.yaml: see `runbook config schema` and docs/configuration.md.
version: 1
state: {{ url: \"sqlite://{STATE_DIR}/runbook.db\" }}
secrets: {{ env_files: [ {ENV_FILE} ] }}
api: {{ listen: \"127.0.0.1:9580\" }}
checks:
  disk-root: {{ disk: {{ path: /, min_free: 10% }} }}
profiles:
  monitoring: {{ cron: \"* * * * *\", tasks: [ disk-root ] }}
"
    )
}

fn hardening(writable: &[String]) -> String {
    format!(
        "\
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0027
",
        writable.join(" ")
    )
}

fn daemon_unit(user: &str, exec: &str, writable: &[String]) -> String {
    format!(
        "\
[Unit]
Description=runbook daemon: scheduled profiles, checks, alerts, backups
Documentation=man:runbook(1)
Wants=network-online.target
After=network-online.target
# Give up after 5 failed starts within a minute instead of looping.
StartLimitIntervalSec=60
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
User={user}
Group={user}
# Secrets come from secrets.env_files in the configuration (redacted from every output),
# not from the environment.
Environment=RUNBOOK_CONFIG={CONFIG}
ExecStartPre={exec} config check
ExecStart={exec} daemon --shutdown-grace 30s
ExecReload={exec} reload
WatchdogSec=60s
Restart=on-failure
RestartSec=5s
# Exit 2 is a configuration error: restarting will not fix it.
RestartPreventExitStatus=2
KillMode=mixed
TimeoutStopSec=90s
{}
[Install]
WantedBy=multi-user.target
",
        hardening(writable)
    )
}

fn serve_unit(user: &str, exec: &str) -> String {
    format!(
        "\
[Unit]
Description=runbook API and status page (without the scheduler)
Documentation=man:runbook(1)
After=network-online.target

[Service]
Type=simple
User={user}
Group={user}
Environment=RUNBOOK_CONFIG={CONFIG}
ExecStart={exec} serve
Restart=on-failure
RestartSec=5s
RestartPreventExitStatus=2
{}
[Install]
WantedBy=multi-user.target
",
        hardening(&[STATE_DIR.to_string()])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_is_untouched_only_while_its_hash_matches() {
        let unit = marked("[Unit]\nDescription=x\n");
        assert!(untouched(unit.as_bytes()));
        assert!(!untouched(unit.replace("x\n", "y\n").as_bytes()));
        assert!(!untouched(b"[Unit]\nDescription=x\n"));
    }
}
