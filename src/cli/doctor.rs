//! `runbook doctor`: is this host ready and healthy? Each finding names the command that fixes
//! it; exit 1 on any problem. It only reads: it opens no state that does not exist, migrates
//! nothing and writes nothing.

use std::path::Path;

use serde::Serialize;

use super::install::{DAEMON_UNIT, UNIT_DIR};
use super::{CliError, Ctx, Outcome, output};
use crate::config::Config;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    Problem,
    Skipped,
}

#[derive(Debug, Serialize)]
struct Finding {
    check: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn problem(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Problem,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn skipped(check: &'static str, detail: impl Into<String>) -> Finding {
    Finding {
        check,
        status: Status::Skipped,
        detail: detail.into(),
        fix: None,
    }
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    problems: usize,
    findings: Vec<Finding>,
}

pub fn doctor(cx: &Ctx) -> Result<Outcome, CliError> {
    let mut findings = Vec::new();
    let config = match cx.load() {
        Ok(c) => {
            findings.push(ok("config", format!("{} is valid", c.source.display())));
            Some(c)
        }
        Err(e) => {
            findings.push(problem(
                "config",
                e.message,
                "runbook config check   # every error with its file:line:col",
            ));
            None
        }
    };
    if let Some(config) = &config {
        let store = state(config, &mut findings);
        secrets(config, &mut findings);
        units(config, store.as_ref(), &mut findings);
        findings.push(clock());
        disk(config, store.as_ref(), &mut findings);
        api(config, store.as_ref(), &mut findings);
        offsite(config, &mut findings);
    }
    let problems = findings.iter().filter(|f| f.status == Status::Problem).count();
    let report = Report {
        ok: problems == 0,
        problems,
        findings,
    };
    cx.out.either(&report, || {
        let mut t = output::table(&["CHECK", "STATUS", "DETAIL"]);
        for f in &report.findings {
            let status = match f.status {
                Status::Ok => "ok",
                Status::Problem => "PROBLEM",
                Status::Skipped => "skipped",
            };
            t.add_row(vec![f.check.to_string(), status.to_string(), f.detail.clone()]);
        }
        cx.out.line(t.to_string());
        for f in report.findings.iter().filter(|f| f.fix.is_some()) {
            cx.out
                .line(format!("fix {}: {}", f.check, f.fix.as_deref().unwrap_or_default()));
        }
        cx.out.line(if report.ok {
            "no problem found".to_string()
        } else {
            format!("{problems} problem(s)")
        });
    });
    Ok(if problems == 0 { Outcome::Ok } else { Outcome::Failed })
}

/// The state exists, is at the schema head and (a file) can be written by this user.
fn state(config: &Config, out: &mut Vec<Finding>) -> Option<Store> {
    let store = match Store::open_existing_state(&config.state) {
        Ok(Some(s)) => s,
        Ok(None) => {
            out.push(problem(
                "state",
                format!("{} does not exist yet", config.state.path.display()),
                "runbook db migrate --apply",
            ));
            return None;
        }
        Err(e) => {
            out.push(problem(
                "state",
                e.to_string(),
                "runbook db status   # says what is wrong",
            ));
            return None;
        }
    };
    match store.migration_state() {
        Ok(m) if m.current < m.head => out.push(problem(
            "state",
            format!("schema version {} of {}: migrations pending", m.current, m.head),
            "runbook db migrate --apply",
        )),
        Ok(m) if m.current > m.head => out.push(problem(
            "state",
            format!("schema version {} is newer than this binary's {}", m.current, m.head),
            "install the runbook release that wrote it",
        )),
        Ok(m) => {
            let writable = config.state.is_postgres()
                || [
                    config.state.path.as_path(),
                    config.state.path.parent().unwrap_or(Path::new(".")),
                ]
                .iter()
                .all(|p| rustix::fs::access(*p, rustix::fs::Access::WRITE_OK).is_ok());
            if writable {
                let what = if config.state.is_postgres() {
                    "the PostgreSQL state".to_string()
                } else {
                    config.state.path.display().to_string()
                };
                out.push(ok("state", format!("{what} at schema head ({})", m.head)));
            } else {
                out.push(problem(
                    "state",
                    format!("{} is not writable by this user", config.state.path.display()),
                    "run as the daemon's user (sudo -u runbook runbook doctor), or runbook install --apply",
                ));
            }
        }
        Err(e) => out.push(problem("state", e.to_string(), "runbook db status")),
    }
    Some(store)
}

fn secrets(config: &Config, out: &mut Vec<Finding>) {
    let open = crate::config::secrets::exposure_warnings(config);
    if open.is_empty() {
        out.push(ok(
            "secrets",
            format!(
                "{} env file(s), none open to other users",
                config.secrets.env_files.len()
            ),
        ));
    }
    for w in open {
        out.push(problem("secrets", w.problem, w.fix));
    }
}

/// The daemon's unit is installed, enabled and active, and the scheduler ticked lately.
fn units(config: &Config, store: Option<&Store>, out: &mut Vec<Finding>) {
    let unit = Path::new(UNIT_DIR).join(DAEMON_UNIT);
    let systemd = Path::new("/run/systemd/system").exists();
    if !unit.exists() {
        out.push(problem(
            "units",
            format!("{} is not installed", unit.display()),
            "runbook install --apply",
        ));
    } else if !systemd {
        out.push(skipped("units", "systemd is not running on this host"));
    } else {
        let ask = |verb: &str| {
            std::process::Command::new("systemctl")
                .args([verb, DAEMON_UNIT])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let (enabled, active) = (ask("is-enabled"), ask("is-active"));
        if enabled == "enabled" && active == "active" {
            out.push(ok("units", format!("{DAEMON_UNIT} enabled and active")));
        } else {
            out.push(problem(
                "units",
                format!("{DAEMON_UNIT} is {enabled}, {active}"),
                format!("systemctl enable --now {DAEMON_UNIT}; journalctl -u {DAEMON_UNIT} -n 50"),
            ));
        }
    }
    let running = crate::schedule::lock::running_daemon(&config.state.path);
    let tick = store.and_then(|s| s.daemon_status("scheduler_tick").ok().flatten());
    match (running, tick) {
        (None, _) if !config.state.is_postgres() => out.push(problem(
            "daemon",
            "no daemon runs on this state",
            format!("systemctl start {DAEMON_UNIT}   # or: runbook daemon"),
        )),
        (_, Some((_, at))) => {
            let age = crate::clock::from_text(&at)
                .map(|t| crate::clock::now().as_second() - t.as_second())
                .unwrap_or(i64::MAX);
            if age <= 120 {
                out.push(ok("daemon", format!("the scheduler ticked {age} s ago")));
            } else {
                out.push(problem(
                    "daemon",
                    format!("the scheduler last ticked {at}: it is stuck or stopped"),
                    format!("systemctl restart {DAEMON_UNIT}; journalctl -u {DAEMON_UNIT} -n 50"),
                ));
            }
        }
        (_, None) => out.push(problem(
            "daemon",
            "no scheduler has ticked on this state",
            format!("systemctl start {DAEMON_UNIT}   # or: runbook daemon"),
        )),
    }
}

/// The system clock is synchronised (timedatectl, where there is one to ask).
fn clock() -> Finding {
    let answer = std::process::Command::new("timedatectl")
        .args(["show", "--property=NTPSynchronized", "--value"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match answer.as_deref() {
        Some("yes") => ok("clock", "synchronised (NTP)"),
        Some(other) => problem(
            "clock",
            format!("not synchronised (NTPSynchronized={other})"),
            "timedatectl set-ntp true",
        ),
        None => skipped("clock", "timedatectl cannot tell here (no systemd-timedated)"),
    }
}

/// Each backup destination has room for one more archive as big as its newest.
fn disk(config: &Config, store: Option<&Store>, out: &mut Vec<Finding>) {
    for (name, target) in &config.backups {
        let newest = store
            .and_then(|s| s.list_backups(Some(name)).ok())
            .and_then(|l| l.into_iter().max_by(|a, b| a.created_at.cmp(&b.created_at)))
            .map(|b| b.size.max(0) as u64)
            .unwrap_or(0);
        let free = rustix::fs::statvfs(&target.dest)
            .or_else(|_| rustix::fs::statvfs(target.dest.parent().unwrap_or(Path::new("/"))))
            .map(|s| s.f_bavail * s.f_frsize)
            .ok();
        match free {
            Some(free) if free >= newest => out.push(ok(
                "disk",
                format!(
                    "{name}: {} free at {} (newest archive {})",
                    human(free),
                    target.dest.display(),
                    human(newest)
                ),
            )),
            Some(free) => out.push(problem(
                "disk",
                format!(
                    "{name}: {} free at {}, the newest archive is {}",
                    human(free),
                    target.dest.display(),
                    human(newest)
                ),
                format!(
                    "runbook backup prune {name} --apply   # or free space at {}",
                    target.dest.display()
                ),
            )),
            None => out.push(problem(
                "disk",
                format!("{name}: {} cannot be read", target.dest.display()),
                "runbook install --apply   # creates /var/backups/runbook",
            )),
        }
    }
}

fn human(bytes: u64) -> String {
    crate::config::units::ByteSize(bytes).to_string()
}

/// The API listens on loopback, or tokens guard it.
fn api(config: &Config, store: Option<&Store>, out: &mut Vec<Finding>) {
    let listen = &config.api.listen;
    let loopback = listen
        .parse::<std::net::SocketAddr>()
        .is_ok_and(|a| a.ip().is_loopback());
    let tokens = store.and_then(|s| s.tokens().ok()).map_or(0, |t| t.len());
    if loopback {
        out.push(ok("api", format!("listens on {listen} (loopback)")));
    } else if tokens > 0 {
        out.push(ok("api", format!("listens on {listen}, {tokens} token(s)")));
    } else {
        out.push(problem(
            "api",
            format!("listens on {listen} and no token exists"),
            "runbook token create reader --scope read   # or api.listen: 127.0.0.1:PORT",
        ));
    }
}

/// Each offsite copy's remote answers a listing.
fn offsite(config: &Config, out: &mut Vec<Finding>) {
    for (name, target) in &config.backups {
        if target.offsite.is_none() {
            continue;
        }
        match crate::backup::offsite::list(config, name) {
            Ok(copies) => out.push(ok("offsite", format!("{name}: reachable, {} cop(ies)", copies.len()))),
            Err(e) => out.push(problem(
                "offsite",
                format!("{name}: {e}"),
                format!("runbook backup push {name}   # shows the remote's answer"),
            )),
        }
    }
}
