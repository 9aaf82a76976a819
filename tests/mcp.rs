//! `runbook mcp` as an assistant meets it: the SDK's own client over stdio lists the tools,
//! diagnoses, files a change request that a person approves through the CLI, and runs it in a
//! maintenance session; the hostile corpus through every tool; malformed JSON-RPC and a
//! client that vanishes mid-call. Every assertion is on effects: files, the audit chain, the
//! session record, the process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::corpus::{CORPUS, Hostile, SECRET};
use common::*;
use rmcp::model::{CallToolRequestParams, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, RoleClient, RunningService};
use serde_json::{Value, json};

/// An assistant: the SDK's client driving `runbook mcp ARGS` as its child process.
struct Assistant {
    rt: tokio::runtime::Runtime,
    client: Option<RunningService<RoleClient, ClientConfig>>,
}

impl Assistant {
    fn start(env: &Env, args: &[&str], lifecycle: ClientLifecycleMode) -> Assistant {
        Assistant::start_with_path(env, args, lifecycle, None)
    }

    /// As `start`, with `bin` first on the server's PATH.
    fn start_with_path(
        env: &Env,
        args: &[&str],
        lifecycle: ClientLifecycleMode,
        bin: Option<&std::path::Path>,
    ) -> Assistant {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let info: ClientConfig = serde_json::from_value(json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "assistant-test", "version": "9.9" },
        }))
        .unwrap();
        let client = rt.block_on(async {
            let mut cmd = tokio::process::Command::new(BIN);
            cmd.arg("--config").arg(&env.config).arg("mcp").args(args);
            cmd.current_dir(env.dir.path());
            if let Some(bin) = bin {
                cmd.env(
                    "PATH",
                    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()),
                );
            }
            let transport = rmcp::transport::TokioChildProcess::new(cmd).expect("spawn runbook mcp");
            rmcp::service::serve_client_with_lifecycle(info, transport, lifecycle)
                .await
                .expect("MCP handshake")
        });
        Assistant {
            rt,
            client: Some(client),
        }
    }

    fn tools(&self) -> Vec<Value> {
        let client = self.client.as_ref().unwrap();
        let tools = self.rt.block_on(client.list_all_tools()).expect("tools/list");
        tools.iter().map(|t| serde_json::to_value(t).unwrap()).collect()
    }

    /// A tool's result (`structuredContent` with `isError`), or the protocol error's message.
    fn call(&self, name: &str, args: Value) -> Result<Value, String> {
        let client = self.client.as_ref().unwrap();
        let Value::Object(map) = args else {
            panic!("arguments are an object")
        };
        let params = CallToolRequestParams::new(name.to_string()).with_arguments(map);
        match self.rt.block_on(client.call_tool(params)) {
            Ok(r) => {
                let v = serde_json::to_value(&r).unwrap();
                let mut out = v["structuredContent"].clone();
                out["isError"] = json!(v["isError"].as_bool().unwrap_or(false));
                Ok(out)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn ok(&self, name: &str, args: Value) -> Value {
        let v = self.call(name, args).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v["isError"], false, "{name}: {v}");
        v["result"].clone()
    }

    fn stop(mut self) {
        if let Some(c) = self.client.take() {
            let _ = self.rt.block_on(c.cancel());
        }
    }
}

fn session_of_server(env: &Env) -> i64 {
    env.count("SELECT max(id) FROM sessions")
}

fn mcp_calls(env: &Env) -> Vec<Value> {
    let db = env.db();
    let mut stmt = db
        .prepare("SELECT actor, data FROM audit_events WHERE kind = 'mcp.call' ORDER BY seq")
        .unwrap();
    stmt.query_map((), |r| {
        let actor: String = r.get(0)?;
        let data: String = r.get(1)?;
        let mut v: Value = serde_json::from_str(&data).unwrap();
        v["actor"] = json!(actor);
        Ok(v)
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A check that only observes, and one that writes (as the check tool must not run).
const CHECKS: &str = r#"
version: 1
checks:
  roomy: { disk: { path: ".", min_free: 1% } }
  rotate: { command: { run: [touch, "{dir}/rotated"] } }"#;

#[test]
fn an_assistant_diagnoses_asks_and_runs_only_what_a_person_approved() {
    let env = Env::new(CHECKS);
    let target = env.path("fixed");
    let note = env.write("notes.txt", "worker stalled since 02:00\n");

    let a = Assistant::start(
        &env,
        &["--reason", "diagnose the stalled worker"],
        ClientLifecycleMode::Initialize,
    );
    let session = session_of_server(&env);
    let tools = a.tools();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    for t in [
        "status",
        "check",
        "alerts",
        "jobs",
        "job",
        "session_exec",
        "change_request",
        "change_status",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    // Nothing to read logs from, no gate, no backup: not offered.
    for t in ["logs", "gate_run", "backup_list"] {
        assert!(!names.contains(&t), "{t} offered with nothing to work on");
    }
    let hint = |name: &str, key: &str| tools.iter().find(|t| t["name"] == name).unwrap()["annotations"][key].clone();
    assert_eq!(hint("status", "readOnlyHint"), true);
    assert_eq!(hint("session_exec", "destructiveHint"), true);
    assert_eq!(hint("change_request", "readOnlyHint"), false);

    // Read-only diagnosis.
    let status = a.ok("status", json!({}));
    assert_eq!(status["session"]["id"], session);
    assert_eq!(status["session"]["mode"], "diagnostic");
    let checked = a.ok("check", json!({}));
    let probed: Vec<&str> = checked["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["check"].as_str().unwrap())
        .collect();
    assert_eq!(probed, ["roomy"], "only the read-only check is probed");
    let refused = a.call("check", json!({ "names": ["rotate"] })).unwrap();
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(!file_exists(&env.path("rotated")));
    let read = a.ok("session_exec", json!({ "command": ["cat", note.to_str().unwrap()] }));
    assert_eq!(read["decision"], "ran");
    assert!(read["output"].as_str().unwrap().contains("worker stalled"));

    // A state change is refused in diagnosis, then asked for.
    let touch = json!({ "command": ["touch", target.to_str().unwrap()] });
    let denied = a.call("session_exec", touch.clone()).unwrap();
    assert_eq!(denied["isError"], true);
    assert_eq!(denied["outcome"], "refused");
    assert!(
        denied["result"]["hint"]
            .as_str()
            .unwrap()
            .starts_with("file a change_request"),
        "{denied}"
    );
    assert!(!file_exists(&target));
    let asked = a
        .call(
            "change_request",
            json!({ "objective": "mark the fix", "command": ["touch", target.to_str().unwrap()],
                    "impact": "one new empty file", "rollback": "rm it" }),
        )
        .unwrap();
    assert_eq!(asked["outcome"], "pending approval", "{asked}");
    let change = asked["result"]["change"].as_i64().unwrap();
    // The assistant cannot approve its own request by typing the CLI through session_exec.
    let cfg = env.config.to_str().unwrap().to_string();
    let id = change.to_string();
    for program in [BIN, "runbook"] {
        let sneak = a
            .call(
                "session_exec",
                json!({ "command": [program, "--config", cfg, "change", "approve", id] }),
            )
            .unwrap();
        assert_eq!(sneak["outcome"], "refused", "{sneak}");
    }
    assert_eq!(a.ok("change_status", json!({ "id": change }))["status"], "pending");

    // A person approves it through the CLI while the assistant waits on its status.
    let approver = {
        let cmd = env.cmd();
        let id = change.to_string();
        std::thread::spawn(move || {
            let mut cmd = cmd;
            std::thread::sleep(Duration::from_millis(300));
            Out::from(cmd.args(["change", "approve", &id]).output().unwrap())
        })
    };
    let approved = wait_for(Duration::from_secs(20), || {
        a.ok("change_status", json!({ "id": change }))["status"] == "approved"
    });
    let out = approver.join().unwrap();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(approved, "the approval never showed");
    let c = a.ok("change_status", json!({ "id": change }));
    assert_eq!(
        c["requester"], "mcp:assistant-test",
        "the assistant is the requester: {c}"
    );
    let approver = c["approver"].as_str().unwrap_or_default();
    assert!(
        !approver.is_empty() && !approver.starts_with("mcp:"),
        "a person approved it: {c}"
    );
    // Still a diagnostic session: approved or not, nothing changes here.
    assert_eq!(a.call("session_exec", touch.clone()).unwrap()["outcome"], "refused");
    assert!(!file_exists(&target));
    a.stop();

    // A maintenance session runs it once (the 2026-07-28 lifecycle, no initialize).
    let m = Assistant::start(
        &env,
        &["--mode", "maintenance", "--reason", "apply the approved fix"],
        ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    );
    let maintenance = session_of_server(&env);
    assert_ne!(maintenance, session);
    // Another session's request is not this one's to read.
    assert_eq!(
        m.call("change_status", json!({ "id": change })).unwrap()["outcome"],
        "refused"
    );
    let ran = m.ok("session_exec", touch.clone());
    assert_eq!(ran["decision"], "ran", "{ran}");
    assert_eq!(ran["change_id"], change);
    assert!(file_exists(&target));
    std::fs::remove_file(&target).unwrap();
    assert_eq!(
        m.call("session_exec", touch.clone()).unwrap()["outcome"],
        "refused",
        "one use"
    );
    assert!(!file_exists(&target));

    // `session end` stops the server; the assistant's next call finds no server.
    let end = env.run(&["session", "end", "--session", &maintenance.to_string()]);
    assert_eq!(end.code, 0, "{end:?}");
    assert!(
        wait_for(Duration::from_secs(15), || m.call("status", json!({})).is_err()),
        "the server still answers after its session ended"
    );
    m.stop();

    // Every call is in the chain with the client from the handshake; `session show` lists them.
    let calls = mcp_calls(&env);
    assert!(calls.len() > 10, "{calls:#?}");
    assert!(
        calls
            .iter()
            .all(|c| c["client"]["name"] == "assistant-test" && c["actor"] == "mcp:assistant-test")
    );
    assert!(
        calls
            .iter()
            .any(|c| c["tool"] == "change_request" && c["outcome"] == "pending approval")
    );
    assert!(
        calls
            .iter()
            .any(|c| c["tool"] == "session_exec" && c["outcome"] == "refused")
    );
    assert!(calls.iter().any(|c| c["tool"] == "check" && c["outcome"] == "refused"));
    let (code, shown) = env.json(&["session", "show", &session.to_string()]);
    assert_eq!(code, 0);
    let tools_shown: Vec<&str> = shown["assistant_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tool"].as_str().unwrap())
        .collect();
    assert!(
        tools_shown.contains(&"status") && tools_shown.contains(&"change_request"),
        "{tools_shown:?}"
    );
    assert_eq!(shown["assistant_calls"][0]["client"], "assistant-test 9.9");
    let human = env.run(&["session", "show", &session.to_string()]);
    assert!(
        human.stdout.contains("mcp     assistant-test 9.9 change_request"),
        "{}",
        human.stdout
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn a_tool_the_policy_hides_cannot_be_called_by_name() {
    let env = Env::new(
        r#"
version: 1
secrets: { deny_read: [ "{dir}/etc/secret.log" ], env_files: [ "{dir}/app.env" ] }
mcp:
  tools: [status, logs]
  logs: { files: [app.log, etc/secret.log], lines: 2 }
"#,
    );
    env.write("app.env", "API_TOKEN=tok-very-secret-123\n");
    env.write("app.log", "one\ntwo\nthree: token tok-very-secret-123 refused\n");
    env.write("etc/secret.log", "SECRET_LINE\n");
    let sentinel = env.path("made-by-assistant");
    let a = Assistant::start(&env, &["--reason", "policy"], ClientLifecycleMode::Initialize);
    let names: Vec<String> = a
        .tools()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["status", "logs"]);
    for (tool, args) in [
        (
            "session_exec",
            json!({ "command": ["touch", sentinel.to_str().unwrap()] }),
        ),
        (
            "change_request",
            json!({ "objective": "x", "command": ["touch", "y"], "impact": "x", "rollback": "x" }),
        ),
        ("approve", json!({ "id": 1 })),
    ] {
        let e = a.call(tool, args).expect_err("a hidden tool answers as unknown");
        assert!(e.contains("no tool"), "{tool}: {e}");
    }
    assert!(!file_exists(&sentinel));
    assert_eq!(env.count("SELECT count(*) FROM change_requests"), 0);

    // The logs tool reads configured files only, the last lines, never a deny_read one.
    let logs = a.ok("logs", json!({ "file": env.path("app.log").to_str().unwrap() }));
    assert_eq!(logs["lines"].as_array().unwrap().len(), 2);
    let last = logs["lines"][1].as_str().unwrap();
    assert!(
        last.starts_with("three: token ") && !last.contains("tok-very-secret-123"),
        "{logs}"
    );
    let refused = a.call("logs", json!({ "file": "/etc/passwd" })).unwrap();
    assert_eq!(refused["isError"], true);
    let secret = a
        .call("logs", json!({ "file": env.path("etc/secret.log").to_str().unwrap() }))
        .unwrap();
    assert_eq!(secret["isError"], true, "{secret}");
    assert!(
        secret["result"]["refused"]
            .as_str()
            .unwrap()
            .contains("is a secret path"),
        "{secret}"
    );
    assert!(!secret.to_string().contains("SECRET_LINE"));
    a.stop();
    let calls = mcp_calls(&env);
    assert_eq!(
        calls.iter().filter(|c| c["outcome"] == "refused").count(),
        5,
        "{calls:#?}"
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);

    // A misspelt tool in mcp.tools is a configuration error at its line.
    env.edit_config("tools: [status, logs]", "tools: [status, sesion_exec]");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no tool named `sesion_exec`") && out.stderr.contains("did you mean `session_exec`"),
        "{}",
        out.stderr
    );
    let line = std::fs::read_to_string(&env.config)
        .unwrap()
        .lines()
        .position(|l| l.contains("sesion_exec"))
        .unwrap()
        + 1;
    assert!(out.stderr.contains(&format!("runbook.yaml:{line}:")), "{}", out.stderr);
}

/// The corpus through `session_exec`, and each line as every string argument of the other
/// tools: 0 escapes, every call in the audit chain.
#[test]
fn the_hostile_corpus_escapes_through_no_tool() {
    if !sandbox_here("the corpus") {
        return;
    }
    let mut h = Hostile::new(
        "[]",
        "mcp: { logs: { files: [data/sentinel.txt] } }\ngates: { g: { checks: [probe] } }\nchecks: { probe: { tcp: { address: \"127.0.0.1:9\" } } }\nincidents: { severities: { sev2: { meaning: degraded } } }",
    );
    assert_eq!(h.env.run(&["incident", "open", "corpus", "--severity", "sev2"]).code, 0);
    let a = Assistant::start(&h.env, &["--reason", "hostile"], ClientLifecycleMode::Initialize);
    let mut calls = 0;
    let mut escaped = Vec::new();
    let mut note = |h: &Hostile, what: String, answer: &Result<Value, String>| {
        let shown = match answer {
            Ok(v) => v.to_string(),
            Err(e) => e.clone(),
        };
        let effects = h.effects(&shown);
        if !effects.is_empty() {
            escaped.push(format!("{what}: {effects:?}"));
        }
    };
    for line in CORPUS {
        let line = h.fill(line);
        let argv = shlex::split(&line).unwrap();
        let r = a.call("session_exec", json!({ "command": argv }));
        calls += 1;
        note(&h, format!("session_exec {line}"), &r);
        for (tool, args) in [
            ("session_exec", json!({ "command": ["ls"], "cwd": line })),
            ("check", json!({ "names": [line] })),
            ("logs", json!({ "file": line })),
            ("logs", json!({ "unit": line })),
            ("job", json!({ "id": line })),
            ("jobs", json!({ "profile": line, "status": line })),
            ("alerts", json!({ "status": line })),
            ("change_status", json!({ "id": line })),
            ("incident_log", json!({ "incident": line, "text": line })),
            // Names that exist, the hostile line in the argument that is used.
            ("incident_log", json!({ "incident": "corpus", "text": line })),
            ("incident_timeline", json!({ "incident": line })),
            ("backup_list", json!({ "target": line })),
            ("gate_run", json!({ "gate": line, "release": line })),
            ("gate_run", json!({ "gate": "g", "release": line })),
            ("change_status", json!({ "id": 1 })),
            (
                "change_request",
                json!({ "objective": line, "command": argv, "impact": line, "rollback": line }),
            ),
        ] {
            let r = a.call(tool, args);
            calls += 1;
            note(&h, format!("{tool} {line}"), &r);
        }
    }
    a.stop();
    h.host_untouched();
    assert!(escaped.is_empty(), "escaped:\n{}", escaped.join("\n"));
    let env = &h.env;
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'mcp.call'"),
        calls
    );
    // A request filed is only a request: none approved, none run.
    assert_eq!(
        env.count("SELECT count(*) FROM change_requests WHERE status != 'pending'"),
        0
    );
    assert!(state_files_holding(env, SECRET).is_empty());
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

/// JSON-RPC written by hand, as a broken or hostile client would.
struct Raw {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<Value>,
    early: Vec<Value>,
}

impl Raw {
    fn start(env: &Env) -> Raw {
        Raw::start_as(env, "raw")
    }

    /// A client that names itself `name` in its handshake.
    fn start_as(env: &Env, name: &str) -> Raw {
        let mut child = env
            .cmd()
            .args(["mcp", "--reason", "raw"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(serde_json::from_str(&line).unwrap_or(json!({ "unparsable": line })));
            }
        });
        let mut raw = Raw {
            child,
            lines,
            early: Vec::new(),
        };
        let hello = json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": name, "version": "1" } } });
        raw.send(&hello.to_string());
        raw.reply(0);
        raw.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        raw
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn call(&mut self, id: i64, tool: &str, args: Value) {
        let msg = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": tool, "arguments": args } });
        self.send(&msg.to_string());
    }

    /// The answer to request `id`; answers to others that come first are kept for later.
    fn reply(&mut self, id: i64) -> Value {
        loop {
            if let Some(i) = self.early.iter().position(|v| v["id"] == id) {
                return self.early.swap_remove(i);
            }
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no answer to request {id}"));
            self.early.push(v);
        }
    }
}

#[test]
fn malformed_requests_are_protocol_errors_and_a_vanished_client_leaves_a_whole_record() {
    let env = Env::new("version: 1\nsessions: { read_only: [\"sleep *\"] }\n");
    let mut raw = Raw::start(&env);
    raw.send("this is not json");
    raw.send(r#"{"jsonrpc":"2.0","id":"#);
    raw.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/nonexistent"}"#);
    let unknown = raw.reply(1);
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    raw.call(2, "no_such_tool", json!({}));
    assert_eq!(raw.reply(2)["error"]["code"], -32602);
    raw.call(3, "session_exec", json!({ "command": ["echo", "x".repeat(5000)] }));
    let big = raw.reply(3);
    assert_eq!(big["error"]["code"], -32602, "{big}");
    raw.call(4, "session_exec", json!({ "command": "echo not an argv" }));
    assert_eq!(raw.reply(4)["error"]["code"], -32602);
    raw.call(5, "status", json!({ "unexpected": true }));
    assert_eq!(raw.reply(5)["error"]["code"], -32602);
    raw.call(6, "session_exec", json!({ "command": ["echo"], "cwd": "/\u{0}" }));
    assert_eq!(raw.reply(6)["error"]["code"], -32602);
    // Params that are no tools/call at all are the SDK's to refuse: no tool ran, no event.
    raw.send(r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"status","arguments":"x"}}"#);
    raw.send(r#"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{}}"#);
    // A message over the size bound is dropped unread; the server goes on.
    raw.call(7, "status", json!({ "pad": "y".repeat(2 * 1024 * 1024) }));
    raw.call(8, "status", json!({}));
    let alive = raw.reply(8);
    assert_eq!(alive["result"]["isError"], false, "{alive}");

    // The client vanishes in the middle of a command: the command's record is completed and
    // the server exits.
    raw.call(9, "session_exec", json!({ "command": ["sleep", "2"] }));
    assert!(wait_for(Duration::from_secs(10), || {
        env.count("SELECT count(*) FROM session_commands WHERE decision = 'started'") == 1
    }));
    drop(raw.child.stdin.take());
    drop(raw.lines);
    let mut exited = None;
    assert!(wait_for(Duration::from_secs(20), || {
        exited = raw.child.try_wait().unwrap();
        exited.is_some()
    }));
    assert!(exited.unwrap().success(), "{exited:?}");
    let (decision, code): (String, Option<i64>) = env
        .db()
        .query_row(
            "SELECT decision, exit_code FROM session_commands ORDER BY id DESC LIMIT 1",
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((decision.as_str(), code), ("ran", Some(0)));
    // Each call that reached a tool, refused or not, is one event; the chain is whole.
    let calls = mcp_calls(&env);
    let outcomes: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c["tool"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("no_such_tool", "refused"),
            ("session_exec", "refused"),
            ("session_exec", "refused"),
            ("status", "refused"),
            ("session_exec", "refused"),
            ("status", "allowed"),
            ("session_exec", "allowed"),
        ]
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

/// A client that gives up on a call (`notifications/cancelled`, 2025-11-25): its command is
/// stopped then, not at its bound, both records say so, and the server serves on.
#[test]
fn a_cancelled_call_stops_its_command() {
    let env = Env::new("version: 1\nsessions: { read_only: [\"sleep *\"] }\n");
    let mut raw = Raw::start(&env);
    raw.call(2, "session_exec", json!({ "command": ["sleep", "47"] }));
    assert!(wait_for(Duration::from_secs(10), || {
        env.count("SELECT count(*) FROM session_commands WHERE decision = 'started'") == 1
    }));
    raw.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"moved on"}}"#);
    // Well before the 47 s the command would take.
    assert!(
        wait_for(Duration::from_secs(20), || {
            env.count("SELECT count(*) FROM session_commands WHERE decision = 'cancelled'") == 1
        }),
        "the command was not stopped"
    );
    raw.call(3, "status", json!({}));
    let alive = raw.reply(3);
    assert_eq!(alive["result"]["isError"], false, "{alive}");
    let calls = mcp_calls(&env);
    let exec = calls.iter().find(|c| c["tool"] == "session_exec").unwrap();
    assert_eq!(exec["outcome"], "failed", "{exec}");
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn the_server_serves_a_session_a_person_opened_and_never_an_ended_one() {
    let env = Env::new("version: 1\n");
    let (code, v) = env.json(&["session", "start", "--mode", "maintenance", "--reason", "hand over"]);
    assert_eq!(code, 0, "{v}");
    let id = v["session"].as_i64().unwrap();
    let a = Assistant::start(&env, &["--session", &id.to_string()], ClientLifecycleMode::Initialize);
    let status = a.ok("status", json!({}));
    assert_eq!(status["session"]["id"], id);
    assert_eq!(status["session"]["mode"], "maintenance");
    a.stop();
    assert_eq!(env.count("SELECT count(*) FROM sessions"), 1, "no second session");
    assert_eq!(env.run(&["session", "end", "--session", &id.to_string()]).code, 0);
    let ended = env.run(&["mcp", "--session", &id.to_string()]);
    assert_eq!(ended.code, 2, "{ended:?}");
    assert!(ended.stderr.contains("has ended"), "{}", ended.stderr);
    let none = env.run(&["mcp"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("--reason"), "{}", none.stderr);
}

#[test]
fn the_other_tools_answer_from_runbooks_state_and_only_read_only_gates_run() {
    let env = Env::new(
        &(CHECKS.to_string()
            + r#"
gates:
  safe: { checks: [roomy] }
  writes: { checks: [roomy, rotate] }
incidents:
  severities:
    sev2: { meaning: "degraded" }
baseline:
  file:
    marker: { exists: "true" }
backups:
  main: { sources: [ { dir: data } ], dest: archives, level: 1 }
"#),
    );
    env.write("data/jobs.txt", "one job\n");
    let created = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(created.code, 0, "{created:?}");
    assert_eq!(
        env.run(&["incident", "open", "worker-stall", "--severity", "sev2"])
            .code,
        0
    );
    let a = Assistant::start(
        &env,
        &["--reason", "read", "--incident", "worker-stall"],
        ClientLifecycleMode::Initialize,
    );

    let logged = a.ok(
        "incident_log",
        json!({ "incident": "worker-stall", "text": "queue depth 40k since 02:00" }),
    );
    assert_eq!(logged["slug"], "worker-stall", "{logged}");
    let timeline = a.ok("incident_timeline", json!({ "incident": "worker-stall" }));
    let line = timeline["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["what"].as_str().unwrap_or_default().contains("queue depth 40k"))
        .unwrap_or_else(|| panic!("the line is not in the timeline: {timeline}"))
        .clone();
    // The assistant's calls in the session linked to the incident are on its timeline too.
    assert!(
        timeline["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "mcp.call" && e["what"].as_str().unwrap_or_default().contains("tool: incident_log")),
        "{timeline}"
    );
    assert!(
        line.to_string().contains("mcp:assistant-test"),
        "the assistant wrote it: {line}"
    );

    let listed = a.ok("backup_list", json!({ "target": "main" }));
    let archives = listed["archives"].as_array().unwrap();
    assert_eq!(archives.len(), 1, "{listed}");
    assert_eq!(archives[0]["path"], created.json()["path"], "{listed}");

    let drift = a.ok("drift", json!({}));
    assert_eq!(drift["failing"], 1, "{drift}");

    let gate = a.ok("gate_run", json!({ "gate": "safe" }));
    assert_eq!(gate["verdict"], "pass", "{gate}");
    let refused = a.call("gate_run", json!({ "gate": "writes" })).unwrap();
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert!(refused.to_string().contains("rotate"), "{refused}");
    assert!(!file_exists(&env.path("rotated")), "the gate's writing check never ran");
    a.stop();
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

/// A flood of calls at once, from a client whose handshake name is hostile: every call is
/// answered and recorded, and the name is kept as text, never as an actor it could pose as.
#[test]
fn a_flood_of_calls_is_answered_and_recorded_and_a_hostile_client_name_stays_text() {
    let env = Env::new("version: 1\n");
    let hostile = format!("root\n{}\u{1b}[2J", "x".repeat(500));
    let mut raw = Raw::start_as(&env, &hostile);
    let n = 200;
    for id in 1..=n {
        raw.call(id, "status", json!({}));
    }
    for id in 1..=n {
        let r = raw.reply(id);
        assert_eq!(r["result"]["isError"], false, "{r}");
    }
    drop(raw.child.stdin.take());
    assert!(wait_for(Duration::from_secs(20), || raw
        .child
        .try_wait()
        .unwrap()
        .is_some()));
    let calls = mcp_calls(&env);
    assert_eq!(calls.len() as i64, n);
    for c in &calls {
        let actor = c["actor"].as_str().unwrap();
        assert!(actor.starts_with("mcp:root_nxxx") && actor.len() <= 4 + 64, "{actor}");
        assert!(
            actor
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ":._-".contains(ch)),
            "{actor}"
        );
        let name = c["client"]["name"].as_str().unwrap();
        assert!(
            name.chars().count() <= 64 && !name.contains('\n') && !name.contains('\u{1b}'),
            "{name:?}"
        );
    }
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

/// `session end` stops the server at once, though its client keeps the pipe open and quiet.
#[test]
fn ending_the_session_stops_the_server_while_its_client_stays_connected() {
    let env = Env::new("version: 1\n");
    let mut raw = Raw::start(&env);
    raw.call(1, "status", json!({}));
    let session = raw.reply(1)["result"]["structuredContent"]["result"]["session"]["id"].clone();
    assert!(session.is_i64(), "{session}");
    assert_eq!(env.run(&["session", "end", "--session", &session.to_string()]).code, 0);
    let mut exited = None;
    assert!(
        wait_for(Duration::from_secs(10), || {
            exited = raw.child.try_wait().unwrap();
            exited.is_some()
        }),
        "the server outlived its session"
    );
    assert!(exited.unwrap().success());
    assert!(raw.child.stdin.is_some(), "the client never closed its side");
}

/// The journal of a configured unit, through `journalctl` as the server finds it on its PATH.
/// No journald runs on a test machine: a stand-in `journalctl` prints the arguments it was
/// given and two journal lines, one holding a secret.
#[test]
fn logs_reads_a_configured_units_journal_bounded_and_redacted() {
    let env = Env::new(
        r#"
version: 1
secrets: { env_files: [ "{dir}/app.env" ] }
mcp: { logs: { units: [app.service], lines: 5 } }
"#,
    );
    env.write("app.env", "API_TOKEN=tok-very-secret-123\n");
    let bin = env.path("bin");
    let stub = env.write(
        "bin/journalctl",
        "#!/bin/sh\necho \"args: $*\"\necho \"01:00:00 host app[1]: started\"\necho \"01:00:01 host app[1]: token tok-very-secret-123\"\n",
    );
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let a = Assistant::start_with_path(
        &env,
        &["--reason", "journal"],
        ClientLifecycleMode::Initialize,
        Some(&bin),
    );
    let read = a.ok("logs", json!({ "unit": "app.service", "lines": 50 }));
    let lines: Vec<&str> = read["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        lines[0], "args: --no-pager -o short-iso -n 5 -u app.service",
        "at most mcp.logs.lines: {read}"
    );
    assert!(
        lines[2].starts_with("01:00:01 host app[1]: token ") && !lines[2].contains("tok-very-secret-123"),
        "{read}"
    );
    let other = a.call("logs", json!({ "unit": "ssh.service" })).unwrap();
    assert_eq!(other["outcome"], "refused", "{other}");
    let injected = a
        .call("logs", json!({ "unit": "app.service --file=/etc/shadow" }))
        .unwrap();
    assert_eq!(injected["outcome"], "refused", "{injected}");
    a.stop();
}

/// A command probe the policy list lets through (an operator's `sessions.read_only` pattern
/// names a script that in fact writes and reads a secret): through the assistant's `check`
/// and `gate_run` the kernel holds it, so no file is written and the secret stays unread. The
/// same check run by a person is not held: it writes, which shows the probe would.
#[test]
fn a_probe_the_list_lets_through_is_held_by_the_kernel() {
    if !sandbox_here("the kernel's hold") {
        return;
    }
    let env = Env::new(
        r#"
version: 1
secrets: { deny_read: [ "{dir}/secret.key" ] }
sessions: { read_only: [ "{dir}/bin/probe*" ] }
checks:
  sneaky: { command: { run: [ "{dir}/bin/probe" ] } }
gates:
  release: { checks: [sneaky] }
"#,
    );
    env.write("secret.key", "key-material-42\n");
    let probe = env.write(
        "bin/probe",
        &format!(
            "#!/bin/sh\ntouch {dir}/written\ncat {dir}/secret.key\necho probed\n",
            dir = env.dir.path().display()
        ),
    );
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let a = Assistant::start(&env, &["--reason", "diagnose"], ClientLifecycleMode::Initialize);
    let checked = a.ok("check", json!({ "names": ["sneaky"] }));
    assert!(checked.to_string().contains("probed"), "the probe ran: {checked}");
    let gate = a.ok("gate_run", json!({ "gate": "release" }));
    a.stop();
    assert!(!file_exists(&env.path("written")), "a held probe wrote: {checked}");
    for answer in [&checked, &gate] {
        assert!(
            !answer.to_string().contains("key-material-42"),
            "the secret was read: {answer}"
        );
    }
    assert!(
        !env.state_bytes().windows(15).any(|w| w == b"key-material-42"),
        "the secret reached the state"
    );

    let by_hand = env.run(&["check", "sneaky"]);
    assert!(
        file_exists(&env.path("written")),
        "the probe writes when a person runs it: {by_hand:?}"
    );
}

/// A second client, written by others: the Python MCP SDK, once through the initialize
/// handshake (2025-11-25) and once through discovery (2026-07-28). Both list the offered tools,
/// get answers, are refused a state change that then never happens, and leave their calls in
/// the audit chain under the revision they spoke.
#[test]
fn the_python_sdk_speaks_both_revisions() {
    let has_sdk = std::process::Command::new("python3")
        .args(["-c", "import mcp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_sdk {
        cannot_run("the Python MCP SDK is not installed (pip install mcp)");
        return;
    }
    let env = Env::new(CHECKS);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_mcp.py");
    let sentinel = env.path("sentinel");
    for (mode, revision) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let calls = [
            json!({ "tool": "status" }),
            json!({ "tool": "check", "arguments": { "names": ["roomy"] } }),
            json!({ "tool": "session_exec", "arguments": { "command": ["uptime"] } }),
            json!({ "tool": "session_exec", "arguments": { "command": ["touch", sentinel] } }),
            json!({ "tool": "logs", "arguments": { "file": "/etc/shadow" } }),
        ];
        let mut child = std::process::Command::new("python3")
            .arg(&script)
            .args([mode, BIN])
            .arg(&env.config)
            .arg(env.dir.path())
            .args(["--reason", "python client"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        let input: String = calls.iter().map(|c| format!("{c}\n")).collect();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{mode}: {}", String::from_utf8_lossy(&out.stderr));
        let got: Value = serde_json::from_slice(&out.stdout).expect("the client's JSON");
        let tools = got["tools"].as_array().unwrap();
        assert!(
            tools.contains(&json!("session_exec")) && tools.contains(&json!("check")),
            "{mode}: {got}"
        );
        assert!(
            !tools.contains(&json!("logs")),
            "logs is offered only with mcp.logs: {got}"
        );
        let answers = got["calls"].as_array().unwrap();
        assert_eq!(answers[0]["result"]["outcome"], "allowed", "{mode}: {got}");
        assert_eq!(
            answers[1]["result"]["result"]["outcomes"][0]["ok"], true,
            "{mode}: {got}"
        );
        assert_eq!(answers[2]["result"]["result"]["exit_code"], 0, "{mode}: {got}");
        assert_eq!(answers[3]["result"]["outcome"], "refused", "{mode}: {got}");
        assert_eq!(answers[3]["isError"], true, "{mode}: {got}");
        assert!(
            answers[4]["error"].as_str().is_some_and(|e| e.contains("no tool")),
            "{mode}: {got}"
        );
        assert!(!file_exists(&sentinel), "{mode}: a refused command ran");

        let recorded: Vec<Value> = mcp_calls(&env)
            .into_iter()
            .filter(|c| c["protocol"] == revision)
            .collect();
        assert_eq!(
            recorded.len(),
            calls.len(),
            "{mode}: every call in the chain: {recorded:?}"
        );
        for (call, event) in calls.iter().zip(&recorded) {
            assert_eq!(event["tool"], call["tool"], "{event}");
            assert_eq!(event["actor"], "mcp:python-assistant", "{event}");
        }
    }
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}
