//! The `checks:` section: one probe kind per check, thresholds, dependencies.
//!
//! Owns the rules of a check entry. Invariant: regexes compile, JSON pointers start with `/`,
//! `depends_on` names existing checks and has no cycle.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::probes::probe;
use super::walker::Cx;
use crate::config::checks::{Check, Severity};
use crate::config::yaml::{Node, Pos};

const PROBE_KINDS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "systemd",
    "disk",
    "cert",
    "file_age",
    "git_ref",
    "sql",
    "heartbeat",
    "backup_age",
    "drift",
];
const COMMON_KEYS: &[&str] = &[
    "timeout",
    "severity",
    "fail_after",
    "recover_after",
    "depends_on",
    "labels",
    "run_on",
];

pub(super) fn checks(cx: &mut Cx, node: &Node, base: &Path) -> BTreeMap<String, Check> {
    let mut out = BTreeMap::new();
    let Some(fields) = cx.map(node, "checks", &[]) else {
        return out;
    };
    let mut positions: HashMap<String, Pos> = HashMap::new();
    for (name, key_pos, cnode) in &fields.entries {
        if !super::valid_name(name) {
            cx.error(
                *key_pos,
                format!("check name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                None,
            );
            continue;
        }
        positions.insert(name.to_string(), cnode.pos);
        if let Some(c) = check(cx, name, cnode, base) {
            out.insert(name.to_string(), c);
        }
    }
    for (name, c) in &out {
        let pos = positions[name];
        for dep in &c.depends_on {
            if dep == name {
                cx.error(pos, format!("check `{name}` depends on itself"), None);
            } else if !fields.entries.iter().any(|(n, _, _)| n == dep) {
                let hint = crate::config::diagnostic::suggest(dep, out.keys().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"));
                cx.error(
                    pos,
                    format!("check `{name}` depends on `{dep}`, which is not a check"),
                    hint,
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(&out) {
        let pos = positions[&cycle[0]];
        cx.error(
            pos,
            format!("checks depend on each other in a circle: {}", cycle.join(" → ")),
            None,
        );
    }
    out
}

fn find_cycle(checks: &BTreeMap<String, Check>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        checks: &BTreeMap<String, Check>,
        stack: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for dep in checks.get(n).map(|c| c.depends_on.as_slice()).unwrap_or_default() {
            if dep != n
                && let Some(c) = visit(dep, checks, stack, done)
            {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = std::collections::HashSet::new();
    checks.keys().find_map(|n| visit(n, checks, &mut Vec::new(), &mut done))
}

fn check(cx: &mut Cx, name: &str, node: &Node, base: &Path) -> Option<Check> {
    let what = format!("check `{name}`");
    let mut allowed: Vec<&'static str> = PROBE_KINDS.to_vec();
    allowed.extend(COMMON_KEYS);
    let f = cx.map(node, &what, &allowed)?;
    let errors_before = cx.diags.len();
    let kinds: Vec<(&str, &Node)> = PROBE_KINDS
        .iter()
        .filter_map(|k| f.entries.iter().find(|(n, _, _)| n == k).map(|(n, _, v)| (*n, *v)))
        .collect();
    let probe = match kinds.as_slice() {
        [] => {
            cx.error(
                f.pos,
                format!("{what} has no probe"),
                Some(format!("add one of: {}", PROBE_KINDS.join(", "))),
            );
            None
        }
        [(kind, pnode)] => probe(cx, kind, pnode, base),
        [_, (second, pnode), ..] => {
            cx.error(
                pnode.pos,
                format!("{what} has more than one probe (`{second}` too)"),
                Some("split it into two checks".into()),
            );
            None
        }
    };
    let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
    let severity = match f.get("severity") {
        None => Severity::Warning,
        Some(n) => {
            let s = cx.string(n, "severity")?;
            Severity::parse(&s).or_else(|| {
                cx.error(
                    n.pos,
                    format!("unknown severity `{s}`"),
                    Some("use info, warning or critical".into()),
                );
                None
            })?
        }
    };
    let count = |cx: &mut Cx, key: &str| -> u32 {
        match f.get(key) {
            None => 1,
            Some(n) => match cx.u64(n, key) {
                Some(v) if (1..=1000).contains(&v) => v as u32,
                Some(_) => {
                    cx.error(n.pos, format!("{key} must be between 1 and 1000"), None);
                    1
                }
                None => 1,
            },
        }
    };
    let fail_after = count(cx, "fail_after");
    let recover_after = count(cx, "recover_after");
    let depends_on = f
        .get("depends_on")
        .and_then(|n| cx.string_list(n, "depends_on"))
        .unwrap_or_default();
    let labels = cx.string_map(f.get("labels"), "labels");
    let run_on = f
        .get("run_on")
        .map(|n| super::profile::run_on(cx, n))
        .unwrap_or_default();
    if cx.diags.len() != errors_before {
        return None;
    }
    Some(Check {
        probe: probe?,
        timeout,
        severity,
        fail_after,
        recover_after,
        depends_on,
        labels,
        run_on,
    })
}
