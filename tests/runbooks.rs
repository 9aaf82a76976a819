//! docs/runbooks/*.md cannot rot: each page's configuration (its ```yaml block that starts
//! with `version: 1`) goes into a scratch host directory, and every ```sh block of the page
//! runs there, in order, as one bash script with `runbook` on PATH. A line ending in
//! `# exit N` must exit N, every other command line 0. Blocks marked ```sh on-host need a real
//! host (a second person, systemd, the network): their command lines only have to parse
//! (tests/docs.rs reads these pages too).

mod common;

use common::*;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_runbook");

fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs/runbooks"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md") && !p.ends_with("README.md"))
        .collect();
    pages.sort();
    pages
}

/// One page's shell blocks as a script that stops at the first line exiting otherwise than
/// it says.
fn script(page: &Path, text: &str) -> String {
    let mut s = String::from("set -u\n");
    for (info, first, body) in blocks(text) {
        if info != "sh" {
            continue;
        }
        let mut pending = String::new();
        let mut start = first;
        for (k, line) in body.lines().enumerate() {
            if pending.is_empty() {
                start = first + k;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let cmd = std::mem::take(&mut pending);
            let trimmed = cmd.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let expected = trimmed
                .rsplit_once("# exit ")
                .and_then(|(_, n)| n.trim().parse::<i32>().ok())
                .unwrap_or(0);
            let shown = trimmed.replace('\'', "'\\''");
            s.push_str(&format!(
                "{cmd}\nrc=$?; if [ $rc -ne {expected} ]; then echo '{}:{start}: exit '$rc', expected {expected}: {shown}' >&2; exit 99; fi\n",
                page.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    s
}

#[test]
fn every_runbook_page_runs_against_a_scratch_host() {
    let pages = pages();
    assert!(pages.len() >= 5, "the five seed runbooks: {pages:?}");
    let shim = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BIN, shim.path().join("runbook")).unwrap();
    let path = format!(
        "{}:{}",
        shim.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let yaml = blocks(&text)
            .into_iter()
            .find(|(info, _, body)| info == "yaml" && body.starts_with("version: 1"))
            .unwrap_or_else(|| panic!("{}: no configuration block", page.display()))
            .2;
        let env = Env::new(&yaml);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script(&page, &text))
            .current_dir(env.dir.path())
            .env("PATH", &path)
            .env("HOME", env.dir.path())
            .env_remove("RUNBOOK_CONFIG")
            .env_remove("RUNBOOK_SESSION")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}\n--- stdout\n{}\n--- stderr\n{}",
            page.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
