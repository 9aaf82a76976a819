//! The `gates:` section: checks measured (sampled, compared with a baseline) and built-in
//! conditions, each turned into a probe of its own.
//!
//! Invariant: every check a gate names exists, `dry_run` names only what the gate measures,
//! and every comparison parses.

use std::collections::BTreeMap;
use std::path::Path;

use super::walker::{Cx, Fields};
use crate::config::checks::{BackupAgeProbe, Check, CommandExpect, CommandProbe, Probe, Severity, SqlExpect, SqlProbe};
use crate::config::gates::{Compare, Gate, Measure};
use crate::config::program::{Program, RunArgs};
use crate::config::units::HumanDuration;
use crate::config::yaml::{Kind, Node};

const GATE_KEYS: &[&str] = &[
    "checks",
    "conditions",
    "require_verified_backup",
    "dry_run",
    "repo",
    "notify",
];
const SAMPLING_KEYS: &[&str] = &[
    "check",
    "count",
    "interval",
    "failure_limit",
    "inconclusive_limit",
    "consecutive_error_limit",
];
const CONDITIONS: &[&str] = &[
    "migration_at_head",
    "backup_verified_within",
    "config_valid",
    "git_clean",
    "disk_free",
    "no_open_alerts",
    "drift_clean",
];

pub(super) fn gates(
    cx: &mut Cx,
    node: &Node,
    base: &Path,
    checks: &BTreeMap<String, Check>,
    channels: &[String],
) -> BTreeMap<String, Gate> {
    let mut out = BTreeMap::new();
    let Some(fields) = cx.map(node, "gates", &[]) else {
        return out;
    };
    for (name, key_pos, gnode) in &fields.entries {
        if !super::valid_name(name) {
            cx.error(
                *key_pos,
                format!("gate name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                None,
            );
            continue;
        }
        if let Some(g) = gate(cx, name, gnode, base, checks) {
            for c in g.notify.iter().filter(|c| !channels.contains(c)) {
                let hint = crate::config::diagnostic::suggest(c, channels.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "define it under notify.channels".into());
                cx.error(
                    gnode.pos,
                    format!("gates.{name}.notify: no channel named `{c}`"),
                    Some(hint),
                );
            }
            out.insert(name.to_string(), g);
        }
    }
    out
}

fn plain_check(probe: Probe) -> Check {
    Check {
        probe,
        timeout: None,
        severity: Severity::Warning,
        fail_after: 1,
        recover_after: 1,
        depends_on: Vec::new(),
        labels: BTreeMap::new(),
        run_on: Default::default(),
    }
}

fn once(name: &str, kind: &str, check: Check) -> Measure {
    Measure {
        name: name.to_string(),
        kind: kind.to_string(),
        check,
        count: 1,
        interval: HumanDuration(std::time::Duration::ZERO),
        failure_limit: 0,
        inconclusive_limit: 0,
        consecutive_error_limit: 0,
        compare: BTreeMap::new(),
    }
}

fn gate(cx: &mut Cx, name: &str, node: &Node, base: &Path, checks: &BTreeMap<String, Check>) -> Option<Gate> {
    let what = format!("gates.{name}");
    let f = cx.map(node, &what, GATE_KEYS)?;
    let mut g = Gate {
        measures: Vec::new(),
        no_open_alerts: None,
        config_valid: false,
        drift_clean: false,
        dry_run: Vec::new(),
        repo: f
            .get("repo")
            .and_then(|n| cx.string(n, &format!("{what}.repo")))
            .map(|p| base.join(p)),
        notify: f
            .get("notify")
            .and_then(|n| cx.string_list(n, &format!("{what}.notify")))
            .unwrap_or_default(),
    };
    if let Some(list) = f.get("checks") {
        let Kind::Seq(items) = &list.kind else {
            cx.error(list.pos, format!("{what}.checks must be a list"), None);
            return None;
        };
        for item in items {
            if let Some(m) = measure(cx, &what, item, checks) {
                g.measures.push(m);
            }
        }
    }
    if let Some(list) = f.get("conditions") {
        let Kind::Seq(items) = &list.kind else {
            cx.error(list.pos, format!("{what}.conditions must be a list"), None);
            return None;
        };
        for item in items {
            condition(cx, &what, item, base, &mut g);
        }
    }
    if let Some(n) = f.get("require_verified_backup") {
        // `require_verified_backup: main` (within a day) or `{ target: main, within: 6h }`.
        let (target, within) = match &n.kind {
            Kind::Map(_) => verified_backup(cx, &format!("{what}.require_verified_backup"), n)?,
            _ => (
                cx.string(n, "require_verified_backup")?,
                HumanDuration(std::time::Duration::from_secs(86_400)),
            ),
        };
        g.measures
            .push(verified_within(cx, n, "require_verified_backup", target, within));
    }
    if let Some(n) = f.get("dry_run") {
        g.dry_run = cx.string_list(n, &format!("{what}.dry_run")).unwrap_or_default();
        for d in &g.dry_run {
            if !g.measures.iter().any(|m| &m.name == d) {
                cx.error(
                    n.pos,
                    format!("{what}.dry_run: `{d}` is not measured by this gate"),
                    Some("name a check listed under `checks:`".into()),
                );
            }
        }
    }
    if g.measures.is_empty() && g.no_open_alerts.is_none() && !g.config_valid && !g.drift_clean {
        cx.error(
            f.pos,
            format!("{what} measures nothing"),
            Some("add `checks:` or `conditions:`".into()),
        );
        return None;
    }
    // Two measures of one name could not be told apart in the evidence.
    let mut seen = std::collections::HashSet::new();
    for m in &mut g.measures {
        let mut n = 2;
        let base_name = m.name.clone();
        while !seen.insert(m.name.clone()) {
            m.name = format!("{base_name}#{n}");
            n += 1;
        }
    }
    Some(g)
}

/// A check entry: `name`, or `{ check: name, count, interval, …limits, VALUE: "<= +10%" }`.
fn measure(cx: &mut Cx, what: &str, node: &Node, checks: &BTreeMap<String, Check>) -> Option<Measure> {
    let (name, name_pos, f) = match &node.kind {
        Kind::Map(_) => {
            let f = cx.map(node, &format!("{what}.checks[]"), &[])?;
            let n = f.get("check").or_else(|| {
                cx.error(f.pos, format!("{what}.checks: an entry needs `check: NAME`"), None);
                None
            })?;
            (cx.string(n, "check")?, n.pos, Some(f))
        }
        _ => (cx.string(node, &format!("{what}.checks[]"))?, node.pos, None),
    };
    let Some(check) = checks.get(&name) else {
        let hint = crate::config::diagnostic::suggest(&name, checks.keys().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| "define it under `checks:`".into());
        cx.error(name_pos, format!("{what}: no check named `{name}`"), Some(hint));
        return None;
    };
    let mut m = once(&name, "check", check.clone());
    let Some(f) = f else { return Some(m) };
    let count = |cx: &mut Cx, key: &str, default: u32| {
        f.get(key)
            .and_then(|n| cx.u64(n, key))
            .map(|v| v.min(u32::MAX as u64) as u32)
            .unwrap_or(default)
    };
    m.count = count(cx, "count", 1).max(1);
    m.failure_limit = count(cx, "failure_limit", 0);
    m.inconclusive_limit = count(cx, "inconclusive_limit", 0);
    m.consecutive_error_limit = count(cx, "consecutive_error_limit", 0);
    if let Some(n) = f.get("interval") {
        m.interval = cx.duration(n, "interval")?;
    } else if m.count > 1 {
        cx.error(
            f.pos,
            format!("{what}: `{name}` is measured {} times: say how far apart", m.count),
            Some("e.g. interval: 10s".into()),
        );
    }
    comparisons(cx, what, &name, &f, &mut m);
    Some(m)
}

/// Every key that is not a sampling setting is a value measured: `latency_ms`, or a field of
/// the check's data (`status`, `days_left`, `phases_ms.tls`).
fn comparisons(cx: &mut Cx, what: &str, name: &str, f: &Fields, m: &mut Measure) {
    for (key, pos, value) in &f.entries {
        if SAMPLING_KEYS.contains(key) {
            continue;
        }
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            cx.error(*pos, format!("{what}: `{key}` is not a value a check measures"), None);
            continue;
        }
        let Some(text) = cx.string(value, key) else { continue };
        match Compare::parse(&text) {
            Ok(c) => {
                m.compare.insert(key.to_string(), c);
            }
            Err(e) => cx.error(
                value.pos,
                format!("{what}: {name}.{key}: {e}"),
                Some(format!("a sampling setting is one of {}; any other key compares a measured value, e.g. latency_ms: \"<= +10%\"", SAMPLING_KEYS[1..].join(", "))),
            ),
        }
    }
}

/// The measure that `target`'s newest verified archive is younger than `within` (a
/// `backup_age` probe); the target is checked once `backups:` is read.
fn verified_within(cx: &mut Cx, n: &Node, name: &str, target: String, within: HumanDuration) -> Measure {
    cx.backup_refs.push((n.pos, target.clone()));
    let probe = Probe::BackupAge(BackupAgeProbe {
        target,
        max_age: within,
    });
    once(name, "backup_verified_within", plain_check(probe))
}

fn verified_backup(cx: &mut Cx, what: &str, node: &Node) -> Option<(String, HumanDuration)> {
    let f = cx.map(node, what, &["target", "within"])?;
    let target = cx.required(&f, "target", what, "e.g. target: main")?;
    let within = match f.get("within") {
        Some(n) => cx.duration(n, "within")?,
        None => HumanDuration(std::time::Duration::from_secs(86_400)),
    };
    Some((target, within))
}

/// One entry of `conditions:`: a bare name (`config_valid`) or `{ NAME: settings }`.
fn condition(cx: &mut Cx, what: &str, node: &Node, base: &Path, g: &mut Gate) {
    let (kind, settings) = match &node.kind {
        Kind::Scalar { value, .. } => (value.clone(), None),
        Kind::Map(entries) if entries.len() == 1 => match &entries[0].0.kind {
            Kind::Scalar { value, .. } => (value.clone(), Some(&entries[0].1)),
            _ => {
                return cx.error(
                    node.pos,
                    format!("{what}.conditions: a condition is named by a string"),
                    None,
                );
            }
        },
        _ => {
            return cx.error(
                node.pos,
                format!("{what}.conditions: each entry is one condition, e.g. `- config_valid` or `- {{ disk_free: {{ path: /, min_free: 10% }} }}`"),
                None,
            );
        }
    };
    let here = format!("{what}.conditions.{kind}");
    let needs = |cx: &mut Cx, example: &str| {
        cx.error(
            node.pos,
            format!("{here} needs settings"),
            Some(format!("e.g. {example}")),
        );
    };
    match (kind.as_str(), settings) {
        ("config_valid", _) => g.config_valid = true,
        ("no_open_alerts", s) => {
            let severity = match s {
                None => Some(Severity::Warning),
                Some(n) => {
                    let text = match &n.kind {
                        Kind::Map(_) => cx
                            .map(n, &here, &["severity"])
                            .and_then(|f| f.get("severity").and_then(|s| cx.string(s, "severity"))),
                        _ => cx.string(n, &here),
                    };
                    text.and_then(|t| {
                        Severity::parse(&t).or_else(|| {
                            cx.error(
                                n.pos,
                                format!("{here}: unknown severity `{t}`"),
                                Some("one of info, warning, critical".into()),
                            );
                            None
                        })
                    })
                }
            };
            g.no_open_alerts = severity;
        }
        ("disk_free", Some(n)) => {
            if let Some(p) = super::probes::probe(cx, "disk", n, base) {
                g.measures.push(once("disk_free", "disk_free", plain_check(p)));
            }
        }
        ("git_clean", Some(n)) => {
            if let Some(path) = cx.string(n, &here) {
                let path = base.join(path);
                // Tracked changes and untracked files alike, listed on one line (the detail).
                let script = "set -f; out=$(git -C \"$1\" status --porcelain) || exit 2; [ -z \"$out\" ] || { echo not clean: $out; exit 1; }";
                let argv = vec![
                    "sh".into(),
                    "-c".into(),
                    script.into(),
                    "git_clean".into(),
                    path.display().to_string(),
                ];
                let probe = Probe::Command(CommandProbe {
                    program: Program::Run(RunArgs::Argv(argv)),
                    cwd: None,
                    env: BTreeMap::new(),
                    expect: CommandExpect::default(),
                });
                g.measures.push(once("git_clean", "git_clean", plain_check(probe)));
            }
        }
        ("migration_at_head", Some(n)) => {
            let Some(f) = cx.map(n, &here, &["run", "sh", "url", "query"]) else {
                return;
            };
            let probe = if f.get("query").is_some() || f.get("url").is_some() {
                // A query counting the pending migrations: at head when it says 0.
                let url = cx.required(&f, "url", &here, "e.g. url: \"${DATABASE_URL}\"");
                let query = cx.required(
                    &f,
                    "query",
                    &here,
                    "e.g. query: SELECT count(*) FROM pending_migrations",
                );
                let (Some(url), Some(query)) = (url, query) else { return };
                Probe::Sql(SqlProbe {
                    url,
                    query,
                    expect: SqlExpect {
                        equals: Some(serde_json::json!(0)),
                        ..SqlExpect::default()
                    },
                })
            } else {
                // A command that exits 0 at head and otherwise says what is pending.
                let Some(program) = super::profile::program(cx, &f, &here) else {
                    return;
                };
                Probe::Command(CommandProbe {
                    program,
                    cwd: None,
                    env: BTreeMap::new(),
                    expect: CommandExpect::default(),
                })
            };
            g.measures
                .push(once("migration_at_head", "migration_at_head", plain_check(probe)));
        }
        ("backup_verified_within", Some(n)) => {
            if let Some((target, within)) = verified_backup(cx, &here, n) {
                g.measures
                    .push(verified_within(cx, n, "backup_verified_within", target, within));
            }
        }
        ("drift_clean", _) => g.drift_clean = true,
        ("disk_free", None) => needs(cx, "disk_free: { path: /, min_free: 10% }"),
        ("git_clean", None) => needs(cx, "git_clean: /srv/app"),
        ("migration_at_head", None) => needs(cx, "migration_at_head: { run: [./bin/migrate, --status] }"),
        ("backup_verified_within", None) => needs(cx, "backup_verified_within: { target: main, within: 24h }"),
        (other, _) => {
            let hint = crate::config::diagnostic::suggest(other, CONDITIONS.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| format!("one of {}", CONDITIONS.join(", ")));
            cx.error(
                node.pos,
                format!("{what}.conditions: unknown condition `{other}`"),
                Some(hint),
            );
        }
    }
}
