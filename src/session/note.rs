//! The end-of-session record appended to the incident note the session belongs to.
//!
//! Owns finding the note in `incidents.dir` (`ID.md`, or a name starting with `ID-` or ending
//! with `-ID`) and the record. Invariants: an id is a plain name (letters, digits, `.`, `_`,
//! `-`), so it never leads out of the directory; the record is appended in one `O_APPEND`
//! write after the session's end is committed.

use std::path::{Path, PathBuf};

use super::EndRecord;
use crate::store::SessionCommand;

/// An incident id names a file in `incidents.dir`: nothing that could lead out of it.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The note of incident `id` in `dir`, if there is exactly one candidate.
pub fn find(dir: &Path, id: &str) -> Option<PathBuf> {
    if !valid_id(id) {
        return None;
    }
    let exact = dir.join(format!("{id}.md"));
    if exact.is_file() {
        return Some(exact);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "md")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.starts_with(&format!("{id}-")) || s.ends_with(&format!("-{id}")))
        })
        .collect();
    found.sort();
    (found.len() == 1).then(|| found.remove(0))
}

/// The record as markdown: the summary, then every command with its decision.
pub fn markdown(r: &EndRecord, commands: &[SessionCommand]) -> String {
    let s = &r.session;
    let list = |v: &[i64]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter().map(|i| format!("#{i}")).collect::<Vec<_>>().join(", ")
        }
    };
    let mut out = format!(
        "\n## Session {} ({}) on {}, ended {}\n\n\
         - operator: {}; reason: {}\n\
         - commands run: {}; refused: {}\n\
         - production state changed: {}\n\
         - approvals used: {}\n\
         - open change requests: {}\n\
         - next safest step: {}\n",
        s.id,
        s.mode,
        s.host,
        s.ended_at.as_deref().unwrap_or("-"),
        s.actor,
        s.reason,
        r.commands_run,
        r.commands_refused,
        if r.state_changed { "yes" } else { "no" },
        list(&r.approvals_used),
        list(&r.open_change_requests),
        r.next_step,
    );
    if !commands.is_empty() {
        out.push_str("\n| time (UTC) | decision | command | exit |\n|---|---|---|---|\n");
        for c in commands {
            out.push_str(&format!(
                "| {} | {} | `{}` | {} |\n",
                c.started_at,
                c.decision,
                crate::util::display(&c.argv).replace('|', "\\|").replace('`', "'"),
                c.exit_code.map(|e| e.to_string()).unwrap_or_else(|| "-".into())
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_found_by_id_and_ambiguity_finds_none() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(find(d.path(), "api-down"), None);
        std::fs::write(d.path().join("2026-11-29-api-down.md"), "# API down\n").unwrap();
        std::fs::write(d.path().join("2026-11-29-api-down.txt"), "").unwrap();
        assert_eq!(
            find(d.path(), "api-down"),
            Some(d.path().join("2026-11-29-api-down.md"))
        );
        std::fs::write(d.path().join("2026-11-30-api-down.md"), "# again\n").unwrap();
        assert_eq!(find(d.path(), "api-down"), None, "two candidates: neither is guessed");
        std::fs::write(d.path().join("api-down.md"), "").unwrap();
        assert_eq!(find(d.path(), "api-down"), Some(d.path().join("api-down.md")));
        for bad in ["../api-down", "/etc/passwd", ".hidden", "a/b", ""] {
            assert!(!valid_id(bad), "{bad}");
            assert_eq!(find(d.path(), bad), None);
        }
    }
}
