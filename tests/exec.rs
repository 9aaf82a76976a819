//! Bounded execution through `runbook run PROFILE`: capped output, timeouts that kill the whole
//! process group, resource limits, spawn errors, and the environment a task sees.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A config with one profile `p` whose tasks are the given YAML flow mappings.
fn profile(tasks: &[&str]) -> String {
    let mut yaml = String::from("version: 1\nprofiles:\n  p:\n    cron: \"0 3 * * *\"\n    tasks:\n");
    for t in tasks {
        yaml.push_str(&format!("      - {t}\n"));
    }
    yaml
}

/// `runbook run p --json`: exit code, the report, and how long the command took.
fn run_profile(env: &Env) -> (i32, Value, Duration) {
    let started = Instant::now();
    let out = env.run(&["run", "p", "--json"]);
    let took = started.elapsed();
    assert!(!out.stderr.contains("panicked"), "runbook panicked:\n{}", out.stderr);
    (out.code, out.json(), took)
}

/// The recorded ledger row of one task run (`jobs show ID --json`).
fn task_row(env: &Env, run_id: &Value) -> Value {
    let id = run_id.as_i64().expect("run_id is a number").to_string();
    let (code, shown) = env.json(&["jobs", "show", &id]);
    assert_eq!(code, 0, "jobs show {id}: {shown}");
    shown["run"].clone()
}

fn task<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .expect("tasks array")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {report}"))
}

/// Pids of live (non-zombie) processes whose argv is exactly `argv`.
fn processes_with_argv(argv: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if args.len() != argv.len() || args.iter().zip(argv).any(|(a, b)| *a != b.as_bytes()) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().starts_with('Z')))
            .unwrap_or(true);
        if !zombie {
            found.push(pid);
        }
    }
    found
}

/// Waits until no process runs `argv`; on failure kills the leftovers so they do not outlive
/// the test, and returns false.
fn gone_eventually(argv: &[&str]) -> bool {
    if wait_for(Duration::from_secs(5), || processes_with_argv(argv).is_empty()) {
        return true;
    }
    for pid in processes_with_argv(argv) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    false
}

#[test]
fn huge_output_is_capped_head_and_tail_kept_and_the_rest_counted() {
    let env = Env::new(&profile(&[
        r#"{ name: flood, sh: "head -c 100000000 /dev/zero | tr '\\0' 'x'", timeout: 120s }"#,
    ]));
    // runbook's memory meanwhile is a figure of `cargo bench --bench foundation` (d).
    let out = env.run(&["run", "p", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();
    let flood = task(&report, "flood");
    assert_eq!(flood["status"], "ok", "{flood}");

    let row = task_row(&env, &flood["run_id"]);
    assert_eq!(row["status"], "ok");
    assert_eq!(row["exit_code"], 0);
    let output = row["output"].as_str().expect("recorded output");
    assert!(output.len() < 1_000_000, "recorded output is {} bytes", output.len());
    assert!(output.starts_with("xxxx"), "head of the output is kept");
    assert!(output.ends_with("xxxx"), "tail of the output is kept");
    let marker = output
        .lines()
        .find(|l| l.contains("bytes omitted"))
        .unwrap_or_else(|| panic!("no `bytes omitted` marker in the recorded output"));
    let omitted: u64 = marker
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {marker:?}"));
    assert!(omitted > 99_000_000, "marker {marker:?} accounts for the dropped bytes");
}

#[test]
fn task_ignoring_sigterm_is_killed_after_timeout_and_grace() {
    let env = Env::new(&profile(&[
        r#"{ name: stubborn, sh: "trap '' TERM; sleep 30.271", timeout: 1s, kill_grace: 500ms }"#,
    ]));
    let (code, report, took) = run_profile(&env);
    assert!(gone_eventually(&["sleep", "30.271"]), "the stubborn sleep survived");
    assert!(took < Duration::from_secs(15), "runbook took {took:?} for a 1s timeout");
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["status"], "failed");
    let t = task(&report, "stubborn");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["summary"], "timed out after 1s");

    let row = task_row(&env, &t["run_id"]);
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error"], "timed out after 1s");
    assert_eq!(row["signal"], 9, "SIGTERM is ignored, so SIGKILL ends it: {row}");
    assert!(row["exit_code"].is_null(), "{row}");
}

#[test]
fn background_process_holding_stdout_does_not_hang_the_run() {
    let env = Env::new(&profile(&[
        r#"{ name: forker, sh: "sleep 30.123 & echo started", timeout: 5s }"#,
        r#"{ name: next, sh: "echo next ran" }"#,
    ]));
    let (code, report, took) = run_profile(&env);
    let gone = gone_eventually(&["sleep", "30.123"]);
    assert!(
        took < Duration::from_secs(20),
        "runbook took {took:?}; it waited for the grandchild"
    );
    assert!(gone, "the background `sleep 30.123` is still running after the run");
    assert_eq!(code, 0, "{report}");
    let forker = task(&report, "forker");
    assert_eq!(forker["status"], "ok", "{forker}");
    assert_eq!(forker["exit_code"], 0);
    assert!(forker["output"].as_str().unwrap().contains("started"), "{forker}");
    assert_eq!(task(&report, "next")["status"], "ok");
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let env = Env::new(&profile(&[
        r#"{ name: family, sh: "sleep 40.5 & sleep 40.5; wait", timeout: 1s }"#,
    ]));
    let (code, report, took) = run_profile(&env);
    let gone = gone_eventually(&["sleep", "40.5"]);
    assert!(gone, "a `sleep 40.5` of the timed-out task is still running");
    assert!(took < Duration::from_secs(20), "runbook took {took:?} for a 1s timeout");
    assert_eq!(code, 1, "{report}");
    let t = task(&report, "family");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["summary"], "timed out after 1s");
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

#[test]
fn memory_max_makes_an_oversized_allocation_fail() {
    let py = python();
    let script = "print('allocating', flush=True); b = bytearray(300*1024*1024); print('allocated')";
    let env = Env::new(&profile(&[
        &format!(r#"{{ name: limited, run: ["{py}", "-c", "{script}"], memory_max: 64M }}"#),
        &format!(r#"{{ name: unlimited, run: ["{py}", "-c", "{script}"] }}"#),
    ]));
    let (code, report, _) = run_profile(&env);
    assert_eq!(code, 1, "{report}");

    let limited = task(&report, "limited");
    assert_eq!(limited["status"], "failed", "{limited}");
    assert_ne!(limited["exit_code"], 0, "{limited}");
    let output = limited["output"].as_str().unwrap();
    assert!(
        output.contains("allocating"),
        "the interpreter started under the limit: {output}"
    );
    assert!(output.contains("MemoryError"), "{output}");
    assert!(!output.contains("allocated\n"), "{output}");

    let unlimited = task(&report, "unlimited");
    assert_eq!(unlimited["status"], "ok", "{unlimited}");
    assert!(
        unlimited["output"].as_str().unwrap().contains("allocated"),
        "{unlimited}"
    );
}

#[test]
fn nofile_limit_is_visible_to_the_task() {
    let env = Env::new(&profile(&[r#"{ name: fds, sh: "ulimit -n", nofile: 16 }"#]));
    let (code, report, _) = run_profile(&env);
    assert_eq!(code, 0, "{report}");
    let t = task(&report, "fds");
    assert_eq!(t["status"], "ok");
    assert_eq!(t["output"].as_str().unwrap().trim(), "16");
}

#[test]
fn systemd_run_without_systemd_fails_the_task_with_advice() {
    let env = Env::new(&profile(&[
        r#"{ name: scoped, sh: "echo should not run", systemd_run: true, memory_max: 64M }"#,
        r#"{ name: after, sh: "echo after" }"#,
    ]));
    let (code, report, _) = run_profile(&env);
    if Path::new("/run/systemd/system").is_dir() {
        cannot_run("systemd is running on this host; the no-systemd error cannot be checked here");
        return;
    }
    assert_eq!(code, 1, "{report}");
    let t = task(&report, "scoped");
    assert_eq!(t["status"], "failed");
    let summary = t["summary"].as_str().unwrap();
    assert!(summary.contains("systemd"), "{summary}");
    assert!(
        summary.contains("remove `systemd_run: true`"),
        "says what to do: {summary}"
    );
    assert!(!t["output"].as_str().unwrap_or("").contains("should not run"));

    let row = task_row(&env, &t["run_id"]);
    assert_eq!(row["status"], "failed");
    assert_eq!(row["error"].as_str(), Some(summary));
    assert_eq!(task(&report, "after")["status"], "ok");
}

#[test]
fn missing_program_fails_its_task_and_later_tasks_still_run() {
    let env = Env::new(&profile(&[
        r#"{ name: missing, run: [/nonexistent/tool, --flag] }"#,
        r#"{ name: after, sh: "echo after ran" }"#,
    ]));
    let (code, report, _) = run_profile(&env);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["status"], "failed");

    let missing = task(&report, "missing");
    assert_eq!(missing["status"], "failed");
    let row = task_row(&env, &missing["run_id"]);
    assert_eq!(row["status"], "failed");
    let error = row["error"].as_str().expect("an error is recorded");
    assert!(error.contains("cannot start `/nonexistent/tool`"), "{error}");

    let after = task(&report, "after");
    assert_eq!(after["status"], "ok");
    assert_eq!(after["output"].as_str().unwrap().trim(), "after ran");
}

#[test]
fn tasks_run_in_the_config_directory_with_runbook_and_task_env() {
    let env = Env::new(&profile(&[
        r#"{ name: where, sh: "pwd; echo \"p=$RUNBOOK_PROFILE t=$RUNBOOK_TASK id=$RUNBOOK_RUN_ID g=$GREETING\"", env: { GREETING: "hello there" } }"#,
        r#"{ name: sub, sh: "pwd", cwd: work/sub }"#,
    ]));
    std::fs::create_dir_all(env.path("work/sub")).unwrap();
    // Started from elsewhere: the task's directory comes from the config file, not the caller.
    let out = output_of(env.cmd().current_dir("/").args(["run", "p", "--json"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let report = out.json();

    let canonical = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let here = task(&report, "where");
    let output = here["output"].as_str().unwrap();
    let mut lines = output.lines();
    assert_eq!(
        canonical(lines.next().unwrap()),
        canonical(env.dir.path().to_str().unwrap())
    );
    let id = here["run_id"].as_i64().unwrap();
    assert_eq!(lines.next().unwrap(), format!("p=p t=where id={id} g=hello there"));

    let sub = task(&report, "sub");
    assert_eq!(
        canonical(sub["output"].as_str().unwrap().trim()),
        canonical(env.path("work/sub").to_str().unwrap())
    );
}

/// Runs a prepared command (for a caller-chosen working directory).
fn output_of(cmd: &mut Command) -> Out {
    let o = cmd.output().expect("run runbook");
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn cpu_time_limit_stops_a_busy_loop() {
    let env = Env::new(
        "version: 1\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { sh: \"while :; do :; done\", name: spin, cpu_time: 1s, timeout: 60s } ] }\n",
    );
    let (code, report) = env.json(&["run", "p"]);
    assert_eq!(code, 1, "{report}");
    let task = &report["tasks"][0];
    assert_eq!(task["status"], "failed");
    // Stopped by the kernel at the CPU limit (RLIMIT_CPU: SIGXCPU, or SIGKILL when the soft
    // limit is the hard one), not by the 60s timeout.
    let summary = task["summary"].as_str().unwrap();
    assert!(!summary.contains("timed out"), "the CPU limit did not stop it: {task}");
    assert!(summary.contains("killed by signal"), "{task}");
}
