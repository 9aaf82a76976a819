//! Docs that cannot lie: every `runbook …` command line in README.md and docs/*.md parses with
//! the real command-line definition; every YAML block that is a whole configuration (it
//! starts with `version: 1`) passes `config check`; every HTTP path the docs name is in the
//! API's OpenAPI document.

mod common;

use std::path::{Path, PathBuf};

use clap::Parser;
use common::*;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn pages() -> Vec<(PathBuf, String)> {
    let mut files = vec![Path::new(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = ["docs", "docs/runbooks"]
        .iter()
        .flat_map(|d| std::fs::read_dir(Path::new(ROOT).join(d)).unwrap().flatten())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// The lines of a shell block with continued lines (`\` at the end) joined: (index, line).
fn joined(block: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut continued = false;
    for (k, line) in block.lines().enumerate() {
        let (text, more) = match line.trim_end().strip_suffix('\\') {
            Some(t) => (t.to_string(), true),
            None => (line.to_string(), false),
        };
        match (continued, out.last_mut()) {
            (true, Some((_, prev))) => {
                prev.push(' ');
                prev.push_str(text.trim());
            }
            _ => out.push((k, text)),
        }
        continued = more;
    }
    out
}

/// A command line as written in a shell block: `$ ` and comments taken off, placeholders a
/// reader would fill in given a value of their kind.
fn command_line(line: &str) -> Option<String> {
    let line = line.trim().strip_prefix("$ ").unwrap_or(line.trim());
    if !line.starts_with("runbook ") {
        return None;
    }
    let line = match line.find(" #") {
        Some(i) => &line[..i],
        None => line,
    };
    Some(
        line.trim()
            .replace("$(date +%F)", "2026-01-01")
            .replace('…', "x")
            .replace("\"$RUNBOOK_SESSION\"", "1")
            .replace("$RUNBOOK_SESSION", "1"),
    )
}

#[test]
fn every_runbook_command_line_in_the_docs_parses() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for (path, text) in pages() {
        for (info, first, block) in blocks(&text) {
            if !matches!(
                info.split_whitespace().next().unwrap_or(""),
                "sh" | "bash" | "console" | "shell" | ""
            ) {
                continue;
            }
            for (k, line) in joined(&block) {
                let Some(cmd) = command_line(&line) else { continue };
                let Some(argv) = shlex::split(&cmd) else {
                    bad.push(format!("{}:{}: cannot split `{cmd}`", path.display(), first + k));
                    continue;
                };
                seen += 1;
                // The shell's part ends at a pipe or a redirection; a placeholder id is a number.
                let argv: Vec<String> = argv
                    .into_iter()
                    .take_while(|a| !matches!(a.as_str(), "|" | ">" | ">>" | "<" | "2>" | "&&" | ";"))
                    .map(|a| {
                        if matches!(a.as_str(), "ID" | "N") {
                            "1".to_string()
                        } else {
                            a
                        }
                    })
                    .collect();
                if let Err(e) = runbook::cli::Cli::try_parse_from(&argv) {
                    if matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
                    ) {
                        continue;
                    }
                    let first_line = e.to_string().lines().next().unwrap_or_default().to_string();
                    bad.push(format!("{}:{}: `{cmd}`: {first_line}", path.display(), first + k));
                }
            }
        }
    }
    assert!(seen >= 50, "only {seen} command lines found");
    assert!(
        bad.is_empty(),
        "{} command line(s) in the docs do not parse:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The top-level keys of runbook.yaml.
const TOP_LEVEL: &[&str] = &[
    "version",
    "host",
    "state",
    "secrets",
    "api",
    "checks",
    "profiles",
    "backups",
    "notify",
    "sessions",
    "audit",
    "retention",
    "incidents",
    "gates",
    "deploy",
    "baseline",
    "recover",
];

#[test]
fn every_configuration_in_the_docs_passes_config_check() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for (path, text) in pages() {
        for (info, first, block) in blocks(&text) {
            // A whole configuration, or a fragment of one: its first key is a top-level key.
            let first_key = block
                .lines()
                .map(str::trim_end)
                .find(|l| !l.is_empty() && !l.trim_start().starts_with('#'))
                .and_then(|l| l.split(':').next())
                .unwrap_or_default()
                .to_string();
            if !info.starts_with("yaml") || !TOP_LEVEL.contains(&first_key.as_str()) {
                continue;
            }
            // An example with a value elided (`3f1c…`) is not meant to be taken as it is.
            if block.contains('…') {
                continue;
            }
            seen += 1;
            let yaml = if first_key == "version" {
                block.clone()
            } else {
                format!("version: 1\n{block}")
            };
            let env = Env::new(&yaml);
            // `${NAME}` the reader's environment provides; here, any value.
            let mut cmd = env.cmd();
            cmd.args(["config", "check"]);
            let mut rest = block.as_str();
            while let Some(i) = rest.find("${") {
                let name: String = rest[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `${NAME:-default}` has its own value when unset.
                if !rest[i + 2 + name.len()..].starts_with(":-") {
                    cmd.env(&name, "0123456789abcdef0123456789abcdef");
                }
                rest = &rest[i + 2..];
            }
            let out = cmd.output().unwrap();
            let (code, stderr) = (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
            // A fragment may name what the rest of the file defines (a check, a target), and
            // files the reader creates (env files, keys).
            let elsewhere = [
                "no check named",
                "which is not a check",
                "no backup target named",
                "env file",
                "No such file",
            ];
            if code != 0 && !elsewhere.iter().any(|e| stderr.contains(e)) {
                let out = Out {
                    code,
                    stdout: String::new(),
                    stderr,
                };
                bad.push(format!(
                    "{}:{first}: {}",
                    path.display(),
                    out.stderr.lines().take(3).collect::<Vec<_>>().join(" / ")
                ));
            }
        }
    }
    assert!(seen >= 5, "only {seen} configurations found");
    assert!(
        bad.is_empty(),
        "{} configuration(s) in the docs fail config check:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn every_http_path_the_docs_name_is_served() {
    let api = common::in_process::Api::new();
    let (status, text) = api.text("/v1/openapi.json");
    assert_eq!(status, 200, "{text}");
    let bytes = text.into_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).expect("the OpenAPI document");
    let served: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), p.clone()))
        })
        .collect();
    let matches = |method: &str, path: &str| {
        let path = path.split(['?', '[']).next().unwrap();
        served.iter().any(|(m, p)| {
            m == method && {
                let (a, b): (Vec<&str>, Vec<&str>) = (p.split('/').collect(), path.split('/').collect());
                a.len() == b.len()
                    && a.iter()
                        .zip(&b)
                        .all(|(x, y)| x == y || x.starts_with('{') || y.starts_with('{') || y.starts_with(':'))
            }
        })
    };
    let mut bad = Vec::new();
    let mut seen = 0;
    for (path, text) in pages() {
        for (n, line) in text.lines().enumerate() {
            for method in ["GET", "POST", "PUT", "DELETE"] {
                let mut rest = line;
                while let Some(i) = rest.find(&format!("`{method} /")) {
                    let after = &rest[i + method.len() + 2..];
                    let end = after.find(['`', ' ']).unwrap_or(after.len());
                    let p = &after[..end];
                    rest = &after[end..];
                    if p.starts_with("/v1/") || p == "/metrics" || p.starts_with("/ping/") || p == "/healthz" {
                        seen += 1;
                        if !matches(method, p) {
                            bad.push(format!("{}:{}: `{method} {p}`", path.display(), n + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(seen >= 20, "only {seen} paths found");
    assert!(
        bad.is_empty(),
        "{} path(s) the docs name are not served:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
