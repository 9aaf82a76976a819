//! Where output goes: tables and short reports for people, JSON for scripts.
//!
//! Owns writing to stdout (a closed pipe ends the process quietly, as `head` expects) and the
//! table style. Commands build values; this module decides how they look.

use std::io::{IsTerminal, Write};

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub json: bool,
}

/// Writes to stdout; exits 0 if the reader went away (`runbook jobs list | head`).
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

impl Printer {
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        emit(&format!("{text}\n"));
    }

    pub fn line(&self, text: impl AsRef<str>) {
        emit(&format!("{}\n", text.as_ref()));
    }

    /// Prints JSON when `--json`, otherwise calls `human`.
    pub fn either<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce()) {
        if self.json { self.json(value) } else { human() }
    }
}

/// A borderless table with a header, like `ps` or `kubectl get`.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    if std::io::stdout().is_terminal() {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    }
    t.set_header(header.iter().map(|h| h.to_string()));
    t
}

pub fn print_table(table: &Table) {
    let text = table.to_string();
    let trimmed: Vec<&str> = text.lines().map(str::trim_end).collect();
    emit(&format!("{}\n", trimmed.join("\n")));
}

/// First line of a text, cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if line.chars().count() > max {
        format!("{}…", line.chars().take(max.saturating_sub(1)).collect::<String>())
    } else {
        line.to_string()
    }
}

/// The last `n` lines of a text, for showing why a task failed.
pub fn tail_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}
