//! Nothing lost under concurrent processes and kill -9: CLI writers, readers, cron-mode runs
//! and a daemon killed at random points share one state file; afterwards the file is intact,
//! every write that exited 0 is there with exactly one audit event, and the chain verifies.
//! Also: a lost tail of the audit log is reported, and a file size limit is an error.

mod common;

use common::*;
use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// xorshift: the test prints its seed, so a failing interleaving can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        })
}

fn torture_seconds() -> u64 {
    std::env::var("TORTURE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

#[derive(Default)]
struct Tally {
    acknowledged: Vec<String>,
    killed: Vec<String>,
    runs_ok: u64,
    reads: u64,
    daemon_kills: u64,
}

#[test]
fn concurrent_processes_and_kill_9_lose_no_acknowledged_write() {
    let env = Env::new(
        r#"
version: 1
profiles:
  tick: { cron: "* * * * * *", tasks: [ { run: [true] }, { sh: "echo tick" } ] }
  manual: { cron: "0 0 1 1 *", tasks: [ { run: [true] } ] }
"#,
    );
    let seed = seed();
    eprintln!("TORTURE_SEED={seed}");
    let until = Instant::now() + Duration::from_secs(torture_seconds());
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let value = "x".repeat(300);
    std::thread::scope(|s| {
        // Two writers whose every write is acknowledged or not by its exit code.
        for w in 0..2 {
            let (env, tally, value) = (&env, tally.clone(), value.clone());
            s.spawn(move || {
                let mut i = 0;
                while Instant::now() < until {
                    let key = format!("w{w}-{i}");
                    i += 1;
                    let out = env.run(&["state", "set", "torture", &key, &value, "--apply"]);
                    if out.code == 0 {
                        tally.lock().unwrap().acknowledged.push(key);
                    } else {
                        panic!("state set {key} failed: {out:?}");
                    }
                }
            });
        }
        // A writer killed with SIGKILL at a random point of its life.
        {
            let (env, tally) = (&env, tally.clone());
            s.spawn(move || {
                let mut rng = Rng(seed ^ 0x5555);
                let mut i = 0;
                while Instant::now() < until {
                    let key = format!("k-{i}");
                    i += 1;
                    let mut child = env
                        .cmd()
                        .args(["state", "set", "torture", &key, "v", "--apply"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    std::thread::sleep(Duration::from_micros(rng.below(30_000)));
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    let mut t = tally.lock().unwrap();
                    if status.success() {
                        t.acknowledged.push(key);
                    } else {
                        t.killed.push(key);
                    }
                }
            });
        }
        // Readers.
        {
            let (env, tally) = (&env, tally.clone());
            s.spawn(move || {
                while Instant::now() < until {
                    for args in [
                        &["jobs", "list"][..],
                        &["audit", "list", "--limit", "5"],
                        &["state", "list"],
                    ] {
                        let out = env.run(args);
                        assert_eq!(out.code, 0, "{args:?}: {out:?}");
                        tally.lock().unwrap().reads += 1;
                    }
                }
            });
        }
        // Cron-mode runs of a profile.
        {
            let (env, tally) = (&env, tally.clone());
            s.spawn(move || {
                while Instant::now() < until {
                    let out = env.run(&["run", "manual"]);
                    assert_eq!(out.code, 0, "run manual: {out:?}");
                    tally.lock().unwrap().runs_ok += 1;
                }
            });
        }
        // The daemon, killed with SIGKILL at random points and started again.
        {
            let (env, tally, stop) = (&env, tally.clone(), stop.clone());
            s.spawn(move || {
                let mut rng = Rng(seed);
                while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    let mut daemon = env
                        .cmd()
                        .args(["daemon", "--log-format", "text"])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(100 + rng.below(2_000)));
                    let _ = daemon.kill();
                    let _ = daemon.wait();
                    tally.lock().unwrap().daemon_kills += 1;
                }
            });
        }
    });
    stop.store(true, Ordering::SeqCst);

    let t = tally.lock().unwrap();
    eprintln!(
        "acknowledged writes {}, killed writers {}, runs {}, reads {}, daemon kills {}",
        t.acknowledged.len(),
        t.killed.len(),
        t.runs_ok,
        t.reads,
        t.daemon_kills
    );
    assert!(
        t.acknowledged.len() > 20 && t.daemon_kills > 2,
        "too little happened to judge"
    );

    assert_eq!(env.integrity(), "ok", "seed {seed}");
    let db = env.db();
    let present: HashSet<String> = {
        let mut stmt = db
            .prepare("SELECT key FROM monitor_state WHERE namespace = 'torture'")
            .unwrap();
        stmt.query_map((), |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    let lost: Vec<_> = t.acknowledged.iter().filter(|k| !present.contains(*k)).collect();
    assert!(lost.is_empty(), "seed {seed}: acknowledged writes lost: {lost:?}");
    let counted: std::collections::HashMap<String, i64> = {
        let mut stmt = db
            .prepare("SELECT subject, count(*) FROM audit_events WHERE kind = 'state.set' GROUP BY subject")
            .unwrap();
        stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    };
    let events = |key: &str| -> i64 { counted.get(&format!("torture/{key}")).copied().unwrap_or(0) };
    for key in &t.acknowledged {
        assert_eq!(events(key), 1, "seed {seed}: audit events for acknowledged {key}");
    }
    // A writer killed mid-way either committed the change with its event or neither.
    for key in &t.killed {
        let expected = i64::from(present.contains(key));
        assert_eq!(events(key), expected, "seed {seed}: audit events for killed {key}");
    }
    let manual_runs: i64 = db
        .query_row(
            "SELECT count(*) FROM runs WHERE kind = 'profile' AND profile = 'manual' AND status = 'ok'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(manual_runs as u64, t.runs_ok, "seed {seed}: acknowledged runs recorded");
    drop(db);

    let verify = env.run(&["audit", "verify", "--json"]);
    assert_eq!(verify.code, 0, "seed {seed}: {verify:?}");
    if env.pg.is_none() {
        assert_eq!(verify.json()["head_file"]["ok"], true, "{}", verify.stdout);
    }
}

/// Appends `n` state writes through the binary.
fn write_keys(env: &Env, from: usize, n: usize) {
    for i in from..from + n {
        let out = env.run(&["state", "set", "ns", &format!("k{i}"), "v", "--apply"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
}

#[test]
fn audit_verify_reports_committed_events_the_state_file_lost() {
    let env = Env::new("version: 1\n");
    write_keys(&env, 0, 3);
    // An older copy of the state file, as a crash that lost the last commits or a careless
    // restore would leave it: the copy is made by SQLite itself.
    let old = env.path("old.db");
    env.db().execute("VACUUM INTO ?1", [old.display().to_string()]).unwrap();
    write_keys(&env, 3, 2);
    let ok = env.run(&["audit", "verify"]);
    assert_eq!(ok.code, 0, "{ok:?}");

    for ext in ["-wal", "-shm"] {
        let mut p = env.state_db().into_os_string();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
    std::fs::copy(&old, env.state_db()).unwrap();
    // A sound chain of 3 events, but 2 committed ones are gone.
    let lost = env.run(&["audit", "verify", "--json"]);
    assert_eq!(lost.code, 1, "{lost:?}");
    let v = lost.json();
    assert_eq!(v["chain_intact"], true);
    assert_eq!(v["intact"], false);
    assert_eq!(v["head_file"]["recorded_seq"], 5);
    let text = env.run(&["audit", "verify"]);
    assert!(
        text.stdout
            .contains("LOST TAIL: the state file ends at seq 3, but seq 5 was committed: 2 committed events were lost"),
        "{}",
        text.stdout
    );

    // Written again past the old head: still reported, as a different event at seq 5.
    write_keys(&env, 10, 3);
    let rewritten = env.run(&["audit", "verify"]);
    assert_eq!(rewritten.code, 1, "{rewritten:?}");
    assert!(
        rewritten
            .stdout
            .contains("seq 5 is not the event that was committed as seq 5"),
        "{}",
        rewritten.stdout
    );

    // The operator accepts the restored file: the next change records the head again.
    std::fs::remove_file(env.path("state/runbook.db.audit-head")).unwrap();
    write_keys(&env, 20, 1);
    let accepted = env.run(&["audit", "verify"]);
    assert_eq!(accepted.code, 0, "{accepted:?}");
}

#[test]
fn a_write_past_the_file_size_limit_is_an_error_not_a_silent_kill() {
    let env = Env::new("version: 1\n");
    write_keys(&env, 0, 1);
    // Eight cache files of 900 kB each: one import transaction of about 7 MB.
    for i in 0..8 {
        env.write(&format!("cache/big{i}"), &"y".repeat(900_000));
    }
    // ulimit -f counts 1024-byte blocks: 2 MiB is less than the transaction.
    let out = Out::from(
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -f 2048; exec \"$0\" --config {} state import cache --apply",
                env.config.display()
            ))
            .arg(BIN)
            .current_dir(env.dir.path())
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(out.stderr.contains("file size limit"), "{}", out.stderr);
    // Nothing half-written: the file is sound and holds the earlier write only.
    assert_eq!(env.count("SELECT count(*) FROM monitor_state WHERE key LIKE 'big%'"), 0);
    assert_eq!(env.integrity(), "ok");
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn pings_the_api_acknowledged_survive_kill_9_of_the_daemon() {
    let key = "durable-ping-key-0123456789";
    let env = Env::new(&format!(
        "version: 1\napi: {{ listen: \"127.0.0.1:0\", rate_limit: off }}\nchecks:\n  beat: {{ heartbeat: {{ period: 1h, key: \"{key}\" }} }}\n"
    ));
    let (mut daemon, port) = start_api(&env, &["daemon"]);
    let (mut sent, mut acknowledged) = (0, 0);
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        sent += 1;
        if common::http::request(port, "POST", &format!("/ping/beat?key={key}"), None).status == 200 {
            acknowledged += 1;
        }
    }
    // kill -9 right after the last answer.
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    assert!(acknowledged > 5, "{acknowledged} of {sent}");
    let events = env.count("SELECT count(*) FROM audit_events WHERE kind = 'heartbeat.pinged'");
    assert!(
        (acknowledged..=sent).contains(&events),
        "{acknowledged} pings acknowledged, {sent} sent, {events} recorded"
    );
    assert_eq!(env.integrity(), "ok");
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn many_processes_opening_a_new_state_file_at_once_all_succeed() {
    for round in 0..15 {
        let env = Env::new("version: 1\n");
        let children: Vec<_> = (0..8)
            .map(|_| {
                env.cmd()
                    .args(["state", "list"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = Out::from(child.wait_with_output().unwrap());
            assert_eq!(out.code, 0, "round {round}: {out:?}");
        }
    }
}
