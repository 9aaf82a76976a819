//! `runbook mcp` benchmark: how fast an assistant's `tools/call` is answered.
//!
//!   (a) `tools/call status` on the quickstart (examples/quickstart.yaml, its state holding a
//!       few runs and check results), one call at a time over stdio, from writing the request
//!       to reading the whole answer                               target: p99 < 10 ms
//!   (b) `tools/list`, and `session_exec ["uptime"]` (a command in the kernel's read-only
//!       sandbox), for scale; no target.
//!
//! Each `tools/call` includes what the server always does: the policy lookup, the arguments
//! read against the schema, the tool, and the `mcp.call` audit event committed before the
//! answer (the state file's own durability: WAL, synchronous commit).
//! A plain harness: `cargo bench --bench mcp`. Knobs: BENCH_CALLS (2000), BENCH_EXEC (200).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_runbook");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TARGET_P99_MS: f64 = 10.0;

mod common;
use common::*;

struct Server {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
    next: i64,
}

impl Server {
    fn start(config: &Path) -> Server {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["mcp", "--reason", "benchmark"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn runbook mcp");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut s = Server { child, out, next: 1 };
        s.request(
            "initialize",
            json!({ "protocolVersion": "2025-11-25", "capabilities": {},
                                         "clientInfo": { "name": "bench", "version": "1" } }),
        );
        s.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
        s
    }

    fn send(&mut self, msg: &Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        let mut line = msg.to_string();
        line.push('\n');
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    /// One request and its answer.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "the server closed its output"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v;
            }
        }
    }

    /// Milliseconds per round trip of `n` requests.
    fn time(&mut self, n: usize, method: &str, params: &Value) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let v = self.request(method, params.clone());
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                assert_ne!(v["result"]["isError"], true, "{v}");
                ms
            })
            .collect()
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let calls = env_usize("BENCH_CALLS", 2000);
    let execs = env_usize("BENCH_EXEC", 200);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("quickstart.yaml");
    std::fs::copy(Path::new(ROOT).join("examples/quickstart.yaml"), &config).unwrap();
    // Some history: runs in the ledger, check results, an open alert (the quickstart's API
    // check fails while no daemon serves it).
    for args in [
        &["run", "heartbeat"][..],
        &["run", "self-check"],
        &["check"],
        &["run", "heartbeat"],
    ] {
        let _ = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
    }
    println!("runbook mcp benchmark: {} · load {}", cpu_model(), loadavg());

    let mut s = Server::start(&config);
    // Warm up: the state's pages, the first thread.
    s.time(50, "tools/call", &json!({ "name": "status", "arguments": {} }));
    let status = Stats::of(&s.time(calls, "tools/call", &json!({ "name": "status", "arguments": {} })));
    let list = Stats::of(&s.time(calls, "tools/list", &json!({})));
    let exec = Stats::of(&s.time(
        execs,
        "tools/call",
        &json!({ "name": "session_exec", "arguments": { "command": ["uptime"] } }),
    ));
    drop(s.child.stdin.take());
    let _ = s.child.wait();

    println!("(a) tools/call status   {}", status.percentiles("ms"));
    println!("(b) tools/list          {}", list.percentiles("ms"));
    println!("(b) session_exec uptime {}", exec.percentiles("ms"));
    println!(
        "(a) p99 {:.3} ms against < {TARGET_P99_MS} ms: {}",
        status.p99,
        verdict(status.p99 < TARGET_P99_MS)
    );
    println!(
        "{}",
        json!({ "status_ms": status.json(), "list_ms": list.json(), "session_exec_ms": exec.json() })
    );
}
