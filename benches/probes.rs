//! Probe benchmark: HTTP probe throughput against blackbox_exporter, and the daemon with
//! 1,000 checks on a 10-second cadence.
//!
//!   (a) HTTP probes per second against a loopback nginx, runbook (library, `check::probe_all`)
//!       vs prometheus-blackbox-exporter at the same concurrency     target ≥ 3× blackbox's rate
//!       plus peak RSS of both
//!   (b) `runbook daemon` with 1,000 http checks run every 10 s      target < 30 MB RSS,
//!                                                                    < 10 % of one core
//!
//! A plain harness (`harness = false`): `cargo bench --bench probes`. It needs `nginx` and
//! `prometheus-blackbox-exporter` on PATH (Debian: `apt-get install -y nginx-light
//! prometheus-blackbox-exporter`). Everything listens on 127.0.0.1 only.
//! Knobs (environment): BENCH_CONC (default "1,16,64"), BENCH_PROBE_SECS (5), BENCH_ROUNDS (3),
//! BENCH_CHECKS (1000), BENCH_SECS (60, the daemon window). runbook and blackbox_exporter
//! alternate, and the one that goes first swaps every round, so drift on a shared machine hits
//! both sides alike; medians are reported.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runbook::check;
use runbook::config::{self, Config};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_runbook");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const TARGET_RATIO: f64 = 3.0;
const TARGET_DAEMON_RSS_MB: f64 = 30.0;
const TARGET_DAEMON_CPU_PCT: f64 = 10.0;

/// Upper bound on requests per measurement, whatever the duration: every loop is bounded.
const MAX_PROBES_PER_ROUND: u64 = 5_000_000;

mod common;
use common::*;

impl Stats {
    fn line(&self, unit: &str) -> String {
        format!(
            "min {:>9.1} {unit}  median {:>9.1} {unit}  max {:>9.1} {unit}  (n={})",
            self.min, self.median, self.max, self.n
        )
    }
}

fn proc_ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn sched_ns_all(pids: &[u32]) -> u64 {
    pids.iter().filter_map(proc_sched_ns).sum()
}

/// This process's CPU time in ns, from utime + stime. Unlike a schedstat sum over
/// /proc/self/task, it keeps the time of threads that have already exited (the blackbox
/// driver's client threads end with each round).
fn self_cpu_ns(tck: f64) -> u64 {
    (proc_cpu_ticks(std::process::id()).unwrap_or(0) as f64 / tck * 1e9) as u64
}

/// Resets this process's VmHWM to its current RSS (Linux ≥ 4.0); false if not possible.
fn reset_own_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn wait_listening(port: u16, what: &str, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{what} is not listening on 127.0.0.1:{port} after {limit:?}");
}

// ---------------------------------------------------------------------------------------------
// nginx: the probe target
// ---------------------------------------------------------------------------------------------

/// nginx on 127.0.0.1 answering `200 ok` to everything; stopped when dropped (also on panic).
struct Nginx {
    dir: tempfile::TempDir,
    conf: PathBuf,
    port: u16,
    master: u32,
}

impl Nginx {
    fn start() -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        // One worker: the target should be fast, and leave the second core to the prober.
        // High keepalive_requests so a client that reuses connections is never cut off.
        let text = format!(
            "worker_processes 1;\n\
             worker_rlimit_nofile 16384;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               keepalive_requests 10000000;\n\
               keepalive_timeout 300s;\n\
               server {{\n\
                 listen 127.0.0.1:{port} backlog=4096;\n\
                 location / {{ return 200 \"ok\\n\"; }}\n\
               }}\n\
             }}\n"
        );
        std::fs::write(&conf, text).expect("write nginx.conf");
        let out = Command::new("nginx")
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .output()
            .expect("spawn nginx (apt-get install -y nginx-light)");
        assert!(
            out.status.success(),
            "nginx did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid_file = dir.path().join("nginx.pid");
        let start = Instant::now();
        let master = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "nginx wrote no pid file");
            std::thread::sleep(Duration::from_millis(10));
        };
        let n = Nginx {
            dir,
            conf,
            port,
            master,
        };
        wait_listening(port, "nginx", Duration::from_secs(5));
        n
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The master and its workers.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.master];
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
                    && proc_ppid(pid) == Some(self.master)
                {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("nginx")
            .arg("-e")
            .arg(self.dir.path().join("error.log"))
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let start = Instant::now();
        while Path::new(&format!("/proc/{}", self.master)).exists() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if Path::new(&format!("/proc/{}", self.master)).exists()
            && let Some(p) = rustix::process::Pid::from_raw(self.master as i32)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// runbook: the library's probe path
// ---------------------------------------------------------------------------------------------

fn checks_yaml(url: &str, n: usize) -> String {
    let mut y = String::from("version: 1\nstate:\n  url: \"sqlite://state/runbook.db\"\nchecks:\n");
    for i in 0..n {
        writeln!(y, "  c{i:04}:\n    timeout: 5s\n    http:\n      url: \"{url}\"").unwrap();
    }
    y
}

fn runbook_config(dir: &Path, url: &str, n: usize) -> (Arc<Config>, Vec<String>) {
    let path = dir.join(format!("probes-{n}.yaml"));
    let cfg = config::parse(&path, &checks_yaml(url, n)).expect("bench config is valid");
    let names: Vec<String> = cfg.checks.keys().cloned().collect();
    assert_eq!(names.len(), n);
    (Arc::new(cfg), names)
}

/// One measured window of one side.
#[derive(Debug, Clone, Copy)]
struct Round {
    probes: u64,
    secs: f64,
    /// On-CPU time of the prober (runbook: this process; blackbox: the exporter), ns.
    prober_cpu_ns: u64,
    /// On-CPU time of the load driver (blackbox only: this process's client threads), ns.
    driver_cpu_ns: u64,
    /// On-CPU time of nginx (master + worker), ns.
    target_cpu_ns: u64,
}

impl Round {
    fn rate(&self) -> f64 {
        self.probes as f64 / self.secs
    }
    fn us_per_probe(ns: u64, probes: u64) -> f64 {
        ns as f64 / 1000.0 / probes.max(1) as f64
    }
}

/// `check::probe_all` over `names` (one check per unit of concurrency) in a loop for `dur`.
fn runbook_round(cfg: &Arc<Config>, names: &[String], dur: Duration, nginx: &[u32], tck: f64) -> Round {
    let rt = runbook::util::runtime::runtime();
    let cpu0 = self_cpu_ns(tck);
    let ng0 = sched_ns_all(nginx);
    let t0 = Instant::now();
    let mut probes = 0u64;
    while t0.elapsed() < dur && probes < MAX_PROBES_PER_ROUND {
        let out = rt.block_on(check::probe_all(cfg, names));
        for o in &out {
            assert!(o.ok, "runbook probe failed: {} {}", o.check, o.detail);
        }
        probes += out.len() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    Round {
        probes,
        secs,
        prober_cpu_ns: self_cpu_ns(tck).saturating_sub(cpu0),
        driver_cpu_ns: 0,
        target_cpu_ns: sched_ns_all(nginx).saturating_sub(ng0),
    }
}

// ---------------------------------------------------------------------------------------------
// blackbox_exporter
// ---------------------------------------------------------------------------------------------

struct Blackbox {
    _dir: tempfile::TempDir,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Blackbox {
    fn start() -> Blackbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("bb.yml");
        std::fs::write(
            &cfg,
            "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n",
        )
        .expect("write bb.yml");
        let port = free_port();
        let log = dir.path().join("bb.log");
        let child = Command::new("prometheus-blackbox-exporter")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("bb log"))
            .spawn()
            .expect("spawn prometheus-blackbox-exporter (apt-get install -y prometheus-blackbox-exporter)");
        let mut bb = Blackbox {
            _dir: dir,
            child,
            port,
            log,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = bb.child.try_wait() {
                panic!(
                    "blackbox_exporter exited ({st}): {}",
                    std::fs::read_to_string(&bb.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "blackbox_exporter did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        bb
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Blackbox {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// One keep-alive HTTP/1.1 connection to the exporter.
struct ProbeClient {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
    line: String,
}

impl ProbeClient {
    fn connect(port: u16, target: &str) -> ProbeClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to blackbox_exporter");
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        stream.set_write_timeout(Some(Duration::from_secs(10))).ok();
        let request = format!("GET /probe?module=http_2xx&target={target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .into_bytes();
        ProbeClient {
            reader: BufReader::with_capacity(16 * 1024, stream),
            request,
            body: Vec::with_capacity(4096),
            line: String::new(),
        }
    }

    fn read_line(&mut self) -> &str {
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .expect("read from blackbox_exporter");
        assert!(n > 0, "blackbox_exporter closed the connection");
        self.line.trim_end()
    }

    /// One probe; the body must say `probe_success 1`.
    fn probe(&mut self) {
        self.reader
            .get_mut()
            .write_all(&self.request)
            .expect("write to blackbox_exporter");
        let status = self.read_line().to_string();
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "blackbox_exporter answered {status:?}"
        );
        let mut length: Option<usize> = None;
        let mut chunked = false;
        loop {
            let h = self.read_line();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
        self.body.clear();
        if chunked {
            // Bounded: the exporter's answer is a few KB in a handful of chunks.
            for _ in 0..10_000 {
                let size = usize::from_str_radix(self.read_line().split(';').next().unwrap_or("").trim(), 16)
                    .expect("chunk size");
                if size == 0 {
                    // Trailers (none expected) end with an empty line.
                    for _ in 0..100 {
                        if self.read_line().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = self.body.len();
                self.body.resize(at + size, 0);
                self.reader.read_exact(&mut self.body[at..]).expect("read chunk");
                let crlf = self.read_line();
                assert!(crlf.is_empty(), "bad chunk trailer");
            }
        } else {
            let n = length.expect("blackbox_exporter sent neither Content-Length nor chunked");
            self.body.resize(n, 0);
            self.reader.read_exact(&mut self.body).expect("read body");
        }
        let text = std::str::from_utf8(&self.body).expect("utf-8 body");
        assert!(
            text.contains("\nprobe_success 1\n"),
            "blackbox probe did not succeed:\n{text}"
        );
    }
}

/// `conc` client threads, each looping GET /probe on its own keep-alive connection, for `dur`.
fn blackbox_round(bb: &Blackbox, target: &str, conc: usize, dur: Duration, nginx: &[u32], tck: f64) -> Round {
    let port = bb.port;
    let mut clients: Vec<ProbeClient> = (0..conc).map(|_| ProbeClient::connect(port, target)).collect();
    let bb_pid = bb.pid();
    let bb0 = proc_sched_ns(bb_pid).unwrap_or(0);
    let self0 = self_cpu_ns(tck);
    let ng0 = sched_ns_all(nginx);
    let t0 = Instant::now();
    let per_thread_cap = MAX_PROBES_PER_ROUND / conc as u64;
    let probes: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter_mut()
            .map(|c| {
                s.spawn(move || {
                    let mut n = 0u64;
                    while t0.elapsed() < dur && n < per_thread_cap {
                        c.probe();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).sum()
    });
    let secs = t0.elapsed().as_secs_f64();
    Round {
        probes,
        secs,
        prober_cpu_ns: proc_sched_ns(bb_pid).unwrap_or(0).saturating_sub(bb0),
        driver_cpu_ns: self_cpu_ns(tck).saturating_sub(self0),
        target_cpu_ns: sched_ns_all(nginx).saturating_sub(ng0),
    }
}

// ---------------------------------------------------------------------------------------------
// (a) throughput, alternating
// ---------------------------------------------------------------------------------------------

struct ConcResult {
    conc: usize,
    runbook: Vec<Round>,
    blackbox: Vec<Round>,
    /// The bench process's VmHWM over the runbook rounds at this concurrency (peak reset
    /// before each round), MB; None if the peak cannot be reset.
    runbook_round_hwm_mb: Option<f64>,
}

impl ConcResult {
    fn rates(rounds: &[Round]) -> Stats {
        Stats::of(&rounds.iter().map(Round::rate).collect::<Vec<_>>())
    }
    fn ratio(&self) -> f64 {
        Self::rates(&self.runbook).median / Self::rates(&self.blackbox).median
    }
    fn us(rounds: &[Round], f: fn(&Round) -> u64) -> f64 {
        Stats::of(
            &rounds
                .iter()
                .map(|r| Round::us_per_probe(f(r), r.probes))
                .collect::<Vec<_>>(),
        )
        .median
    }
    fn json(&self) -> serde_json::Value {
        json!({
            "concurrency": self.conc,
            "runbook_probes_per_s": Self::rates(&self.runbook).json(),
            "blackbox_probes_per_s": Self::rates(&self.blackbox).json(),
            "ratio_median": r3(self.ratio()),
            "runbook_cpu_us_per_probe": r3(Self::us(&self.runbook, |r| r.prober_cpu_ns)),
            "blackbox_cpu_us_per_probe": r3(Self::us(&self.blackbox, |r| r.prober_cpu_ns)),
            "blackbox_driver_cpu_us_per_probe": r3(Self::us(&self.blackbox, |r| r.driver_cpu_ns)),
            "nginx_cpu_us_per_probe_runbook": r3(Self::us(&self.runbook, |r| r.target_cpu_ns)),
            "nginx_cpu_us_per_probe_blackbox": r3(Self::us(&self.blackbox, |r| r.target_cpu_ns)),
            "runbook_round_hwm_mb": self.runbook_round_hwm_mb.map(r3),
        })
    }
}

fn bench_throughput(nginx: &Nginx, bb: &Blackbox, concs: &[usize], rounds: usize, dur: Duration) -> Vec<ConcResult> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = nginx.url();
    let ng = nginx.pids();
    let tck = clock_ticks_per_sec();
    let mut out = Vec::new();
    for &c in concs {
        let (cfg, names) = runbook_config(dir.path(), &url, c);
        // Warm-up: connections, the client cache, the exporter's goroutines.
        let warm = Duration::from_secs(1);
        runbook_round(&cfg, &names, warm, &ng, tck);
        blackbox_round(bb, &url, c, warm, &ng, tck);
        let mut rb = Vec::new();
        let mut bx = Vec::new();
        let mut hwm: Option<f64> = None;
        for round in 0..rounds {
            let mut run_rb = || {
                let reset = reset_own_peak();
                let r = runbook_round(&cfg, &names, dur, &ng, tck);
                if reset && let Some(kb) = proc_status_kb("self", "VmHWM:") {
                    hwm = Some(hwm.unwrap_or(0.0).max(mb(kb)));
                }
                r
            };
            if round % 2 == 0 {
                rb.push(run_rb());
                bx.push(blackbox_round(bb, &url, c, dur, &ng, tck));
            } else {
                bx.push(blackbox_round(bb, &url, c, dur, &ng, tck));
                rb.push(run_rb());
            }
            let (a, b) = (rb.last().unwrap(), bx.last().unwrap());
            println!(
                "    C={c:<3} round {}  runbook {:>8.0}/s   blackbox {:>8.0}/s   ({:.2}x)",
                round + 1,
                a.rate(),
                b.rate(),
                a.rate() / b.rate()
            );
        }
        out.push(ConcResult {
            conc: c,
            runbook: rb,
            blackbox: bx,
            runbook_round_hwm_mb: hwm,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// (b) the daemon with 1,000 checks every 10 s
// ---------------------------------------------------------------------------------------------

fn daemon_yaml(url: &str, n: usize) -> String {
    let mut y = checks_yaml(url, n);
    y.push_str("profiles:\n  probes:\n    cron: \"*/10 * * * * *\"\n    tasks:\n");
    for i in 0..n {
        writeln!(y, "      - c{i:04}").unwrap();
    }
    y
}

struct DaemonResult {
    checks: usize,
    secs: f64,
    ready_ms: f64,
    rss_mb: Stats,
    hwm_mb: f64,
    anon_mb: f64,
    file_mb: f64,
    threads_max: u64,
    fds_end: usize,
    cpu_pct_ticks: f64,
    /// CPU from the end of the first profile run to the end of the window, and its length.
    cpu_pct_after_first: Option<(f64, f64)>,
    /// VmRSS just before the first profile run started, MB.
    rss_before_first_mb: Option<f64>,
    /// duration_ms of each profile run that was not skipped.
    run_ms: Vec<f64>,
    skipped: usize,
    profile_statuses: Vec<(String, i64)>,
    task_statuses: Vec<(String, i64)>,
    log_lines: usize,
    log_bytes: u64,
}

fn bench_daemon(nginx: &Nginx, checks: usize, secs: u64) -> DaemonResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("runbook.yaml");
    std::fs::write(&cfg, daemon_yaml(&nginx.url(), checks)).expect("write config");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["--log-format", "text", "daemon"])
        .current_dir(ROOT)
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn daemon");
    // Stop it whatever happens below.
    let mut guard = Guard(child);
    let pid = guard.0.id();
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("daemon started") {
            assert!(
                text.contains("profiles=1"),
                "daemon did not schedule the profile: {text}"
            );
            break;
        }
        if let Ok(Some(st)) = guard.0.try_wait() {
            panic!("daemon exited early ({st}): {text}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "daemon did not start within 30 s: {text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;

    let tck = clock_ticks_per_sec();
    let t0 = Instant::now();
    let ticks0 = proc_cpu_ticks(pid).expect("read /proc/PID/stat");
    let mut rss = Vec::new();
    let mut threads_max = 0;
    let mut rss_before_first: Option<f64> = None;
    let mut last_rss: Option<f64> = None;
    // (when, ticks) at the first sample after the first run finished.
    let mut after_first: Option<(Instant, u64)> = None;
    let mut log_len = 0u64;
    let end = t0 + Duration::from_secs(secs);
    while Instant::now() < end {
        // Only the log's size is read each time; its text only until the first run is over.
        if after_first.is_none() {
            let len = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
            if len != log_len {
                log_len = len;
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                if rss_before_first.is_none() && text.contains("profile run started") {
                    rss_before_first = last_rss;
                }
                if text.contains("profile run finished")
                    && let Some(t) = proc_cpu_ticks(pid)
                {
                    after_first = Some((Instant::now(), t));
                }
            }
        }
        if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
            rss.push(mb(kb));
            last_rss = Some(mb(kb));
        }
        threads_max = threads_max.max(proc_status_kb(pid, "Threads:").unwrap_or(0));
        if let Ok(Some(st)) = guard.0.try_wait() {
            panic!(
                "daemon exited during the window ({st}): {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250).min(end.saturating_duration_since(Instant::now())));
    }
    let wall = t0.elapsed().as_secs_f64();
    let ticks1 = proc_cpu_ticks(pid).expect("read /proc/PID/stat");
    let cpu_pct_after_first = after_first.map(|(at, t)| {
        let w = at.elapsed().as_secs_f64();
        (ticks1.saturating_sub(t) as f64 / tck / w * 100.0, w)
    });
    let hwm_kb = proc_status_kb(pid, "VmHWM:").unwrap_or(0);
    let anon_kb = proc_status_kb(pid, "RssAnon:").unwrap_or(0);
    let file_kb = proc_status_kb(pid, "RssFile:").unwrap_or(0) + proc_status_kb(pid, "RssShmem:").unwrap_or(0);
    let fds_end = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
        rss.push(mb(kb));
    }

    // SIGTERM and wait; the guard's own stop is then a no-op (the status is kept).
    let status = stop_child(&mut guard.0, Duration::from_secs(30));
    drop(guard);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "daemon did not stop cleanly: {status:?}\n{}",
        text.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    );

    let state = dir.path().join("state/runbook.db");
    let db = rusqlite::Connection::open_with_flags(&state, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the daemon's state file");
    let run_ms: Vec<f64> = {
        let mut st = db
            .prepare("SELECT duration_ms FROM runs WHERE kind='profile' AND status != 'skipped' AND duration_ms IS NOT NULL ORDER BY id")
            .expect("prepare");
        st.query_map([], |r| r.get::<_, i64>(0))
            .expect("query")
            .map(|r| r.expect("row") as f64)
            .collect()
    };
    let group = |sql: &str| -> Vec<(String, i64)> {
        let mut st = db.prepare(sql).expect("prepare");
        st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("query")
            .map(|r| r.expect("row"))
            .collect()
    };
    let profile_statuses =
        group("SELECT status, count(*) FROM runs WHERE kind='profile' GROUP BY status ORDER BY status");
    let task_statuses = group("SELECT status, count(*) FROM runs WHERE kind='task' GROUP BY status ORDER BY status");
    let skipped = profile_statuses
        .iter()
        .filter(|(s, _)| s == "skipped")
        .map(|(_, n)| *n as usize)
        .sum();

    DaemonResult {
        checks,
        secs: wall,
        ready_ms,
        rss_mb: Stats::of(&rss),
        hwm_mb: mb(hwm_kb),
        anon_mb: mb(anon_kb),
        file_mb: mb(file_kb),
        threads_max,
        fds_end,
        cpu_pct_ticks: ticks1.saturating_sub(ticks0) as f64 / tck / wall * 100.0,
        cpu_pct_after_first,
        rss_before_first_mb: rss_before_first,
        run_ms,
        skipped,
        profile_statuses,
        task_statuses,
        log_lines: text.lines().count(),
        log_bytes: text.len() as u64,
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let concs = env_list("BENCH_CONC", &[1, 16, 64]);
    let probe_secs = env_usize("BENCH_PROBE_SECS", 5) as u64;
    let rounds = env_usize("BENCH_ROUNDS", 3);
    let checks = env_usize("BENCH_CHECKS", 1000);
    let daemon_secs = env_usize("BENCH_SECS", 60) as u64;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);

    println!("runbook probe benchmark");
    println!("  binary     {BIN}");
    println!("  machine    {cores} core(s), {}", cpu_model());
    println!("  nginx      {}", version_of("nginx", "-v"));
    println!(
        "  blackbox   {}",
        version_of("prometheus-blackbox-exporter", "--version")
    );
    println!("  loadavg    {} (at start)", loadavg());
    println!();

    let nginx = Nginx::start();
    println!(
        "  target     nginx on {} (1 worker, `return 200 \"ok\\n\"`, pid {})",
        nginx.url(),
        nginx.master
    );
    let bb = Blackbox::start();
    let bb_pid = bb.pid();
    let bb_rss_start = proc_status_kb(bb_pid, "VmRSS:").map(mb).unwrap_or(0.0);
    println!(
        "  blackbox   listening on 127.0.0.1:{} (pid {}), module http_2xx (prober http, timeout 5s)",
        bb.port,
        bb.pid()
    );
    println!();

    // (a)
    println!(
        "(a) HTTP probes/s, {rounds} rounds of {probe_secs} s per side per concurrency, alternating (first side swaps each round)"
    );
    println!("    runbook: check::probe_all over C http checks (same URL), in a loop");
    println!(
        "    blackbox: C client threads, one keep-alive HTTP/1.1 connection each, GET /probe?module=http_2xx&target=… in a loop"
    );
    let tp = bench_throughput(&nginx, &bb, &concs, rounds, Duration::from_secs(probe_secs));
    let bb_hwm = proc_status_kb(bb_pid, "VmHWM:").map(mb).unwrap_or(0.0);
    let bb_rss_end = proc_status_kb(bb_pid, "VmRSS:").map(mb).unwrap_or(0.0);
    let bb_threads = proc_status_kb(bb_pid, "Threads:").unwrap_or(0);
    drop(bb);
    let self_hwm = proc_status_kb("self", "VmHWM:").map(mb).unwrap_or(0.0);
    println!();
    println!(
        "    C   | runbook probes/s (median) | blackbox probes/s (median) | ratio | CPU µs/probe runbook / blackbox (+driver) | nginx µs/probe rb / bb"
    );
    let mut ratio_ok = true;
    for r in &tp {
        let rb = ConcResult::rates(&r.runbook);
        let bx = ConcResult::rates(&r.blackbox);
        ratio_ok &= r.ratio() >= TARGET_RATIO;
        println!(
            "    {:<3} | {:>25.0} | {:>26.0} | {:>4.2}x | {:>10.1} / {:>6.1} (+{:.1}) | {:.1} / {:.1}",
            r.conc,
            rb.median,
            bx.median,
            r.ratio(),
            ConcResult::us(&r.runbook, |x| x.prober_cpu_ns),
            ConcResult::us(&r.blackbox, |x| x.prober_cpu_ns),
            ConcResult::us(&r.blackbox, |x| x.driver_cpu_ns),
            ConcResult::us(&r.runbook, |x| x.target_cpu_ns),
            ConcResult::us(&r.blackbox, |x| x.target_cpu_ns),
        );
    }
    for r in &tp {
        println!(
            "    C={:<3} runbook  {}",
            r.conc,
            ConcResult::rates(&r.runbook).line("/s")
        );
        println!(
            "    C={:<3} blackbox {}",
            r.conc,
            ConcResult::rates(&r.blackbox).line("/s")
        );
    }
    let rb_hwm = tp
        .iter()
        .filter_map(|r| r.runbook_round_hwm_mb)
        .fold(None, |a: Option<f64>, b| Some(a.map_or(b, |a| a.max(b))));
    println!(
        "    peak RSS: blackbox_exporter VmHWM {bb_hwm:.2} MB (VmRSS {bb_rss_start:.2} MB after start, {bb_rss_end:.2} MB at end, {bb_threads} threads)"
    );
    println!(
        "              runbook (this bench process, harness included): VmHWM over its whole life {self_hwm:.2} MB{}",
        rb_hwm
            .map(|h| format!("; during runbook rounds only (peak reset before each) {h:.2} MB"))
            .unwrap_or_default()
    );
    println!(
        "    target ≥ {TARGET_RATIO}x blackbox's rate at every concurrency: {}",
        verdict(ratio_ok)
    );
    println!();

    // (b)
    println!(
        "(b) `runbook daemon`, {checks} http checks in one profile on cron \"*/10 * * * * *\", sampled for {daemon_secs} s"
    );
    let d = bench_daemon(&nginx, checks, daemon_secs);
    println!("  ready after {:.1} ms", d.ready_ms);
    println!("  VmRSS   {}", d.rss_mb.line("MB"));
    println!(
        "  VmHWM   {:.2} MB   at the end: {:.2} MB anonymous, {:.2} MB file-backed; threads (max) {}; open fds {}",
        d.hwm_mb, d.anon_mb, d.file_mb, d.threads_max, d.fds_end
    );
    if let Some(r) = d.rss_before_first_mb {
        println!("          {r:.2} MB just before the first profile run started");
    }
    println!(
        "  CPU     {:.2} % of one core (utime+stime over {:.1} s, from ready, first run included){}",
        d.cpu_pct_ticks,
        d.secs,
        d.cpu_pct_after_first
            .map(|(p, w)| format!("; {p:.2} % over the last {w:.1} s, after the first run finished"))
            .unwrap_or_default()
    );
    let runs = if d.run_ms.is_empty() {
        None
    } else {
        Some(Stats::of(&d.run_ms))
    };
    match &runs {
        Some(s) => println!("  profile runs: {}  (duration_ms from the ledger)", s.line("ms")),
        None => println!("  profile runs: none finished"),
    }
    println!(
        "  profile rows by status {:?}; skipped (overlap): {}; task rows by status {:?}",
        d.profile_statuses, d.skipped, d.task_statuses
    );
    println!("  log: {} lines, {} KB", d.log_lines, d.log_bytes / 1024);
    let tasks_failed: i64 = d.task_statuses.iter().filter(|(s, _)| s != "ok").map(|(_, n)| *n).sum();
    if tasks_failed > 0 {
        println!("  WARNING: {tasks_failed} check task rows are not `ok`");
    }
    let drss_ok = d.rss_mb.max < TARGET_DAEMON_RSS_MB && d.hwm_mb < TARGET_DAEMON_RSS_MB;
    let dcpu_ok = d.cpu_pct_ticks < TARGET_DAEMON_CPU_PCT;
    println!(
        "  target < {TARGET_DAEMON_RSS_MB} MB RSS: {}   target < {TARGET_DAEMON_CPU_PCT} % CPU: {}",
        verdict(drss_ok),
        verdict(dcpu_ok)
    );
    println!();
    println!("  loadavg  {} (at end)", loadavg());
    drop(nginx);

    let summary = json!({
        "bench": "probes",
        "cores": cores,
        "cpu": cpu_model(),
        "throughput": {
            "secs_per_round": probe_secs,
            "rounds": rounds,
            "blackbox_client": "keep-alive HTTP/1.1, one connection per client thread",
            "by_concurrency": tp.iter().map(ConcResult::json).collect::<Vec<_>>(),
            "blackbox_hwm_mb": r3(bb_hwm),
            "blackbox_rss_start_mb": r3(bb_rss_start),
            "blackbox_rss_end_mb": r3(bb_rss_end),
            "bench_process_hwm_mb": r3(self_hwm),
            "runbook_rounds_hwm_mb": rb_hwm.map(r3),
            "target_ratio": TARGET_RATIO,
            "met": ratio_ok,
        },
        "daemon": {
            "checks": d.checks,
            "secs": r3(d.secs),
            "ready_ms": r3(d.ready_ms),
            "rss_mb": d.rss_mb.json(),
            "hwm_mb": r3(d.hwm_mb),
            "rss_anon_mb": r3(d.anon_mb),
            "rss_file_mb": r3(d.file_mb),
            "threads_max": d.threads_max,
            "fds_end": d.fds_end,
            "cpu_pct_ticks": r3(d.cpu_pct_ticks),
            "cpu_pct_after_first_run": d.cpu_pct_after_first.map(|(p, _)| r3(p)),
            "after_first_run_secs": d.cpu_pct_after_first.map(|(_, w)| r3(w)),
            "rss_before_first_run_mb": d.rss_before_first_mb.map(r3),
            "profile_run_ms": runs.map(|s| s.json()),
            "profile_statuses": d.profile_statuses.iter().map(|(s, n)| json!({"status": s, "count": n})).collect::<Vec<_>>(),
            "task_statuses": d.task_statuses.iter().map(|(s, n)| json!({"status": s, "count": n})).collect::<Vec<_>>(),
            "skipped": d.skipped,
            "log_lines": d.log_lines,
            "target_rss_mb": TARGET_DAEMON_RSS_MB,
            "target_cpu_pct": TARGET_DAEMON_CPU_PCT,
            "met": drss_ok && dcpu_ok,
        },
    });
    println!("BENCH_JSON {summary}");
}
