//! The `logs` tool: the last lines of a configured unit's journal or log file, redacted.
//!
//! Invariant: only a unit or file named in `mcp.logs` is read, matched exactly as configured,
//! by `journalctl` or `tail` bounded in the kernel's read-only sandbox with every secret path
//! masked; a secret path is refused by name first, even when listed.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::reply::Reply;
use crate::config::Config;

const READ_TIMEOUT: Duration = Duration::from_secs(15);

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

/// `argv` bounded, in the kernel's read-only sandbox, with every secret path masked (as a
/// session's read-only command runs): the output redacted, its last `lines` lines.
fn sandboxed(config: &Config, argv: Vec<String>, lines: usize) -> Result<(Option<i32>, Vec<String>), String> {
    let mut spec = crate::exec::Spec::new(argv, READ_TIMEOUT);
    spec.hold = crate::session::confine(config);
    let o = crate::exec::run(&spec, &crate::exec::Cancel::default()).map_err(|e| e.to_string())?;
    let text = crate::session::redact::output(&config.redactor, &o.combined_output());
    Ok((o.exit_code, last_lines(&text, lines)))
}

fn journal(config: &Config, unit: &str, lines: usize) -> Reply {
    let argv = [
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
    match sandboxed(config, argv, lines) {
        Ok((exit_code, lines)) => Reply::allowed(json!({ "unit": unit, "exit_code": exit_code, "lines": lines })),
        Err(e) => Reply::refused(format!("journalctl could not run: {e}"), None),
    }
}

/// The file's last lines through `tail` in the sandbox: a secret path is refused by name
/// first, and masked by the kernel whatever name (a link, a swapped file) reaches it.
fn tail_file(config: &Config, path: &Path, lines: usize) -> Reply {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if crate::session::secret_paths(config).contains(&real) {
        return Reply::refused(
            format!("{} is a secret path (secrets.deny_read or an env file)", path.display()),
            Some("reading it needs a change request a person approves, then session_exec".into()),
        );
    }
    let argv = vec![
        "tail".to_string(),
        "-n".into(),
        lines.to_string(),
        "--".into(),
        path.display().to_string(),
    ];
    match sandboxed(config, argv, lines) {
        Ok((Some(0), lines)) => Reply::allowed(json!({ "file": path, "lines": lines })),
        Ok((code, lines)) => Reply::refused(
            format!("{}: tail exited with {code:?}: {}", path.display(), lines.join(" / ")),
            None,
        ),
        Err(e) => Reply::refused(format!("tail could not run: {e}"), None),
    }
}

fn last_lines(text: &str, n: usize) -> Vec<String> {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}
