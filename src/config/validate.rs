//! Turns a spanned YAML tree into a validated `Config`, collecting every error.
//!
//! Owns the rules of runbook.yaml: known keys, types, units, cron syntax, references, and
//! `${VAR}` expansion of values. It never stops at the first problem: every error is reported
//! with its position. Invariant: it returns a `Config` only when it found no error.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::diagnostic::{Diagnostic, suggest};
use super::interp;
use super::model::{
    CommandTask, Config, GitSync, Limits, Profile, Program, RunArgs, Schedule, SecretsConfig, StateConfig, Task,
};
use super::secrets::{self, Redactor};
use super::units::{ByteSize, HumanDuration, Percent};
use super::yaml::{Kind, Node, Pos};

const TOP_KEYS: &[&str] = &["version", "host", "state", "secrets", "profiles"];
/// Sections of the full design that this version does not read yet.
const LATER_KEYS: &[&str] = &[
    "checks",
    "notify",
    "backups",
    "gates",
    "sessions",
    "incidents",
    "deploy",
    "api",
];
const PROFILE_KEYS: &[&str] = &["cron", "timezone", "enabled", "timeout", "sync_before_run", "tasks"];
const COMMAND_KEYS: &[&str] = &[
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
const LATER_TASK_KINDS: &[&str] = &["check", "backup", "prune", "drill"];

pub const DEFAULT_STATE_URL: &str = "sqlite:///var/lib/runbook/runbook.db";

pub(super) struct Cx<'a> {
    file: &'a Path,
    src: &'a str,
    pub diags: Vec<Diagnostic>,
    /// Variables from env files (secrets), which win over the process environment.
    env_files: HashMap<String, String>,
    /// Redacts env-file values from names derived from them (task names).
    redactor: Redactor,
    /// (mapping, key) pairs already suggested for a misspelt key: not reported missing again.
    suggested: Vec<(Pos, &'static str)>,
}

struct Fields<'n> {
    /// (key, position of the key, value)
    entries: Vec<(&'n str, Pos, &'n Node)>,
    pos: Pos,
}

impl<'n> Fields<'n> {
    /// A key's value; an explicit null counts as absent.
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
            .filter(|v| !matches!(v.kind, Kind::Null))
    }
}

impl<'a> Cx<'a> {
    pub(super) fn new(file: &'a Path, src: &'a str) -> Self {
        Cx {
            file,
            src,
            diags: Vec::new(),
            env_files: HashMap::new(),
            redactor: Redactor::default(),
            suggested: Vec::new(),
        }
    }

    pub(super) fn error(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.diags
            .push(Diagnostic::new(self.file.to_path_buf(), self.src, pos, message).with_hint(hint));
    }

    fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&'static str]) -> Option<Fields<'n>> {
        let Kind::Map(entries) = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.describe()),
                None,
            );
            return None;
        };
        let mut seen = HashSet::new();
        let mut fields = Fields {
            entries: Vec::new(),
            pos: node.pos,
        };
        for (key, value) in entries {
            let Kind::Scalar { value: name, .. } = &key.kind else {
                self.error(key.pos, format!("keys of {what} must be plain names"), None);
                continue;
            };
            if !seen.insert(name.as_str()) {
                self.error(
                    key.pos,
                    format!("duplicate key `{name}` in {what}"),
                    Some("remove one of them".into()),
                );
                continue;
            }
            if !allowed.is_empty() && !allowed.contains(&name.as_str()) {
                let suggestion = suggest(name, allowed.iter().copied());
                if let Some(s) = suggestion.and_then(|s| allowed.iter().find(|a| **a == s)) {
                    self.suggested.push((node.pos, s));
                }
                let hint = suggestion
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("known keys here: {}", allowed.join(", "))));
                self.error(key.pos, format!("unknown key `{name}` in {what}"), hint);
                continue;
            }
            fields.entries.push((name.as_str(), key.pos, value));
        }
        Some(fields)
    }

    /// Reports a missing required key, unless a misspelling of it was already reported.
    fn missing(&mut self, map: Pos, key: &str, message: String, hint: &str) {
        if !self.suggested.iter().any(|(p, k)| *p == map && *k == key) {
            self.error(map, message, Some(hint.to_string()));
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env_files.get(name).cloned().or_else(|| std::env::var(name).ok())
    }

    /// A scalar value as a string, with `${VAR}` expanded.
    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let Kind::Scalar { value, .. } = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a string, found {}", node.describe()),
                None,
            );
            return None;
        };
        match interp::expand(value, &|n| self.lookup(n)) {
            Ok(v) => Some(v),
            Err(msg) => {
                let hint = if msg.contains("is not set") {
                    Some(
                        "set it in the environment or in a secrets.env_files file, or give a default: ${NAME:-value}"
                            .into(),
                    )
                } else {
                    Some("write `$$` for a literal `$`".into())
                };
                self.error(node.pos, format!("{what}: {msg}"), hint);
                None
            }
        }
    }

    fn parsed<T>(&mut self, node: &Node, what: &str, parse: fn(&str) -> Result<T, String>, hint: &str) -> Option<T> {
        let text = self.string(node, what)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.error(node.pos, format!("{what}: {msg}"), Some(hint.to_string()));
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<HumanDuration> {
        let d = self.parsed(
            node,
            what,
            HumanDuration::parse,
            "durations look like 90s, 10m, 1h30m, 26h",
        )?;
        if d.0.is_zero() {
            self.error(node.pos, format!("{what} must be longer than zero"), None);
            return None;
        }
        Some(d)
    }

    fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.kind {
            Kind::Scalar { value, plain: true } if value == "true" => Some(true),
            Kind::Scalar { value, plain: true } if value == "false" => Some(false),
            _ => {
                self.error(node.pos, format!("{what} must be true or false"), None);
                None
            }
        }
    }

    fn u64(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.kind {
            Kind::Scalar { value, .. } => match value.parse::<u64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(
                        node.pos,
                        format!("{what} must be a whole number, found `{value}`"),
                        None,
                    );
                    None
                }
            },
            _ => {
                self.error(
                    node.pos,
                    format!("{what} must be a whole number, found {}", node.describe()),
                    None,
                );
                None
            }
        }
    }

    fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<String>> {
        let Kind::Seq(items) = &node.kind else {
            self.error(
                node.pos,
                format!("{what} must be a list, found {}", node.describe()),
                None,
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for item in items {
            match self.string(item, what) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }
}

/// Validates a parsed document. `file` is used for positions and relative paths.
pub(super) fn config(cx: &mut Cx, root: &Node) -> Option<Config> {
    let mut allowed: Vec<&str> = TOP_KEYS.to_vec();
    allowed.extend(LATER_KEYS);
    let top = cx.map(root, "runbook.yaml", &allowed)?;
    for (key, key_pos, _) in &top.entries {
        if LATER_KEYS.contains(key) {
            cx.error(
                *key_pos,
                format!("`{key}:` is not supported by runbook {}", env!("CARGO_PKG_VERSION")),
                Some(format!("remove the `{key}` section for now")),
            );
        }
    }
    let base = cx.file.parent().map(Path::to_path_buf).unwrap_or_default();

    let version = match top.get("version") {
        None => {
            cx.error(top.pos, "missing `version`", Some("add `version: 1` at the top".into()));
            0
        }
        Some(node) => match cx.u64(node, "version") {
            Some(1) => 1,
            Some(v) => {
                cx.error(
                    node.pos,
                    format!("unsupported version {v}"),
                    Some("this runbook reads `version: 1`".into()),
                );
                0
            }
            None => 0,
        },
    };

    let secrets = top
        .get("secrets")
        .and_then(|n| secrets_section(cx, n, &base))
        .unwrap_or_default();
    let mut env = Vec::new();
    let mut secret_values = Vec::new();
    for (i, path) in secrets.env_files.iter().enumerate() {
        let pos = top
            .get("secrets")
            .and_then(|s| match &s.kind {
                Kind::Map(entries) => entries
                    .iter()
                    .find(|(k, _)| matches!(&k.kind, Kind::Scalar { value, .. } if value == "env_files"))
                    .map(|(_, v)| v),
                _ => None,
            })
            .map(|list| match &list.kind {
                Kind::Seq(items) => items.get(i).map(|n| n.pos).unwrap_or(list.pos),
                _ => list.pos,
            })
            .unwrap_or(top.pos);
        match secrets::read_env_file(path) {
            Ok(vars) => {
                for var in vars {
                    secret_values.push(var.value.clone());
                    cx.env_files.insert(var.key.clone(), var.value.clone());
                    env.push((var.key, var.value));
                }
            }
            Err((0, msg)) => cx.error(
                pos,
                format!("env file: {msg}"),
                Some("create the file or remove it from secrets.env_files".into()),
            ),
            Err((line, msg)) => cx.error(pos, format!("env file {}:{line}: {msg}", path.display()), None),
        }
    }

    cx.redactor = Redactor::new(secret_values.iter().cloned());

    let host = match top.get("host") {
        Some(node) => cx.string(node, "host").unwrap_or_default(),
        None => default_host(),
    };
    let state = state_section(cx, top.get("state"), &base);

    let mut profiles = BTreeMap::new();
    if let Some(node) = top.get("profiles")
        && let Some(fields) = cx.map(node, "profiles", &[])
    {
        for (name, key_pos, pnode) in &fields.entries {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                cx.error(
                    *key_pos,
                    format!("profile name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                    None,
                );
                continue;
            }
            if let Some(p) = profile(cx, name, pnode, &base) {
                profiles.insert(name.to_string(), p);
            }
        }
    }

    if !cx.diags.is_empty() {
        return None;
    }
    Some(Config {
        version,
        host,
        state,
        secrets,
        profiles,
        source: cx.file.to_path_buf(),
        redactor: cx.redactor.clone(),
        env,
    })
}

pub fn default_host() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

fn secrets_section(cx: &mut Cx, node: &Node, base: &Path) -> Option<SecretsConfig> {
    let f = cx.map(node, "secrets", &["env_files", "deny_read"])?;
    let env_files = f
        .get("env_files")
        .and_then(|n| cx.string_list(n, "secrets.env_files"))
        .unwrap_or_default()
        .into_iter()
        .map(|p| base.join(p))
        .collect();
    let deny_read = f
        .get("deny_read")
        .and_then(|n| cx.string_list(n, "secrets.deny_read"))
        .unwrap_or_default();
    Some(SecretsConfig { env_files, deny_read })
}

fn state_section(cx: &mut Cx, node: Option<&Node>, base: &Path) -> StateConfig {
    let url = match node.and_then(|n| cx.map(n, "state", &["url"])) {
        Some(f) => match f.get("url") {
            Some(u) => match cx.string(u, "state.url") {
                Some(url) => match state_path(&url, base) {
                    Ok(path) => return StateConfig { url, path },
                    Err(msg) => {
                        cx.error(
                            u.pos,
                            msg,
                            Some("use sqlite:///absolute/path.db or a path relative to runbook.yaml".into()),
                        );
                        return StateConfig::default();
                    }
                },
                None => return StateConfig::default(),
            },
            None => DEFAULT_STATE_URL.to_string(),
        },
        None => DEFAULT_STATE_URL.to_string(),
    };
    let path = state_path(&url, base).unwrap_or_default();
    StateConfig { url, path }
}

/// Resolves a state URL to a SQLite file path.
pub fn state_path(url: &str, base: &Path) -> Result<PathBuf, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(format!(
            "state.url `{url}`: PostgreSQL state (fleet mode) is not available in this version"
        ));
    }
    let raw = if let Some(rest) = url.strip_prefix("sqlite://") {
        rest
    } else if let Some(rest) = url.strip_prefix("sqlite:") {
        rest
    } else if url.contains("://") {
        return Err(format!("state.url `{url}`: unknown scheme"));
    } else {
        url
    };
    if raw.is_empty() {
        return Err("state.url has no path".into());
    }
    let path = PathBuf::from(raw);
    Ok(if path.is_absolute() { path } else { base.join(path) })
}

fn profile(cx: &mut Cx, name: &str, node: &Node, base: &Path) -> Option<Profile> {
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
                        if !c.name_explicit {
                            let count = names.entry(c.task.name.clone()).or_insert(0);
                            *count += 1;
                            if *count > 1 {
                                c.task.name = format!("{}-{}", c.task.name, count);
                            }
                        } else if names.insert(c.task.name.clone(), 1).is_some() {
                            cx.error(
                                item.pos,
                                format!("two tasks in {what} are named `{}`", c.task.name),
                                Some("task names must be unique within a profile".into()),
                            );
                        }
                        tasks.push(Task::Command(c.task));
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
        tasks,
        schedule,
    })
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
    task: CommandTask,
    name_explicit: bool,
}

fn task_inner(cx: &mut Cx, node: &Node) -> Option<ParsedTask> {
    match &node.kind {
        Kind::Scalar { value, .. } => {
            cx.error(
                node.pos,
                format!("task `{value}` refers to a check, but no check named `{value}` is defined"),
                Some(format!("to run a command write `{{ run: [{value}] }}`")),
            );
            None
        }
        Kind::Map(entries) => {
            let keys: Vec<&str> = entries
                .iter()
                .filter_map(|(k, _)| match &k.kind {
                    Kind::Scalar { value, .. } => Some(value.as_str()),
                    _ => None,
                })
                .collect();
            if let Some(kind) = LATER_TASK_KINDS.iter().find(|k| keys.contains(k)) {
                cx.error(
                    node.pos,
                    format!(
                        "`{kind}:` tasks are not supported by runbook {}",
                        env!("CARGO_PKG_VERSION")
                    ),
                    Some("use a command task: { run: [...] } or { sh: \"...\" }".into()),
                );
                return None;
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

fn command_task(cx: &mut Cx, node: &Node) -> Option<ParsedTask> {
    let f = cx.map(node, "task", COMMAND_KEYS)?;
    let errors_before = cx.diags.len();
    let program = match (f.get("run"), f.get("sh")) {
        (Some(_), Some(sh)) => {
            cx.error(sh.pos, "a task has either `run` or `sh`, not both", None);
            None
        }
        (None, None) => {
            cx.error(
                f.pos,
                "a task needs `run` (a program and arguments) or `sh` (a shell script)",
                None,
            );
            None
        }
        (Some(run), None) => match &run.kind {
            Kind::Seq(_) => cx.string_list(run, "run").and_then(|argv| {
                if argv.is_empty() {
                    cx.error(
                        run.pos,
                        "`run` is an empty list",
                        Some("name the program first: run: [./script.sh, --flag]".into()),
                    );
                    None
                } else {
                    Some(Program::Run(RunArgs::Argv(argv)))
                }
            }),
            _ => cx.string(run, "run").and_then(|line| match shlex::split(&line) {
                Some(argv) if !argv.is_empty() => Some(Program::Run(RunArgs::Line(line))),
                Some(_) => {
                    cx.error(run.pos, "`run` is empty", None);
                    None
                }
                None => {
                    cx.error(
                        run.pos,
                        format!("cannot split `{line}` into arguments (unbalanced quote?)"),
                        Some("use a list: run: [prog, arg]".into()),
                    );
                    None
                }
            }),
        },
        (None, Some(sh)) => cx.string(sh, "sh").map(Program::Sh),
    };
    let explicit = f.get("name").and_then(|n| cx.string(n, "name"));
    let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
    let kill_grace = f.get("kill_grace").and_then(|n| cx.duration(n, "kill_grace"));
    let cwd = f.get("cwd").and_then(|n| cx.string(n, "cwd")).map(PathBuf::from);
    let mut env = BTreeMap::new();
    if let Some(n) = f.get("env")
        && let Some(ef) = cx.map(n, "env", &[])
    {
        for (k, _, v) in &ef.entries {
            if let Some(val) = cx.string(v, &format!("env.{k}")) {
                env.insert(k.to_string(), val);
            }
        }
    }
    let limits = Limits {
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
    };
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
        task: CommandTask {
            name,
            program,
            timeout,
            kill_grace,
            cwd,
            env,
            limits,
        },
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
