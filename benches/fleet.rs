//! Fleet mode under chaos and at rest, on the machine's PostgreSQL (127.0.0.1:5432).
//!
//!   (a) the chaos loop: 3 hosts, a profile ticking every second and a check flapping every
//!       3 s, notifications to a local webhook receiver; BENCH_CYCLES times the leader is
//!       killed (-9), paused past its lease (SIGSTOP, then SIGCONT) or stopped (SIGTERM), in
//!       turn, and the host comes back. Reported: duplicate ticks, ticks missing from the
//!       ledger, missed ticks (recorded during failovers), duplicate notifications (goal:
//!       0, 0, inside the windows, 0), failover time p50/p99 per kind (goal: p99 ≤ 20 s after
//!       a crash or pause, ≤ 1 s after a graceful stop).
//!   (b) steady state: 3 hosts × BENCH_CHECKS checks (tcp to a local listener) every 10 s,
//!       `run_on: all`: PostgreSQL's transactions per second and its CPU, over BENCH_SECS.
//!
//! `cargo bench --bench fleet`. Knobs: BENCH_CYCLES (1000), BENCH_FLEETS (4: the cycles are
//! shared by that many independent fleets of 3 hosts, each on a database of its own, run side
//! by side, since a crash or a pause takes a lease's 15 s to fail over; 1000 cycles take about
//! an hour), BENCH_CHECKS (1000), BENCH_SECS (60), BENCH_ONLY (ab). Failover times are measured on the
//! database's clock: from the kill (or pause) to the new holder's `acquired_ms`, and from the
//! resignation (`stopped_ms`) to it.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

#[path = "../tests/common/receiver.rs"]
mod receiver;

const BIN: &str = env!("CARGO_BIN_EXE_runbook");
const HOSTS: [&str; 3] = ["alpha", "beta", "gamma"];

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

struct Fleet {
    db: String,
    dirs: Vec<tempfile::TempDir>,
    daemons: Vec<Option<Child>>,
}

impl Fleet {
    fn new(db: &str, yaml: &str) -> Fleet {
        psql("test", &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        psql("test", &format!("CREATE DATABASE {db}"));
        let dirs: Vec<_> = HOSTS
            .iter()
            .map(|h| {
                let dir = tempfile::tempdir().unwrap();
                std::fs::write(
                    dir.path().join("runbook.yaml"),
                    format!(
                        "version: 1\nhost: {h}\nstate: {{ url: \"postgres://postgres@127.0.0.1:5432/{db}?sslmode=disable\", dir: state }}\napi: {{ listen: \"127.0.0.1:0\" }}\n{yaml}"
                    ),
                )
                .unwrap();
                dir
            })
            .collect();
        let fleet = Fleet {
            db: db.to_string(),
            dirs,
            daemons: HOSTS.iter().map(|_| None).collect(),
        };
        let out = fleet.cmd(0).args(["db", "migrate", "--apply"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        fleet
    }

    fn cmd(&self, i: usize) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(self.dirs[i].path().join("runbook.yaml"));
        c
    }

    fn start(&mut self, i: usize) {
        let child = self
            .cmd(i)
            .arg("daemon")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.daemons[i] = Some(child);
    }

    fn q(&self, sql: &str) -> String {
        psql(&self.db, sql)
    }

    fn now_ms(&self) -> i64 {
        self.q("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            .parse()
            .unwrap()
    }

    /// The index of the host holding a live lease, with its term.
    fn leader(&self) -> Option<(usize, i64)> {
        let row = self.q(
            "SELECT holder || ' ' || term FROM leases WHERE name = 'leader' AND instance IS NOT NULL \
             AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        );
        let (h, t) = row.split_once(' ')?;
        Some((HOSTS.iter().position(|x| *x == h)?, t.parse().ok()?))
    }

    /// Waits for a leader other than `not`; (host, acquired_ms).
    fn next_leader(&self, not: Option<usize>) -> (usize, i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((h, _)) = self.leader()
                && Some(h) != not
            {
                let acquired = self
                    .q("SELECT acquired_ms FROM leases WHERE name = 'leader'")
                    .parse()
                    .unwrap();
                return (h, acquired);
            }
            assert!(Instant::now() < deadline, "no leader for 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop_all(&mut self) {
        for c in self.daemons.iter_mut().flatten() {
            signal(c.id(), rustix::process::Signal::CONT);
            let _ = stop_child(c, Duration::from_secs(15));
        }
    }
}

/// What one fleet's chaos loop saw.
#[derive(Default)]
struct Chaos {
    ticks: usize,
    expected: i64,
    duplicate_ticks: usize,
    missed: usize,
    window: f64,
    queued: usize,
    received: usize,
    duplicate_notifications: usize,
    crash: Vec<f64>,
    pause: Vec<f64>,
    graceful: Vec<f64>,
}

impl Chaos {
    fn add(mut self, o: Chaos) -> Chaos {
        self.ticks += o.ticks;
        self.expected += o.expected;
        self.duplicate_ticks += o.duplicate_ticks;
        self.missed += o.missed;
        self.window += o.window;
        self.queued += o.queued;
        self.received += o.received;
        self.duplicate_notifications += o.duplicate_notifications;
        self.crash.extend(o.crash);
        self.pause.extend(o.pause);
        self.graceful.extend(o.graceful);
        self
    }
}

fn chaos(cycles: usize, fleets: usize) {
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..fleets)
        .map(|f| {
            let share = cycles / fleets + usize::from(f < cycles % fleets);
            let done = done.clone();
            std::thread::spawn(move || chaos_fleet(f, share, &done, cycles))
        })
        .collect();
    let r = threads
        .into_iter()
        .map(|t| t.join().expect("a chaos fleet panicked"))
        .fold(Chaos::default(), Chaos::add);
    eprintln!();
    println!(
        "(a) chaos, {cycles} cycles over {fleets} fleet(s) of 3 hosts in {:.0} s: ticks {} (expected {}), duplicate ticks {}, missing {}, missed {} (failover windows hold ≤ {:.0}), notifications queued {}, received {}, duplicates {} (goal 0 / 0 / inside / 0): {}",
        started.elapsed().as_secs_f64(),
        r.ticks,
        r.expected,
        r.duplicate_ticks,
        r.expected - r.ticks as i64,
        r.missed,
        r.window,
        r.queued,
        r.received,
        r.duplicate_notifications,
        verdict(
            r.duplicate_ticks == 0
                && r.expected == r.ticks as i64
                && (r.missed as f64) <= r.window
                && r.duplicate_notifications == 0
                && r.queued == r.received
        )
    );
    // A send that reached the receiver from a leader killed or paused before it recorded it is
    // sent again under the same key: what a receiver that honours Idempotency-Key shows.
    let distinct = r.received - r.duplicate_notifications;
    println!(
        "    by Idempotency-Key: {distinct} distinct of {} queued (goal: each once, none lost): {}",
        r.queued,
        verdict(distinct == r.queued)
    );
    for (kind, samples, goal) in [
        ("crash", &r.crash, 20.0),
        ("pause", &r.pause, 20.0),
        ("graceful", &r.graceful, 1.0),
    ] {
        if samples.is_empty() {
            continue;
        }
        let s = Stats::of(samples);
        println!(
            "    failover after {kind:8}: n {}, p50 {:.3} s, p99 {:.3} s, max {:.3} s (goal p99 ≤ {goal} s): {}",
            s.n,
            s.median,
            s.p99,
            s.max,
            verdict(s.p99 <= goal)
        );
    }
}

/// One fleet's chaos loop of `cycles` cycles; `done` counts the cycles of all fleets.
fn chaos_fleet(index: usize, cycles: usize, done: &std::sync::atomic::AtomicUsize, total: usize) -> Chaos {
    let hook = receiver::Receiver::start();
    let flagdir = tempfile::tempdir().unwrap();
    let flag = flagdir.path().join("up");
    let mut fleet = Fleet::new(
        &format!("rb_fleet_chaos_{}_{index}", std::process::id()),
        &format!(
            "checks:\n  flap: {{ command: {{ sh: \"test -e {}\" }} }}\nprofiles:\n  tick: {{ cron: \"* * * * * *\", tasks: [ {{ sh: \"sleep 0.2\", name: work }}, {{ check: flap }} ] }}\nnotify:\n  channels:\n    hook: {{ webhook: {{ url: \"{}/hook\" }} }}\n",
            flag.display(),
            hook.url()
        ),
    );
    for i in 0..HOSTS.len() {
        fleet.start(i);
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut crash = Vec::new();
    let mut pause = Vec::new();
    let mut graceful = Vec::new();
    let started = Instant::now();
    for cycle in 0..cycles {
        let (leader, _) = fleet.next_leader(None);
        // The check flips each cycle: an alert opens or resolves while the leader changes.
        if cycle % 2 == 0 {
            let _ = std::fs::remove_file(&flag);
        } else {
            std::fs::write(&flag, "").unwrap();
        }
        std::thread::sleep(Duration::from_millis(1500));
        let pid = fleet.daemons[leader].as_ref().unwrap().id();
        match cycle % 3 {
            0 => {
                let at = fleet.now_ms();
                let mut child = fleet.daemons[leader].take().unwrap();
                signal(pid, rustix::process::Signal::KILL);
                let _ = child.wait();
                let (_, acquired) = fleet.next_leader(Some(leader));
                crash.push((acquired - at) as f64 / 1000.0);
                fleet.start(leader);
            }
            1 => {
                let at = fleet.now_ms();
                signal(pid, rustix::process::Signal::STOP);
                let (_, acquired) = fleet.next_leader(Some(leader));
                pause.push((acquired - at) as f64 / 1000.0);
                signal(pid, rustix::process::Signal::CONT);
            }
            _ => {
                let mut child = fleet.daemons[leader].take().unwrap();
                let _ = stop_child(&mut child, Duration::from_secs(30));
                let (_, acquired) = fleet.next_leader(Some(leader));
                let resigned: i64 = fleet
                    .q(&format!(
                        "SELECT stopped_ms FROM fleet_hosts WHERE host = '{}'",
                        HOSTS[leader]
                    ))
                    .parse()
                    .unwrap_or(acquired);
                graceful.push((acquired - resigned) as f64 / 1000.0);
                fleet.start(leader);
            }
        }
        eprint!(
            "\r  cycle {}/{total} ({:.0} s)",
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            started.elapsed().as_secs_f64()
        );
    }
    std::fs::write(&flag, "").unwrap();
    std::thread::sleep(Duration::from_secs(8));
    fleet.stop_all();

    let ticks: Vec<String> = fleet
        .q("SELECT string_agg(tick, ',' ORDER BY tick) FROM runs WHERE profile = 'tick' AND parent_id IS NULL")
        .split(',')
        .map(str::to_string)
        .collect();
    let distinct: BTreeSet<&String> = ticks.iter().collect();
    let secs = |t: &str| t.parse::<jiff::Timestamp>().map(|t| t.as_second()).unwrap_or(0);
    let expected = secs(ticks.last().unwrap()) - secs(&ticks[0]) + 1;
    let missed: usize = fleet
        .q("SELECT count(*) FROM runs WHERE profile = 'tick' AND parent_id IS NULL AND status = 'skipped'")
        .parse()
        .unwrap();
    // Ticks that fell in a failover window (kill/pause to takeover, resignation to takeover):
    // the bound on what may be missed.
    let window: f64 = crash
        .iter()
        .chain(&pause)
        .chain(&graceful)
        .map(|s| s.ceil() + 1.0)
        .sum();
    let keys: Vec<String> = hook
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    let unique: BTreeSet<&String> = keys.iter().collect();
    let queued: usize = fleet.q("SELECT count(*) FROM notifications").parse().unwrap();
    let result = Chaos {
        ticks: ticks.len(),
        expected,
        duplicate_ticks: ticks.len() - distinct.len(),
        missed,
        window,
        queued,
        received: keys.len(),
        duplicate_notifications: keys.len() - unique.len(),
        crash,
        pause,
        graceful,
    };
    psql("test", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", fleet.db));
    result
}

/// CPU ticks of every PostgreSQL server process.
fn postgres_cpu_ticks() -> u64 {
    let out = Command::new("pgrep").args(["-u", "postgres"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|p| p.trim().parse::<u32>().ok())
        .filter_map(proc_cpu_ticks)
        .sum()
}

fn steady(checks: usize, secs: u64) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let mut yaml = String::from("checks:\n");
    for i in 0..checks {
        yaml.push_str(&format!("  c{i}: {{ tcp: {{ address: \"127.0.0.1:{port}\" }} }}\n"));
    }
    yaml.push_str("profiles:\n  probe: { cron: \"*/10 * * * * *\", run_on: all, tasks: [ ");
    yaml.push_str(&(0..checks).map(|i| format!("c{i}")).collect::<Vec<_>>().join(", "));
    yaml.push_str(" ] }\n");
    let mut fleet = Fleet::new(&format!("rb_fleet_steady_{}", std::process::id()), &yaml);
    for i in 0..HOSTS.len() {
        fleet.start(i);
    }
    // One round first, so the measure starts in the steady state.
    std::thread::sleep(Duration::from_secs(12));
    let xacts = |f: &Fleet| -> i64 {
        f.q(&format!(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '{}'",
            f.db
        ))
        .parse()
        .unwrap()
    };
    let (x0, c0, t0) = (xacts(&fleet), postgres_cpu_ticks(), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (x1, c1, dt) = (xacts(&fleet), postgres_cpu_ticks(), t0.elapsed().as_secs_f64());
    let results: i64 = fleet.q("SELECT count(*) FROM check_results").parse().unwrap();
    fleet.stop_all();
    let cpu = (c1 - c0) as f64 / clock_ticks_per_sec() / dt * 100.0;
    println!(
        "(b) steady state, 3 hosts × {checks} checks every 10 s for {secs} s: {:.0} transactions/s on PostgreSQL, its CPU {cpu:.1} % of one core; {results} check results recorded",
        (x1 - x0) as f64 / dt
    );
    psql("test", &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", fleet.db));
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_else(|_| "ab".into());
    println!("runbook fleet benchmark");
    print_machine_with_postgres();
    if only.contains('a') {
        chaos(env_usize("BENCH_CYCLES", 1000), env_usize("BENCH_FLEETS", 4).max(1));
    }
    if only.contains('b') {
        steady(env_usize("BENCH_CHECKS", 1000), env_usize("BENCH_SECS", 60) as u64);
    }
}
