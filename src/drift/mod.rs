//! Baseline drift: the host compared with `baseline:`, attribute by attribute.
//!
//! Invariants: a file's content is read to match `contains` and hashed for `sha256`, never
//! reported; a resource a running deploy is writing (its app's path, while the deploy lock is
//! held) is not judged until the deploy ends.

pub mod facts;
pub mod goss;

use serde::Serialize;

use crate::config::Config;
use crate::config::baseline::{Matcher, Resource};
use facts::{Fact, Facts};

/// One difference: `changed` (an attribute is not what is declared), `missing` (a declared
/// resource is not there), `added` (closed world: there and not declared).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Item {
    pub kind: String,
    pub key: String,
    pub attribute: String,
    pub change: String,
    pub expected: String,
    pub actual: String,
}

impl Item {
    /// `file:/etc/app.env:mode`: what `drift ack` and the history name it by.
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.kind, self.key, self.attribute)
    }
}

fn shown(m: &Matcher) -> String {
    match m {
        Matcher::Equals(v) => v.clone(),
        Matcher::Not(v) => format!("not {v}"),
        Matcher::Regex(r) => format!("/{r}/"),
        Matcher::Gt(n) => format!("> {n}"),
        Matcher::Lt(n) => format!("< {n}"),
        Matcher::ContainsAll(v) => format!("contains {}", v.join(", ")),
        Matcher::Version(c) => format!("version {c}"),
    }
}

/// dpkg's order of versions: `dpkg --compare-versions A OP B`.
fn version_holds(actual: &str, constraint: &str) -> bool {
    let (op, want) = ["<=", ">=", "<", ">", "="]
        .iter()
        .find_map(|op| constraint.strip_prefix(op).map(|v| (*op, v.trim())))
        .unwrap_or(("=", constraint));
    let op = match op {
        "<=" => "le",
        ">=" => "ge",
        "<" => "lt",
        ">" => "gt",
        _ => "eq",
    };
    facts::run(&["dpkg", "--compare-versions", actual, op, want]).is_ok_and(|(code, _)| code == 0)
}

/// Whether `fact` satisfies `m`.
pub fn holds(m: &Matcher, fact: &Fact) -> bool {
    let text = |f: &Fact| match f {
        Fact::Text(t) | Fact::Hidden(t) => Some(t.clone()),
        _ => None,
    };
    match (m, fact) {
        (_, Fact::Unknown(_)) => false,
        (Matcher::Equals(v), Fact::List(l)) => l.contains(v),
        (Matcher::Equals(v), f) => text(f).is_some_and(|t| t.trim() == v.trim()),
        (Matcher::Not(v), f) => !holds(&Matcher::Equals(v.clone()), f),
        (Matcher::Regex(r), Fact::List(l)) => {
            crate::config::checks::line_regex(r).is_ok_and(|re| l.iter().any(|x| re.is_match(x)))
        }
        (Matcher::Regex(r), f) => {
            crate::config::checks::line_regex(r).is_ok_and(|re| text(f).is_some_and(|t| re.is_match(&t)))
        }
        (Matcher::Gt(n), f) => text(f)
            .and_then(|t| t.trim().parse::<f64>().ok())
            .is_some_and(|v| v > *n),
        (Matcher::Lt(n), f) => text(f)
            .and_then(|t| t.trim().parse::<f64>().ok())
            .is_some_and(|v| v < *n),
        (Matcher::ContainsAll(want), Fact::List(l)) => want.iter().all(|w| l.contains(w)),
        (Matcher::ContainsAll(want), f) => text(f).is_some_and(|t| want.iter().all(|w| t.contains(w.as_str()))),
        (Matcher::Version(c), f) => text(f).is_some_and(|t| !t.is_empty() && version_holds(&t, c)),
    }
}

fn observe(r: &Resource, listeners: &[facts::Listener]) -> Facts {
    let asked: Vec<&str> = r.expect.keys().map(String::as_str).collect();
    match r.kind.as_str() {
        "file" => facts::file(&r.key, &asked),
        "port" => facts::port(&r.key, listeners, &asked),
        "service" => facts::service(&r.key),
        "package" => facts::package(&r.key),
        "user" => facts::user(&r.key),
        "group" => facts::group(&r.key),
        "kernel_param" => facts::kernel_param(&r.key),
        "command" => facts::command(&r.key),
        "git" => facts::git(&r.key),
        "http" => facts::http(&r.key),
        _ => facts::mount(&r.key),
    }
}

/// Paths a deploy is writing now: those of apps whose deploy lock is held.
fn deploying(config: &Config) -> Vec<std::path::PathBuf> {
    config
        .deploy
        .iter()
        .filter(|(name, _)| crate::util::lock::held(&config.state.path, &format!("deploy-{name}")))
        .map(|(_, a)| a.path.clone())
        .collect()
}

/// Every difference between the host and `baseline:`.
pub fn drift(config: &Config) -> Vec<Item> {
    let b = &config.baseline;
    let listeners = facts::listeners();
    let busy = deploying(config);
    let mut items = Vec::new();
    for r in &b.resources {
        if r.kind == "file" && busy.iter().any(|p| std::path::Path::new(&r.key).starts_with(p)) {
            continue;
        }
        let facts = observe(r, &listeners);
        let exists_declared = r.expect.get("exists").is_none_or(|m| holds(m, &Fact::yes(true)));
        if let Some(Fact::Text(e)) = facts.get("exists")
            && e == "false"
        {
            if exists_declared {
                items.push(Item {
                    kind: r.kind.clone(),
                    key: r.key.clone(),
                    attribute: "exists".into(),
                    change: "missing".into(),
                    expected: "exists".into(),
                    actual: "missing".into(),
                });
            }
            continue;
        }
        for (attr, m) in &r.expect {
            let fact = facts.get(attr).cloned().unwrap_or(Fact::Unknown("not reported".into()));
            if !holds(m, &fact) {
                let actual = fact.shown();
                items.push(Item {
                    kind: r.kind.clone(),
                    key: r.key.clone(),
                    attribute: attr.clone(),
                    change: "changed".into(),
                    expected: shown(m),
                    actual: crate::util::escape_controls(&actual),
                });
            }
        }
    }
    if b.closed_ports {
        let declared: Vec<&Resource> = b.resources.iter().filter(|r| r.kind == "port").collect();
        let mut seen = std::collections::BTreeSet::new();
        for l in &listeners {
            let proto = if l.v6 { "tcp6" } else { "tcp" };
            let covered = declared.iter().any(|r| {
                let f = facts::port(&r.key, std::slice::from_ref(l), &[]);
                f.get("listening") == Some(&Fact::yes(true))
            });
            if !covered && seen.insert((proto, l.address.clone(), l.port)) {
                items.push(Item {
                    kind: "port".into(),
                    key: format!("{proto}:{}:{}", l.address, l.port),
                    attribute: "listening".into(),
                    change: "added".into(),
                    expected: "closed (ports: { closed: true })".into(),
                    actual: "listening".into(),
                });
            }
        }
    }
    if b.closed_services {
        match facts::enabled_services() {
            Ok(units) => {
                for u in units {
                    if !b
                        .resources
                        .iter()
                        .any(|r| r.kind == "service" && (r.key == u || format!("{}.service", r.key) == u))
                    {
                        items.push(Item {
                            kind: "service".into(),
                            key: u,
                            attribute: "enabled".into(),
                            change: "added".into(),
                            expected: "not enabled (services: { enabled_closed: true })".into(),
                            actual: "enabled".into(),
                        });
                    }
                }
            }
            Err(e) => items.push(Item {
                kind: "service".into(),
                key: "*".into(),
                attribute: "enabled".into(),
                change: "changed".into(),
                expected: "the enabled units can be listed".into(),
                actual: format!("unknown ({e})"),
            }),
        }
    }
    items
}

/// Today's host as a baseline (YAML): listening ports, enabled services, users and groups,
/// and the files named (mode, owner, group, SHA-256: never their content). `only` limits the
/// kinds.
pub fn capture(only: &[String], files: &[String]) -> String {
    let wants = |k: &str| only.is_empty() || only.iter().any(|o| o == k);
    let mut y = String::from("baseline:\n");
    if wants("port") {
        y.push_str("  port:\n");
        let mut seen = std::collections::BTreeSet::new();
        for l in facts::listeners() {
            let key = format!("{}:{}:{}", if l.v6 { "tcp6" } else { "tcp" }, l.address, l.port);
            if seen.insert(key.clone()) {
                y.push_str(&format!("    \"{key}\": {{ listening: true }}\n"));
            }
        }
        y.push_str("  ports: { closed: true }\n");
    }
    if wants("service")
        && let Ok(units) = facts::enabled_services()
        && !units.is_empty()
    {
        y.push_str("  service:\n");
        for u in units {
            y.push_str(&format!("    \"{u}\": {{ enabled: true }}\n"));
        }
    }
    for (kind, file) in [("user", "/etc/passwd"), ("group", "/etc/group")] {
        if !wants(kind) {
            continue;
        }
        y.push_str(&format!("  {kind}:\n"));
        for line in std::fs::read_to_string(file).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 2 && !f[0].is_empty() {
                y.push_str(&format!(
                    "    \"{}\": {{ exists: true, {}: \"{}\" }}\n",
                    f[0],
                    if kind == "user" { "uid" } else { "gid" },
                    f[2]
                ));
            }
        }
    }
    if wants("file") && !files.is_empty() {
        y.push_str("  file:\n");
        for path in files {
            let f = facts::file(path, &["sha256"]);
            let get = |k: &str| f.get(k).map(Fact::shown).unwrap_or_default();
            if get("exists") == "false" {
                y.push_str(&format!("    \"{path}\": {{ exists: false }}\n"));
                continue;
            }
            let sha = if get("type") == "file" {
                format!(", sha256: \"{}\"", get("sha256"))
            } else {
                String::new()
            };
            y.push_str(&format!(
                "    \"{path}\": {{ exists: true, type: {}, mode: \"{}\", owner: \"{}\", group: \"{}\"{sha} }}\n",
                get("type"),
                get("mode"),
                get("owner"),
                get("group")
            ));
        }
    }
    y
}

/// Drift as judged: the items, those acknowledged marked, the history recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub items: Vec<Item>,
    /// Per item (same order): the acknowledgement in force, if any.
    pub acked: Vec<Option<crate::store::DriftAck>>,
    /// Items not acknowledged: drift that fails.
    pub failing: usize,
}

/// `drift` with acknowledgements applied and the history written (new items and items gone
/// are one audit event each time).
pub fn judge(config: &Config, store: &crate::store::Store) -> Result<Judged, crate::store::StoreError> {
    let items = drift(config);
    let now = crate::clock::to_text(crate::clock::now());
    let acks = store.drift_acks(&now)?;
    let acked: Vec<_> = items
        .iter()
        .map(|i| acks.iter().rev().find(|a| a.item == i.id()).cloned())
        .collect();
    let seen: Vec<crate::store::drift::Seen> = items
        .iter()
        .map(|i| (i.id(), i.change.clone(), i.expected.clone(), i.actual.clone()))
        .collect();
    store.record_drift(&seen, &now, &|new, gone| {
        crate::audit::Draft::new(
            "drift.changed",
            "baseline",
            serde_json::json!({ "appeared": new, "gone": gone }),
            &config.redactor,
        )
    })?;
    let failing = acked.iter().filter(|a| a.is_none()).count();
    Ok(Judged { items, acked, failing })
}

/// Acknowledges drift item `item` (`kind:key:attribute`) until `expires` from now: it is
/// reported, and does not fail.
pub fn ack(
    config: &Config,
    store: &crate::store::Store,
    item: &str,
    reason: &str,
    expires: std::time::Duration,
) -> Result<crate::store::DriftAck, crate::store::StoreError> {
    let now = crate::clock::now();
    let until = now
        .checked_add(jiff::SignedDuration::try_from(expires).unwrap_or(jiff::SignedDuration::ZERO))
        .unwrap_or(now);
    let a = crate::store::DriftAck {
        item: item.to_string(),
        reason: reason.to_string(),
        actor: crate::audit::actor::current(),
        created_at: crate::clock::to_text(now),
        expires_at: crate::clock::to_text(until),
    };
    let draft = crate::audit::Draft::new(
        "drift.acked",
        item,
        serde_json::json!({ "reason": reason, "expires_at": a.expires_at }),
        &config.redactor,
    );
    store.ack_drift(&a, &draft)?;
    Ok(a)
}
