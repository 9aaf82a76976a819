//! `backups:`: targets with sources, destination, retention and the size alert.

use std::collections::BTreeMap;
use std::path::Path;

use super::profile::program;
use super::walker::{Cx, Fields};
use crate::config::backups::{BackupTarget, CommandSource, DEFAULT_MIN_SIZE_RATIO, DirSource, KeepPolicy, Source};
use crate::config::model::{Program, RunArgs};
use crate::config::yaml::{Kind, Node};

const TARGET_KEYS: &[&str] = &[
    "sources",
    "dest",
    "keep",
    "min_size_ratio",
    "level",
    "timeout",
    "offsite",
    "encrypt_to",
    "drill",
    "pre",
    "post",
];
/// Keys of the design that this version reads but does not act on yet.
const LATER_TARGET_KEYS: &[&str] = &["offsite", "encrypt_to", "drill", "pre", "post"];
const SOURCE_KINDS: &[&str] = &["sqlite", "postgres", "dir", "command"];

pub(super) fn backups(cx: &mut Cx, node: &Node, base: &Path) -> BTreeMap<String, BackupTarget> {
    let mut out = BTreeMap::new();
    let Some(fields) = cx.map(node, "backups", &[]) else {
        return out;
    };
    for (name, key_pos, tnode) in &fields.entries {
        if !super::valid_name(name) {
            cx.error(
                *key_pos,
                format!("backup target name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                None,
            );
            continue;
        }
        if let Some(t) = target(cx, name, tnode, base) {
            out.insert(name.to_string(), t);
        }
    }
    out
}

fn target(cx: &mut Cx, name: &str, node: &Node, base: &Path) -> Option<BackupTarget> {
    let what = format!("backup target `{name}`");
    let f = cx.map(node, &what, TARGET_KEYS)?;
    let errors_before = cx.diags.len();
    for (key, pos, _) in &f.entries {
        if LATER_TARGET_KEYS.contains(key) {
            cx.error(
                *pos,
                format!(
                    "`{key}:` of a backup target is not supported by runbook {}",
                    env!("CARGO_PKG_VERSION")
                ),
                Some(format!("remove `{key}` for now")),
            );
        }
    }
    let dest = cx
        .required(&f, "dest", &what, "dest: /var/backups/runbook")
        .map(|d| base.join(d));
    let sources = match f.get("sources") {
        Some(n) => sources(cx, n, base, &what),
        None => {
            cx.missing(
                f.pos,
                "sources",
                format!("{what} needs `sources`"),
                "sources: [ { sqlite: /var/lib/app/app.db }, { dir: /srv/app/data } ]",
            );
            Vec::new()
        }
    };
    let keep = f.get("keep").map(|n| keep(cx, n)).unwrap_or_default();
    let min_size_ratio = match f.get("min_size_ratio") {
        Some(n) => cx.parsed(n, "min_size_ratio", parse_ratio, "a share between 0 and 1, e.g. 0.5")?,
        None => DEFAULT_MIN_SIZE_RATIO,
    };
    let level = match f.get("level") {
        Some(n) => match cx.u64(n, "level") {
            Some(l @ 1..=19) => l as i32,
            Some(l) => {
                cx.error(
                    n.pos,
                    format!("level {l} is out of range 1..=19"),
                    Some("3 is the default".into()),
                );
                return None;
            }
            None => return None,
        },
        None => 3,
    };
    let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
    if cx.diags.len() > errors_before {
        return None;
    }
    Some(BackupTarget {
        sources,
        dest: dest?,
        keep: if keep.is_empty() {
            KeepPolicy {
                last: Some(7),
                ..KeepPolicy::default()
            }
        } else {
            keep
        },
        min_size_ratio,
        level,
        timeout,
    })
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}

fn keep(cx: &mut Cx, node: &Node) -> KeepPolicy {
    let Some(f) = cx.map(node, "keep", &["last", "daily", "weekly", "monthly"]) else {
        return KeepPolicy::default();
    };
    let mut n = |key: &str| {
        f.get(key)
            .and_then(|v| cx.u64(v, &format!("keep.{key}")))
            .map(|v| v.min(u32::MAX as u64) as u32)
    };
    KeepPolicy {
        last: n("last"),
        daily: n("daily"),
        weekly: n("weekly"),
        monthly: n("monthly"),
    }
}

fn sources(cx: &mut Cx, node: &Node, base: &Path, what: &str) -> Vec<Source> {
    let Kind::Seq(items) = &node.kind else {
        cx.error(
            node.pos,
            format!("{what}: sources must be a list, found {}", node.describe()),
            Some("sources: [ { sqlite: /var/lib/app/app.db } ]".into()),
        );
        return Vec::new();
    };
    if items.is_empty() {
        cx.error(node.pos, format!("{what} has no sources"), None);
    }
    let mut out = Vec::new();
    for item in items {
        let keys: Vec<&str> = match &item.kind {
            Kind::Map(entries) => entries
                .iter()
                .filter_map(|(k, _)| match &k.kind {
                    Kind::Scalar { value, .. } => Some(value.as_str()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let Some(kind) = SOURCE_KINDS.iter().find(|k| keys.contains(k)) else {
            cx.error(
                item.pos,
                format!(
                    "a backup source is one of {}, found {}",
                    SOURCE_KINDS.join(", "),
                    item.describe()
                ),
                Some("e.g. { sqlite: /var/lib/app/app.db }".into()),
            );
            continue;
        };
        let source = match *kind {
            "sqlite" => path_source(cx, item, "sqlite", base).map(Source::Sqlite),
            "postgres" => cx
                .map(item, "a postgres source", &["postgres"])
                .and_then(|f| f.get("postgres").and_then(|n| cx.string(n, "postgres")))
                .map(Source::Postgres),
            "dir" => dir_source(cx, item, base),
            _ => command_source(cx, item, out.len()),
        };
        if let Some(s) = source {
            out.push(s);
        }
    }
    out
}

fn path_source(cx: &mut Cx, item: &Node, key: &'static str, base: &Path) -> Option<std::path::PathBuf> {
    let f = cx.map(item, &format!("a {key} source"), &[key])?;
    let p = f.get(key).and_then(|n| cx.string(n, key))?;
    Some(base.join(p))
}

fn dir_source(cx: &mut Cx, item: &Node, base: &Path) -> Option<Source> {
    let f = cx.map(item, "a dir source", &["dir", "exclude"])?;
    let path = f.get("dir").and_then(|n| cx.string(n, "dir"))?;
    let exclude = f
        .get("exclude")
        .and_then(|n| cx.string_list(n, "exclude"))
        .unwrap_or_default();
    Some(Source::Dir(DirSource {
        path: base.join(path),
        exclude,
    }))
}

fn command_source(cx: &mut Cx, item: &Node, index: usize) -> Option<Source> {
    let f: Fields = cx.map(item, "a command source", &["command", "name"])?;
    let cmd = f.get("command")?;
    let name = f.get("name").and_then(|n| cx.string(n, "name"));
    // `command:` holds what a task's `run:` holds: argv or a line.
    let inner = Fields {
        entries: vec![("run", cmd.pos, cmd)],
        pos: cmd.pos,
    };
    let run = match program(cx, &inner, "a command source")? {
        Program::Run(r) => r,
        Program::Sh(s) => RunArgs::Line(s),
    };
    let name = name.unwrap_or_else(|| format!("command-{index}.out"));
    if name.contains('/') || name.starts_with('.') || name.is_empty() {
        cx.error(
            cmd.pos,
            format!("command source name `{name}` must be a plain file name"),
            None,
        );
        return None;
    }
    Some(Source::Command(CommandSource { run, name }))
}
