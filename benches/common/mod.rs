//! What the benchmark harnesses share: knobs from the environment, sample statistics, machine
//! facts, /proc sampling and child-process control. Each bench is its own crate and uses only
//! part of this, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt::Display;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::json;

/// A positive integer knob from the environment, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// A comma-separated list of positive integers (each ≤ 1024) from the environment, or `default`.
pub fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|s| s.trim().parse().ok())
                .filter(|&n: &usize| n > 0 && n <= 1024)
                .collect::<Vec<_>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// min / median / p95 / p99 / max of a sample, in the sample's unit. Each bench formats its
/// own one-line summary (`line`), since their units and precisions differ.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(samples: &[f64]) -> Stats {
        assert!(!samples.is_empty());
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            let rank = ((p / 100.0) * (s.len() as f64 - 1.0)).round() as usize;
            s[rank.min(s.len() - 1)]
        };
        Stats {
            n: s.len(),
            min: s[0],
            median: pct(50.0),
            p95: pct(95.0),
            p99: pct(99.0),
            max: s[s.len() - 1],
        }
    }

    /// `min … median … p95 … p99 … max … (n=…)`, three decimals: the latency line of the API
    /// and assistant benches.
    pub fn percentiles(&self, unit: &str) -> String {
        format!(
            "min {:.3} {unit}  median {:.3} {unit}  p95 {:.3} {unit}  p99 {:.3} {unit}  max {:.3} {unit}  (n={})",
            self.min, self.median, self.p95, self.p99, self.max, self.n
        )
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "n": self.n,
            "min": r3(self.min),
            "median": r3(self.median),
            "p95": r3(self.p95),
            "p99": r3(self.p99),
            "max": r3(self.max),
        })
    }
}

/// Rounded to three decimals, for JSON reports.
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "MET" } else { "MISSED" }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// First line of `cmd arg` (stdout, then stderr), e.g. a peer tool's version.
pub fn version_of(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_else(|| "?".into())
}

// ---------------------------------------------------------------------------------------------
// /proc (`pid` is a number or "self")
// ---------------------------------------------------------------------------------------------

/// A `kB` field of /proc/PID/status (`VmRSS:`, `VmHWM:`, `Threads:` …).
pub fn proc_status_kb(pid: impl Display, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

pub fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// utime + stime of the whole process (all threads), in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after the closing paren are positional.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ... utime is field 14, stime 15 (1-based over the whole line).
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sum of every thread's on-CPU time from schedstat, in ns (finer than clock ticks).
pub fn proc_sched_ns(pid: impl Display) -> Option<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread can end between listing and reading; skip it.
        let Ok(s) = std::fs::read_to_string(path) else { continue };
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------------
// Ports and child processes
// ---------------------------------------------------------------------------------------------

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
        .port()
}

pub fn sigterm(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
}

/// SIGTERM, then up to `grace` for an exit, then SIGKILL. Returns the exit status if clean.
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    sigterm(child.id());
    let start = Instant::now();
    while start.elapsed() < grace {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped, also on panic.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        stop_child(&mut self.0, Duration::from_secs(30));
    }
}

/// The first column of `sql`'s result on the machine's PostgreSQL (127.0.0.1:5432, user
/// postgres), as text; panics with the server's message on an error.
pub fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qtAc",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The machine lines of a report that runs on PostgreSQL: cores, CPU, the server's version,
/// the load average at the start.
pub fn print_machine_with_postgres() {
    println!(
        "  machine  {} core(s), {}; PostgreSQL {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        psql("test", "SHOW server_version")
    );
    println!("  loadavg  {} (at start)", loadavg());
}
