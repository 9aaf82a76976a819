//! Drift benchmark: `runbook drift` over 200 declared items (the release binary, as an operator
//! runs it), target under 1 s. A plain harness: `cargo bench --bench drift`.
//!
//! The 200 items: 80 files (mode, owner, group, sha256 of 4 KiB each), 30 kernel parameters,
//! 30 users and groups from /etc (as many as exist), 20 listening ports (bound by this process),
//! 20 commands (`true`, exit 0), the rest mounts from /proc/mounts. Knobs: BENCH_ROUNDS (10).

use std::fmt::Write as _;
use std::process::Command;
use std::time::Instant;

mod common;
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_runbook");
const TARGET_S: f64 = 1.0;

fn main() {
    let rounds = env_usize("BENCH_ROUNDS", 10);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut y = String::from("version: 1\nstate: { url: \"sqlite://state/runbook.db\" }\nbaseline:\n  file:\n");
    let mut n = 0;
    for i in 0..80 {
        let p = dir.path().join(format!("f{i}"));
        std::fs::write(&p, vec![b'x'; 4096]).unwrap();
        let out = Command::new("sha256sum").arg(&p).output().unwrap();
        let sha = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let mode = format!(
            "{:04o}",
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&p).unwrap().permissions()) & 0o7777
        );
        let _ = writeln!(
            y,
            "    {}: {{ mode: \"{mode}\", owner: root, group: root, sha256: \"{sha}\" }}",
            p.display()
        );
        n += 1;
    }
    y.push_str("  kernel_param:\n");
    let params = [
        "kernel.ostype",
        "kernel.osrelease",
        "kernel.hostname",
        "kernel.pid_max",
        "kernel.threads-max",
        "vm.swappiness",
        "vm.overcommit_memory",
        "net.ipv4.ip_forward",
        "net.core.somaxconn",
        "fs.file-max",
        "kernel.randomize_va_space",
        "net.ipv4.tcp_syncookies",
        "kernel.panic",
        "vm.max_map_count",
        "fs.nr_open",
        "kernel.sysrq",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.ip_local_port_range",
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.msgmax",
        "kernel.msgmnb",
        "vm.dirty_ratio",
        "vm.dirty_background_ratio",
        "net.ipv4.tcp_keepalive_time",
        "net.core.netdev_max_backlog",
        "fs.inotify.max_user_watches",
        "kernel.core_pattern",
        "net.ipv4.conf.all.rp_filter",
        "kernel.dmesg_restrict",
    ];
    for p in params {
        let v = std::fs::read_to_string(format!("/proc/sys/{}", p.replace('.', "/"))).unwrap_or_default();
        let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(y, "    {p}: {{ value: {} }}", serde_json::to_string(&v).unwrap());
        n += 1;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let users: Vec<(String, String)> = passwd
        .lines()
        .take(25)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .collect();
    y.push_str("  user:\n");
    for (u, uid) in &users {
        let _ = writeln!(y, "    \"{u}\": {{ uid: \"{uid}\" }}");
        n += 1;
    }
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    y.push_str("  group:\n");
    for l in group.lines().take(25) {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > 2 {
            let _ = writeln!(y, "    \"{}\": {{ gid: \"{}\" }}", f[0], f[2]);
            n += 1;
        }
    }
    let listeners: Vec<std::net::TcpListener> = (0..20)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    y.push_str("  port:\n");
    for l in &listeners {
        let _ = writeln!(
            y,
            "    \"tcp:127.0.0.1:{}\": {{ listening: \"true\" }}",
            l.local_addr().unwrap().port()
        );
        n += 1;
    }
    y.push_str("  command:\n");
    for i in 0..20 {
        let _ = writeln!(y, "    \"true {i}\": {{ exit: \"0\" }}");
        n += 1;
    }
    y.push_str("  mount:\n");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for l in mounts.lines() {
        if n >= 200 {
            break;
        }
        let c: Vec<&str> = l.split_whitespace().collect();
        if c.len() > 2 && !c[1].contains('\\') && seen.insert(c[1].to_string()) {
            let _ = writeln!(y, "    \"{}\": {{ exists: \"true\" }}", c[1]);
            n += 1;
        }
    }
    let config = dir.path().join("runbook.yaml");
    std::fs::write(&config, &y).unwrap();
    println!(
        "runbook drift benchmark\n  binary   {BIN}\n  machine  {} core(s), {}\n  loadavg  {}\n  items    {n} declared",
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        cpu_model(),
        loadavg()
    );
    let run = || {
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(["--config"])
            .arg(&config)
            .args(["drift", "--json"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let s = t.elapsed().as_secs_f64();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (s, v["items"].clone(), out.status.code())
    };
    let (_, found, code) = run();
    let differences = found.as_array().map_or(0, Vec::len);
    println!("  warm-up  exit {code:?}, {differences} difference(s)");
    for i in found.as_array().into_iter().flatten() {
        println!(
            "           {} {} (expected {}, actual {})",
            i["change"], i["item"], i["expected"], i["actual"]
        );
    }
    let mut secs = Vec::new();
    for _ in 0..rounds {
        secs.push(run().0);
    }
    let s = Stats::of(&secs);
    println!(
        "  wall     min {:.3} s  median {:.3} s  max {:.3} s  (n={})",
        s.min, s.median, s.max, s.n
    );
    println!(
        "  target   < {TARGET_S} s for 200 items: {}",
        verdict(s.median < TARGET_S)
    );
    println!(
        "  goss     not measured: no goss binary on this machine kind (no Debian package; the Go toolchain is not installed)"
    );
    println!(
        "BENCH_JSON {}",
        serde_json::json!({ "bench": "drift", "items": n, "differences_on_warmup": differences, "wall_s": s.json(), "target_s": TARGET_S, "met": s.median < TARGET_S })
    );
    drop(listeners);
}
