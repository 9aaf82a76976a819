//! Audit and session benchmark: the figures the sessions issue sets.
//!
//!   (a) audit append, durable (each event committed): events/s    target ≥ 50,000/s
//!   (b) audit verify over a 1,000,000-event chain: events/s       target ≥ 1,000,000/s
//!   (c) `runbook session exec -- hostname` against `hostname`     target < 5 ms overhead
//!
//! A plain harness: `cargo bench --bench audit`. Knobs: BENCH_APPENDS (20000), BENCH_EVENTS
//! (1000000), BENCH_EXECS (100).

mod common;

use common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::Instant;

use runbook::audit::{Draft, GENESIS, Verifier, seal};
use runbook::store::Store;

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

fn main() {
    let appends = env_usize("BENCH_APPENDS", 20_000);
    let events = env_usize("BENCH_EVENTS", 1_000_000);
    let execs = env_usize("BENCH_EXECS", 100);
    println!("runbook audit and session benchmark");
    println!(
        "  machine  {} core(s), {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!("  loadavg  {} (at start)", loadavg());
    let dir = tempfile::tempdir().expect("tempdir");

    // (a) One event per transaction, through the store's own append (WAL, synchronous=NORMAL).
    let store = Store::open(&dir.path().join("append.db")).expect("state file");
    let draft = Draft {
        actor: "bench".into(),
        kind: "bench.event".into(),
        subject: "subject".into(),
        data: json!({ "n": 1, "detail": "a typical small event body" }).to_string(),
    };
    let t = Instant::now();
    for _ in 0..appends {
        store.audit_append(&draft).expect("append");
    }
    let append_rate = appends as f64 / t.elapsed().as_secs_f64();
    println!(
        "(a) audit append, one transaction each: {appends} events in {:.2} s = {append_rate:.0} events/s (target ≥ 50000): {}",
        t.elapsed().as_secs_f64(),
        verdict(append_rate >= 50_000.0)
    );
    // Group commit: what a burst of appenders shares (one commit per batch).
    let batch: Vec<Draft> = (0..64).map(|_| draft.clone()).collect();
    let t = Instant::now();
    let mut n = 0;
    while n < appends {
        store.audit_append_all(&batch).expect("append");
        n += batch.len();
    }
    let group_rate = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "(a) audit append, group commit of 64: {n} events = {group_rate:.0} events/s (target ≥ 50000): {}",
        verdict(group_rate >= 50_000.0)
    );

    // (b) A long chain, written directly, then verified in-process and by the CLI.
    let path = dir.path().join("verify.db");
    let store = Store::open(&path).expect("state file");
    drop(store);
    {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
            .unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare("INSERT INTO audit_events (seq, ts, actor, kind, subject, data, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .unwrap();
            let mut prev = GENESIS.to_string();
            for seq in 1..=events as i64 {
                let e = seal(seq, format!("2026-11-28T00:00:00.{:03}Z", seq % 1000), &draft, prev);
                stmt.execute(rusqlite::params![
                    e.seq,
                    e.ts,
                    e.actor,
                    e.kind,
                    e.subject,
                    e.data,
                    e.prev_hash,
                    e.hash
                ])
                .unwrap();
                prev = e.hash;
            }
        }
        tx.commit().unwrap();
    }
    let store = Store::open(&path).expect("state file");
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut v = Verifier::default();
        store.audit_scan(&mut |e| v.feed(e)).expect("scan");
        assert!(v.first_break.is_none());
        rates.push(v.checked as f64 / t.elapsed().as_secs_f64());
    }
    let verify_rate = Stats::of(&rates).median;
    println!(
        "(b) audit verify in-process over {events} events: median {verify_rate:.0} events/s (target ≥ 1000000): {}",
        verdict(verify_rate >= 1_000_000.0)
    );

    // (c) A read-only command through a session against the command alone, alternating: in
    // the kernel's read-only sandbox (the default), then with `sessions.sandbox: off`.
    let (a, b) = exec_overhead(dir.path(), "on", execs);
    let overhead = a.median - b.median;
    println!(
        "(c) session exec -- hostname, sandboxed: median {:.2} ms; hostname alone {:.2} ms; overhead {overhead:.2} ms (target < 5): {}",
        a.median,
        b.median,
        verdict(overhead < 5.0)
    );
    let (u, v) = exec_overhead(dir.path(), "off", execs);
    let unsandboxed = u.median - v.median;
    println!(
        "(c) session exec -- hostname, sessions.sandbox: off: median {:.2} ms; overhead {unsandboxed:.2} ms; the sandbox costs {:.2} ms",
        u.median,
        overhead - unsandboxed
    );
    println!("  loadavg  {} (at end)", loadavg());
    println!(
        "BENCH_JSON {}",
        json!({ "bench": "audit", "append_per_s": r3(append_rate), "group_append_per_s": r3(group_rate), "verify_per_s": r3(verify_rate),
                "exec_ms": a.json(), "direct_ms": b.json(), "exec_overhead_ms": r3(overhead),
                "exec_unsandboxed_ms": u.json(), "exec_unsandboxed_overhead_ms": r3(unsandboxed) })
    );
}

/// `runbook session exec -- hostname` in a diagnostic session with `sessions.sandbox: SANDBOX`,
/// alternating with `hostname` alone, `execs` times each: (through runbook, direct), in ms.
fn exec_overhead(dir: &std::path::Path, sandbox: &str, execs: usize) -> (Stats, Stats) {
    let cfg = dir.join(format!("runbook-sandbox-{sandbox}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "version: 1\nstate: {{ url: \"sqlite://session-{sandbox}.db\" }}\nsessions: {{ sandbox: {sandbox} }}\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "session",
            "start",
            "--reason",
            "bench",
            "--json",
        ])
        .output()
        .expect("session start");
    let session: serde_json::Value = serde_json::from_slice(&out.stdout).expect("session id");
    let id = session["session"].to_string();
    let (mut through, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..execs {
        let t = Instant::now();
        let s = Command::new(BIN)
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "session",
                "exec",
                "--session",
                &id,
                "--",
                "hostname",
            ])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(s.success());
        through.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        assert!(
            Command::new("hostname")
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success()
        );
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    (Stats::of(&through), Stats::of(&direct))
}
