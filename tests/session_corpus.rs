//! The hostile corpus of diagnostic sessions: commands a careless or hostile user tries, with
//! the default policy and the kernel's sandbox. Each must be refused or run without effect:
//! the sentinel file keeps its bytes, nothing appears in the data directory, the host name
//! stays, a process outside survives, a listener gets no request that writes, and the secret's
//! bytes are in no output and no record. Every command is in the audit chain.

mod common;

use common::corpus::{CORPUS, Hostile, SECRET};
use common::*;

#[test]
fn the_hostile_corpus_is_refused_or_changes_nothing() {
    run_corpus("the default policy", "[]");
}

/// The same corpus with an operator who listed every command as read-only: the argv policy's
/// list is gone, only its refusals of privileged shells, shell syntax and writing flags
/// remain, and the kernel has to hold the rest.
#[test]
fn the_hostile_corpus_changes_nothing_even_when_everything_is_listed_read_only() {
    run_corpus("read_only: [\"*\"]", "[ \"*\" ]");
}

fn run_corpus(what: &str, read_only: &str) {
    if !sandbox_here("the corpus") {
        return;
    }
    let mut h = Hostile::new(read_only, "");
    let env = &h.env;
    let s = {
        let (code, v) = env.json(&["session", "start", "--mode", "diagnostic", "--reason", "corpus"]);
        assert_eq!(code, 0, "{v}");
        v["session"].to_string()
    };
    let (mut ran, mut refused) = (0, 0);
    let mut escaped = Vec::new();
    for line in CORPUS {
        let line = h.fill(line);
        let argv = shlex::split(&line).unwrap_or_else(|| panic!("corpus line does not split: {line}"));
        let mut args = vec!["session", "exec", "--session", s.as_str(), "--"];
        args.extend(argv.iter().map(String::as_str));
        let out = env.run(&args);
        if out.code == 2 && out.stderr.starts_with("refused") {
            refused += 1;
        } else {
            ran += 1;
        }
        let effects = h.effects(&format!("{}{}", out.stdout, out.stderr));
        if !effects.is_empty() {
            escaped.push(format!("{line}: {effects:?}"));
        }
    }
    h.host_untouched();
    eprintln!(
        "corpus ({what}): {} tried, {refused} refused, {ran} ran without effect, {} escaped",
        CORPUS.len(),
        escaped.len()
    );
    assert!(CORPUS.len() >= 120, "the corpus holds at least 120 commands");
    assert!(escaped.is_empty(), "escaped:\n{}", escaped.join("\n"));
    // Nothing of the secret in the state file, and every command in the audit chain.
    let env = &h.env;
    assert!(state_files_holding(env, SECRET).is_empty());
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind IN ('session.command', 'session.refused')"),
        CORPUS.len() as i64
    );
}
