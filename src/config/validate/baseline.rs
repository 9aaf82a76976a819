//! The `baseline:` section. Invariant: every kind and attribute is known, every regex compiles.

use super::walker::Cx;
use crate::config::baseline::{Baseline, KINDS, Matcher, Resource};
use crate::config::yaml::{Kind, Node};

fn matcher(cx: &mut Cx, what: &str, attr: &str, node: &Node) -> Option<Matcher> {
    match &node.kind {
        Kind::Seq(_) => cx.string_list(node, what).map(Matcher::ContainsAll),
        Kind::Map(_) => {
            let f = cx.map(node, what, &["gt", "lt"])?;
            let number = |cx: &mut Cx, n: &Node| {
                let t = cx.string(n, what)?;
                t.parse::<f64>().ok().or_else(|| {
                    cx.error(n.pos, format!("{what}: `{t}` is not a number"), None);
                    None
                })
            };
            match (f.get("gt"), f.get("lt")) {
                (Some(n), None) => number(cx, n).map(Matcher::Gt),
                (None, Some(n)) => number(cx, n).map(Matcher::Lt),
                _ => {
                    cx.error(f.pos, format!("{what}: one of gt or lt"), None);
                    None
                }
            }
        }
        _ => {
            let text = cx.string(node, what)?;
            if let Some(re) = text.strip_prefix('/').and_then(|t| t.strip_suffix('/')) {
                if let Err(e) = crate::config::checks::line_regex(re) {
                    cx.error(node.pos, format!("{what}: invalid regular expression: {e}"), None);
                    return None;
                }
                Some(Matcher::Regex(re.to_string()))
            } else if let Some(v) = text.strip_prefix('!') {
                Some(Matcher::Not(v.to_string()))
            } else if attr == "version" && text.starts_with(['<', '>', '=']) {
                Some(Matcher::Version(text))
            } else {
                Some(Matcher::Equals(text))
            }
        }
    }
}

pub(super) fn baseline(cx: &mut Cx, node: &Node, base: &std::path::Path) -> Baseline {
    let mut b = Baseline::default();
    let mut allowed: Vec<&'static str> = KINDS.iter().map(|(k, _)| *k).collect();
    allowed.extend(["ports", "services"]);
    let Some(top) = cx.map(node, "baseline", &allowed) else {
        return b;
    };
    if let Some(n) = top.get("ports")
        && let Some(f) = cx.map(n, "baseline.ports", &["closed"])
    {
        b.closed_ports = f.get("closed").and_then(|c| cx.bool(c, "closed")).unwrap_or(false);
    }
    if let Some(n) = top.get("services")
        && let Some(f) = cx.map(n, "baseline.services", &["enabled_closed"])
    {
        b.closed_services = f
            .get("enabled_closed")
            .and_then(|c| cx.bool(c, "enabled_closed"))
            .unwrap_or(false);
    }
    for (kind, attrs) in KINDS {
        let Some(n) = top.get(kind) else { continue };
        let Some(items) = cx.map(n, &format!("baseline.{kind}"), &[]) else {
            continue;
        };
        for (key, _, spec) in &items.entries {
            let what = format!("baseline.{kind}.{key}");
            let Some(f) = cx.map(spec, &what, attrs) else { continue };
            let mut expect = std::collections::BTreeMap::new();
            for (attr, _, v) in &f.entries {
                if let Some(m) = matcher(cx, &format!("{what}.{attr}"), attr, v) {
                    expect.insert(attr.to_string(), m);
                }
            }
            if *kind == "port" && !key.starts_with("tcp:") && !key.starts_with("tcp6:") {
                cx.error(
                    f.pos,
                    format!("{what}: a port is written tcp:PORT, tcp:ADDRESS:PORT or tcp6:PORT"),
                    None,
                );
                continue;
            }
            // A relative path is relative to runbook.yaml.
            let key = match *kind {
                "file" | "git" if !key.starts_with('/') => base.join(key).display().to_string(),
                _ => key.to_string(),
            };
            b.resources.push(Resource {
                kind: kind.to_string(),
                key,
                expect,
            });
        }
    }
    b
}
