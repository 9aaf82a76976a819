//! Foundation benchmark: the three speed/memory figures runbook promises, measured.
//!
//!   (a) `runbook list` cold start on examples/quickstart.yaml          target < 10 ms wall
//!   (b) the daemon idle with 200 profiles                  target < 15 MB RSS, < 0.5 % of one core
//!   (c) overhead per task run (spawn `true`, record it in the ledger)   target < 5 ms
//!   (d) peak RSS of `runbook run` while its task writes 100 MB           target < 100 MB
//!
//! A plain harness (`harness = false`): `cargo bench --bench foundation`.
//! Knobs (environment): BENCH_LIST_N (default 200), BENCH_IDLE_SECS (30), BENCH_ROUNDS (7),
//! BENCH_TASKS (200). Every comparison against a baseline alternates the two, so drift on a
//! shared machine hits both sides alike; medians are reported.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runbook::config;
use runbook::schedule::runner::Runner;
use runbook::store::{RunStatus, Store, Trigger};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_runbook");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const TARGET_LIST_MS: f64 = 10.0;
const TARGET_IDLE_RSS_MB: f64 = 15.0;
const TARGET_IDLE_CPU_PCT: f64 = 0.5;
const TARGET_TASK_MS: f64 = 5.0;
const TARGET_FLOOD_RSS_MB: f64 = 100.0;

mod common;
use common::*;

impl Stats {
    fn line(&self, unit: &str) -> String {
        format!(
            "min {:>8.3} {unit}  median {:>8.3} {unit}  p95 {:>8.3} {unit}  max {:>8.3} {unit}  (n={})",
            self.min, self.median, self.p95, self.max, self.n
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs a command to completion with its output discarded; returns the wall time.
fn time_cmd(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let status = cmd.status().expect("spawn");
    let d = t.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    d
}

fn runbook_cmd(config: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(config)
        .args(args)
        .current_dir(ROOT)
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn true_cmd() -> Command {
    let mut c = Command::new("/bin/true");
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

// ---------------------------------------------------------------------------------------------
// (a) `runbook list` cold start
// ---------------------------------------------------------------------------------------------

struct ListResult {
    runbook: Stats,
    baseline: Stats,
    /// Median of per-pair differences (runbook − /bin/true), i.e. runbook's own cost.
    excess_median: f64,
}

impl ListResult {
    fn ratio(&self) -> f64 {
        self.runbook.median / self.baseline.median
    }
    fn json(&self) -> serde_json::Value {
        json!({
            "runbook_ms": self.runbook.json(),
            "bin_true_ms": self.baseline.json(),
            "ratio_median": r3(self.ratio()),
            "excess_over_bin_true_median_ms": r3(self.excess_median),
        })
    }
}

fn bench_list_once(config: &Path, n: usize) -> ListResult {
    // Check it works and prints something, then warm up (page cache, dynamic loader).
    let out = runbook_cmd(config, &["list"])
        .stdout(Stdio::piped())
        .output()
        .expect("spawn runbook");
    assert!(out.status.success(), "runbook list failed: {out:?}");
    assert!(!out.stdout.is_empty(), "runbook list printed nothing");
    for _ in 0..20 {
        time_cmd(&mut runbook_cmd(config, &["list"]));
        time_cmd(&mut true_cmd());
    }
    let mut rb = Vec::with_capacity(n);
    let mut bt = Vec::with_capacity(n);
    let mut diff = Vec::with_capacity(n);
    for i in 0..n {
        // Alternate which goes first, so neither side always follows the other.
        let (a, b) = if i % 2 == 0 {
            let a = time_cmd(&mut runbook_cmd(config, &["list"]));
            (a, time_cmd(&mut true_cmd()))
        } else {
            let b = time_cmd(&mut true_cmd());
            (time_cmd(&mut runbook_cmd(config, &["list"])), b)
        };
        rb.push(ms(a));
        bt.push(ms(b));
        diff.push(ms(a) - ms(b));
    }
    ListResult {
        runbook: Stats::of(&rb),
        baseline: Stats::of(&bt),
        excess_median: Stats::of(&diff).median,
    }
}

/// A copy of the quickstart whose state file already holds runs (profile and task rows, audit).
fn quickstart_with_history(dir: &Path, rounds: usize) -> (PathBuf, usize) {
    let src = std::fs::read_to_string(Path::new(ROOT).join("examples/quickstart.yaml")).expect("read quickstart");
    let path = dir.join("quickstart.yaml");
    std::fs::write(&path, src).expect("write quickstart copy");
    let config = config::load(&path).expect("quickstart copy is valid");
    let store = Store::open(&config.state.path).expect("open state");
    let runner = Runner::new(&config, &store);
    let mut runs = 0;
    for _ in 0..rounds {
        for name in config.profiles.keys() {
            let report = runner
                .run_profile(name, Trigger::Manual)
                .expect("run quickstart profile");
            runs += 1 + report.tasks.len();
        }
    }
    (path, runs)
}

// ---------------------------------------------------------------------------------------------
// (b) the daemon idle with 200 profiles
// ---------------------------------------------------------------------------------------------

struct IdleResult {
    profiles: usize,
    secs: f64,
    ready_ms: f64,
    rss_mb: Stats,
    hwm_mb: f64,
    anon_mb: f64,
    file_mb: f64,
    threads: u64,
    cpu_pct_ticks: f64,
    cpu_pct_sched: Option<f64>,
    startup_cpu_ms: f64,
}

fn idle_config(n: usize) -> String {
    // Fire times at least ten hours away (in UTC), so nothing runs while we measure.
    let now_hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600)
        % 24;
    let base = (now_hour + 10) % 24;
    let mut y = String::from("version: 1\nstate:\n  url: \"sqlite://state/runbook.db\"\nprofiles:\n");
    for i in 0..n {
        let minute = i % 60;
        let hour = (base + (i / 60) as u64) % 24;
        writeln!(
            y,
            "  p{i:03}:\n    cron: \"{minute} {hour} * * *\"\n    timezone: UTC\n    tasks:\n      - {{ run: [true] }}"
        )
        .unwrap();
    }
    y
}

fn bench_idle(profiles: usize, secs: u64) -> IdleResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("runbook.yaml");
    std::fs::write(&cfg, idle_config(profiles)).expect("write config");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = runbook_cmd(&cfg, &["--log-format", "text", "daemon"])
        .stderr(log)
        .spawn()
        .expect("spawn daemon");
    let pid = child.id();
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("daemon started") {
            assert!(
                text.contains(&format!("profiles={profiles}")),
                "daemon did not schedule all profiles: {text}"
            );
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("daemon exited early ({st}): {text}");
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("daemon did not start within 30 s: {text}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready_ms = ms(started.elapsed());
    let tck = clock_ticks_per_sec();
    // CPU spent from exec to ready: schedstat (ns) if available, clock ticks otherwise.
    let startup_cpu_ms = proc_sched_ns(pid)
        .map(|ns| ns as f64 / 1e6)
        .unwrap_or_else(|| proc_cpu_ticks(pid).unwrap_or(0) as f64 / tck * 1000.0);

    // Let it settle into its sleep, then measure.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    let ticks0 = proc_cpu_ticks(pid).expect("read /proc/PID/stat");
    let sched0 = proc_sched_ns(pid);
    let mut rss = Vec::new();
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
            rss.push(kb as f64 / 1024.0);
        }
        std::thread::sleep(Duration::from_millis(250).min(end.saturating_duration_since(Instant::now())));
    }
    let wall = t0.elapsed().as_secs_f64();
    let ticks1 = proc_cpu_ticks(pid).expect("read /proc/PID/stat");
    let sched1 = proc_sched_ns(pid);
    let hwm_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let threads = proc_status_kb(pid, "Threads:").unwrap_or(0);
    let anon_kb = proc_status_kb(pid, "RssAnon:").unwrap_or(0);
    let file_kb = proc_status_kb(pid, "RssFile:").unwrap_or(0) + proc_status_kb(pid, "RssShmem:").unwrap_or(0);
    if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
        rss.push(kb as f64 / 1024.0);
    }

    // SIGTERM, then wait for a clean exit.
    let p = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(p, rustix::process::Signal::TERM).expect("SIGTERM");
    let stop = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if stop.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon did not stop cleanly: {status:?}\n{text}"
    );
    assert!(
        !text.contains("profile run started"),
        "a profile ran during the idle window:\n{text}"
    );

    IdleResult {
        profiles,
        secs: wall,
        ready_ms,
        rss_mb: Stats::of(&rss),
        hwm_mb: hwm_kb as f64 / 1024.0,
        anon_mb: anon_kb as f64 / 1024.0,
        file_mb: file_kb as f64 / 1024.0,
        threads,
        cpu_pct_ticks: (ticks1 - ticks0) as f64 / tck / wall * 100.0,
        cpu_pct_sched: match (sched0, sched1) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / 1e9 / wall * 100.0),
            _ => None,
        },
        startup_cpu_ms,
    }
}

// ---------------------------------------------------------------------------------------------
// (c) overhead per task run
// ---------------------------------------------------------------------------------------------

struct TaskResult {
    tasks: usize,
    runbook_per_task: Stats,
    status_per_task: Stats,
    output_per_task: Stats,
    cli_per_task: Stats,
    /// Per round: runbook − bare `.output()` spawn, per task.
    recording_per_task: Stats,
}

fn task_config(n: usize) -> String {
    let mut y = String::from(
        "version: 1\nstate:\n  url: \"sqlite://state/runbook.db\"\nprofiles:\n  bench:\n    cron: \"0 3 1 1 *\"\n    tasks:\n",
    );
    for i in 0..n {
        writeln!(y, "      - {{ run: [true], name: t{i:03} }}").unwrap();
    }
    y
}

fn bench_tasks(n: usize, rounds: usize) -> TaskResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg_path = dir.path().join("runbook.yaml");
    std::fs::write(&cfg_path, task_config(n)).expect("write config");
    let config = config::load(&cfg_path).expect("bench config is valid");
    let store = Store::open(&config.state.path).expect("open state");
    let runner = Runner::new(&config, &store);

    let run_lib = || {
        let t = Instant::now();
        let report = runner.run_profile("bench", Trigger::Manual).expect("run_profile");
        let d = t.elapsed();
        assert_eq!(report.status, RunStatus::Ok, "{report:?}");
        assert_eq!(report.tasks.len(), n);
        d
    };
    let bare_status = || {
        let t = Instant::now();
        for _ in 0..n {
            let s = Command::new("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            assert!(s.expect("spawn true").success());
        }
        t.elapsed()
    };
    // Closest bare equivalent of what exec does: piped stdout/stderr, read to EOF, wait.
    let bare_output = || {
        let t = Instant::now();
        for _ in 0..n {
            let o = Command::new("true").stdin(Stdio::null()).output();
            assert!(o.expect("spawn true").status.success());
        }
        t.elapsed()
    };
    let run_cli = || {
        let t = Instant::now();
        let st = runbook_cmd(&cfg_path, &["run", "bench"])
            .status()
            .expect("spawn runbook run");
        let d = t.elapsed();
        assert!(st.success(), "runbook run bench failed: {st}");
        d
    };

    // Warm-up: one of each (also migrates the state file and fills the page cache).
    run_lib();
    bare_status();
    bare_output();
    run_cli();

    let per = |d: Duration| ms(d) / n as f64;
    let (mut lib, mut st, mut out, mut cli, mut rec) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        // Rotate the order every round.
        let mut l = Duration::ZERO;
        let mut o = Duration::ZERO;
        for k in 0..4 {
            match (k + round) % 4 {
                0 => {
                    l = run_lib();
                    lib.push(per(l));
                }
                1 => st.push(per(bare_status())),
                2 => {
                    o = bare_output();
                    out.push(per(o));
                }
                _ => cli.push(per(run_cli())),
            }
        }
        rec.push(per(l) - per(o));
    }
    let rows: i64 = {
        let c = rusqlite::Connection::open(&config.state.path).expect("open ledger");
        c.query_row("SELECT count(*) FROM runs WHERE kind = 'task'", [], |r| r.get(0))
            .expect("count task runs")
    };
    let expected = ((rounds + 1) * 2 * n) as i64;
    assert_eq!(rows, expected, "every task run is in the ledger");
    TaskResult {
        tasks: n,
        runbook_per_task: Stats::of(&lib),
        status_per_task: Stats::of(&st),
        output_per_task: Stats::of(&out),
        cli_per_task: Stats::of(&cli),
        recording_per_task: Stats::of(&rec),
    }
}

// ---------------------------------------------------------------------------------------------

/// (d) Peak RSS (VmHWM, sampled every 10 ms until exit) of `runbook run` while its one task
/// writes 100 MB to stdout: output is capped as it streams, never held whole.
fn bench_flood() -> (f64, bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("runbook.yaml");
    std::fs::write(
        &config,
        "version: 1\nprofiles:\n  p:\n    cron: \"0 3 * * *\"\n    tasks:\n      - { name: flood, sh: \"head -c 100000000 /dev/zero | tr '\\\\0' 'x'\", timeout: 120s }\n",
    )
    .expect("config");
    let mut child = runbook_cmd(&config, &["run", "p"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn runbook");
    let pid = child.id();
    let mut hwm_kb = 0;
    let status = loop {
        if let Some(kb) = proc_status_kb(pid, "VmHWM:") {
            hwm_kb = hwm_kb.max(kb);
        }
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (hwm_kb as f64 / 1024.0, status.success())
}

fn main() {
    let list_n = env_usize("BENCH_LIST_N", 200);
    let idle_secs = env_usize("BENCH_IDLE_SECS", 30) as u64;
    let rounds = env_usize("BENCH_ROUNDS", 7);
    let tasks = env_usize("BENCH_TASKS", 200);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);

    println!("runbook foundation benchmark");
    println!("  binary   {BIN}");
    println!("  machine  {cores} core(s), {}", cpu_model());
    println!("  loadavg  {} (at start)", loadavg());
    println!();

    // (a)
    println!(
        "(a) `runbook --config examples/quickstart.yaml list`, cold process, {list_n} runs alternating with /bin/true"
    );
    let quickstart = Path::new("examples/quickstart.yaml");
    let list_plain = bench_list_once(quickstart, list_n);
    let hist_dir = tempfile::tempdir().expect("tempdir");
    let (hist_cfg, hist_runs) = quickstart_with_history(hist_dir.path(), 10);
    let list_hist = bench_list_once(&hist_cfg, list_n);
    let hist_label = format!("copy whose state file holds {hist_runs} runs (profile + task rows, audit events)");
    for (label, r) in [("as shipped", &list_plain), (hist_label.as_str(), &list_hist)] {
        println!("  {label}");
        println!("    runbook list  {}", r.runbook.line("ms"));
        println!("    /bin/true     {}", r.baseline.line("ms"));
        println!(
            "    ratio of medians {:.1}x; runbook's own cost (median of paired differences) {:.3} ms",
            r.ratio(),
            r.excess_median
        );
    }
    let list_worst = list_plain.runbook.median.max(list_hist.runbook.median);
    println!(
        "  target < {TARGET_LIST_MS} ms median: {}",
        verdict(list_worst < TARGET_LIST_MS)
    );
    println!();

    // (b)
    println!("(b) `runbook daemon` idle with 200 profiles, sampled for {idle_secs} s");
    let idle = bench_idle(200, idle_secs);
    println!(
        "  ready after {:.1} ms (\"daemon started\" in the log), {:.1} ms CPU to get there",
        idle.ready_ms, idle.startup_cpu_ms
    );
    println!("  VmRSS   {}", idle.rss_mb.line("MB"));
    println!(
        "  VmHWM   {:.2} MB (peak over its whole life)   threads {}",
        idle.hwm_mb, idle.threads
    );
    println!(
        "  of the RSS: {:.2} MB anonymous (heap, stacks), {:.2} MB file-backed/shared (binary, libc, mapped SQLite -shm)",
        idle.anon_mb, idle.file_mb
    );
    println!(
        "  CPU     {:.4} % of one core (utime+stime ticks over {:.1} s){}",
        idle.cpu_pct_ticks,
        idle.secs,
        idle.cpu_pct_sched
            .map(|p| format!("; {p:.4} % from schedstat (ns)"))
            .unwrap_or_default()
    );
    let rss_ok = idle.rss_mb.max < TARGET_IDLE_RSS_MB && idle.hwm_mb < TARGET_IDLE_RSS_MB;
    let cpu_ok = idle.cpu_pct_ticks < TARGET_IDLE_CPU_PCT;
    println!(
        "  target < {TARGET_IDLE_RSS_MB} MB RSS: {}   target < {TARGET_IDLE_CPU_PCT} % CPU: {}",
        verdict(rss_ok),
        verdict(cpu_ok)
    );
    println!();

    // (c)
    println!(
        "(c) one profile of {tasks} `{{ run: [true] }}` tasks, real SQLite ledger, {rounds} rounds (order rotated)"
    );
    let t = bench_tasks(tasks, rounds);
    println!("  run_profile (library)      {}", t.runbook_per_task.line("ms/task"));
    println!("  `runbook run` (CLI)        {}", t.cli_per_task.line("ms/task"));
    println!("  bare spawn, .status()      {}", t.status_per_task.line("ms/task"));
    println!("  bare spawn, .output()      {}", t.output_per_task.line("ms/task"));
    println!("  runbook − bare .output()   {}", t.recording_per_task.line("ms/task"));
    let task_ok = t.runbook_per_task.median < TARGET_TASK_MS;
    println!("  target < {TARGET_TASK_MS} ms per task (median): {}", verdict(task_ok));
    println!();
    // (d)
    println!("(d) `runbook run` of one task writing 100 MB to stdout");
    let (flood_mb, flood_ok) = bench_flood();
    println!(
        "  peak RSS {flood_mb:.1} MB (run {}); target < {TARGET_FLOOD_RSS_MB} MB: {}",
        if flood_ok { "ok" } else { "FAILED" },
        verdict(flood_ok && flood_mb < TARGET_FLOOD_RSS_MB)
    );
    println!();
    println!("  loadavg  {} (at end)", loadavg());

    let summary = json!({
        "bench": "foundation",
        "cores": cores,
        "cpu": cpu_model(),
        "flood": { "peak_rss_mb": r3(flood_mb), "target_mb": TARGET_FLOOD_RSS_MB, "met": flood_ok && flood_mb < TARGET_FLOOD_RSS_MB },
        "list": {
            "target_ms": TARGET_LIST_MS,
            "as_shipped": list_plain.json(),
            "with_history": list_hist.json(),
            "met": list_worst < TARGET_LIST_MS,
        },
        "idle": {
            "profiles": idle.profiles,
            "secs": r3(idle.secs),
            "ready_ms": r3(idle.ready_ms),
            "startup_cpu_ms": r3(idle.startup_cpu_ms),
            "rss_mb": idle.rss_mb.json(),
            "hwm_mb": r3(idle.hwm_mb),
            "rss_anon_mb": r3(idle.anon_mb),
            "rss_file_mb": r3(idle.file_mb),
            "threads": idle.threads,
            "cpu_pct_ticks": r3(idle.cpu_pct_ticks * 1000.0) / 1000.0,
            "cpu_pct_schedstat": idle.cpu_pct_sched.map(|p| r3(p * 1000.0) / 1000.0),
            "target_rss_mb": TARGET_IDLE_RSS_MB,
            "target_cpu_pct": TARGET_IDLE_CPU_PCT,
            "met": rss_ok && cpu_ok,
        },
        "task": {
            "tasks": t.tasks,
            "rounds": rounds,
            "run_profile_ms_per_task": t.runbook_per_task.json(),
            "cli_run_ms_per_task": t.cli_per_task.json(),
            "bare_status_ms_per_task": t.status_per_task.json(),
            "bare_output_ms_per_task": t.output_per_task.json(),
            "recording_overhead_ms_per_task": t.recording_per_task.json(),
            "target_ms": TARGET_TASK_MS,
            "met": task_ok,
        },
    });
    println!("BENCH_JSON {summary}");
}
