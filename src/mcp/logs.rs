//! The `logs` tool: the last lines of a configured unit's journal or log file, redacted.
//!
//! Invariant: only a unit or file named in `mcp.logs` is read, matched exactly as configured;
//! `journalctl` runs bounded in the kernel's read-only sandbox, and a file `secrets.deny_read`
//! names is refused even when listed.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::call::Reply;
use crate::config::Config;

/// How far back in a file the last lines are looked for.
const TAIL_BYTES: u64 = 1024 * 1024;
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(15);

pub fn read(config: &Config, unit: Option<&str>, file: Option<&str>, lines: Option<u64>) -> Reply {
    let logs = &config.mcp.logs;
    let lines = lines.unwrap_or(u64::from(logs.lines)).min(u64::from(logs.lines)) as usize;
    match (unit, file) {
        (Some(u), None) if logs.units.iter().any(|c| c == u) => journal(config, u, lines),
        (None, Some(f)) => match logs.files.iter().find(|c| c.as_os_str() == f) {
            Some(path) => tail_file(config, path, lines),
            None => Reply::refused(format!("`{f}` is not a file of mcp.logs.files"), Some(offered(config))),
        },
        (Some(u), None) => Reply::refused(format!("`{u}` is not a unit of mcp.logs.units"), Some(offered(config))),
        _ => Reply::refused("name one `unit` or one `file`", Some(offered(config))),
    }
}

fn offered(config: &Config) -> String {
    let l = &config.mcp.logs;
    format!(
        "units: [{}]; files: [{}]",
        l.units.join(", "),
        l.files
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn journal(config: &Config, unit: &str, lines: usize) -> Reply {
    let argv: Vec<String> = [
        "journalctl",
        "--no-pager",
        "-o",
        "short-iso",
        "-n",
        &lines.to_string(),
        "-u",
        unit,
    ]
    .map(String::from)
    .to_vec();
    let mut spec = crate::exec::Spec::new(argv, JOURNAL_TIMEOUT);
    spec.read_only = config.sessions.sandbox;
    spec.masked = crate::exec::mask::expand(&config.secrets.deny_read);
    match crate::exec::run(&spec, &crate::exec::Cancel::default()) {
        Ok(o) => {
            let text = crate::session::redact::output(&config.redactor, &o.combined_output());
            Reply::allowed(json!({ "unit": unit, "exit_code": o.exit_code, "lines": last_lines(&text, lines) }))
        }
        Err(e) => Reply::refused(format!("journalctl could not run: {e}"), None),
    }
}

fn tail_file(config: &Config, path: &Path, lines: usize) -> Reply {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if crate::exec::mask::expand(&config.secrets.deny_read).contains(&real) {
        return Reply::refused(
            format!("{} is a secrets.deny_read path", path.display()),
            Some("reading it needs a change request a person approves (session_exec in maintenance)".into()),
        );
    }
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(&real)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        f.take(TAIL_BYTES).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let text = crate::session::redact::output(&config.redactor, &text);
            Reply::allowed(json!({ "file": path, "lines": last_lines(&text, lines) }))
        }
        Err(e) => Reply::refused(format!("{}: {e}", path.display()), None),
    }
}

fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..].to_vec()
}
