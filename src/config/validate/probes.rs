//! One probe entry of a check (`http:`, `tcp:`, `command:`…): its keys, defaults and rules.
//!
//! Invariant: a returned `Probe` is complete and valid (URLs have a scheme, regexes compile,
//! addresses have a port); every problem is reported with its position.

use std::path::Path;

use super::profile::{env_map, program};
use super::walker::{Cx, Fields};
use crate::config::checks::{
    BackupAgeProbe, CertProbe, CommandExpect, CommandProbe, DiskProbe, FileAgeProbe, GitRefProbe, HeartbeatProbe,
    HttpExpect, HttpProbe, Probe, SqlExpect, SqlProbe, StatusSet, SystemdProbe, TcpProbe, size_threshold,
};
use crate::config::yaml::{Kind, Node};

pub(super) fn regex(cx: &mut Cx, f: &Fields, key: &str) -> Option<String> {
    let n = f.get(key)?;
    let text = cx.string(n, key)?;
    match crate::config::checks::line_regex(&text) {
        Ok(_) => Some(text),
        Err(e) => {
            cx.error(n.pos, format!("{key}: invalid regular expression: {e}"), None);
            None
        }
    }
}

pub(super) fn probe(cx: &mut Cx, kind: &str, node: &Node, base: &Path) -> Option<Probe> {
    let what = kind.to_string();
    match kind {
        "http" => {
            let f = cx.map(
                node,
                "http",
                &[
                    "url",
                    "method",
                    "headers",
                    "body",
                    "follow_redirects",
                    "tls_verify",
                    "ca_file",
                    "reuse_connection",
                    "expect",
                ],
            )?;
            let url = cx.required(&f, "url", &what, "e.g. url: https://example.org/health")?;
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                cx.error(
                    f.get("url").map(|n| n.pos).unwrap_or(f.pos),
                    format!("http.url `{url}` must start with http:// or https://"),
                    None,
                );
                return None;
            }
            let method = f
                .get("method")
                .and_then(|n| cx.string(n, "method"))
                .map(|m| m.to_uppercase())
                .unwrap_or_else(|| "GET".into());
            let headers = cx.string_map(f.get("headers"), "headers");
            let body = f.get("body").and_then(|n| cx.string(n, "body"));
            let follow_redirects = f
                .get("follow_redirects")
                .and_then(|n| cx.bool(n, "follow_redirects"))
                .unwrap_or(true);
            let tls_verify = f
                .get("tls_verify")
                .and_then(|n| cx.bool(n, "tls_verify"))
                .unwrap_or(true);
            let ca_file = f
                .get("ca_file")
                .and_then(|n| cx.string(n, "ca_file"))
                .map(|p| base.join(p));
            let reuse_connection = f
                .get("reuse_connection")
                .and_then(|n| cx.bool(n, "reuse_connection"))
                .unwrap_or(false);
            let expect = match f.get("expect") {
                Some(n) => http_expect(cx, n)?,
                None => HttpExpect::default(),
            };
            Some(Probe::Http(HttpProbe {
                url,
                method,
                headers,
                body,
                follow_redirects,
                tls_verify,
                ca_file,
                reuse_connection,
                expect,
            }))
        }
        "tcp" => {
            let f = cx.map(node, "tcp", &["address"])?;
            let address = cx.required(&f, "address", &what, "e.g. address: 127.0.0.1:5432")?;
            if !address
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                cx.error(
                    f.get("address").map(|n| n.pos).unwrap_or(f.pos),
                    format!("tcp.address `{address}` must be host:port"),
                    None,
                );
                return None;
            }
            Some(Probe::Tcp(TcpProbe { address }))
        }
        "command" => {
            let f = cx.map(node, "command", &["run", "sh", "cwd", "env", "expect"])?;
            let program = program(cx, &f, "a command check");
            let cwd = f.get("cwd").and_then(|n| cx.string(n, "cwd")).map(|c| base.join(c));
            let env = env_map(cx, &f);
            let mut expect = CommandExpect::default();
            if let Some(n) = f.get("expect")
                && let Some(e) = cx.map(n, "command.expect", &["exit", "stdout_contains", "stdout_regex"])
            {
                if let Some(x) = e.get("exit") {
                    expect.exit = cx.u64(x, "exit").map(|v| v as i32).unwrap_or(0);
                }
                expect.stdout_contains = e.get("stdout_contains").and_then(|n| cx.string(n, "stdout_contains"));
                expect.stdout_regex = regex(cx, &e, "stdout_regex");
            }
            Some(Probe::Command(CommandProbe {
                program: program?,
                cwd,
                env,
                expect,
            }))
        }
        "systemd" => {
            let f = cx.map(node, "systemd", &["unit", "expect"])?;
            let unit = cx.required(&f, "unit", &what, "e.g. unit: app-api.service")?;
            let expect = f
                .get("expect")
                .and_then(|n| cx.string(n, "expect"))
                .unwrap_or_else(|| "active".into());
            Some(Probe::Systemd(SystemdProbe { unit, expect }))
        }
        "disk" => {
            let f = cx.map(node, "disk", &["path", "min_free", "min_free_inodes"])?;
            let path = base.join(cx.required(&f, "path", &what, "e.g. path: /")?);
            let threshold = |cx: &mut Cx, key: &str| {
                f.get(key)
                    .and_then(|n| cx.parsed(n, key, size_threshold, "a percentage (10%) or an amount (5G)"))
            };
            let min_free = threshold(cx, "min_free");
            let min_free_inodes = threshold(cx, "min_free_inodes");
            if min_free.is_none() && min_free_inodes.is_none() {
                cx.error(
                    f.pos,
                    "a disk check needs `min_free` and/or `min_free_inodes`",
                    Some("e.g. min_free: 10%".into()),
                );
                return None;
            }
            Some(Probe::Disk(DiskProbe {
                path,
                min_free,
                min_free_inodes,
            }))
        }
        "cert" => {
            let f = cx.map(node, "cert", &["host", "server_name", "min_days"])?;
            let host = cx.required(&f, "host", &what, "e.g. host: example.org:443")?;
            let host = if host.contains(':') {
                host
            } else {
                format!("{host}:443")
            };
            let server_name = f.get("server_name").and_then(|n| cx.string(n, "server_name"));
            let min_days = f
                .get("min_days")
                .and_then(|n| cx.u64(n, "min_days"))
                .map(|d| d as u32)
                .unwrap_or(14);
            Some(Probe::Cert(CertProbe {
                host,
                server_name,
                min_days,
            }))
        }
        "file_age" => {
            let f = cx.map(node, "file_age", &["path", "max_age"])?;
            let path = cx.required(&f, "path", &what, "e.g. path: /var/backups/app-*.tar.zst");
            let max_age = match f.get("max_age") {
                Some(n) => cx.duration(n, "max_age"),
                None => {
                    cx.missing(f.pos, "max_age", "file_age needs `max_age`".into(), "e.g. max_age: 26h");
                    None
                }
            };
            let path = base.join(path?).to_string_lossy().into_owned();
            Some(Probe::FileAge(FileAgeProbe {
                path,
                max_age: max_age?,
            }))
        }
        "git_ref" => {
            let f = cx.map(node, "git_ref", &["repo", "expect", "clean"])?;
            let repo = cx
                .required(&f, "repo", &what, "e.g. repo: /opt/app")
                .map(|r| base.join(r));
            let expect = cx.required(
                &f,
                "expect",
                &what,
                "a sha, a ref (refs/tags/v1) or a tag pattern (deploy-*)",
            );
            let clean = f.get("clean").and_then(|n| cx.bool(n, "clean")).unwrap_or(false);
            Some(Probe::GitRef(GitRefProbe {
                repo: repo?,
                expect: expect?,
                clean,
            }))
        }
        "sql" => {
            let f = cx.map(node, "sql", &["url", "query", "expect"])?;
            let url = cx.required(&f, "url", &what, "e.g. url: sqlite:///var/lib/app/app.db");
            let query = cx.required(
                &f,
                "query",
                &what,
                "e.g. query: SELECT count(*) FROM jobs WHERE status = 'running'",
            );
            let mut expect = SqlExpect::default();
            match f.get("expect") {
                Some(n) => {
                    let e = cx.map(n, "sql.expect", &["equals", "max", "min"])?;
                    expect.equals = e.get("equals").and_then(|n| scalar_json(cx, n));
                    let number = |cx: &mut Cx, key: &str| {
                        e.get(key).and_then(|n| {
                            cx.parsed(
                                n,
                                key,
                                |t| t.parse::<f64>().map_err(|_| format!("`{t}` is not a number")),
                                "a number",
                            )
                        })
                    };
                    expect.max = number(cx, "max");
                    expect.min = number(cx, "min");
                    if expect.equals.is_none() && expect.max.is_none() && expect.min.is_none() {
                        cx.error(n.pos, "sql.expect needs `equals`, `max` or `min`", None);
                    }
                }
                None => cx.missing(
                    f.pos,
                    "expect",
                    "sql needs `expect`".into(),
                    "e.g. expect: { equals: 0 }",
                ),
            }
            let url = url?;
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                return Some(Probe::Sql(SqlProbe {
                    url,
                    query: query?,
                    expect,
                }));
            }
            if !url.starts_with("sqlite:") {
                let pos = f.get("url").map(|n| n.pos).unwrap_or(f.pos);
                cx.error(
                    pos,
                    format!("sql.url `{url}` must be sqlite:///path or postgres://…"),
                    None,
                );
                return None;
            }
            let path = match crate::config::state_path(&url, base) {
                Ok(p) => p,
                Err(msg) => {
                    let pos = f.get("url").map(|n| n.pos).unwrap_or(f.pos);
                    cx.error(
                        pos,
                        format!("sql.url: {msg}"),
                        Some("e.g. url: sqlite:///var/lib/app/app.db".into()),
                    );
                    return None;
                }
            };
            Some(Probe::Sql(SqlProbe {
                url: path.to_string_lossy().into_owned(),
                query: query?,
                expect,
            }))
        }
        "drift" => {
            cx.map(node, "drift", &[])?;
            Some(Probe::Drift(crate::config::checks::DriftProbe {}))
        }
        "backup_age" => {
            let f = cx.map(node, "backup_age", &["target", "max_age"])?;
            let target = cx.required(&f, "target", &what, "e.g. target: main");
            let max_age = match f.get("max_age") {
                Some(n) => cx.duration(n, "max_age"),
                None => {
                    cx.missing(
                        f.pos,
                        "max_age",
                        "backup_age needs `max_age`".into(),
                        "e.g. max_age: 26h",
                    );
                    None
                }
            };
            let target = target?;
            // Checked against `backups:` once that section is read.
            cx.backup_refs
                .push((f.get("target").map_or(f.pos, |n| n.pos), target.clone()));
            Some(Probe::BackupAge(BackupAgeProbe {
                target,
                max_age: max_age?,
            }))
        }
        "heartbeat" => {
            let f = cx.map(node, "heartbeat", &["period", "grace", "key"])?;
            let period = match f.get("period") {
                Some(n) => cx.duration(n, "period"),
                None => {
                    cx.missing(f.pos, "period", "heartbeat needs `period`".into(), "e.g. period: 1h");
                    None
                }
            };
            let grace = f.get("grace").and_then(|n| cx.duration(n, "grace"));
            let key = f.get("key").and_then(|n| cx.string(n, "key"));
            if let (Some(k), Some(n)) = (&key, f.get("key"))
                && k.len() < 16
            {
                cx.error(
                    n.pos,
                    "heartbeat.key must be at least 16 characters",
                    Some("e.g. key: \"${CRAWLER_PING_KEY}\" from an env file".into()),
                );
                return None;
            }
            Some(Probe::Heartbeat(HeartbeatProbe {
                period: period?,
                grace,
                key,
            }))
        }
        _ => None,
    }
}

fn scalar_json(cx: &mut Cx, n: &Node) -> Option<serde_json::Value> {
    match &n.kind {
        Kind::Scalar { value, plain } => {
            let text = cx.string(n, "value")?;
            if *plain {
                if let Ok(i) = text.parse::<i64>() {
                    return Some(i.into());
                }
                if let Ok(f) = text.parse::<f64>() {
                    return Some(serde_json::json!(f));
                }
                if value == "true" || value == "false" {
                    return Some((value == "true").into());
                }
            }
            Some(text.into())
        }
        Kind::Null => Some(serde_json::Value::Null),
        _ => {
            cx.error(
                n.pos,
                "expected a single value (string, number, true/false, null)",
                None,
            );
            None
        }
    }
}

fn http_expect(cx: &mut Cx, node: &Node) -> Option<HttpExpect> {
    let f = cx.map(
        node,
        "http.expect",
        &[
            "status",
            "body_contains",
            "body_regex",
            "json",
            "headers",
            "max_latency",
        ],
    )?;
    let mut e = HttpExpect::default();
    if let Some(n) = f.get("status") {
        let items: Vec<&Node> = match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        let mut ranges = Vec::new();
        for item in items {
            if let Some(r) = cx.parsed(
                item,
                "status",
                StatusSet::parse_item,
                "e.g. 200, [200, 204], \"2xx\", \"200-399\"",
            ) {
                ranges.push(r);
            }
        }
        e.status = StatusSet(ranges);
    }
    e.body_contains = f.get("body_contains").and_then(|n| cx.string(n, "body_contains"));
    e.body_regex = regex(cx, &f, "body_regex");
    if let Some(n) = f.get("json")
        && let Some(m) = cx.map(n, "expect.json", &[])
    {
        for (pointer, kpos, v) in &m.entries {
            if !pointer.starts_with('/') {
                cx.error(
                    *kpos,
                    format!("`{pointer}` is not a JSON pointer"),
                    Some(format!("pointers start with `/`: \"/{pointer}\"")),
                );
                continue;
            }
            if let Some(value) = scalar_json(cx, v) {
                e.json.insert(pointer.to_string(), value);
            }
        }
    }
    e.headers = cx.string_map(f.get("headers"), "expect.headers");
    e.max_latency = f.get("max_latency").and_then(|n| cx.duration(n, "max_latency"));
    Some(e)
}
