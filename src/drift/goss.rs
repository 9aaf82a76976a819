//! `baseline import`: a Goss file's resources as a `baseline:` section, for those both know.

use crate::config::yaml::{self, Kind, Node};

/// (Goss attribute, runbook attribute)
type Renames = &'static [(&'static str, &'static str)];

/// (Goss kind, runbook kind, its attributes)
const KINDS: &[(&str, &str, Renames)] = &[
    (
        "file",
        "file",
        &[
            ("exists", "exists"),
            ("mode", "mode"),
            ("owner", "owner"),
            ("group", "group"),
            ("filetype", "type"),
            ("contains", "contains"),
            ("sha256", "sha256"),
            ("size", "size"),
        ],
    ),
    ("port", "port", &[("listening", "listening"), ("ip", "address")]),
    ("service", "service", &[("enabled", "enabled"), ("running", "active")]),
    (
        "package",
        "package",
        &[("installed", "installed"), ("versions", "version")],
    ),
    (
        "user",
        "user",
        &[
            ("exists", "exists"),
            ("uid", "uid"),
            ("gid", "gid"),
            ("groups", "groups"),
            ("home", "home"),
            ("shell", "shell"),
        ],
    ),
    ("group", "group", &[("exists", "exists"), ("gid", "gid")]),
    ("kernel-param", "kernel_param", &[("value", "value")]),
    ("command", "command", &[("exit-status", "exit"), ("stdout", "stdout")]),
    (
        "mount",
        "mount",
        &[
            ("exists", "exists"),
            ("opts", "opts"),
            ("source", "source"),
            ("filesystem", "fstype"),
        ],
    ),
    ("http", "http", &[("status", "status"), ("body", "body")]),
];

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn scalar(n: &Node) -> Option<String> {
    match &n.kind {
        Kind::Scalar { value, .. } => Some(value.clone()),
        _ => None,
    }
}

/// A Goss value as a runbook matcher in YAML; `None` for what has no equivalent.
fn value(attr: &str, n: &Node) -> Option<String> {
    match &n.kind {
        Kind::Scalar { value, .. } => Some(quoted(value)),
        Kind::Seq(items) => {
            let texts: Option<Vec<String>> = items.iter().map(scalar).collect();
            let texts = texts?;
            // Goss lists the versions a package may have; one becomes an exact constraint.
            if attr == "versions" {
                return (texts.len() == 1).then(|| quoted(&format!("= {}", texts[0])));
            }
            Some(format!(
                "[{}]",
                texts.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ")
            ))
        }
        Kind::Map(entries) if entries.len() == 1 => {
            let (k, v) = &entries[0];
            match (scalar(k)?.as_str(), scalar(v)) {
                ("lt", Some(v)) => Some(format!("{{ lt: {v} }}")),
                ("gt", Some(v)) => Some(format!("{{ gt: {v} }}")),
                ("contain-element", Some(v)) => Some(format!("[{}]", quoted(&v))),
                ("not", Some(v)) => Some(quoted(&format!("!{v}"))),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The `baseline:` YAML for what `src` (a Goss file) declares, and what was left out.
pub fn import(src: &str) -> Result<(String, Vec<String>), String> {
    let root = yaml::parse(src).map_err(|e| format!("line {}:{}: {}", e.pos.line, e.pos.col, e.message))?;
    let Kind::Map(top) = &root.kind else {
        return Err("a Goss file is a mapping of resource kinds".into());
    };
    let mut out = String::from("baseline:\n");
    let mut skipped = Vec::new();
    for (k, v) in top.iter() {
        let Some(goss_kind) = scalar(k) else { continue };
        let Some((_, kind, attrs)) = KINDS.iter().find(|(g, _, _)| *g == goss_kind) else {
            skipped.push(format!("{goss_kind}: not a kind runbook's baseline has"));
            continue;
        };
        let Kind::Map(resources) = &v.kind else { continue };
        out.push_str(&format!("  {kind}:\n"));
        for (rk, rv) in resources {
            let Some(mut key) = scalar(rk) else { continue };
            let Kind::Map(fields) = &rv.kind else { continue };
            let mut parts = Vec::new();
            for (fk, fv) in fields {
                let Some(name) = scalar(fk) else { continue };
                if goss_kind == "command" && name == "exec" {
                    if let Some(line) = scalar(fv) {
                        key = line;
                    }
                    continue;
                }
                match attrs
                    .iter()
                    .find(|(g, _)| *g == name)
                    .map(|(_, r)| r)
                    .zip(value(&name, fv))
                {
                    Some((ours, v)) => parts.push(format!("{ours}: {v}")),
                    None => skipped.push(format!("{goss_kind}.{key}.{name}: no equivalent")),
                }
            }
            out.push_str(&format!("    {}: {{ {} }}\n", quoted(&key), parts.join(", ")));
        }
    }
    Ok((out, skipped))
}
