//! Configuration errors that point at the offending text.
//!
//! Owns the `Diagnostic` value (file, line, column, message, hint) and its rendering as a
//! compiler-style report with the source line and a caret. It does not decide what is an
//! error. Invariant: line and column are 1-based and refer to the file the user edits.

use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::yaml::Pos;

#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The text of the offending line, for the report.
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(file: PathBuf, src: &str, pos: Pos, message: impl Into<String>) -> Self {
        let source_line = src.lines().nth(pos.line.saturating_sub(1)).map(str::to_string);
        Diagnostic {
            file,
            line: pos.line,
            column: pos.col,
            message: message.into(),
            hint: None,
            source_line,
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Renders like a compiler: `error:`, ` --> file:line:col`, the line, a caret, a hint.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "error: {}", self.message);
        let _ = writeln!(out, "  --> {}:{}:{}", self.file.display(), self.line, self.column);
        if let Some(text) = &self.source_line {
            let gutter = self.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad: String = text
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{gutter} | {text}");
            let _ = writeln!(out, "{pad} | {caret_pad}^");
        }
        if let Some(hint) = &self.hint {
            let _ = writeln!(out, "  = hint: {hint}");
        }
        out
    }
}

/// The closest candidate within a small edit distance, for "did you mean" hints.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_column() {
        let d = Diagnostic::new(
            "r.yaml".into(),
            "a: 1\n  crn: x\n",
            Pos { line: 2, col: 3 },
            "unknown key `crn`",
        )
        .with_hint(Some("did you mean `cron`?".into()));
        assert_eq!(
            d.render(),
            "error: unknown key `crn`\n  --> r.yaml:2:3\n  |\n2 |   crn: x\n  |   ^\n  = hint: did you mean `cron`?\n"
        );
    }

    #[test]
    fn suggests_near_names_only() {
        assert_eq!(suggest("crn", ["cron", "tasks"]), Some("cron"));
        assert_eq!(suggest("zzzzzz", ["cron", "tasks"]), None);
    }
}
