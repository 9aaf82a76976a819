//! Profiles and their tasks: cron, time zone, pre-run sync, command tasks and their limits.
//!
//! Owns the rules of one profile entry. Invariant: task names within a profile are unique;
//! unnamed tasks are numbered (`sh`, `sh-2`) in file order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::walker::{Cx, Fields};
use crate::config::model::{
    BackupAction, BackupTask, CheckTask, CommandTask, GitSync, Limits, Profile, Program, RunArgs, RunOn, Schedule, Task,
};
use crate::config::units::{ByteSize, Percent};
use crate::config::yaml::{Kind, Node, Pos};

const PROFILE_KEYS: &[&str] = &[
    "cron",
    "timezone",
    "enabled",
    "timeout",
    "sync_before_run",
    "silences",
    "tasks",
    "run_on",
    "catch_up",
];
const COMMAND_KEYS: &[&str] = &[
    "silences",
    "run",
    "sh",
    "name",
    "timeout",
    "kill_grace",
    "cwd",
    "env",
    "memory_max",
    "cpu_time",
    "nofile",
    "systemd_run",
    "cpu_quota",
];
const BACKUP_TASK_KINDS: &[&str] = &["backup", "verify", "prune", "drill", "push", "recover_drill"];

pub(super) fn profile(cx: &mut Cx, name: &str, node: &Node, base: &Path) -> Option<Profile> {
    let what = format!("profile `{name}`");
    let f = cx.map(node, &what, PROFILE_KEYS)?;
    let errors_before = cx.diags.len();

    let timezone = f.get("timezone").and_then(|n| {
        let tz = cx.string(n, "timezone")?;
        match jiff::tz::TimeZone::get(&tz) {
            Ok(_) => Some(tz),
            Err(e) => {
                cx.error(
                    n.pos,
                    format!("unknown time zone `{tz}`: {e}"),
                    Some("use an IANA name such as Europe/Berlin or UTC".into()),
                );
                None
            }
        }
    });
    let (cron, schedule) = match f.get("cron") {
        None => {
            cx.missing(
                f.pos,
                "cron",
                format!("{what} has no `cron`"),
                "add e.g. `cron: \"0 * * * *\"` (hourly)",
            );
            (String::new(), None)
        }
        Some(n) => match cx.string(n, "cron") {
            Some(expr) => {
                let schedule = parse_cron(cx, n.pos, &expr, timezone.as_deref());
                (expr, schedule)
            }
            None => (String::new(), None),
        },
    };
    let enabled = f.get("enabled").and_then(|n| cx.bool(n, "enabled")).unwrap_or(true);
    let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
    let sync_before_run = f.get("sync_before_run").and_then(|n| git_sync(cx, n, base));
    let silences = silence_list(cx, f.get("silences"));
    let run_on = f.get("run_on").map(|n| run_on(cx, n)).unwrap_or_default();
    let catch_up = f.get("catch_up").and_then(|n| cx.duration(n, "catch_up"));

    let mut tasks = Vec::new();
    match f.get("tasks") {
        None => cx.missing(
            f.pos,
            "tasks",
            format!("{what} has no `tasks`"),
            "add a list of tasks, e.g. `tasks: [ { run: [true] } ]`",
        ),
        Some(n) => match &n.kind {
            Kind::Seq(items) => {
                if items.is_empty() {
                    cx.error(n.pos, format!("{what} has an empty task list"), None);
                }
                let mut names: HashMap<String, usize> = HashMap::new();
                for item in items {
                    if let Some(mut c) = task_inner(cx, item) {
                        let name = c.task.name().to_string();
                        if !c.name_explicit {
                            let count = names.entry(name.clone()).or_insert(0);
                            *count += 1;
                            if *count > 1 {
                                set_name(&mut c.task, format!("{name}-{count}"));
                            }
                        } else if names.insert(name.clone(), 1).is_some() {
                            cx.error(
                                item.pos,
                                format!("two tasks in {what} are named `{name}`"),
                                Some("task names must be unique within a profile".into()),
                            );
                        }
                        tasks.push(c.task);
                    }
                }
            }
            _ => cx.error(
                n.pos,
                format!("tasks of {what} must be a list, found {}", n.describe()),
                None,
            ),
        },
    }
    if cx.diags.len() != errors_before {
        return None;
    }
    Some(Profile {
        cron,
        timezone,
        enabled,
        timeout,
        sync_before_run,
        silences,
        tasks,
        run_on,
        catch_up,
        schedule,
    })
}

/// `run_on: any | all | HOST | [HOST or LABEL, …]`.
pub(super) fn run_on(cx: &mut Cx, n: &Node) -> RunOn {
    let hosts = match &n.kind {
        Kind::Seq(_) => cx.string_list(n, "run_on").unwrap_or_default(),
        _ => match cx.string(n, "run_on").as_deref() {
            Some("any") => return RunOn::Any,
            Some("all") => return RunOn::All,
            Some(host) => vec![host.to_string()],
            None => return RunOn::Any,
        },
    };
    if hosts.is_empty() || hosts.iter().any(|h| h.trim().is_empty()) {
        cx.error(
            n.pos,
            "`run_on` names no host",
            Some("use `any`, `all`, a host name or a list of host names and labels".into()),
        );
    }
    RunOn::Hosts(hosts)
}

fn parse_cron(cx: &mut Cx, pos: Pos, expr: &str, timezone: Option<&str>) -> Option<Schedule> {
    let fields = expr.split_whitespace().count();
    if !expr.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
        cx.error(
            pos,
            format!("cron `{expr}` has {fields} fields; expected 5 (min hour day month weekday) or 6 (seconds first)"),
            Some("examples: \"0 * * * *\" hourly, \"*/10 * * * *\", \"30 3 * * *\", @daily".into()),
        );
        return None;
    }
    let cron = match expr.parse::<croner::Cron>() {
        Ok(c) => c,
        Err(e) => {
            cx.error(
                pos,
                format!("invalid cron `{expr}`: {e}"),
                Some("fields: [sec] min hour day-of-month month day-of-week; e.g. \"*/5 * * * *\"".into()),
            );
            return None;
        }
    };
    let tz = match timezone {
        Some(name) => jiff::tz::TimeZone::get(name).ok()?,
        None => jiff::tz::TimeZone::system(),
    };
    Some(Schedule { cron, tz })
}

fn git_sync(cx: &mut Cx, node: &Node, base: &Path) -> Option<GitSync> {
    let f = cx.map(node, "sync_before_run", &["repo", "remote", "branch"])?;
    let repo = match f.get("repo") {
        Some(n) => cx.string(n, "sync_before_run.repo").map(|r| base.join(r)),
        None => {
            cx.error(
                f.pos,
                "sync_before_run needs `repo`",
                Some("e.g. { repo: /srv/app, branch: main }".into()),
            );
            None
        }
    };
    let branch = match f.get("branch") {
        Some(n) => cx.string(n, "sync_before_run.branch"),
        None => {
            cx.error(
                f.pos,
                "sync_before_run needs `branch`",
                Some("e.g. { repo: /srv/app, branch: main }".into()),
            );
            None
        }
    };
    let remote = f
        .get("remote")
        .and_then(|n| cx.string(n, "sync_before_run.remote"))
        .unwrap_or_else(|| "origin".into());
    Some(GitSync {
        repo: repo?,
        remote,
        branch: branch?,
    })
}

struct ParsedTask {
    task: Task,
    name_explicit: bool,
}

fn set_name(task: &mut Task, name: String) {
    match task {
        Task::Command(c) => c.name = name,
        Task::Check(c) => c.name = name,
        Task::Backup(b) => b.name = name,
    }
}

/// `{ backup: TARGET }`, `{ prune: TARGET }`, `{ drill: TARGET }`, `{ push: TARGET }`, with an
/// optional `name`.
fn backup_task(cx: &mut Cx, node: &Node, kind: &'static str) -> Option<ParsedTask> {
    let f = cx.map(node, &format!("a `{kind}:` task"), &[kind, "name"])?;
    let target = f.get(kind).and_then(|n| cx.string(n, kind))?;
    if kind == "recover_drill" {
        let name = f.get("name").and_then(|n| cx.string(n, "name"));
        return recover_drill_task(cx, node, target, name);
    }
    if !cx.backup_names.contains(&target) && cx.declared_backups.contains(&target) {
        // The target's own errors were reported where they are.
        return None;
    }
    if !cx.backup_names.contains(&target) {
        let hint = crate::config::diagnostic::suggest(&target, cx.backup_names.iter().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| "define it under `backups:`".into());
        cx.error(
            node.pos,
            format!("`{kind}:` task: no backup target named `{target}`"),
            Some(hint),
        );
        return None;
    }
    if kind == "push" && !cx.offsite_names.contains(&target) {
        cx.error(
            node.pos,
            format!("`push:` task: backup target `{target}` has no `offsite:`"),
            Some("add `offsite: { url: s3://bucket/prefix }` (or a directory) to the target".into()),
        );
        return None;
    }
    let explicit = f.get("name").and_then(|n| cx.string(n, "name"));
    let action = match kind {
        "backup" => BackupAction::Backup,
        "verify" => BackupAction::Verify,
        "prune" => BackupAction::Prune,
        "push" => BackupAction::Push,
        _ => BackupAction::Drill,
    };
    Some(ParsedTask {
        name_explicit: explicit.is_some(),
        task: Task::Backup(BackupTask {
            action,
            name: explicit.unwrap_or_else(|| format!("{kind}-{target}")),
            target,
        }),
    })
}

/// `{ recover_drill: offsite | DIR }`: the host rebuild drill from every target's offsite store
/// (each must have one) or a directory of archives (relative to runbook.yaml).
fn recover_drill_task(cx: &mut Cx, node: &Node, from: String, name: Option<String>) -> Option<ParsedTask> {
    let from = if from == "offsite" {
        if let Some(t) = cx.backup_names.iter().find(|t| !cx.offsite_names.contains(t)) {
            cx.error(
                node.pos,
                format!("`recover_drill: offsite` task: backup target `{t}` has no `offsite:`"),
                Some("add an `offsite:` to every target, or name a directory of archives".into()),
            );
            return None;
        }
        from
    } else {
        let base = cx.file.parent().map(Path::to_path_buf).unwrap_or_default();
        base.join(from).display().to_string()
    };
    Some(ParsedTask {
        name_explicit: name.is_some(),
        task: Task::Backup(BackupTask {
            action: BackupAction::RecoverDrill,
            name: name.unwrap_or_else(|| "recover-drill".into()),
            target: from,
        }),
    })
}

/// A reference to a check, checked against `checks:`.
fn check_task(cx: &mut Cx, node: &Node, check: String, name: Option<String>) -> Option<ParsedTask> {
    if !cx.check_names.contains(&check) {
        let hint = crate::config::diagnostic::suggest(&check, cx.check_names.iter().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("define it under `checks:`, or to run a command write `{{ run: [{check}] }}`"));
        cx.error(
            node.pos,
            format!("task `{check}` refers to a check, but no check named `{check}` is defined"),
            Some(hint),
        );
        return None;
    }
    let name_explicit = name.is_some();
    let name = cx.redactor.redact(&name.unwrap_or_else(|| check.clone())).into_owned();
    Some(ParsedTask {
        task: Task::Check(CheckTask { check, name }),
        name_explicit,
    })
}

fn task_inner(cx: &mut Cx, node: &Node) -> Option<ParsedTask> {
    match &node.kind {
        Kind::Scalar { .. } => {
            let check = cx.string(node, "task")?;
            check_task(cx, node, check, None)
        }
        Kind::Map(entries) => {
            let keys: Vec<&str> = entries
                .iter()
                .filter_map(|(k, _)| match &k.kind {
                    Kind::Scalar { value, .. } => Some(value.as_str()),
                    _ => None,
                })
                .collect();
            if keys.contains(&"check") {
                let f = cx.map(node, "task", &["check", "name"])?;
                let check = f.get("check").and_then(|n| cx.string(n, "check"))?;
                let name = f.get("name").and_then(|n| cx.string(n, "name"));
                return check_task(cx, node, check, name);
            }
            if let Some(kind) = BACKUP_TASK_KINDS.iter().find(|k| keys.contains(k)) {
                return backup_task(cx, node, kind);
            }
            command_task(cx, node)
        }
        _ => {
            cx.error(
                node.pos,
                format!(
                    "a task must be a mapping such as {{ run: [...] }}, found {}",
                    node.describe()
                ),
                None,
            );
            None
        }
    }
}

/// `memory_max`, `cpu_time`, `nofile`, `systemd_run`, `cpu_quota` of a mapping.
pub(super) fn limits(cx: &mut Cx, f: &Fields) -> Limits {
    Limits {
        memory_max: f
            .get("memory_max")
            .and_then(|n| cx.parsed(n, "memory_max", ByteSize::parse, "sizes look like 512M, 1G")),
        cpu_time: f.get("cpu_time").and_then(|n| cx.duration(n, "cpu_time")),
        nofile: f.get("nofile").and_then(|n| cx.u64(n, "nofile")),
        systemd_run: f
            .get("systemd_run")
            .and_then(|n| cx.bool(n, "systemd_run"))
            .unwrap_or(false),
        cpu_quota: f
            .get("cpu_quota")
            .and_then(|n| cx.parsed(n, "cpu_quota", Percent::parse, "e.g. 25%")),
    }
}

fn command_task(cx: &mut Cx, node: &Node) -> Option<ParsedTask> {
    let f = cx.map(node, "task", COMMAND_KEYS)?;
    let errors_before = cx.diags.len();
    let program = program(cx, &f, "a task");
    let explicit = f.get("name").and_then(|n| cx.string(n, "name"));
    let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
    let kill_grace = f.get("kill_grace").and_then(|n| cx.duration(n, "kill_grace"));
    let cwd = f.get("cwd").and_then(|n| cx.string(n, "cwd")).map(PathBuf::from);
    let env = env_map(cx, &f);
    let silences = silence_list(cx, f.get("silences"));
    let limits = limits(cx, &f);
    if limits.cpu_quota.is_some()
        && !limits.systemd_run
        && let Some(n) = f.get("cpu_quota")
    {
        cx.error(
            n.pos,
            "`cpu_quota` needs `systemd_run: true`",
            Some("a CPU share can only be enforced by a systemd scope".into()),
        );
    }
    if cx.diags.len() != errors_before {
        return None;
    }
    let program = program?;
    let name_explicit = explicit.is_some();
    // A name may be built from a secret (`name: "t-${TOKEN}"`); names are shown and stored.
    let name = cx
        .redactor
        .redact(&explicit.unwrap_or_else(|| default_task_name(&program)))
        .into_owned();
    Some(ParsedTask {
        task: Task::Command(CommandTask {
            name,
            program,
            timeout,
            kill_grace,
            cwd,
            env,
            silences,
            limits,
        }),
        name_explicit,
    })
}

fn default_task_name(program: &Program) -> String {
    match program {
        Program::Sh(_) => "sh".into(),
        Program::Run(_) => program
            .argv()
            .first()
            .map(|p| {
                Path::new(p)
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.clone())
            })
            .unwrap_or_else(|| "task".into()),
    }
}

/// The `run:` or `sh:` of a command task or command check.
pub(super) fn program(cx: &mut Cx, f: &Fields, what: &str) -> Option<Program> {
    program_keyed(cx, f, what, "run")
}

/// [`program`], its `run` written as `key` in the configuration (a command source's `command`).
pub(super) fn program_keyed(cx: &mut Cx, f: &Fields, what: &str, key: &str) -> Option<Program> {
    match (f.get("run"), f.get("sh")) {
        (Some(_), Some(sh)) => {
            cx.error(sh.pos, format!("{what} has either `run` or `sh`, not both"), None);
            None
        }
        (None, None) => {
            cx.error(
                f.pos,
                format!("{what} needs `run` (a program and arguments) or `sh` (a shell script)"),
                None,
            );
            None
        }
        (Some(run), None) => match &run.kind {
            Kind::Seq(_) => cx.string_list(run, key).and_then(|argv| {
                if argv.is_empty() {
                    cx.error(
                        run.pos,
                        format!("`{key}` is an empty list"),
                        Some(format!("name the program first: {key}: [./script.sh, --flag]")),
                    );
                    None
                } else {
                    Some(Program::Run(RunArgs::Argv(argv)))
                }
            }),
            _ => cx.string(run, key).and_then(|line| match shlex::split(&line) {
                Some(argv) if !argv.is_empty() => Some(Program::Run(RunArgs::Line(line))),
                Some(_) => {
                    cx.error(run.pos, format!("`{key}` is empty"), None);
                    None
                }
                None => {
                    cx.error(
                        run.pos,
                        format!("cannot split `{line}` into arguments (unbalanced quote?)"),
                        Some(format!("use a list: {key}: [prog, arg]")),
                    );
                    None
                }
            }),
        },
        (None, Some(sh)) => cx.string(sh, "sh").map(Program::Sh),
    }
}

/// An `env:` mapping of strings.
pub(super) fn env_map(cx: &mut Cx, f: &Fields) -> BTreeMap<String, String> {
    cx.string_map(f.get("env"), "env")
}

/// `silences: [CHECK…]`: names that must be checks.
fn silence_list(cx: &mut Cx, node: Option<&Node>) -> Vec<String> {
    let Some(n) = node else { return Vec::new() };
    let names = cx.string_list(n, "silences").unwrap_or_default();
    for name in &names {
        if !cx.check_names.contains(name) {
            let hint = crate::config::diagnostic::suggest(name, cx.check_names.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"));
            cx.error(n.pos, format!("silences names `{name}`, which is not a check"), hint);
        }
    }
    names
}
