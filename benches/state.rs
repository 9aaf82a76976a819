//! The state on SQLite and on PostgreSQL, side by side in one run: the same work on both.
//!
//!   (a) overhead per task run (spawn `true`, record it in the ledger)    target < 5 ms
//!   (b) `runbook list` wall time (a process that opens the state)
//!   (c) audit append, one transaction each and grouped by 64             target ≥ 20,000/s grouped
//!   (d) `GET /v1/alerts?limit=50` over BENCH_ALERTS alerts (wrk, 32 connections, while a
//!       profile ticks every 5 s)                                          target ≥ 20,000 req/s, p99 < 5 ms
//!
//! `cargo bench --bench state`. Needs the machine's PostgreSQL on 127.0.0.1:5432 (user
//! postgres, trust) and wrk. Knobs: BENCH_TASKS (200), BENCH_ROUNDS (5), BENCH_APPENDS
//! (5000), BENCH_ALERTS (1000000), BENCH_SECS (10). Both sides run the same binary and
//! the same queries; SQLite writes a local file with WAL and synchronous=NORMAL, PostgreSQL
//! commits over a loopback TCP connection with its default synchronous_commit=on (fsync per
//! commit), which is what each backend promises its users.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook::audit::Draft;
use runbook::config;
use runbook::schedule::runner::Runner;
use runbook::store::{RunStatus, Store, Trigger};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");

mod common;
use common::*;

/// One side of the comparison: a temp dir whose runbook.yaml keeps its state there.
struct Side {
    name: &'static str,
    dir: tempfile::TempDir,
    state: String,
    pg: Option<String>,
}

impl Side {
    fn new(name: &'static str) -> Side {
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, pg) = if name == "postgres" {
            let db = format!("rb_bench_{}", std::process::id());
            psql("test", &format!("DROP DATABASE IF EXISTS {db}"));
            psql("test", &format!("CREATE DATABASE {db}"));
            (
                format!("state: {{ url: \"postgres://postgres@127.0.0.1:5432/{db}?sslmode=disable\", dir: state }}"),
                Some(db),
            )
        } else {
            ("state: { url: \"sqlite://state/runbook.db\" }".to_string(), None)
        };
        Side { name, dir, state, pg }
    }

    fn config(&self, yaml: &str) -> std::path::PathBuf {
        let p = self.dir.path().join("runbook.yaml");
        std::fs::write(&p, format!("{}\n{yaml}", self.state)).expect("write config");
        p
    }

    fn sql(&self, sql: &str) {
        match &self.pg {
            Some(db) => drop(psql(db, sql)),
            None => rusqlite::Connection::open(self.dir.path().join("state/runbook.db"))
                .expect("open")
                .execute_batch(sql)
                .expect(sql),
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        if let Some(db) = &self.pg {
            let _ = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qtAc"])
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .output();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// (a) per task: the library's run of a profile of `n` `true` tasks, less the bare spawns.
fn per_task(side: &Side, n: usize, rounds: usize) -> (Stats, Stats) {
    let mut yaml = String::from("version: 1\nprofiles:\n  bench:\n    cron: \"0 3 1 1 *\"\n    tasks:\n");
    for i in 0..n {
        yaml.push_str(&format!("      - {{ run: [true], name: t{i:03} }}\n"));
    }
    let cfg = side.config(&yaml);
    let config = config::load(&cfg).expect("bench config");
    let store = Store::open_state(&config.state).expect("open state");
    let runner = Runner::new(&config, &store);
    let run = || {
        let t = Instant::now();
        let r = runner.run_profile("bench", Trigger::Manual).expect("run");
        assert_eq!(r.status, RunStatus::Ok);
        t.elapsed()
    };
    let bare = || {
        let t = Instant::now();
        for _ in 0..n {
            assert!(
                Command::new("true")
                    .stdin(Stdio::null())
                    .output()
                    .unwrap()
                    .status
                    .success()
            );
        }
        t.elapsed()
    };
    run();
    bare();
    let (mut all, mut rec) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (l, b) = if round % 2 == 0 {
            let l = run();
            (l, bare())
        } else {
            let b = bare();
            (run(), b)
        };
        all.push(ms(l) / n as f64);
        rec.push((ms(l) - ms(b)) / n as f64);
    }
    (Stats::of(&all), Stats::of(&rec))
}

/// (b) `runbook list`, a whole process each time.
fn list(side: &Side, times: usize) -> Stats {
    let cfg = side.dir.path().join("runbook.yaml");
    let mut samples = Vec::new();
    for _ in 0..times + 2 {
        let t = Instant::now();
        let st = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("list")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        samples.push(ms(t.elapsed()));
    }
    Stats::of(&samples[2..])
}

/// (c) audit appends per second: one transaction each, and 64 per transaction.
fn appends(side: &Side, n: usize) -> (f64, f64) {
    let config = config::load(&side.dir.path().join("runbook.yaml")).expect("config");
    let store = Store::open_state(&config.state).expect("state");
    let draft = Draft {
        actor: "bench".into(),
        kind: "bench.event".into(),
        subject: "subject".into(),
        data: r#"{"n":1,"detail":"a typical small event body"}"#.into(),
    };
    let t = Instant::now();
    for _ in 0..n {
        store.audit_append(&draft).expect("append");
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let batch: Vec<Draft> = (0..64).map(|_| draft.clone()).collect();
    let t = Instant::now();
    let mut done = 0;
    while done < n * 4 {
        store.audit_append_all(&batch).expect("append");
        done += 64;
    }
    (single, done as f64 / t.elapsed().as_secs_f64())
}

/// SQL that inserts `n` alerts (one in 1000 firing, the rest resolved) on either backend.
fn fill_alerts_sql(n: usize, postgres: bool) -> String {
    let series = if postgres {
        format!("SELECT i FROM generate_series(1, {n}) AS i")
    } else {
        format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s")
    };
    // Recent, as in benches/api.rs: the daemon's retention keeps them all.
    let now = runbook::clock::to_text(runbook::clock::now());
    format!(
        "INSERT INTO alerts (id, key, source, name, host, severity, status, labels, summary, first_seen, last_seen, \
         resolved_at, count) \
         SELECT i, 'check:c' || (i % 1000) || '@bench-host#' || i, 'check', 'c' || (i % 1000), 'bench-host', 'warning', \
         CASE WHEN i % 1000 = 0 THEN 'firing' ELSE 'resolved' END, '{{\"env\":\"bench\"}}', \
         'c' || (i % 1000) || ': GET http://127.0.0.1/health returned 503 (expected 200) after 12 ms', \
         '{now}', '{now}', CASE WHEN i % 1000 = 0 THEN NULL ELSE '{now}' END, 1 FROM ({series}) AS series"
    )
}

struct Load {
    rps: f64,
    p50: f64,
    p99: f64,
    non_2xx: u64,
}

fn wrk_ms(t: &str) -> f64 {
    let t = t.trim();
    for (suffix, mult) in [("us", 0.001), ("ms", 1.0), ("s", 1000.0)] {
        if let Some(v) = t.strip_suffix(suffix) {
            return v.parse::<f64>().unwrap_or(f64::NAN) * mult;
        }
    }
    f64::NAN
}

/// (d) the alerts page under load, served by the daemon while a profile ticks.
fn alerts_load(side: &Side, n: usize, secs: u64) -> (Load, f64) {
    let port = free_port();
    let cfg = side.config(&format!(
        "version: 1\napi:\n  listen: \"127.0.0.1:{port}\"\n  rate_limit: off\nprofiles:\n  tick:\n    cron: \"*/5 * * * * *\"\n    tasks:\n      - {{ run: [true] }}\n"
    ));
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["db", "migrate", "--apply"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = Instant::now();
    if side.pg.is_some() {
        side.sql(&fill_alerts_sql(n, true));
        side.sql("ANALYZE alerts");
    } else {
        // A bulk load as benches/api.rs does it: no WAL for the load (nothing else has the
        // file open), WAL again after, so the daemon does not start on a 300 MB WAL.
        side.sql(&format!(
            "PRAGMA journal_mode=DELETE; {}; PRAGMA journal_mode=WAL",
            fill_alerts_sql(n, false)
        ));
    }
    let fill_s = t.elapsed().as_secs_f64();
    let token = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["token", "create", "bench"])
        .output()
        .unwrap();
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let mut daemon = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut wrk = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "--latency", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("http://127.0.0.1:{port}/v1/alerts?limit=50"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("wrk (apt-get install -y wrk)");
    let mut text = String::new();
    wrk.stdout.take().unwrap().read_to_string(&mut text).unwrap();
    wrk.wait().unwrap();
    sigterm(daemon.id());
    let _ = stop_child(&mut daemon, Duration::from_secs(10));
    let line = |key: &str| text.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or("");
    let field = |key: &str| line(key).split_whitespace().nth(1).map(wrk_ms).unwrap_or(f64::NAN);
    let rps = line("Requests/sec:")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let non_2xx = line("Non-2xx")
        .split_whitespace()
        .last()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (
        Load {
            rps,
            p50: field("50%"),
            p99: field("99%"),
            non_2xx,
        },
        fill_s,
    )
}

fn main() {
    let tasks = env_usize("BENCH_TASKS", 200);
    let rounds = env_usize("BENCH_ROUNDS", 5);
    let n_appends = env_usize("BENCH_APPENDS", 5000);
    let alerts = env_usize("BENCH_ALERTS", 1_000_000);
    let secs = env_usize("BENCH_SECS", 10) as u64;
    println!("runbook state benchmark: SQLite and PostgreSQL side by side");
    print_machine_with_postgres();
    let sides = [Side::new("sqlite"), Side::new("postgres")];
    // BENCH_ONLY=d (or abc…) runs only those parts.
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "abcd".into());
    for side in sides.iter().filter(|_| only.contains('a')) {
        let (all, rec) = per_task(side, tasks, rounds);
        println!(
            "(a) {:8} per task: {:.2} ms all-in, {:.2} ms over the bare spawn (median of {rounds} rounds of {tasks}; target < 5 ms): {}",
            side.name,
            all.median,
            rec.median,
            verdict(all.median < 5.0)
        );
    }
    for side in sides.iter().filter(|_| only.contains('b')) {
        if !only.contains('a') {
            side.config("version: 1\n");
        }
        let s = list(side, 20);
        println!(
            "(b) {:8} runbook list: median {:.1} ms, p95 {:.1} ms",
            side.name, s.median, s.p95
        );
    }
    for side in sides.iter().filter(|_| only.contains('c')) {
        if !only.contains('a') {
            side.config("version: 1\n");
        }
        let (single, grouped) = appends(side, n_appends);
        println!(
            "(c) {:8} audit append: {single:.0}/s one per transaction, {grouped:.0}/s grouped by 64 (target ≥ 20000 grouped): {}",
            side.name,
            verdict(grouped >= 20_000.0)
        );
    }
    for side in sides.iter().filter(|_| only.contains('d')) {
        let (load, fill_s) = alerts_load(side, alerts, secs);
        println!(
            "(d) {:8} /v1/alerts?limit=50 over {alerts} alerts (filled in {fill_s:.1} s): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, non-2xx {} (target ≥ 20000 req/s, p99 < 5 ms): {}",
            side.name,
            load.rps,
            load.p50,
            load.p99,
            load.non_2xx,
            verdict(load.rps >= 20_000.0 && load.p99 < 5.0)
        );
    }
}
