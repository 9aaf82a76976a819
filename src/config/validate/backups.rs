//! `backups:`: targets with sources, destination, retention and the size alert.

use std::collections::BTreeMap;
use std::path::Path;

use super::profile::{program, program_keyed};
use super::walker::{Cx, Fields};
use crate::config::backups::{
    BackupTarget, CommandSource, DEFAULT_MIN_SIZE_RATIO, DirSource, DrillCheck, DrillConfig, KeepPolicy, Offsite,
    RecoverConfig, Source,
};
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
    "identity_file",
    "drill",
    "pre",
    "post",
    "restore_checks",
    "keep_special_modes",
];
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
        cx.declared_backups.push(name.to_string());
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
                    Some("1 (the default) is fastest; 3 packs about 3 % tighter at a third less speed".into()),
                );
                return None;
            }
            None => return None,
        },
        None => 1,
    };
    let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
    let drill = f
        .get("drill")
        .map(|n| drill(cx, n, base))
        .unwrap_or_else(|| DrillConfig {
            evidence_dir: base.join(DEFAULT_EVIDENCE_DIR),
            ..DrillConfig::default()
        });
    let pre = f.get("pre").map(|n| commands(cx, n, "pre")).unwrap_or_default();
    let post = f.get("post").map(|n| commands(cx, n, "post")).unwrap_or_default();
    let offsite = f.get("offsite").and_then(|n| offsite(cx, n, base));
    let encrypt_to = encrypt_to(cx, f.get("encrypt_to"), "encrypt_to").unwrap_or_default();
    let keep_special_modes = f
        .get("keep_special_modes")
        .and_then(|n| cx.bool(n, "keep_special_modes"))
        .unwrap_or(false);
    let identity_file = f
        .get("identity_file")
        .and_then(|n| cx.string(n, "identity_file"))
        .map(|p| base.join(p));
    let restore_checks = f
        .get("restore_checks")
        .and_then(|n| cx.string_list(n, "restore_checks"))
        .unwrap_or_default();
    for c in &restore_checks {
        if !cx.check_names.contains(c) {
            let pos = f.get("restore_checks").map_or(f.pos, |n| n.pos);
            cx.error(pos, format!("restore_checks: no check named `{c}`"), None);
        }
    }
    if cx.diags.len() > errors_before {
        return None;
    }
    Some(BackupTarget {
        keep_special_modes,
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
        drill,
        pre,
        post,
        restore_checks,
        offsite,
        encrypt_to,
        identity_file,
    })
}

fn offsite(cx: &mut Cx, node: &Node, base: &Path) -> Option<Offsite> {
    let f = cx.map(
        node,
        "offsite",
        &[
            "url",
            "endpoint",
            "region",
            "access_key_id",
            "secret_access_key",
            "encrypt_to",
            "identity_file",
            "max_rate",
        ],
    )?;
    let url = cx.required(&f, "url", "offsite", "url: s3://bucket/prefix, or a directory")?;
    let mut get = |k: &str| f.get(k).and_then(|n| cx.string(n, &format!("offsite.{k}")));
    let endpoint = get("endpoint");
    let region = get("region").unwrap_or_else(|| "us-east-1".into());
    let access_key_id = get("access_key_id");
    let secret_access_key = get("secret_access_key");
    let identity_file = get("identity_file").map(|p| base.join(p));
    let encrypt_to = encrypt_to(cx, f.get("encrypt_to"), "offsite.encrypt_to")?;
    let max_rate = match f.get("max_rate") {
        Some(n) => Some(cx.parsed(
            n,
            "offsite.max_rate",
            crate::config::units::ByteSize::parse,
            "bytes per second, e.g. 10MiB",
        )?),
        None => None,
    };
    let pos = f.get("url").map_or(f.pos, |n| n.pos);
    let url = if let Some(rest) = url.strip_prefix("s3://") {
        if rest.split('/').next().is_none_or(str::is_empty) {
            cx.error(
                pos,
                format!("offsite.url `{url}` names no bucket"),
                Some("s3://bucket/prefix".into()),
            );
            return None;
        }
        url
    } else if url.contains("://") && !url.starts_with("file://") {
        cx.error(
            pos,
            format!("offsite.url `{url}`: only s3:// and directories are supported"),
            Some("s3://bucket/prefix, or /mnt/offsite/app".into()),
        );
        return None;
    } else {
        let p = url.strip_prefix("file://").unwrap_or(&url);
        base.join(p).display().to_string()
    };
    Some(Offsite {
        url,
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        encrypt_to,
        identity_file,
        max_rate,
    })
}

/// `encrypt_to`: one age recipient or a list of them.
fn encrypt_to(cx: &mut Cx, node: Option<&Node>, what: &str) -> Option<Vec<String>> {
    let Some(n) = node else {
        return Some(Vec::new());
    };
    let list = match &n.kind {
        Kind::Seq(_) => cx.string_list(n, what).unwrap_or_default(),
        _ => cx.string(n, what).into_iter().collect(),
    };
    for r in &list {
        if r.parse::<age::x25519::Recipient>().is_err() {
            cx.error(
                n.pos,
                format!("{what}: `{r}` is not an age recipient"),
                Some("age1… (the public key printed by age-keygen)".into()),
            );
            return None;
        }
    }
    Some(list)
}

const DEFAULT_EVIDENCE_DIR: &str = "evidence/drills";

/// `recover: { start: [programs], checks: [drill checks], rto_goal, evidence_dir }`.
pub(super) fn recover(cx: &mut Cx, node: Option<&Node>, base: &Path) -> RecoverConfig {
    let mut out = RecoverConfig {
        evidence_dir: base.join("evidence/recover"),
        ..Default::default()
    };
    let Some(f) = node.and_then(|n| cx.map(n, "recover", &["start", "checks", "rto_goal", "evidence_dir"])) else {
        return out;
    };
    out.start = super::deploy::programs(cx, f.get("start"), "recover.start");
    if let Some(n) = f.get("checks") {
        match &n.kind {
            Kind::Seq(items) => out.checks = items.iter().filter_map(|i| drill_check(cx, i)).collect(),
            _ => cx.error(
                n.pos,
                format!("recover.checks must be a list, found {}", n.describe()),
                None,
            ),
        }
    }
    out.rto_goal = f.get("rto_goal").and_then(|n| cx.duration(n, "recover.rto_goal"));
    if let Some(d) = f.get("evidence_dir").and_then(|n| cx.string(n, "recover.evidence_dir")) {
        out.evidence_dir = base.join(d);
    }
    out
}

fn drill(cx: &mut Cx, node: &Node, base: &Path) -> DrillConfig {
    let Some(f) = cx.map(node, "drill", &["checks", "evidence_dir"]) else {
        return DrillConfig::default();
    };
    let evidence_dir = base.join(
        f.get("evidence_dir")
            .and_then(|n| cx.string(n, "drill.evidence_dir"))
            .unwrap_or_else(|| DEFAULT_EVIDENCE_DIR.into()),
    );
    let mut checks = Vec::new();
    if let Some(n) = f.get("checks") {
        match &n.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(c) = drill_check(cx, item) {
                        checks.push(c);
                    }
                }
            }
            _ => cx.error(
                n.pos,
                format!("drill.checks must be a list, found {}", n.describe()),
                None,
            ),
        }
    }
    DrillConfig { checks, evidence_dir }
}

/// `"line"`, `{ run: [...] }` or `{ sh: "..." }`, with an optional `name` and `timeout`.
fn drill_check(cx: &mut Cx, item: &Node) -> Option<DrillCheck> {
    let (program, name, timeout) = match &item.kind {
        Kind::Map(_) => {
            let f = cx.map(item, "a drill check", &["run", "sh", "name", "timeout"])?;
            let program = program(cx, &f, "a drill check")?;
            let name = f.get("name").and_then(|n| cx.string(n, "name"));
            let timeout = f.get("timeout").and_then(|n| cx.duration(n, "timeout"));
            (program, name, timeout)
        }
        _ => {
            let inner = Fields {
                entries: vec![("run", item.pos, item)],
                pos: item.pos,
            };
            (program(cx, &inner, "a drill check")?, None, None)
        }
    };
    let name = name.unwrap_or_else(|| crate::util::display(&program.argv()));
    Some(DrillCheck { name, program, timeout })
}

fn commands(cx: &mut Cx, node: &Node, what: &str) -> Vec<Program> {
    let Kind::Seq(items) = &node.kind else {
        cx.error(
            node.pos,
            format!("{what} must be a list of commands, found {}", node.describe()),
            None,
        );
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let inner = Fields {
                entries: vec![("run", item.pos, item)],
                pos: item.pos,
            };
            program(cx, &inner, what)
        })
        .collect()
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
        let node = f.get(key)?;
        let v = cx.u64(node, &format!("keep.{key}"))?;
        if v == 0 {
            // `last: 0` alone would remove every archive but the newest verified one, the
            // one just made included.
            cx.error(
                node.pos,
                format!("keep.{key} must be at least 1: leave the rule out to not use it"),
                None,
            );
            return None;
        }
        Some(v.min(u32::MAX as u64) as u32)
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
    let run = match program_keyed(cx, &inner, "a command source", "command")? {
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
