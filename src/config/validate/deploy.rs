//! The `deploy:` section. Invariant: gates and backup targets it names exist, and a migration
//! that is not `expand_only` names the backup taken before it.

use std::collections::BTreeMap;
use std::path::Path;

use super::walker::Cx;
use crate::config::deploy::DeployApp;
use crate::config::program::Program;
use crate::config::yaml::{Kind, Node};

const KEYS: &[&str] = &[
    "repo",
    "path",
    "refs",
    "verify_signature",
    "shared",
    "build",
    "migrate",
    "backup",
    "switch_with",
    "restart",
    "gates",
    "keep",
];

pub(super) fn deploy(cx: &mut Cx, node: &Node, base: &Path, gates: &[String]) -> BTreeMap<String, DeployApp> {
    let mut out = BTreeMap::new();
    let Some(apps) = cx.map(node, "deploy", &[]) else {
        return out;
    };
    for (name, key_pos, anode) in &apps.entries {
        if !super::valid_name(name) {
            cx.error(
                *key_pos,
                format!("app name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                None,
            );
            continue;
        }
        if let Some(a) = app(cx, name, anode, base, gates) {
            out.insert(name.to_string(), a);
        }
    }
    out
}

pub(super) fn programs(cx: &mut Cx, node: Option<&Node>, what: &str) -> Vec<Program> {
    let Some(node) = node else { return Vec::new() };
    let Kind::Seq(items) = &node.kind else {
        cx.error(
            node.pos,
            format!("{what} must be a list of {{ run: [...] }} or {{ sh: ... }}"),
            None,
        );
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let f = cx.map(item, what, &["run", "sh"])?;
            super::profile::program(cx, &f, what)
        })
        .collect()
}

fn app(cx: &mut Cx, name: &str, node: &Node, base: &Path, gates: &[String]) -> Option<DeployApp> {
    let what = format!("deploy.{name}");
    let f = cx.map(node, &what, KEYS)?;
    // A local repository is relative to runbook.yaml; a URL (`https://…`, `ssh://…`,
    // `git@host:path`) is fetched as it is.
    let repo = cx.required(&f, "repo", &what, "e.g. repo: /srv/app/repo.git").map(|r| {
        if r.contains("://") || (r.contains('@') && r.contains(':')) {
            r
        } else {
            base.join(r).display().to_string()
        }
    });
    let path = cx
        .required(&f, "path", &what, "e.g. path: /srv/app")
        .map(|p| base.join(p));
    let refs = f
        .get("refs")
        .and_then(|n| cx.string(n, &format!("{what}.refs")).map(|v| (n.pos, v)))
        .map(|(pos, v)| {
            if v != "tags" && v != "sha" {
                cx.error(
                    pos,
                    format!("{what}.refs is `tags` or `sha`, not `{v}`"),
                    Some("a branch moves: deploy a tag or a commit".into()),
                );
            }
            v
        })
        .unwrap_or_else(|| "tags".into());
    let allowed_signers = f.get("verify_signature").and_then(|n| {
        let vf = cx.map(n, &format!("{what}.verify_signature"), &["allowed_signers"])?;
        cx.required(
            &vf,
            "allowed_signers",
            &what,
            "e.g. allowed_signers: /etc/runbook/allowed_signers",
        )
        .map(|p| base.join(p))
    });
    let shared = f
        .get("shared")
        .and_then(|n| cx.string_list(n, &format!("{what}.shared")).map(|l| (n.pos, l)))
        .map(|(pos, list)| {
            for s in &list {
                let p = Path::new(s);
                if s.is_empty()
                    || p.is_absolute()
                    || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
                {
                    cx.error(
                        pos,
                        format!("{what}.shared: `{s}` must be a plain path inside the release"),
                        None,
                    );
                }
            }
            list
        })
        .unwrap_or_default();
    let build = programs(cx, f.get("build"), &format!("{what}.build"));
    let restart = programs(cx, f.get("restart"), &format!("{what}.restart"));
    let (mut migrate, mut expand_only) = (None, false);
    if let Some(n) = f.get("migrate")
        && let Some(mf) = cx.map(n, &format!("{what}.migrate"), &["run", "sh", "expand_only"])
    {
        migrate = super::profile::program(cx, &mf, &format!("{what}.migrate"));
        expand_only = mf
            .get("expand_only")
            .and_then(|b| cx.bool(b, "expand_only"))
            .unwrap_or(false);
    }
    let backup = f.get("backup").and_then(|n| {
        let t = cx.string(n, &format!("{what}.backup"))?;
        cx.backup_refs.push((n.pos, t.clone()));
        Some(t)
    });
    if migrate.is_some() && !expand_only && backup.is_none() {
        cx.error(
            f.get("migrate").map_or(f.pos, |n| n.pos),
            format!("{what}: a migration that is not expand_only needs `backup: TARGET`, taken before it runs"),
            Some("name a target under `backups:`, or mark the migration expand_only: true".into()),
        );
    }
    if let Some(n) = f.get("switch_with")
        && let Some(v) = cx.string(n, "switch_with")
        && v != "symlink"
    {
        cx.error(
            n.pos,
            format!("{what}.switch_with is `symlink` (a rename of a link over `current`), not `{v}`"),
            None,
        );
    }
    let (mut gate_before, mut gate_after) = (None, None);
    if let Some(n) = f.get("gates")
        && let Some(gf) = cx.map(n, &format!("{what}.gates"), &["before", "after"])
    {
        for (key, slot) in [("before", &mut gate_before), ("after", &mut gate_after)] {
            if let Some(g) = gf.get(key) {
                let name = cx.string(g, key);
                if let Some(name) = &name
                    && !gates.contains(name)
                {
                    let hint = crate::config::diagnostic::suggest(name, gates.iter().map(String::as_str))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "define it under `gates:`".into());
                    cx.error(g.pos, format!("{what}.gates.{key}: no gate named `{name}`"), Some(hint));
                }
                *slot = name;
            }
        }
    }
    let keep = f
        .get("keep")
        .and_then(|n| cx.u64(n, "keep"))
        .map(|k| k.clamp(1, 1000) as u32)
        .unwrap_or(5);
    Some(DeployApp {
        repo: repo?,
        path: path?,
        refs,
        allowed_signers,
        shared,
        build,
        migrate,
        expand_only,
        backup,
        restart,
        gate_before,
        gate_after,
        keep,
    })
}
