//! Checks as an operator meets them: `runbook check [NAME…] [--json]` probing real servers on
//! 127.0.0.1 (HTTP, TCP, TLS), real commands, filesystems, git repositories and SQLite files;
//! outcomes recorded in `check_results`; checks as profile tasks; and the config errors of the
//! `checks:` section, located.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `runbook check ARGS --json` and returns the exit code and the outcomes by check name.
fn check(env: &Env, args: &[&str]) -> (i32, BTreeMap<String, Value>) {
    let out = env.run(&[&["check"], args, &["--json"]].concat());
    let v = out.json();
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("`check --json` is not an array: {v}\n{}", out.stderr));
    let by_name = list
        .iter()
        .map(|o| (o["check"].as_str().expect("check name").to_string(), o.clone()))
        .collect();
    (out.code, by_name)
}

/// The outcome of `name`, asserting it is ok.
fn assert_ok(outcomes: &BTreeMap<String, Value>, name: &str) -> String {
    let o = outcomes
        .get(name)
        .unwrap_or_else(|| panic!("no outcome for `{name}`: {outcomes:#?}"));
    assert_eq!(o["ok"], true, "`{name}` should be ok: {o:#}");
    o["detail"].as_str().unwrap().to_string()
}

/// The detail of `name`, asserting it is failing.
fn assert_failing(outcomes: &BTreeMap<String, Value>, name: &str) -> String {
    let o = outcomes
        .get(name)
        .unwrap_or_else(|| panic!("no outcome for `{name}`: {outcomes:#?}"));
    assert_eq!(o["ok"], false, "`{name}` should be failing: {o:#}");
    o["detail"].as_str().unwrap().to_string()
}

/// A port on 127.0.0.1 that nothing listens on (bound, read back, released).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A tiny HTTP/1.1 server on 127.0.0.1 with canned answers by path. Returns its port; it lives
/// until the test process ends.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(stream) = conn else { continue };
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&head).into_owned();
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = |status: &str, headers: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    };
    let response = match path.as_str() {
        "/ok" => reply(
            "200 OK",
            "X-Thing: yes\r\nContent-Type: text/plain\r\n",
            "all good: version 1.42\n",
        ),
        "/empty" => "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string(),
        "/json" => reply(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"status":"ok","db":{"up":true},"n":3}"#,
        ),
        "/degraded" => reply(
            "200 OK",
            "Content-Type: application/json\r\n",
            r#"{"status":"degraded","db":{"up":false},"n":3}"#,
        ),
        "/moved" => reply("302 Found", "Location: /ok\r\n", ""),
        "/slow" => {
            // The server is slow on purpose; the test does not wait on this sleep.
            std::thread::sleep(Duration::from_millis(1200));
            reply("200 OK", "", "late but fine\n")
        }
        "/hang" => {
            // Accept the request, never answer; hold the connection until the client leaves.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            return;
        }
        "/endless" => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).is_ok() {}
            return;
        }
        _ => reply("404 Not Found", "", "no such page\n"),
    };
    let _ = s.write_all(response.as_bytes());
}

/// Runs a program to completion in `dir`, panicking with its output if it fails; returns stdout.
fn sh(dir: &Path, argv: &[&str]) -> String {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Replaces `{key}` in the config file (after `Env::new` wrote it).
fn fill(env: &Env, key: &str, value: &str) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, text.replace(&format!("{{{key}}}"), value)).unwrap();
}

/// A child process killed when the test ends, pass or panic.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// http
// ---------------------------------------------------------------------------------------------

#[test]
fn http_status_accepts_a_code_a_list_a_class_and_a_range() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  exact:        {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ status: 200 }} }} }}
  listed:       {{ http: {{ url: "http://127.0.0.1:{port}/empty", expect: {{ status: [200, 204] }} }} }}
  class:        {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ status: "2xx" }} }} }}
  range:        {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ status: "200-399" }} }} }}
  default:      {{ http: {{ url: "http://127.0.0.1:{port}/ok" }} }}
  want-404:     {{ http: {{ url: "http://127.0.0.1:{port}/nowhere", expect: {{ status: "4xx" }} }} }}
  not-listed:   {{ http: {{ url: "http://127.0.0.1:{port}/nowhere", expect: {{ status: [200, 204] }} }} }}
  out-of-range: {{ http: {{ url: "http://127.0.0.1:{port}/nowhere", expect: {{ status: "200-399" }} }} }}
  default-404:  {{ http: {{ url: "http://127.0.0.1:{port}/nowhere" }} }}
"#
    ));
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1, "some checks fail: {o:#?}");
    let detail = assert_ok(&o, "exact");
    assert!(detail.starts_with("200 OK in "), "{detail}");
    assert_eq!(o["exact"]["kind"], "http");
    assert_eq!(o["exact"]["data"]["status"], 200);
    assert!(assert_ok(&o, "listed").starts_with("204 No Content"), "{o:#?}");
    assert_eq!(o["listed"]["data"]["status"], 204);
    assert_ok(&o, "class");
    assert_ok(&o, "range");
    assert_ok(&o, "default");
    assert_ok(&o, "want-404");
    assert_eq!(assert_failing(&o, "not-listed"), "status 404, expected 200, 204");
    assert_eq!(assert_failing(&o, "out-of-range"), "status 404, expected 200-399");
    assert_eq!(assert_failing(&o, "default-404"), "status 404, expected 200-299");
    assert_eq!(o["default-404"]["data"]["status"], 404);
}

#[test]
fn http_body_json_and_header_expectations_pass_and_fail_with_a_reason() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  contains:      {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ body_contains: "all good" }} }} }}
  not-contains:  {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ body_contains: "all bad" }} }} }}
  regex:         {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ body_regex: 'version \d+\.\d+' }} }} }}
  not-regex:     {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ body_regex: 'version 2\.' }} }} }}
  json-equal:    {{ http: {{ url: "http://127.0.0.1:{port}/json", expect: {{ json: {{ "/status": "ok", "/db/up": true, "/n": 3 }} }} }} }}
  json-differs:  {{ http: {{ url: "http://127.0.0.1:{port}/degraded", expect: {{ json: {{ "/status": "ok" }} }} }} }}
  json-missing:  {{ http: {{ url: "http://127.0.0.1:{port}/json", expect: {{ json: {{ "/version": 2 }} }} }} }}
  json-not-json: {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ json: {{ "/status": "ok" }} }} }} }}
  header-value:  {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ headers: {{ X-Thing: yes }} }} }} }}
  header-any:    {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ headers: {{ X-Thing: "*" }} }} }} }}
  header-wrong:  {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ headers: {{ X-Thing: "no" }} }} }} }}
  header-absent: {{ http: {{ url: "http://127.0.0.1:{port}/ok", expect: {{ headers: {{ X-Other: "*" }} }} }} }}
  two-problems:  {{ http: {{ url: "http://127.0.0.1:{port}/nowhere", expect: {{ status: 200, body_contains: "all good" }} }} }}
"#
    ));
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    assert_ok(&o, "contains");
    assert_eq!(assert_failing(&o, "not-contains"), r#"body does not contain "all bad""#);
    assert_ok(&o, "regex");
    assert_eq!(assert_failing(&o, "not-regex"), r"body does not match /version 2\./");
    assert_ok(&o, "json-equal");
    assert_eq!(
        assert_failing(&o, "json-differs"),
        r#"/status is "degraded", expected "ok""#
    );
    assert_eq!(assert_failing(&o, "json-missing"), "/version is missing");
    assert!(
        assert_failing(&o, "json-not-json").starts_with("body is not JSON"),
        "{o:#?}"
    );
    assert_ok(&o, "header-value");
    assert_ok(&o, "header-any");
    assert_eq!(
        assert_failing(&o, "header-wrong"),
        r#"header X-Thing is "yes", expected "no""#
    );
    assert_eq!(assert_failing(&o, "header-absent"), "header X-Other is missing");
    assert_eq!(
        assert_failing(&o, "two-problems"),
        r#"status 404, expected 200; body does not contain "all good""#,
        "every problem is named, not only the first"
    );
}

#[test]
fn http_a_slower_answer_than_max_latency_is_failing() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  slow:    {{ http: {{ url: "http://127.0.0.1:{port}/slow", expect: {{ max_latency: 300ms }} }} }}
  patient: {{ http: {{ url: "http://127.0.0.1:{port}/slow", expect: {{ max_latency: 30s }} }} }}
"#
    ));
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    let detail = assert_failing(&o, "slow");
    assert!(
        detail.starts_with("took ") && detail.ends_with("ms, limit 300ms"),
        "{detail}"
    );
    assert!(o["slow"]["data"]["latency_ms"].as_u64().unwrap() >= 300, "{o:#?}");
    assert_eq!(o["slow"]["data"]["status"], 200);
    assert!(assert_ok(&o, "patient").starts_with("200 OK in "), "{o:#?}");
}

#[test]
fn http_redirects_are_followed_unless_follow_redirects_is_false() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  followed:     {{ http: {{ url: "http://127.0.0.1:{port}/moved", expect: {{ body_contains: "all good" }} }} }}
  not-followed: {{ http: {{ url: "http://127.0.0.1:{port}/moved", follow_redirects: false }} }}
  sees-302:     {{ http: {{ url: "http://127.0.0.1:{port}/moved", follow_redirects: false, expect: {{ status: 302, headers: {{ Location: /ok }} }} }} }}
"#
    ));
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    assert_ok(&o, "followed");
    assert_eq!(o["followed"]["data"]["status"], 200);
    assert_eq!(assert_failing(&o, "not-followed"), "status 302, expected 200-299");
    assert!(assert_ok(&o, "sees-302").starts_with("302 Found"), "{o:#?}");
}

#[test]
fn http_connection_refused_is_failing_with_a_readable_cause() {
    let port = closed_port();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  down: {{ http: {{ url: "http://127.0.0.1:{port}/health" }} }}
"#
    ));
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    let detail = assert_failing(&o, "down");
    assert!(
        detail.starts_with(&format!("GET http://127.0.0.1:{port}/health: ")),
        "{detail}"
    );
    assert!(detail.to_lowercase().contains("connection refused"), "{detail}");
    // No answer at all: the data says so, apart from a timeout or a wrong answer.
    assert_eq!(o["down"]["data"], serde_json::json!({ "error": "unreachable" }));

    let out = env.run(&["check"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("FAILING"), "{}", out.stdout);
    assert!(out.stdout.contains("1 of 1 check(s) failing"), "{}", out.stdout);
}

#[test]
fn http_a_server_that_never_answers_times_out_and_check_returns_promptly() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  silent: {{ http: {{ url: "http://127.0.0.1:{port}/hang" }}, timeout: 1s }}
"#
    ));
    let start = Instant::now();
    let (code, o) = check(&env, &[]);
    let took = start.elapsed();
    assert_eq!(code, 1);
    assert_eq!(assert_failing(&o, "silent"), "timed out after 1s");
    assert_eq!(o["silent"]["data"]["error"], "timeout", "{o:#?}");
    assert!(
        took < Duration::from_secs(8),
        "`runbook check` took {took:?} with a 1s timeout"
    );
}

#[test]
fn http_an_endless_body_is_read_up_to_1_mib_then_judged() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  endless:       {{ http: {{ url: "http://127.0.0.1:{port}/endless", expect: {{ body_contains: "xxxx" }} }}, timeout: 20s }}
  endless-wrong: {{ http: {{ url: "http://127.0.0.1:{port}/endless", expect: {{ body_contains: "done" }} }}, timeout: 20s }}
"#
    ));
    let start = Instant::now();
    let (code, o) = check(&env, &[]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{o:#?}");
    assert!(
        took < Duration::from_secs(15),
        "an endless body must not be read to the timeout: {took:?}"
    );
    assert!(assert_ok(&o, "endless").starts_with("200 OK in "), "{o:#?}");
    assert_eq!(o["endless"]["data"]["body_bytes"], 1 << 20);
    assert_eq!(o["endless"]["data"]["body_truncated"], true);
    assert_eq!(assert_failing(&o, "endless-wrong"), r#"body does not contain "done""#);
    assert_eq!(o["endless-wrong"]["data"]["body_bytes"], 1 << 20);
}

// ---------------------------------------------------------------------------------------------
// tcp
// ---------------------------------------------------------------------------------------------

#[test]
fn tcp_an_open_port_is_ok_and_a_closed_port_is_failing() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = closed_port();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  open:   {{ tcp: {{ address: "127.0.0.1:{open}" }} }}
  closed: {{ tcp: {{ address: "127.0.0.1:{closed}" }} }}
"#
    ));
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    let detail = assert_ok(&o, "open");
    assert!(
        detail.starts_with(&format!("connected to 127.0.0.1:{open} in ")),
        "{detail}"
    );
    assert_eq!(o["open"]["kind"], "tcp");
    assert!(o["open"]["data"]["connect_ms"].is_u64(), "{o:#?}");
    let detail = assert_failing(&o, "closed");
    // Nothing answered, which is not a timeout nor a wrong answer: the data says which.
    assert_eq!(o["closed"]["data"]["error"], "unreachable", "{o:#?}");
    assert!(o["open"]["data"].get("error").is_none(), "{o:#?}");
    assert!(
        detail.starts_with(&format!("cannot connect to 127.0.0.1:{closed}: ")),
        "{detail}"
    );
    assert!(detail.to_lowercase().contains("connection refused"), "{detail}");
    drop(listener);
}

// ---------------------------------------------------------------------------------------------
// cert
// ---------------------------------------------------------------------------------------------

#[test]
fn cert_days_left_of_a_served_certificate_are_judged_against_min_days() {
    if Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        cannot_run("`openssl` is not available for the cert probe test");
        return;
    }
    let env = Env::new("version: 1\n");
    let dir = env.dir.path();
    sh(
        dir,
        &[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "3",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
    );
    let port = closed_port();
    let server = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", "cert.pem", "-key", "key.pem", "-www"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let mut server = KillOnDrop(server);
    assert!(
        wait_for(Duration::from_secs(15), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() || server.0.try_wait().ok().flatten().is_some()
        }),
        "openssl s_server did not start accepting on {port}"
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "openssl s_server exited early (port {port} taken?)"
    );
    std::fs::write(
        &env.config,
        format!(
            r#"state: {{ url: "sqlite://state/runbook.db" }}
version: 1
checks:
  tls-14: {{ cert: {{ host: "127.0.0.1:{port}", min_days: 14 }} }}
  tls-1:  {{ cert: {{ host: "127.0.0.1:{port}", min_days: 1 }} }}
"#
        ),
    )
    .unwrap();
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1, "{o:#?}");
    let detail = assert_failing(&o, "tls-14");
    assert!(
        detail.starts_with(&format!("certificate of 127.0.0.1:{port} expires in ")),
        "{detail}"
    );
    assert!(
        detail.contains("expires in 2 day(s)") || detail.contains("expires in 3 day(s)"),
        "{detail}"
    );
    assert!(detail.ends_with("need 14"), "{detail}");
    let days = o["tls-14"]["data"]["days_left"].as_i64().unwrap();
    assert!((2..=3).contains(&days), "{o:#?}");
    assert!(o["tls-14"]["data"]["not_after"].is_string(), "{o:#?}");
    assert_eq!(o["tls-14"]["kind"], "cert");
    assert!(assert_ok(&o, "tls-1").ends_with("need 1"), "{o:#?}");
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// command
// ---------------------------------------------------------------------------------------------

#[test]
fn command_exit_code_and_stdout_expectations_pass_and_fail() {
    let env = Env::new(
        r#"
version: 1
checks:
  plain:           { command: { run: [sh, -c, "echo; echo ready"] } }
  exit-3-wanted:   { command: { sh: "exit 3", expect: { exit: 3 } } }
  exit-3-unwanted: { command: { sh: "echo oops; exit 3" } }
  contains:        { command: { sh: "echo 'schema version 42'", expect: { stdout_contains: "version 42" } } }
  not-contains:    { command: { sh: "echo 'schema version 41'", expect: { stdout_contains: "version 42" } } }
  regex:           { command: { run: "echo migrated-0042", expect: { stdout_regex: '^migrated-\d{4}\s' } } }
  not-regex:       { command: { run: "echo pending", expect: { stdout_regex: '^migrated-\d{4}\s' } } }
  env-and-cwd:     { command: { sh: 'test "$(pwd)" = "{dir}/sub" && echo "$GREETING"', cwd: sub, env: { GREETING: hello }, expect: { stdout_contains: hello } } }
  slow:            { command: { sh: "sleep 30; touch slow.done" }, timeout: 1s }
"#,
    );
    std::fs::create_dir(env.path("sub")).unwrap();
    let (code, o) = check(&env, &[]);
    assert!(
        !env.path("slow.done").exists(),
        "a 1s command timeout must bound the run: the check waited for the slow command to finish"
    );
    assert_eq!(code, 1);
    assert_eq!(assert_ok(&o, "plain"), "exit 0: ready", "the first non-empty line");
    assert_eq!(o["plain"]["data"]["exit_code"], 0);
    assert_ok(&o, "exit-3-wanted");
    assert_eq!(o["exit-3-wanted"]["data"]["exit_code"], 3);
    let detail = assert_failing(&o, "exit-3-unwanted");
    assert!(detail.contains("expected exit 0"), "{detail}");
    assert!(detail.contains('3'), "{detail}");
    assert_ok(&o, "contains");
    assert_eq!(
        assert_failing(&o, "not-contains"),
        r#"stdout does not contain "version 42": schema version 41"#
    );
    assert_ok(&o, "regex");
    assert_eq!(
        assert_failing(&o, "not-regex"),
        r"stdout does not match /^migrated-\d{4}\s/: pending"
    );
    assert_eq!(assert_ok(&o, "env-and-cwd"), "exit 0: hello");
    let detail = assert_failing(&o, "slow");
    assert!(detail.contains("timed out"), "{detail}");
}

#[test]
fn command_stdout_regex_anchors_match_a_line_of_output() {
    let env = Env::new(
        r#"
version: 1
checks:
  anchored: { command: { run: "echo migrated-0042", expect: { stdout_regex: '^migrated-\d{4}$' } } }
"#,
    );
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 0, "{o:#?}");
    assert_ok(&o, "anchored");
}

#[test]
fn command_ok_detail_names_the_real_exit_code() {
    let env = Env::new(
        r#"
version: 1
checks:
  exit-3-wanted: { command: { sh: "echo hi; exit 3", expect: { exit: 3 } } }
"#,
    );
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 0);
    assert_eq!(assert_ok(&o, "exit-3-wanted"), "exit 3: hi");
}

// ---------------------------------------------------------------------------------------------
// disk
// ---------------------------------------------------------------------------------------------

#[test]
fn disk_free_space_is_judged_against_min_free() {
    let env = Env::new(
        r#"
version: 1
checks:
  roomy:    { disk: { path: ".", min_free: 1% } }
  full:     { disk: { path: ".", min_free: 100% } }
  absolute: { disk: { path: "{dir}", min_free: 1K } }
  nowhere:  { disk: { path: "does/not/exist", min_free: 1% } }
"#,
    );
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    let detail = assert_ok(&o, "roomy");
    assert!(detail.contains("% free"), "{detail}");
    assert!(detail.ends_with("need 1%"), "{detail}");
    let data = &o["roomy"]["data"];
    let free = data["free_bytes"].as_u64().expect("free_bytes");
    let total = data["total_bytes"].as_u64().expect("total_bytes");
    assert!(free > 0 && free <= total, "{data}");
    assert_eq!(o["roomy"]["kind"], "disk");
    assert!(assert_failing(&o, "full").ends_with("need 100%"), "{o:#?}");
    assert_ok(&o, "absolute");
    let detail = assert_failing(&o, "nowhere");
    assert!(detail.starts_with("cannot stat filesystem of "), "{detail}");
    assert!(detail.contains("does/not/exist"), "{detail}");
}

// ---------------------------------------------------------------------------------------------
// file_age
// ---------------------------------------------------------------------------------------------

fn set_age(path: &Path, age: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn file_age_judges_the_newest_matching_file() {
    let env = Env::new(
        r#"
version: 1
checks:
  backup-fresh: { file_age: { path: "backups/app-*.tar", max_age: 26h } }
  exact-file:   { file_age: { path: "{dir}/backups/app-1.tar", max_age: 26h } }
  no-match:     { file_age: { path: "backups/db-*.tar", max_age: 26h } }
"#,
    );
    let old = env.write("backups/app-1.tar", "old");
    let new = env.write("backups/app-2.tar", "new");
    env.write("backups/other-3.tar", "not matched");
    set_age(&old, Duration::from_secs(3 * 86_400));

    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    let detail = assert_ok(&o, "backup-fresh");
    assert!(detail.contains("app-2.tar"), "the newest file is named: {detail}");
    assert_eq!(o["backup-fresh"]["kind"], "file_age");
    assert_eq!(o["backup-fresh"]["data"]["file"], new.display().to_string());
    let detail = assert_failing(&o, "exact-file");
    assert!(
        detail.contains("app-1.tar") && detail.ends_with("(limit 1d2h)"),
        "{detail}"
    );
    let detail = assert_failing(&o, "no-match");
    assert!(detail.starts_with("no file matches "), "{detail}");
    assert!(detail.contains("db-*.tar"), "{detail}");

    set_age(&new, Duration::from_secs(2 * 86_400));
    let (code, o) = check(&env, &["backup-fresh"]);
    assert_eq!(code, 1);
    let detail = assert_failing(&o, "backup-fresh");
    assert!(detail.starts_with("newest is "), "{detail}");
    assert!(detail.contains("app-2.tar"), "{detail}");
    assert!(detail.ends_with("(limit 1d2h)"), "{detail}");
    let age = o["backup-fresh"]["data"]["age_seconds"].as_u64().unwrap();
    assert!(age >= 2 * 86_400 - 60, "{age}");
}

// ---------------------------------------------------------------------------------------------
// git_ref
// ---------------------------------------------------------------------------------------------

fn git(dir: &Path, args: &[&str]) -> String {
    let mut argv = vec![
        "git",
        "-c",
        "user.name=Runbook Test",
        "-c",
        "user.email=test@example.invalid",
        "-c",
        "commit.gpgsign=false",
        "-c",
        "tag.gpgsign=false",
    ];
    argv.extend_from_slice(args);
    sh(dir, &argv)
}

#[test]
fn git_ref_matches_sha_ref_and_tag_pattern_and_optionally_a_clean_tree() {
    let env = Env::new(
        r#"
version: 1
checks:
  full-sha:    { git_ref: { repo: app, expect: "{sha}" } }
  short-sha:   { git_ref: { repo: app, expect: "{short}" } }
  wrong-sha:   { git_ref: { repo: app, expect: "0000000" } }
  deploy-tag:  { git_ref: { repo: app, expect: "deploy-*" } }
  tag-ref:     { git_ref: { repo: app, expect: "refs/tags/deploy-*" } }
  release-tag: { git_ref: { repo: app, expect: "release-*" } }
  branch:      { git_ref: { repo: app, expect: main } }
  no-such-ref: { git_ref: { repo: app, expect: v9.9 } }
  clean:       { git_ref: { repo: app, expect: main, clean: true } }
  not-a-repo:  { git_ref: { repo: empty, expect: main } }
"#,
    );
    let repo = env.path("app");
    std::fs::create_dir(&repo).unwrap();
    std::fs::create_dir(env.path("empty")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("app.txt"), "v1\n").unwrap();
    git(&repo, &["add", "app.txt"]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["tag", "deploy-2026-11-23"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    fill(&env, "sha", &sha);
    fill(&env, "short", &sha[..7]);

    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    assert_eq!(assert_ok(&o, "full-sha"), format!("HEAD is {}", &sha[..12]));
    assert_eq!(o["full-sha"]["data"]["head"], sha.as_str());
    assert_eq!(o["full-sha"]["kind"], "git_ref");
    assert_ok(&o, "short-sha");
    assert_eq!(
        assert_failing(&o, "wrong-sha"),
        format!("HEAD is {}, expected 0000000", &sha[..12])
    );
    assert_eq!(
        assert_ok(&o, "deploy-tag"),
        format!("HEAD {} is tagged deploy-2026-11-23", &sha[..12])
    );
    assert_ok(&o, "tag-ref");
    assert_eq!(
        assert_failing(&o, "release-tag"),
        format!("no tag matching release-* points at HEAD {}", &sha[..12])
    );
    assert_eq!(assert_ok(&o, "branch"), format!("HEAD {} is main", &sha[..12]));
    let detail = assert_failing(&o, "no-such-ref");
    assert!(detail.starts_with("v9.9 does not exist in "), "{detail}");
    assert_ok(&o, "clean");
    assert_eq!(o["clean"]["data"]["changed_files"], 0);
    let detail = assert_failing(&o, "not-a-repo");
    assert!(detail.contains("is not a git checkout with a commit"), "{detail}");

    // Untracked files do not make the tree dirty; a modified tracked file does.
    std::fs::write(repo.join("scratch.txt"), "untracked\n").unwrap();
    let (code, o) = check(&env, &["clean"]);
    assert_eq!(code, 0, "{o:#?}");
    std::fs::write(repo.join("app.txt"), "v1 patched live\n").unwrap();
    let (code, o) = check(&env, &["clean", "branch"]);
    assert_eq!(code, 1);
    assert_eq!(
        assert_failing(&o, "clean"),
        format!("HEAD {} is main; working tree has 1 changed file(s)", &sha[..12])
    );
    assert_eq!(o["clean"]["data"]["changed_files"], 1);
    assert_ok(&o, "branch");

    // A new commit moves HEAD off the deploy tag.
    git(&repo, &["commit", "-q", "-am", "second"]);
    let (code, o) = check(&env, &["deploy-tag", "full-sha", "branch"]);
    assert_eq!(code, 1);
    assert_failing(&o, "deploy-tag");
    assert_failing(&o, "full-sha");
    assert_ok(&o, "branch");
}

// ---------------------------------------------------------------------------------------------
// sql
// ---------------------------------------------------------------------------------------------

#[test]
fn sql_a_scalar_from_a_sqlite_file_is_judged_and_the_file_is_only_read() {
    let env = Env::new(
        r#"
version: 1
checks:
  none-running:  { sql: { url: "sqlite://app.db", query: "SELECT count(*) FROM jobs WHERE status = 'running'", expect: { equals: 0 } } }
  few-running:   { sql: { url: "sqlite://{dir}/app.db", query: "SELECT count(*) FROM jobs WHERE status = 'running'", expect: { max: 1 } } }
  enough-jobs:   { sql: { url: "sqlite:app.db", query: "SELECT count(*) FROM jobs", expect: { min: 3 } } }
  last-status:   { sql: { url: "sqlite://app.db", query: "SELECT status FROM jobs ORDER BY id DESC LIMIT 1", expect: { equals: done } } }
  bad-query:     { sql: { url: "sqlite://app.db", query: "SELECT nope FROM jobs", expect: { equals: 0 } } }
  tries-writing: { sql: { url: "sqlite://app.db", query: "DELETE FROM jobs RETURNING 1", expect: { equals: 1 } } }
"#,
    );
    let db = rusqlite::Connection::open(env.path("app.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL);
         INSERT INTO jobs (status) VALUES ('running'), ('done');",
    )
    .unwrap();
    drop(db);

    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1);
    assert_eq!(assert_failing(&o, "none-running"), "query returned 1, expected 0");
    assert_eq!(o["none-running"]["data"]["value"], 1);
    assert_eq!(o["none-running"]["kind"], "sql");
    assert_eq!(assert_ok(&o, "few-running"), "query returned 1");
    assert_eq!(
        assert_failing(&o, "enough-jobs"),
        "query returned 2, expected at least 3"
    );
    assert_eq!(assert_ok(&o, "last-status"), r#"query returned "done""#);
    assert!(assert_failing(&o, "bad-query").starts_with("query failed: "), "{o:#?}");
    assert!(
        assert_failing(&o, "tries-writing").starts_with("query failed: "),
        "{o:#?}"
    );
    let db = rusqlite::Connection::open(env.path("app.db")).unwrap();
    let rows: i64 = db.query_row("SELECT count(*) FROM jobs", (), |r| r.get(0)).unwrap();
    assert_eq!(rows, 2, "the sql probe opens the database read-only");
}

#[test]
fn sql_an_unsupported_database_url_is_a_config_error() {
    let env = Env::new(
        r#"
version: 1
checks:
  pg: { sql: { url: "mysql://app@localhost/app", query: "SELECT 1", expect: { equals: 1 } } }
"#,
    );
    let out = env.run(&["check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("sql.url `mysql://app@localhost/app` must be sqlite:///path or postgres://"),
        "{}",
        out.stderr
    );
    let (line, col) = pos_of(&env, "\"mysql://");
    assert!(
        out.stderr.contains(&format!("{}:{line}:{col}", env.config.display())),
        "{}",
        out.stderr
    );
    assert!(!env.state_db().exists(), "nothing is written on a bad config");
}

#[test]
fn sql_a_url_without_a_path_is_a_config_error() {
    let env = Env::new(
        r#"
version: 1
checks:
  jobs: { sql: { url: "sqlite:", query: "SELECT 1", expect: { equals: 1 } } }
"#,
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no path"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------------

#[test]
fn systemd_unit_state_is_read_with_systemctl_show() {
    let env = Env::new(
        r#"
version: 1
checks:
  api:         { systemd: { unit: app-api.service } }
  api-active:  { systemd: { unit: app-api.service, expect: active } }
  api-running: { systemd: { unit: app-api.service, expect: active/running } }
  api-exited:  { systemd: { unit: app-api.service, expect: active/exited } }
  api-failed:  { systemd: { unit: app-api.service, expect: failed } }
  ghost:       { systemd: { unit: ghost.service } }
"#,
    );
    let bin = env.path("fake-bin");
    std::fs::create_dir(&bin).unwrap();
    let script = bin.join("systemctl");
    std::fs::write(
        &script,
        r#"#!/bin/sh
# A stand-in for `systemctl show UNIT --property=…`: one known unit, the rest not found.
[ "$1" = show ] || { echo "unexpected: $*" >&2; exit 64; }
case "$2" in
  app-api.service) printf 'LoadState=loaded\nActiveState=active\nSubState=running\n' ;;
  *) printf 'LoadState=not-found\nActiveState=inactive\nSubState=dead\n' ;;
esac
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = env.cmd().env("PATH", &path).args(["check", "--json"]).output().unwrap();
    let code = out.status.code().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let o: BTreeMap<String, Value> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["check"].as_str().unwrap().to_string(), x.clone()))
        .collect();
    assert_eq!(code, 1);
    assert_eq!(assert_ok(&o, "api"), "app-api.service is active/running");
    assert_eq!(o["api"]["kind"], "systemd");
    assert_eq!(
        o["api"]["data"],
        json!({ "load_state": "loaded", "active_state": "active", "sub_state": "running" })
    );
    assert_ok(&o, "api-active");
    assert_ok(&o, "api-running");
    assert_eq!(
        assert_failing(&o, "api-exited"),
        "app-api.service is active/running, expected active/exited"
    );
    assert_eq!(
        assert_failing(&o, "api-failed"),
        "app-api.service is active/running, expected failed"
    );
    assert_eq!(assert_failing(&o, "ghost"), "unit ghost.service not found");
}

// ---------------------------------------------------------------------------------------------
// config errors
// ---------------------------------------------------------------------------------------------

/// 1-based (line, column) of the first occurrence of `needle` in the config file as written.
fn pos_of(env: &Env, needle: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    for (i, line) in text.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            return (i + 1, line[..byte].chars().count() + 1);
        }
    }
    panic!("`{needle}` not in config:\n{text}");
}

/// Asserts `config check` (and `check`) reject `yaml` with exit 2 and an error block holding
/// `message`, located on the line of `at` (and its column when `exact_col`), with `hint`.
fn assert_config_error(yaml: &str, message: &str, at: &str, exact_col: bool, hint: Option<&str>) {
    let env = Env::new(yaml);
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    let block = out
        .stderr
        .split("\n\n")
        .find(|b| b.starts_with("error: ") && b.contains(message))
        .unwrap_or_else(|| panic!("no error containing {message:?} in:\n{}", out.stderr));
    let (line, col) = pos_of(&env, at);
    let file = env.config.display().to_string();
    let location = if exact_col {
        format!("--> {file}:{line}:{col}\n")
    } else {
        format!("--> {file}:{line}:")
    };
    assert!(block.contains(&location), "expected {location:?} in:\n{block}");
    if let Some(hint) = hint {
        assert!(
            block.contains(&format!("= hint: {hint}")),
            "expected hint {hint:?} in:\n{block}"
        );
    }
    let out = env.run(&["check"]);
    assert_eq!(out.code, 2, "`check` refuses a bad config too: {out:?}");
    assert!(!env.state_db().exists(), "nothing is written on a bad config");
}

#[test]
fn config_an_unknown_probe_key_is_located_with_a_suggestion() {
    assert_config_error(
        r#"
version: 1
checks:
  web: { http: { url: "http://127.0.0.1:9/", exepct: { status: 200 } } }
"#,
        "unknown key `exepct` in http",
        "exepct",
        true,
        Some("did you mean `expect`?"),
    );
    assert_config_error(
        r#"
version: 1
checks:
  web:
    http:
      url: "http://127.0.0.1:9/"
      expect: { status: 200, body_contain: ok }
"#,
        "unknown key `body_contain`",
        "body_contain",
        true,
        Some("did you mean `body_contains`?"),
    );
    assert_config_error(
        r#"
version: 1
checks:
  web: { htp: { url: "http://127.0.0.1:9/" } }
"#,
        "unknown key `htp`",
        "htp",
        true,
        Some("did you mean `http`?"),
    );
}

#[test]
fn config_two_probes_in_one_check_are_an_error() {
    assert_config_error(
        r#"
version: 1
checks:
  both: { tcp: { address: "127.0.0.1:9" }, disk: { path: /, min_free: 1% } }
"#,
        "check `both` has more than one probe (`disk` too)",
        "{ path: /",
        true,
        Some("split it into two checks"),
    );
}

#[test]
fn config_a_check_without_a_probe_is_an_error_listing_the_kinds() {
    assert_config_error(
        r#"
version: 1
checks:
  nothing: { timeout: 5s }
"#,
        "check `nothing` has no probe",
        "nothing:",
        false,
        Some("add one of: http, tcp, command, systemd, disk, cert, file_age, git_ref, sql"),
    );
}

#[test]
fn config_a_bad_regex_is_an_error_at_the_pattern() {
    assert_config_error(
        r#"
version: 1
checks:
  re: { command: { run: [true], expect: { stdout_regex: "ready(" } } }
"#,
        "stdout_regex: invalid regular expression",
        "\"ready(\"",
        true,
        None,
    );
    assert_config_error(
        r#"
version: 1
checks:
  web: { http: { url: "http://127.0.0.1:9/", expect: { body_regex: "[unclosed" } } }
"#,
        "body_regex: invalid regular expression",
        "\"[unclosed\"",
        true,
        None,
    );
}

#[test]
fn config_bad_values_in_checks_are_errors() {
    assert_config_error(
        r#"
version: 1
checks:
  web: { http: { url: "http://127.0.0.1:9/", expect: { status: "2yy" } } }
"#,
        "`2yy` is not a status (200), a class (2xx) or a range (200-399)",
        "\"2yy\"",
        true,
        None,
    );
    assert_config_error(
        r#"
version: 1
checks:
  web: { http: { url: "http://127.0.0.1:9/", expect: { json: { status: ok } } } }
"#,
        "`status` is not a JSON pointer",
        "status: ok",
        true,
        Some("pointers start with `/`: \"/status\""),
    );
    assert_config_error(
        r#"
version: 1
checks:
  port: { tcp: { address: "127.0.0.1" } }
"#,
        "tcp.address `127.0.0.1` must be host:port",
        "\"127.0.0.1\"",
        true,
        None,
    );
    assert_config_error(
        r#"
version: 1
checks:
  web: { http: { url: "127.0.0.1:9/health" } }
"#,
        "http.url `127.0.0.1:9/health` must start with http:// or https://",
        "\"127.0.0.1:9/health\"",
        true,
        None,
    );
    assert_config_error(
        r#"
version: 1
checks:
  root: { disk: { path: / } }
"#,
        "a disk check needs `min_free` and/or `min_free_inodes`",
        "{ path: /",
        false,
        Some("e.g. min_free: 10%"),
    );
    assert_config_error(
        r#"
version: 1
checks:
  root: { disk: { path: /, min_free: 1% }, severity: urgent }
"#,
        "unknown severity `urgent`",
        "urgent",
        true,
        Some("use info, warning or critical"),
    );
}

#[test]
fn config_depends_on_an_unknown_check_is_an_error_with_a_suggestion() {
    assert_config_error(
        r#"
version: 1
checks:
  web: { tcp: { address: "127.0.0.1:9" } }
  api: { tcp: { address: "127.0.0.1:9" }, depends_on: [wbe] }
"#,
        "check `api` depends on `wbe`, which is not a check",
        "api:",
        false,
        Some("did you mean `web`?"),
    );
    assert_config_error(
        r#"
version: 1
checks:
  web: { tcp: { address: "127.0.0.1:9" }, depends_on: [web] }
"#,
        "check `web` depends on itself",
        "web:",
        false,
        None,
    );
}

#[test]
fn config_a_dependency_cycle_is_an_error_naming_the_circle() {
    assert_config_error(
        r#"
version: 1
checks:
  a: { tcp: { address: "127.0.0.1:9" }, depends_on: [b] }
  b: { tcp: { address: "127.0.0.1:9" }, depends_on: [c] }
  c: { tcp: { address: "127.0.0.1:9" }, depends_on: [a] }
"#,
        "checks depend on each other in a circle: a → b → c → a",
        "  a:",
        false,
        None,
    );
}

#[test]
fn config_a_profile_task_naming_an_undefined_check_suggests_a_close_name() {
    assert_config_error(
        r#"
version: 1
checks:
  disk-root: { disk: { path: /, min_free: 1% } }
profiles:
  hourly: { cron: "@hourly", tasks: [disk-rot] }
"#,
        "task `disk-rot` refers to a check, but no check named `disk-rot` is defined",
        "disk-rot",
        true,
        Some("did you mean `disk-root`?"),
    );
    assert_config_error(
        r#"
version: 1
checks:
  disk-root: { disk: { path: /, min_free: 1% } }
profiles:
  hourly: { cron: "@hourly", tasks: [{ check: dsk-root, name: disk }] }
"#,
        "task `dsk-root` refers to a check, but no check named `dsk-root` is defined",
        "{ check: dsk-root",
        true,
        Some("did you mean `disk-root`?"),
    );
}

// ---------------------------------------------------------------------------------------------
// `runbook check`: exit codes, JSON, recording
// ---------------------------------------------------------------------------------------------

#[test]
fn check_exits_0_when_all_ok_1_when_any_fails_and_2_for_an_unknown_name() {
    let closed = closed_port();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  disk-root: {{ disk: {{ path: ".", min_free: 1% }} }}
  echo-ok:   {{ command: {{ run: "echo fine" }} }}
  port-down: {{ tcp: {{ address: "127.0.0.1:{closed}" }} }}
"#
    ));
    let out = env.run(&["check", "disk-root", "echo-ok"]);
    assert_eq!(out.code, 0, "{out:?}");
    let header: Vec<&str> = out.stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["CHECK", "KIND", "STATUS", "LATENCY", "DETAIL"]);
    assert!(out.stdout.contains("exit 0: fine"), "{}", out.stdout);
    assert!(!out.stdout.contains("failing"), "{}", out.stdout);

    let out = env.run(&["check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("1 of 3 check(s) failing"), "{}", out.stdout);
    let row = out.stdout.lines().find(|l| l.contains("port-down")).unwrap();
    assert!(row.contains("tcp") && row.contains("FAILING"), "{row}");

    let out = env.run(&["check", "disk-rot"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no check named `disk-rot`"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `disk-root`?"), "{}", out.stderr);

    let out = env.run(&["check", "echo-ok", "zzzzzzzz"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("checks: disk-root, echo-ok, port-down"),
        "without a close name the hint lists the checks: {}",
        out.stderr
    );
    assert_eq!(
        env.count("SELECT count(*) FROM check_results WHERE check_name = 'echo-ok'"),
        2,
        "an unknown name probes nothing"
    );
}

#[test]
fn check_with_no_checks_configured_is_a_usage_error() {
    let env = Env::new("version: 1\n");
    let out = env.run(&["check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no checks are configured"), "{}", out.stderr);
}

#[test]
fn check_json_lists_outcomes_in_the_order_asked_and_records_them() {
    let closed = closed_port();
    let env = Env::new(&format!(
        r#"
version: 1
host: test-host
checks:
  disk-root: {{ disk: {{ path: ".", min_free: 1% }} }}
  echo-ok:   {{ command: {{ run: "echo fine" }} }}
  port-down: {{ tcp: {{ address: "127.0.0.1:{closed}" }} }}
"#
    ));
    let (code, v) = env.json(&["check", "port-down", "disk-root"]);
    assert_eq!(code, 1, "{v}");
    let list = v.as_array().expect("an array");
    let names: Vec<&str> = list.iter().map(|o| o["check"].as_str().unwrap()).collect();
    assert_eq!(names, ["port-down", "disk-root"]);
    for o in list {
        let mut keys: Vec<&str> = o.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["at", "check", "data", "detail", "kind", "latency_ms", "ok"],
            "{o:#}"
        );
        assert!(o["ok"].is_boolean() && o["latency_ms"].is_u64(), "{o:#}");
        assert!(o["detail"].is_string() && o["at"].is_string(), "{o:#}");
    }
    assert_eq!(list[0]["kind"], "tcp");
    assert_eq!(list[0]["ok"], false);
    assert_eq!(list[1]["kind"], "disk");
    assert_eq!(list[1]["ok"], true);

    let (code, all) = env.json(&["check"]);
    assert_eq!(code, 1);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["check"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["disk-root", "echo-ok", "port-down"], "all checks, by name");

    assert_eq!(env.count("SELECT count(*) FROM check_results"), 5);
    assert_eq!(
        env.count("SELECT count(*) FROM check_results WHERE run_id IS NOT NULL"),
        0,
        "`runbook check` results belong to no run"
    );
    let db = env.db();
    let (kind, ok, detail, data, at, host, latency): (String, bool, String, String, String, String, i64) = db
        .query_row(
            "SELECT kind, ok, detail, data, at, host, latency_ms FROM check_results \
             WHERE check_name = 'port-down' ORDER BY id LIMIT 1",
            (),
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(kind, "tcp");
    assert!(!ok);
    assert_eq!(detail, list[0]["detail"].as_str().unwrap());
    assert_eq!(at, list[0]["at"].as_str().unwrap());
    assert_eq!(latency, list[0]["latency_ms"].as_i64().unwrap());
    assert_eq!(host, "test-host");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap(), list[0]["data"]);
    let data: String = db
        .query_row(
            "SELECT data FROM check_results WHERE check_name = 'disk-root' ORDER BY id LIMIT 1",
            (),
            |r| r.get(0),
        )
        .unwrap();
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data, list[1]["data"]);
    assert!(data["free_bytes"].is_u64(), "{data}");
}

#[test]
fn checks_are_probed_concurrently() {
    let port = http_server();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  s1: {{ http: {{ url: "http://127.0.0.1:{port}/hang" }}, timeout: 2s }}
  s2: {{ http: {{ url: "http://127.0.0.1:{port}/hang" }}, timeout: 2s }}
  s3: {{ http: {{ url: "http://127.0.0.1:{port}/hang" }}, timeout: 2s }}
  s4: {{ command: {{ run: [sleep, "10"] }}, timeout: 2s }}
  s5: {{ command: {{ run: [sleep, "10"] }}, timeout: 2s }}
"#
    ));
    let start = Instant::now();
    let (code, o) = check(&env, &[]);
    let took = start.elapsed();
    assert_eq!(code, 1);
    for name in ["s1", "s2", "s3", "s4", "s5"] {
        assert_failing(&o, name);
    }
    // Five 2s timeouts one after the other would take 10s.
    assert!(took < Duration::from_secs(9), "checks ran one by one: {took:?}");
}

// ---------------------------------------------------------------------------------------------
// checks as profile tasks
// ---------------------------------------------------------------------------------------------

#[test]
fn a_check_task_passes_or_fails_its_profile_run_and_records_its_detail() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = closed_port();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  port-open:   {{ tcp: {{ address: "127.0.0.1:{open}" }} }}
  port-closed: {{ tcp: {{ address: "127.0.0.1:{closed}" }}, timeout: 5s }}
profiles:
  good: {{ cron: "@hourly", tasks: [port-open] }}
  bad:
    cron: "@hourly"
    tasks:
      - {{ check: port-closed, name: closed-port }}
      - {{ sh: "echo after", name: after }}
"#
    ));

    let (code, report) = env.json(&["run", "good"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["status"], "ok");
    let task = &report["tasks"][0];
    assert_eq!(task["name"], "port-open");
    assert_eq!(task["status"], "ok");
    assert!(
        task["output"]
            .as_str()
            .unwrap()
            .starts_with(&format!("connected to 127.0.0.1:{open}")),
        "{task:#}"
    );

    let (code, report) = env.json(&["run", "bad"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["status"], "failed");
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "later tasks still run: {report:#}");
    assert_eq!(tasks[0]["name"], "closed-port");
    assert_eq!(tasks[0]["status"], "failed");
    let detail = tasks[0]["output"].as_str().unwrap().to_string();
    assert!(
        detail.starts_with(&format!("cannot connect to 127.0.0.1:{closed}")),
        "{detail}"
    );
    assert_eq!(tasks[1]["status"], "ok");

    let db = env.db();
    let (id, status, output, command): (i64, String, String, String) = db
        .query_row(
            "SELECT id, status, output, command FROM runs WHERE task = 'closed-port'",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(output, detail, "the task row holds the check's detail");
    assert_eq!(command, format!("check port-closed: tcp connect 127.0.0.1:{closed}"));
    let (check_name, ok, recorded): (String, bool, String) = db
        .query_row(
            "SELECT check_name, ok, detail FROM check_results WHERE run_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(check_name, "port-closed");
    assert!(!ok);
    assert_eq!(recorded, detail);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM check_results WHERE check_name = 'port-open' AND ok = 1 AND run_id IS NOT NULL"
        ),
        1
    );
    drop(listener);
}

#[test]
fn dry_run_of_a_profile_shows_its_check_tasks_without_probing() {
    let closed = closed_port();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  port-closed: {{ tcp: {{ address: "127.0.0.1:{closed}" }}, timeout: 5s }}
  disk-root:   {{ disk: {{ path: ".", min_free: 1% }} }}
profiles:
  p:
    cron: "@hourly"
    tasks:
      - port-closed
      - {{ check: disk-root, name: disk }}
"#
    ));
    let out = env.run(&["run", "p", "--dry-run"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("check port-closed: tcp connect 127.0.0.1:{closed}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("check disk-root: disk "), "{}", out.stdout);
    assert!(!env.state_db().exists(), "a dry run probes and records nothing");

    let (code, plan) = env.json(&["run", "p", "--dry-run"]);
    assert_eq!(code, 0);
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["kind"], "check");
    assert_eq!(steps[0]["name"], "port-closed");
    assert_eq!(steps[0]["timeout"], "5s");
    assert_eq!(steps[1]["kind"], "check");
    assert_eq!(steps[1]["name"], "disk");
    assert_eq!(steps[1]["timeout"], "10s", "the default check timeout");
    assert!(!env.state_db().exists());
}

#[test]
fn sql_reads_a_scalar_from_postgresql_in_a_read_only_transaction() {
    let url = "postgres://postgres@127.0.0.1:5432/test";
    let reachable = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
    if !reachable {
        cannot_run("no PostgreSQL on 127.0.0.1:5432");
        return;
    }
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  answer: {{ sql: {{ url: "{url}", query: "SELECT 41 + 1", expect: {{ equals: 42 }} }} }}
  too-many: {{ sql: {{ url: "{url}", query: "SELECT 7", expect: {{ max: 3 }} }} }}
  writes: {{ sql: {{ url: "{url}", query: "CREATE TABLE runbook_must_not_exist (x int)", expect: {{ equals: 0 }} }} }}
"#
    ));
    let (code, v) = env.json(&["check"]);
    assert_eq!(code, 1, "{v}");
    let by = |n: &str| v.as_array().unwrap().iter().find(|o| o["check"] == n).unwrap().clone();
    assert_eq!(by("answer")["ok"], true, "{v}");
    assert_eq!(by("answer")["data"]["value"], 42);
    assert!(
        by("too-many")["detail"]
            .as_str()
            .unwrap()
            .contains("expected at most 3"),
        "{v}"
    );
    let writes = by("writes");
    assert_eq!(writes["ok"], false);
    assert!(writes["detail"].as_str().unwrap().contains("read-only"), "{writes}");
}

#[test]
fn http_a_target_that_resets_the_connection_fails_with_a_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4).flatten() {
            // Closing with the request still unread makes the kernel answer with a TCP RST.
            std::thread::sleep(Duration::from_millis(100));
            drop(stream);
        }
    });
    let env = Env::new(&format!(
        "version: 1\nchecks:\n  reset: {{ http: {{ url: \"http://127.0.0.1:{port}/\" }}, timeout: 60s }}\n"
    ));
    let (code, v) = env.json(&["check"]);
    assert_eq!(code, 1, "{v}");
    // Failed at the reset, not by waiting out the (long) timeout.
    assert_ne!(v[0]["data"]["error"], "timeout", "{v}");
    let detail = v[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(&format!("GET http://127.0.0.1:{port}/:")),
        "{detail}"
    );
    assert!(detail.to_lowercase().contains("reset"), "the cause is named: {detail}");
}

/// By default every HTTP probe opens a fresh connection, as a user's first request does (a
/// listener that no longer accepts must fail the probe); `reuse_connection: true` keeps it.
#[test]
fn http_probes_connect_afresh_unless_told_to_reuse_the_connection() {
    use std::io::{BufRead, BufReader};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                // Keep-alive: answer every request on this connection.
                loop {
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    const PROBES: usize = 6;
    for reuse in [false, true] {
        accepted.store(0, Ordering::SeqCst);
        let env = Env::new(&format!(
            "version: 1\nchecks:\n  web: {{ http: {{ url: \"http://127.0.0.1:{port}/\", reuse_connection: {reuse} }} }}\n"
        ));
        let config = std::sync::Arc::new(runbook::config::load(&env.config).unwrap());
        let check = config.checks["web"].clone();
        let rt = runbook::util::runtime::runtime();
        for _ in 0..PROBES {
            let o = rt.block_on(runbook::check::probe(&config, "web", &check));
            assert!(o.ok, "{o:?}");
            // A connection of its own is timed phase by phase; a reused one has none to tell.
            let phases = &o.data["phases_ms"];
            if reuse {
                assert!(phases.is_null(), "{o:?}");
            } else {
                for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
                    assert!(phases[phase].as_f64().is_some_and(|ms| ms >= 0.0), "{phase}: {o:?}");
                }
                assert!(phases["connect"].as_f64().unwrap() > 0.0, "{o:?}");
                assert_eq!(phases["tls"], 0.0, "no TLS on plain HTTP: {o:?}");
                assert!(
                    o.detail.contains("connect ") && o.detail.contains("first byte "),
                    "{}",
                    o.detail
                );
            }
        }
        let n = accepted.load(Ordering::SeqCst);
        if reuse {
            // A connection goes back to the pool as its response is dropped, so a probe that
            // starts at that very moment may open another: most are reused, not necessarily all.
            assert!(n < PROBES, "{n} connections for {PROBES} probes reusing them");
        } else {
            assert_eq!(n, PROBES, "one connection per probe");
        }
    }
}

/// An HTTPS probe on a connection of its own: trusted through `ca_file`, refused without it,
/// accepted blind with `tls_verify: false`; the TLS handshake is one of its timed phases.
#[test]
fn https_probes_trust_what_they_are_told_and_time_the_handshake() {
    let env = Env::new("version: 1\n");
    if certificates(env.dir.path()).is_none() {
        cannot_run("`openssl` is not available for the HTTPS probe test");
        return;
    }
    let port = closed_port();
    let server = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args(["-cert", "srv.pem", "-key", "srv.key", "-www", "-quiet"])
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let _server = KillOnDrop(server);
    assert!(wait_for(Duration::from_secs(15), || TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    env.edit_config(
        "version: 1\n",
        &format!(
            r#"version: 1
checks:
  trusted:  {{ http: {{ url: "https://localhost:{port}/", ca_file: ca.pem }} }}
  stranger: {{ http: {{ url: "https://localhost:{port}/" }} }}
  blind:    {{ http: {{ url: "https://localhost:{port}/", tls_verify: false }} }}
"#
        ),
    );
    let (code, o) = check(&env, &[]);
    assert_eq!(code, 1, "{o:#?}");
    let detail = assert_ok(&o, "trusted");
    assert!(detail.contains("tls "), "{detail}");
    let phases = &o["trusted"]["data"]["phases_ms"];
    assert!(phases["tls"].as_f64().unwrap() > 0.0, "{o:#?}");
    assert!(phases["processing"].as_f64().unwrap() > 0.0, "{o:#?}");
    let refused = assert_failing(&o, "stranger");
    assert!(
        refused.contains("TLS handshake") && refused.contains("certificate"),
        "{refused}"
    );
    assert_ok(&o, "blind");
}
