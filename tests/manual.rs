//! `runbook completions` and `runbook man`: made from the same command tree as `--help`, and
//! usable without any configuration.

mod common;

use common::*;
use std::process::Command;

fn runbook(dir: &std::path::Path, args: &[&str]) -> Out {
    Out::from(
        Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env_remove("RUNBOOK_CONFIG")
            .output()
            .unwrap(),
    )
}

#[test]
fn bash_completes_subcommands_and_their_own_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(dir.path(), &["completions", "bash"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let script = dir.path().join("runbook.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    // What bash offers after `runbook d` and after `runbook db `, through the function the
    // script registers.
    let offered = |words: &str, cword: usize, cur: &str, prev: &str| {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; complete -p runbook >/dev/null || exit 9; COMP_WORDS=({words}); COMP_CWORD={cword}; \
                 COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _runbook runbook '{cur}' '{prev}'; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let top = offered("runbook d", 1, "d", "runbook");
    for cmd in ["daemon", "db", "deploy", "drift"] {
        assert!(top.contains(&cmd.to_string()), "{cmd} not offered: {top:?}");
    }
    assert!(!top.contains(&"jobs".to_string()), "{top:?}");
    let db = offered("runbook db ''", 2, "", "db");
    for sub in ["status", "migrate", "copy"] {
        assert!(db.contains(&sub.to_string()), "{sub} not offered after db: {db:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["zsh", "fish"] {
        let out = runbook(dir.path(), &["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in ["daemon", "copy", "recover-stale"] {
            assert!(out.stdout.contains(word), "{shell} script lacks {word}");
        }
    }
    let bad = runbook(dir.path(), &["completions", "tcsh"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

#[test]
fn the_manual_is_one_page_or_a_page_per_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = runbook(dir.path(), &["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.starts_with(".TH"),
        "{}",
        &out.stdout[..80]
    );
    assert!(out.stdout.contains(".TH runbook 1"), "not a section-1 page");
    assert!(out.stdout.contains("completions"), "the page lists the commands");

    let pages = dir.path().join("man1");
    let out = runbook(dir.path(), &["man", "--dir", pages.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let listed = out.json()["pages"].as_array().unwrap().len();
    for page in [
        "runbook.1",
        "runbook-db.1",
        "runbook-db-copy.1",
        "runbook-jobs-recover-stale.1",
    ] {
        let text = std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".SH NAME"), "{page}");
    }
    assert_eq!(listed, std::fs::read_dir(&pages).unwrap().count());
    // groff reads the page without a warning (under RUNBOOK_TEST_REQUIRE=1 groff must be here).
    if Command::new("groff").arg("--version").output().is_err() {
        cannot_run("groff is not installed (apt-get install groff-base)");
    } else {
        let out = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(pages.join("runbook-db-copy.1"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
