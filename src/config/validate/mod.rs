//! Turns a spanned YAML tree into a validated `Config`, collecting every error.
//!
//! Owns the rules of runbook.yaml: known keys, types, units, cron syntax, references, and
//! `${VAR}` expansion of values. It never stops at the first problem: every error is reported
//! with its position. Invariant: it returns a `Config` only when it found no error.

mod backups;
mod baseline;
mod checks;
mod deploy;
mod gates;
mod mcp;
mod notify;
mod probes;
mod profile;
mod walker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::{ApiConfig, Config, Keep, Retention, SecretsConfig, StateConfig};
use super::secrets::{self, Redactor};
use super::yaml::{Kind, Node};

const TOP_KEYS: &[&str] = &[
    "version",
    "host",
    "host_labels",
    "state",
    "secrets",
    "api",
    "retention",
    "checks",
    "notify",
    "profiles",
    "backups",
    "audit",
    "sessions",
    "incidents",
    "gates",
    "deploy",
    "baseline",
    "recover",
    "mcp",
];
pub const DEFAULT_STATE_URL: &str = "sqlite:///var/lib/runbook/runbook.db";

pub(super) use walker::Cx;

/// Validates a parsed document. `file` is used for positions and relative paths.
pub(super) fn config(cx: &mut Cx, root: &Node) -> Option<Config> {
    let top = cx.map(root, "runbook.yaml", TOP_KEYS)?;
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
                    if secrets::is_secret(&var.key, &var.value, &secrets.redact, &secrets.plain) {
                        secret_values.push(var.value.clone());
                    }
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
    let host_labels = top
        .get("host_labels")
        .and_then(|n| cx.string_list(n, "host_labels"))
        .unwrap_or_default();
    let state = state_section(cx, top.get("state"), &base);

    let checks = top
        .get("checks")
        .map(|n| checks::checks(cx, n, &base))
        .unwrap_or_default();
    cx.check_names = checks.keys().cloned().collect();
    let notify = top.get("notify").map(|n| notify::notify(cx, n)).unwrap_or_default();
    let mut api = ApiConfig::default();
    if let Some(n) = top.get("api")
        && let Some(f) = cx.map(n, "api", &["listen", "public", "rate_limit"])
    {
        if let Some(l) = f
            .get("listen")
            .and_then(|n| cx.string(n, "api.listen").map(|v| (n.pos, v)))
        {
            match l.1.parse::<std::net::SocketAddr>() {
                Ok(_) => api.listen = l.1,
                Err(_) => cx.error(
                    l.0,
                    format!("api.listen `{}` is not an address:port", l.1),
                    Some("e.g. 127.0.0.1:8923".into()),
                ),
            }
        }
        if let Some(p) = f.get("public").and_then(|n| cx.string_list(n, "api.public")) {
            api.public = p;
        }
        if let Some(n) = f.get("rate_limit") {
            match &n.kind {
                Kind::Scalar { value, .. } if value == "off" || value == "false" => api.rate_limit = None,
                _ => {
                    if let Some(r) = cx.map(n, "api.rate_limit", &["per_second", "burst"]) {
                        let per_second = r
                            .get("per_second")
                            .and_then(|v| cx.u64(v, "per_second"))
                            .unwrap_or(50)
                            .clamp(1, 1_000_000) as u32;
                        let burst = r
                            .get("burst")
                            .and_then(|v| cx.u64(v, "burst"))
                            .unwrap_or(per_second as u64 * 2)
                            .clamp(1, 10_000_000) as u32;
                        api.rate_limit = Some(crate::config::model::RateLimit { per_second, burst });
                    }
                }
            }
        }
    }
    let mut retention = Retention::default();
    if let Some(n) = top.get("retention")
        && let Some(f) = cx.map(n, "retention", &["check_results", "resolved_alerts"])
    {
        let hint = "a count (1000) or an age (30d)";
        if let Some(v) = f
            .get("check_results")
            .and_then(|n| cx.parsed(n, "check_results", Keep::parse, hint))
        {
            retention.check_results = v;
        }
        if let Some(v) = f
            .get("resolved_alerts")
            .and_then(|n| cx.parsed(n, "resolved_alerts", Keep::parse, hint))
        {
            retention.resolved_alerts = v;
        }
    }

    let mut audit = crate::config::model::AuditConfig::default();
    if let Some(n) = top.get("audit")
        && let Some(f) = cx.map(n, "audit", &["signing_key", "public_keys", "checkpoint_every"])
    {
        audit.signing_key = f
            .get("signing_key")
            .and_then(|n| cx.string(n, "audit.signing_key"))
            .map(|p| base.join(p));
        if let Some(n) = f.get("public_keys") {
            for k in cx.string_list(n, "audit.public_keys").unwrap_or_default() {
                if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) {
                    audit.public_keys.push(k.to_ascii_lowercase());
                } else {
                    cx.error(
                        n.pos,
                        format!("audit.public_keys: `{k}` is not an Ed25519 public key (64 hex digits)"),
                        Some("`runbook audit keygen` prints it".into()),
                    );
                }
            }
        }
        audit.checkpoint_every = f
            .get("checkpoint_every")
            .and_then(|n| cx.duration(n, "audit.checkpoint_every"));
    }
    let mut sessions = crate::config::model::SessionsConfig::default();
    if let Some(n) = top.get("sessions")
        && let Some(f) = cx.map(n, "sessions", &["limits", "read_only", "approvers", "sandbox"])
    {
        if let Some(n) = f.get("sandbox") {
            match &n.kind {
                Kind::Scalar { value, .. } if value == "on" || value == "true" => sessions.sandbox = true,
                Kind::Scalar { value, .. } if value == "off" || value == "false" => sessions.sandbox = false,
                _ => cx.error(
                    n.pos,
                    "sessions.sandbox must be on or off".to_string(),
                    Some("on (the default) runs every read-only command in the kernel's read-only sandbox".into()),
                ),
            }
        }
        if let Some(l) = f.get("limits")
            && let Some(lf) = cx.map(
                l,
                "sessions.limits",
                &[
                    "timeout",
                    "memory_max",
                    "cpu_time",
                    "nofile",
                    "systemd_run",
                    "cpu_quota",
                    "output",
                ],
            )
        {
            sessions.output = lf.get("output").and_then(|n| {
                cx.parsed(
                    n,
                    "sessions.limits.output",
                    crate::config::ByteSize::parse,
                    "sizes look like 64K, 1M",
                )
            });
            if let Some(t) = lf
                .get("timeout")
                .and_then(|n| cx.duration(n, "sessions.limits.timeout"))
            {
                sessions.timeout = t;
            }
            sessions.limits = profile::limits(cx, &lf);
            // A CPU share can only be enforced by a systemd scope: asking for one asks for that.
            sessions.limits.systemd_run |= sessions.limits.cpu_quota.is_some();
        }
        sessions.read_only = f
            .get("read_only")
            .and_then(|n| cx.string_list(n, "sessions.read_only"))
            .unwrap_or_default();
        if let Some(n) = f.get("approvers")
            && let Some(m) = cx.map(n, "sessions.approvers", &[])
        {
            for (name, _, v) in &m.entries {
                let what = format!("sessions.approvers.{name}");
                if let Some(line) = cx.string(v, &what) {
                    match crate::util::sshsig::PublicKey::parse(&line) {
                        Ok(_) => {
                            sessions.approvers.insert(name.to_string(), line);
                        }
                        Err(e) => cx.error(
                            v.pos,
                            format!("{what}: not an SSH public key: {e}"),
                            Some("paste the approver's ~/.ssh/id_ed25519.pub line".into()),
                        ),
                    }
                }
            }
        }
    }
    let recover = backups::recover(cx, top.get("recover"), &base);
    let mut incidents = crate::config::model::IncidentsConfig::default();
    let notify_names: Vec<String> = notify.channels.keys().cloned().collect();
    incidents.classes = ["storage", "stale-state", "config-drift", "compatibility", "other"]
        .map(String::from)
        .to_vec();
    if let Some(n) = top.get("incidents")
        && let Some(f) = cx.map(n, "incidents", &["dir", "template", "severities", "verify", "classes"])
    {
        incidents.dir = f
            .get("dir")
            .and_then(|n| cx.string(n, "incidents.dir"))
            .map(|p| base.join(p));
        incidents.template = f
            .get("template")
            .and_then(|n| cx.string(n, "incidents.template"))
            .map(|p| base.join(p));
        if let Some(v) = f.get("verify") {
            incidents.verify = cx.string_list(v, "incidents.verify").unwrap_or_default();
            for c in incidents.verify.iter().filter(|c| !checks.contains_key(*c)) {
                cx.error(
                    v.pos,
                    format!("incidents.verify: no check named `{c}`"),
                    Some("define it under `checks:`".into()),
                );
            }
        }
        if let Some(v) = f.get("classes") {
            incidents.classes = cx.string_list(v, "incidents.classes").unwrap_or_default();
        }
        if let Some(sn) = f.get("severities")
            && let Some(sf) = cx.map(sn, "incidents.severities", &[])
        {
            for (name, _, node) in &sf.entries {
                let what = format!("incidents.severities.{name}");
                let Some(m) = cx.map(node, &what, &["meaning", "respond_within", "notify"]) else {
                    continue;
                };
                let notify = m
                    .get("notify")
                    .and_then(|n| cx.string_list(n, &format!("{what}.notify")))
                    .unwrap_or_default();
                for c in notify.iter().filter(|c| !notify_names.contains(c)) {
                    cx.error(
                        m.pos,
                        format!("{what}.notify: no channel named `{c}`"),
                        Some("define it under notify.channels".into()),
                    );
                }
                incidents.severities.insert(
                    name.to_string(),
                    crate::config::model::IncidentSeverity {
                        meaning: m
                            .get("meaning")
                            .and_then(|n| cx.string(n, "meaning"))
                            .unwrap_or_default(),
                        respond_within: m.get("respond_within").and_then(|n| cx.duration(n, "respond_within")),
                        notify,
                    },
                );
            }
        }
    }
    let gates = top
        .get("gates")
        .map(|n| {
            gates::gates(
                cx,
                n,
                &base,
                &checks,
                &notify.channels.keys().cloned().collect::<Vec<_>>(),
            )
        })
        .unwrap_or_default();
    let baseline = top
        .get("baseline")
        .map(|n| baseline::baseline(cx, n, &base))
        .unwrap_or_default();
    let deploy = top
        .get("deploy")
        .map(|n| deploy::deploy(cx, n, &base, &gates.keys().cloned().collect::<Vec<_>>()))
        .unwrap_or_default();
    let backups = top
        .get("backups")
        .map(|n| backups::backups(cx, n, &base))
        .unwrap_or_default();
    cx.backup_names = backups.keys().cloned().collect();
    cx.offsite_names = backups
        .iter()
        .filter(|(_, t)| t.offsite.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    for (pos, target) in std::mem::take(&mut cx.backup_refs) {
        // A target with errors of its own was reported where they are.
        if !backups.contains_key(&target) && !cx.declared_backups.contains(&target) {
            let hint = super::diagnostic::suggest(&target, cx.backup_names.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "define it under `backups:`".into());
            cx.error(
                pos,
                format!("backup_age: no backup target named `{target}`"),
                Some(hint),
            );
        }
    }

    let mut profiles = BTreeMap::new();
    if let Some(node) = top.get("profiles")
        && let Some(fields) = cx.map(node, "profiles", &[])
    {
        for (name, key_pos, pnode) in &fields.entries {
            if !valid_name(name) {
                cx.error(
                    *key_pos,
                    format!("profile name `{name}` may only use letters, digits, `-`, `_` and `.`"),
                    None,
                );
                continue;
            }
            if let Some(p) = profile::profile(cx, name, pnode, &base) {
                profiles.insert(name.to_string(), p);
            }
        }
    }

    let mcp = mcp::mcp(cx, top.get("mcp"), &base);

    if !cx.diags.is_empty() {
        return None;
    }
    Some(Config {
        version,
        host,
        host_labels,
        state,
        secrets,
        api,
        retention,
        checks,
        notify,
        profiles,
        sessions,
        audit,
        incidents,
        recover,
        backups,
        gates,
        deploy,
        baseline,
        mcp,
        source: cx.file.to_path_buf(),
        redactor: cx.redactor.clone(),
        env,
        confine: None,
    })
}

/// Names of profiles and checks end up in file names, crontab lines and URLs.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub fn default_host() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

fn secrets_section(cx: &mut Cx, node: &Node, base: &Path) -> Option<SecretsConfig> {
    let f = cx.map(node, "secrets", &["env_files", "deny_read", "redact", "plain"])?;
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
    let names = |cx: &mut Cx, key: &str| {
        f.get(key)
            .and_then(|n| cx.string_list(n, &format!("secrets.{key}")))
            .unwrap_or_default()
    };
    let redact = names(cx, "redact");
    let plain = names(cx, "plain");
    Some(SecretsConfig {
        env_files,
        deny_read,
        redact,
        plain,
    })
}

fn state_section(cx: &mut Cx, node: Option<&Node>, base: &Path) -> StateConfig {
    let Some(f) = node.and_then(|n| cx.map(n, "state", &["url", "dir"])) else {
        return state_at(DEFAULT_STATE_URL.to_string(), None, base);
    };
    let dir = f
        .get("dir")
        .and_then(|n| cx.string(n, "state.dir"))
        .map(|d| base.join(d));
    let Some(u) = f.get("url") else {
        return state_at(DEFAULT_STATE_URL.to_string(), dir, base);
    };
    let Some(url) = cx.string(u, "state.url") else {
        return StateConfig::default();
    };
    if crate::config::model::is_postgres_url(&url) {
        if let Err(e) = url::Url::parse(&url) {
            cx.error(
                u.pos,
                format!("state.url `{url}` is not a valid URL: {e}"),
                Some("e.g. postgres://runbook@db.internal:5432/runbook?sslmode=verify-full".into()),
            );
        }
        return state_at(url, dir, base);
    }
    if let Err(msg) = state_path(&url, base) {
        cx.error(
            u.pos,
            msg,
            Some("use sqlite:///absolute/path.db, a path relative to runbook.yaml, or postgres://…".into()),
        );
        return StateConfig::default();
    }
    state_at(url, dir, base)
}

/// The state of `url`: its file, or for PostgreSQL the stem of this host's own files.
fn state_at(url: String, dir: Option<PathBuf>, base: &Path) -> StateConfig {
    let path = if crate::config::model::is_postgres_url(&url) {
        dir.clone().unwrap_or_else(|| base.to_path_buf()).join("runbook")
    } else {
        state_path(&url, base).unwrap_or_default()
    };
    StateConfig { url, dir, path }
}

/// Resolves a state URL to a SQLite file path.
pub fn state_path(url: &str, base: &Path) -> Result<PathBuf, String> {
    if crate::config::model::is_postgres_url(url) {
        return Err(format!("`{url}` is a PostgreSQL database, not a file"));
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
