//! Guarded sessions through the real binary: a diagnostic session refuses what changes state
//! (and nothing happens), approvals bind to one command in one session and are spent once,
//! the requester cannot approve, approvals arrive over the API, output is redacted.

mod common;

use common::http::{post_json, request};
use common::*;

fn config(env_file: &str) -> String {
    format!(
        r#"
version: 1
secrets:
  env_files: [ {env_file} ]
  deny_read: [ "{{dir}}/etc/*/backend.env" ]
sessions:
  limits: {{ timeout: 20s, memory_max: 1G }}
"#
    )
}

/// A config with an env file holding a secret (written before anything loads the config).
fn env() -> Env {
    let env = Env::new(&config("secrets.env"));
    env.write("secrets.env", "DB_PASSWORD=hunter2-from-env\n");
    env
}

fn start(env: &Env, mode: &str) -> String {
    let (code, v) = env.json(&["session", "start", "--mode", mode, "--reason", "crawl stalled"]);
    assert_eq!(code, 0, "{v}");
    v["session"].to_string()
}

fn exec(env: &Env, session: &str, argv: &[&str]) -> Out {
    let mut args = vec!["session", "exec", "--session", session, "--"];
    args.extend_from_slice(argv);
    env.run(&args)
}

/// The decision on each command of a session, in order (`session show`).
fn decisions(env: &Env, session: &str) -> Vec<String> {
    let (_, shown) = env.json(&["session", "show", session]);
    shown["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["decision"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_diagnostic_session_refuses_every_change_and_nothing_happens() {
    let env = env();
    let s = start(&env, "diagnostic");
    let victim = env.write("victim/keep.txt", "still here\n");
    let marker = env.path("marker");
    env.write("etc/app/backend.env", "API_KEY=do-not-show\n");
    let secret = env.path("etc/app/backend.env");
    let cases: Vec<Vec<String>> = vec![
        vec!["systemctl".into(), "restart".into(), "app-api".into()],
        vec!["rm".into(), "-rf".into(), env.path("victim").display().to_string()],
        vec!["bash".into(), "-c".into(), format!("touch {}", marker.display())],
        vec!["sudo".into(), "-s".into()],
        vec!["cat".into(), secret.display().to_string()],
    ];
    for argv in &cases {
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = exec(&env, &s, &args);
        assert_eq!(out.code, 2, "{argv:?} was not refused: {}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains("refused"), "{argv:?}: {}", out.stderr);
        assert!(!out.stdout.contains("do-not-show"));
    }
    // The refusal says how to ask.
    let out = exec(&env, &s, &["systemctl", "restart", "app-api"]);
    assert!(
        out.stderr.contains("runbook change request --session"),
        "{}",
        out.stderr
    );
    // Nothing happened.
    assert!(victim.exists());
    assert!(!marker.exists());
    // Each one is recorded, in order, and audited.
    assert_eq!(decisions(&env, &s), vec!["refused"; 6]);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'session.refused'"),
        6
    );

    // Read-only diagnosis runs.
    let out = exec(&env, &s, &["df", "-h"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Filesystem"), "{}", out.stdout);
    let out = exec(&env, &s, &["ls", "/nonexistent-dir"]);
    assert_eq!(out.code, 2, "the command's own exit status comes back");

    let (code, end) = env.json(&["session", "end", "--session", &s]);
    assert_eq!(code, 0);
    assert_eq!(end["state_changed"], false);
    assert_eq!(end["commands_refused"], 6);
    assert!(exec(&env, &s, &["hostname"]).stderr.contains("has ended"));
}

fn request_change(env: &Env, session: &str, command: &str) -> String {
    let (code, v) = env.json(&[
        "change",
        "request",
        "--session",
        session,
        "--objective",
        "recover the worker",
        "--command",
        command,
        "--impact",
        "worker restarts",
        "--rollback",
        "none needed",
    ]);
    assert_eq!(code, 0, "{v}");
    v["change"].to_string()
}

#[test]
fn an_approval_runs_exactly_one_command_once_in_one_session() {
    let env = env();
    let s = start(&env, "maintenance");
    let a = env.path("a");
    let b = env.path("b");
    let touch_a = format!("touch {}", a.display());
    let id = request_change(&env, &s, &touch_a);

    // Not approved yet: refused.
    let out = exec(&env, &s, &["touch", a.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(!a.exists());

    // The requester cannot approve their own request.
    let out = env.run(&["change", "approve", &id]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot approve their own request"),
        "{}",
        out.stderr
    );

    // The requester's own write token is the requester: refused like the CLI.
    let own = env
        .run(&["token", "create", "mine", "--scope", "write"])
        .stdout
        .trim()
        .to_string();
    let (_own_server, own_port) = serve(&env);
    let refused = request(own_port, "POST", &format!("/v1/changes/{id}/approve"), Some(&own));
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "self_approval");
    drop(_own_server);

    // Another person approves it through the API with a write token of their own.
    let token = token_of_another_user(&env, "alice");
    let reader = env.run(&["token", "create", "bob"]).stdout.trim().to_string();
    let (_server, port) = serve(&env);
    assert_eq!(
        request(port, "POST", &format!("/v1/changes/{id}/approve"), Some(&reader)).status,
        403
    );
    let approved = request(port, "POST", &format!("/v1/changes/{id}/approve"), Some(&token));
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.json()["approver"], "token:alice");
    assert_eq!(
        request(port, "POST", &format!("/v1/changes/{id}/approve"), Some(&token)).status,
        409
    );
    // An approval is a person's decision: the audit API lists it with the others.
    let decisions = request(port, "GET", "/v1/audit/decisions", Some(&reader));
    assert!(
        decisions.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "change.approved"),
        "{}",
        decisions.body
    );
    assert_eq!(
        request(port, "POST", "/v1/changes/999/approve", Some(&token)).status,
        404
    );

    // Not another command, not in another directory.
    assert_eq!(exec(&env, &s, &["touch", b.to_str().unwrap()]).code, 2);
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let moved = Out::from(
        env.cmd()
            .current_dir(&elsewhere)
            .args(["session", "exec", "--session", &s, "--", "touch", a.to_str().unwrap()])
            .output()
            .unwrap(),
    );
    assert_eq!(moved.code, 2, "{moved:?}");
    assert!(!a.exists() && !b.exists());
    // The approved one, once.
    let out = exec(&env, &s, &["touch", a.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(a.exists());
    std::fs::remove_file(&a).unwrap();
    assert_eq!(
        exec(&env, &s, &["touch", a.to_str().unwrap()]).code,
        2,
        "an approval is used once"
    );
    assert!(!a.exists());

    let (_, c) = env.json(&["change", "show", &id]);
    assert_eq!(c["status"], "used");
    let (_, end) = env.json(&["session", "end", "--session", &s, "--next", "watch the worker"]);
    assert_eq!(end["state_changed"], true);
    assert_eq!(end["approvals_used"][0].to_string(), id);
    assert_eq!(end["next_step"], "watch the worker");
    assert!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'change.approved' AND actor = 'token:alice'") == 1
    );
    // Refused twice: the requester at the terminal, then with their own token.
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'change.self_approval_refused'"),
        2
    );
}

#[test]
fn output_is_redacted_before_it_is_shown_or_stored() {
    let env = Env::new(&format!("{}  read_only: [ \"cat *\" ]\n", config("secrets.env")));
    env.write("secrets.env", "DB_PASSWORD=hunter2-from-env\n");
    env.write(
        "leaky.txt",
        "password is hunter2-from-env\n\
         Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig\n\
         DATABASE_URL=postgres://app:pa55word@db:5432/app\n\
         -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA1234\n-----END RSA PRIVATE KEY-----\n",
    );
    let s = start(&env, "diagnostic");
    let out = exec(&env, &s, &["cat", env.path("leaky.txt").to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown = env.run(&["session", "show", &s]).stdout;
    let stored: String = env
        .db()
        .query_row("SELECT output FROM session_commands", (), |r| r.get(0))
        .unwrap();
    for text in [&out.stdout, &shown, &stored] {
        for secret in [
            "hunter2-from-env",
            "eyJhbGciOiJIUzI1NiJ9",
            "pa55word",
            "MIIEowIBAAKCAQEA1234",
        ] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(text.contains("postgres://app:[REDACTED]@db"), "{text}");
    }
}

#[test]
fn sessions_and_change_requests_are_listed_and_a_request_can_be_denied() {
    let env = env();
    let s = start(&env, "maintenance");
    let (code, status) = env.json(&["session", "status", "--session", &s]);
    assert_eq!(code, 0, "{status}");
    assert_eq!(status["session"]["mode"], "maintenance");
    assert_eq!(status["commands"], 0);
    let (_, list) = env.json(&["session", "list"]);
    assert_eq!(list[0]["id"].to_string(), s);

    let target = env.path("never");
    let id = request_change(&env, &s, &format!("touch {}", target.display()));
    let (code, denied) = env.json(&["change", "deny", &id, "--reason", "not during the crawl"]);
    assert_eq!(code, 0, "{denied}");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["reason"], "not during the crawl");
    // A denied request authorises nothing and cannot be approved afterwards.
    assert_eq!(exec(&env, &s, &["touch", target.to_str().unwrap()]).code, 2);
    assert!(!target.exists());
    let token = env
        .run(&["token", "create", "alice", "--scope", "write"])
        .stdout
        .trim()
        .to_string();
    let (_server, port) = serve(&env);
    assert_eq!(
        request(port, "POST", &format!("/v1/changes/{id}/approve"), Some(&token)).status,
        409
    );
    let listed = request(port, "GET", "/v1/changes", Some(&token)).json();
    let item = &listed["items"][0];
    assert_eq!(item["id"].to_string(), id);
    assert_eq!(item["status"], "denied");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'change.denied'"),
        1
    );
}

/// A key pair made by the real `ssh-keygen`; returns the private key's path.
fn ssh_key(env: &Env, name: &str, kind: &[&str]) -> std::path::PathBuf {
    let key = env.path(&format!("keys/{name}"));
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .args(kind)
        .args(["-q", "-N", "", "-C", &format!("{name}@laptop"), "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    key
}

/// `ssh-keygen -Y sign` over `text` in `namespace`: the armored signature.
fn ssh_sign(key: &std::path::Path, namespace: &str, text: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let file = key.with_extension(format!("msg{n}"));
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", namespace, "-f"])
        .arg(key)
        .arg(&file)
        .output()
        .expect("ssh-keygen -Y sign");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sig = file.with_extension(format!("msg{n}.sig"));
    std::fs::read_to_string(sig).unwrap()
}

#[test]
fn approvals_signed_with_an_approvers_ssh_key_are_the_only_ones_accepted() {
    // Keys first: the config names their public halves.
    let env = env();
    let alice = ssh_key(&env, "alice", &["-t", "ed25519"]);
    let bob = ssh_key(&env, "bob", &["-t", "ecdsa", "-b", "256"]);
    let carol = ssh_key(&env, "carol", &["-t", "rsa", "-b", "2048"]);
    let mallory = ssh_key(&env, "mallory", &["-t", "ed25519"]);
    let public = |k: &std::path::Path| std::fs::read_to_string(k.with_extension("pub")).unwrap();
    env.edit_config(
        "sessions:\n",
        &format!(
            "sessions:\n  approvers:\n    alice: \"{}\"\n    bob: \"{}\"\n    carol: \"{}\"\n",
            public(&alice).trim(),
            public(&bob).trim(),
            public(&carol).trim()
        ),
    );
    let s = start(&env, "maintenance");
    let a = env.path("a");
    let b = env.path("b");
    let c = env.path("c");
    let ids: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|p| request_change(&env, &s, &format!("touch {}", p.display())))
        .collect();
    let payload = |id: &str| {
        let out = env.run(&["change", "show", id, "--payload"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    let p1 = payload(&ids[0]);
    assert!(p1.contains(&format!("command: touch {}", a.display())), "{p1}");
    assert!(p1.contains("uses: 1\n"), "the number of runs is signed too: {p1}");

    let approve = |id: &str, sig: &str| {
        let file = env.write(&format!("sig-{id}-{}", sig.len()), sig);
        env.run(&["change", "approve", id, "--signature", file.to_str().unwrap()])
    };
    // Unsigned: refused, with the way to sign.
    let out = env.run(&["change", "approve", &ids[0]]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("ssh-keygen -Y sign"), "{}", out.stderr);
    // A key that is not an approver's.
    let out = approve(&ids[0], &ssh_sign(&mallory, "runbook-change", &p1));
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("not one of sessions.approvers"), "{}", out.stderr);
    // Alice's signature of another request's payload, or in another namespace.
    let out = approve(&ids[0], &ssh_sign(&alice, "runbook-change", &payload(&ids[1])));
    assert!(out.stderr.contains("does not match this request"), "{}", out.stderr);
    let out = approve(&ids[0], &ssh_sign(&alice, "file", &p1));
    assert!(out.stderr.contains("namespace `file`"), "{}", out.stderr);
    assert_eq!(exec(&env, &s, &["touch", a.to_str().unwrap()]).code, 2);
    assert!(!a.exists(), "nothing ran on a refused signature");

    // Alice (Ed25519) signs the right text: approved as alice, and the command runs once.
    let out = approve(&ids[0], &ssh_sign(&alice, "runbook-change", &p1));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("approved by alice"), "{}", out.stdout);
    assert_eq!(exec(&env, &s, &["touch", a.to_str().unwrap()]).code, 0);
    assert!(a.exists());
    // Carol (RSA, SHA-512 signature) through stdin.
    let sig = ssh_sign(&carol, "runbook-change", &payload(&ids[2]));
    let mut child = env
        .cmd()
        .args(["change", "approve", &ids[2], "--signature", "-", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), sig.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["approver"], "carol");

    // Over the API: a write token alone is not enough; Bob's (ECDSA) signature is.
    let token = env
        .run(&["token", "create", "chatbot", "--scope", "write"])
        .stdout
        .trim()
        .to_string();
    let (_server, port) = serve(&env);
    let path = format!("/v1/changes/{}/approve", ids[1]);
    let r = request(port, "POST", &path, Some(&token));
    assert_eq!(r.status, 403, "{}", r.body);
    let bad = post_json(
        port,
        &path,
        Some(&token),
        &serde_json::json!({ "signature": ssh_sign(&bob, "runbook-change", &p1) }),
    );
    assert_eq!(bad.status, 403, "{}", bad.body);
    let sig = ssh_sign(&bob, "runbook-change", &payload(&ids[1]));
    let ok = post_json(port, &path, Some(&token), &serde_json::json!({ "signature": sig }));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["approver"], "bob");
    assert_eq!(exec(&env, &s, &["touch", b.to_str().unwrap()]).code, 0);

    // Every refusal and approval is in the audit log, with the key's fingerprint.
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'change.signature_refused'"),
        6,
        "unsigned (CLI and API), unknown key, other text, other namespace, bad API signature"
    );
    let detail: String = env
        .db()
        .query_row(
            "SELECT data FROM audit_events WHERE kind = 'change.approved' AND actor = 'alice'",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(detail.contains("SHA256:"), "{detail}");
}

#[test]
fn an_approver_key_that_is_not_a_key_is_a_config_error_naming_the_line() {
    let env = Env::new("version: 1\nsessions:\n  approvers:\n    alice: \"ssh-ed25519 not-base64!\"\n");
    let out = env.run(&["config", "check"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("runbook.yaml:5"), "{}", out.stderr);
    assert!(out.stderr.contains("sessions.approvers.alice"), "{}", out.stderr);
}

/// `runbook change approve` under a real pseudo-terminal (util-linux `script`), `typed` fed
/// to its keyboard.
fn approve_on_a_terminal(env: &Env, id: &str, signature: &std::path::Path, typed: &str) -> Out {
    let line = format!(
        "{} --config {} change approve {id} --signature {}",
        env!("CARGO_BIN_EXE_runbook"),
        env.path("runbook.yaml").display(),
        signature.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), typed.as_bytes()).unwrap();
    Out::from(child.wait_with_output().unwrap())
}

#[test]
fn on_a_terminal_the_approver_reads_the_request_and_types_its_id_back() {
    let env = env();
    let alice = ssh_key(&env, "alice", &["-t", "ed25519"]);
    let public = std::fs::read_to_string(alice.with_extension("pub")).unwrap();
    env.edit_config(
        "sessions:\n",
        &format!("sessions:\n  approvers:\n    alice: \"{}\"\n", public.trim()),
    );
    let s = start(&env, "maintenance");
    let target = env.path("restarted");
    let id = request_change(&env, &s, &format!("touch {}", target.display()));
    let payload = env.run(&["change", "show", &id, "--payload"]).stdout;
    let sig = env.write("approval.sig", &ssh_sign(&alice, "runbook-change", &payload));

    let out = approve_on_a_terminal(&env, &id, &sig, "999\n");
    assert_ne!(out.code, 0);
    // The whole request was shown before the question.
    assert!(out.stdout.contains("objective: recover the worker"), "{}", out.stdout);
    assert!(out.stdout.contains("rollback:  none needed"), "{}", out.stdout);
    assert!(out.stdout.contains("the id typed does not match"), "{}", out.stdout);
    let (_, c) = env.json(&["change", "show", &id]);
    assert_eq!(c["status"], "pending");

    let out = approve_on_a_terminal(&env, &id, &sig, &format!("{id}\n"));
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("type the request id ({id})")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("approved by alice"), "{}", out.stdout);
    let (_, c) = env.json(&["change", "show", &id]);
    assert_eq!(c["status"], "approved");
}

#[test]
fn ending_a_session_of_an_incident_appends_the_record_to_its_note() {
    let env = Env::new(&format!("{}incidents: {{ dir: notes }}\n", config("secrets.env")));
    env.write("secrets.env", "DB_PASSWORD=hunter2-from-env\n");
    let note = env.write("notes/2026-11-29-api-down.md", "# API down\n\nTimeline below.");
    let (code, v) = env.json(&[
        "session",
        "start",
        "--mode",
        "diagnostic",
        "--reason",
        "api 502s",
        "--incident",
        "api-down",
    ]);
    assert_eq!(code, 0, "{v}");
    let s = v["session"].to_string();
    assert_eq!(exec(&env, &s, &["hostname"]).code, 0);
    assert_eq!(exec(&env, &s, &["systemctl", "restart", "app-api"]).code, 2);
    let (code, end) = env.json(&[
        "session",
        "end",
        "--session",
        &s,
        "--next",
        "check the upstream's status page",
    ]);
    assert_eq!(code, 0, "{end}");
    assert_eq!(end["incident_note"], note.display().to_string());
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(text.starts_with("# API down\n\nTimeline below.\n"), "{text}");
    assert!(text.contains(&format!("## Session {s} (diagnostic)")), "{text}");
    assert!(text.contains("- production state changed: no"), "{text}");
    assert!(
        text.contains("- next safest step: check the upstream's status page"),
        "{text}"
    );
    assert!(text.contains("| refused | `systemctl restart app-api` | - |"), "{text}");
    assert!(text.contains("| ran | `hostname` | 0 |"), "{text}");

    // An incident id is a name in incidents.dir, never a path out of it.
    let out = env.run(&["session", "start", "--reason", "x", "--incident", "../../etc/motd"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("an incident id is letters"), "{}", out.stderr);

    // An incident without a note: the session still ends, and says why nothing was appended.
    let (_, v) = env.json(&["session", "start", "--reason", "x", "--incident", "db-slow"]);
    let s = v["session"].to_string();
    let out = env.run(&["session", "end", "--session", &s]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("no single note for incident `db-slow`"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_session_comes_from_runbook_session_and_an_approval_can_allow_n_runs() {
    let env = env();
    // `session start` prints the line to paste into the shell.
    let out = env.run(&["session", "start", "--mode", "maintenance", "--reason", "rotate logs"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("export RUNBOOK_SESSION="))
        .expect("an export line")
        .to_string();
    let marker = env.path("ran");
    let command = format!("touch {}", marker.display());
    let in_session = |args: &[&str]| {
        Out::from(
            env.cmd()
                .env("RUNBOOK_SESSION", &id)
                .args(args)
                .output()
                .expect("run runbook"),
        )
    };
    let filed = in_session(&[
        "change",
        "request",
        "--objective",
        "o",
        "--command",
        &command,
        "--impact",
        "i",
        "--rollback",
        "r",
        "--uses",
        "2",
        "--json",
    ]);
    assert_eq!(filed.code, 0, "{}", filed.stderr);
    let change = filed.json()["change"].to_string();
    let token = token_of_another_user(&env, "bob");
    let (_server, port) = serve(&env);
    let approved = request(port, "POST", &format!("/v1/changes/{change}/approve"), Some(&token));
    assert_eq!(approved.status, 200, "{}", approved.body);

    let run = || in_session(&["session", "exec", "--", "touch", marker.to_str().unwrap()]);
    for n in 1..=2 {
        assert_eq!(run().code, 0, "run {n} of 2");
        std::fs::remove_file(&marker).unwrap();
    }
    assert_eq!(run().code, 2, "a third run is not approved");
    assert!(!marker.exists());
    assert_eq!(decisions(&env, &id), ["ran", "ran", "refused"]);
}

/// The kernel holds where the argv policy does not: an operator who listed writing commands
/// under `sessions.read_only` still gets a diagnosis that changes nothing. Each command either
/// is refused or runs without effect: the sentinel file keeps its bytes, nothing new appears,
/// the host name and clock stay, the process outside survives.
#[test]
fn commands_wrongly_listed_read_only_still_change_nothing_under_the_kernel_sandbox() {
    if !sandbox_here("the read-only sandbox") {
        return;
    }
    let env = Env::new(
        r#"
version: 1
sessions:
  limits: { timeout: 20s }
  read_only: [ "touch *", "rm *", "mkdir *", "ln *", "mv *", "cp *", "tee *", "truncate *", "dd *",
               "sed *", "chmod *", "python3 *", "perl *", "hostname *", "date *", "kill *", "find *",
               "install *", "mkfifo *", "sort *", "git *" ]
"#,
    );
    let s = start(&env, "diagnostic");
    let sentinel = env.write("data/sentinel.txt", "the original bytes\n");
    let original = std::fs::read(&sentinel).unwrap();
    let (sen, dir) = (sentinel.display().to_string(), env.path("data").display().to_string());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut victim = std::process::Command::new("sleep").arg("60").spawn().unwrap();
    let victim_pid = victim.id().to_string();
    let cases: Vec<Vec<String>> = vec![
        vec!["touch".into(), format!("{dir}/new")],
        vec!["rm".into(), "-f".into(), sen.clone()],
        vec!["mkdir".into(), format!("{dir}/d")],
        vec!["ln".into(), "-s".into(), sen.clone(), format!("{dir}/link")],
        vec!["mv".into(), sen.clone(), format!("{dir}/moved")],
        vec!["cp".into(), sen.clone(), format!("{dir}/copy")],
        vec!["tee".into(), sen.clone()],
        vec!["truncate".into(), "-s".into(), "0".into(), sen.clone()],
        vec![
            "dd".into(),
            "if=/dev/zero".into(),
            format!("of={sen}"),
            "count=1".into(),
        ],
        vec!["sed".into(), "-i".into(), "s/original/changed/".into(), sen.clone()],
        vec!["chmod".into(), "000".into(), sen.clone()],
        vec!["python3".into(), "-c".into(), format!("open('{sen}', 'w').write('x')")],
        vec![
            "perl".into(),
            "-e".into(),
            format!("open(F, '>', '{dir}/perl'); print F 1"),
        ],
        vec!["hostname".into(), "runbook-escaped".into()],
        vec!["date".into(), "-s".into(), "2001-01-01".into()],
        vec!["kill".into(), "-9".into(), victim_pid.clone()],
        vec!["find".into(), dir.clone(), "-fprint".into(), format!("{dir}/found")],
        vec![
            "install".into(),
            "-m".into(),
            "644".into(),
            sen.clone(),
            format!("{dir}/installed"),
        ],
        vec!["mkfifo".into(), format!("{dir}/fifo")],
        vec!["sort".into(), "-o".into(), sen.clone(), sen.clone()],
        vec!["git".into(), "init".into(), format!("{dir}/repo")],
    ];
    let mut ran = 0;
    for argv in &cases {
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = exec(&env, &s, &refs);
        assert!(out.code >= 0 && out.code != 3 && out.code != 101, "{argv:?}: {out:?}");
        ran += usize::from(out.stdout.contains("ran") || out.stderr.contains("exit"));
        assert_eq!(
            std::fs::read(&sentinel).unwrap(),
            original,
            "{argv:?} changed the sentinel: {out:?}"
        );
        assert_eq!(env.names("data"), ["sentinel.txt"], "{argv:?} made a file: {out:?}");
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), hostname);
    assert!(
        victim.try_wait().unwrap().is_none(),
        "a process outside the session was killed"
    );
    let _ = victim.kill();
    let _ = victim.wait();
    // The policy let them run (the operator listed them): the kernel is what held.
    let decided = decisions(&env, &s);
    assert!(
        decided.iter().filter(|d| *d == "ran").count() >= 15,
        "{decided:?} ({ran})"
    );
    let (_, shown) = env.json(&["session", "show", &s]);
    assert!(shown.to_string().contains("read-only"), "{shown}");
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
    assert!(
        env.count("SELECT count(*) FROM audit_events WHERE kind IN ('session.command', 'session.refused')")
            >= cases.len() as i64
    );
}

#[test]
fn sandbox_off_is_said_in_every_record() {
    let env = Env::new("version: 1\nsessions: { sandbox: off, read_only: [ \"touch *\" ] }\n");
    let s = start(&env, "diagnostic");
    let made = env.path("made-unsandboxed");
    let out = exec(&env, &s, &["touch", made.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(made.exists(), "without the sandbox, only the argv policy stands");
    let (_, shown) = env.json(&["session", "show", &s]);
    assert!(shown.to_string().contains("unsandboxed"), "{shown}");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'session.started' AND data LIKE '%unsandboxed%'"),
        1
    );
    let bad = Env::new("version: 1\nsessions: { sandbox: maybe }\n");
    let out = bad.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("sessions.sandbox must be on or off"),
        "{}",
        out.stderr
    );
}

/// `deny_read` by the kernel: the secret's bytes reach no output and no record, whatever name
/// or program a command uses to get at them (none of these names the path as written in the
/// config, so the argv policy lets them all run).
#[test]
fn a_deny_read_file_is_unreadable_under_every_name() {
    if !rustix::process::geteuid().is_root() {
        cannot_run("masking deny_read files needs root");
        return;
    }
    let env = Env::new(
        r#"
version: 1
secrets: { deny_read: [ "{dir}/etc/*/backend.env" ] }
sessions: { read_only: [ "cp *", "python3 *", "tar *", "sort *", "tail *" ] }
"#,
    );
    let secret = env.write("etc/app/backend.env", "API_KEY=kernel-kept-7f3a9c\n");
    let root = env.dir.path().display().to_string();
    std::os::unix::fs::symlink(&secret, env.path("innocent-link")).unwrap();
    std::fs::create_dir_all(env.path("work")).unwrap();
    let s = start(&env, "diagnostic");
    let cases: Vec<Vec<String>> = vec![
        vec!["grep".into(), "-r".into(), "API_KEY".into(), format!("{root}/etc")],
        vec!["cat".into(), format!("{root}/innocent-link")],
        vec!["cat".into(), format!("/proc/self/root{}", secret.display())],
        vec!["cat".into(), format!("{root}//etc/./app/../app/backend.env")],
        vec!["tail".into(), "-c".into(), "20".into(), format!("{root}/innocent-link")],
        vec!["sort".into(), format!("{root}/innocent-link")],
        vec!["tar".into(), "-cf".into(), "-".into(), format!("{root}/etc")],
        vec![
            "python3".into(),
            "-c".into(),
            format!("import glob; [print(open(p).read()) for p in glob.glob('{root}/etc/*/*')]"),
        ],
        vec!["cp".into(), format!("{root}/innocent-link"), "/dev/stdout".into()],
    ];
    for argv in &cases {
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = exec(&env, &s, &refs);
        assert!(
            !out.stdout.contains("kernel-kept") && !out.stderr.contains("kernel-kept"),
            "{argv:?} read the secret: {out:?}"
        );
    }
    let decided = decisions(&env, &s);
    assert!(decided.iter().filter(|d| *d == "ran").count() >= 6, "{decided:?}");
    // Nor did it reach the state file or its WAL.
    assert!(state_files_holding(&env, "kernel-kept").is_empty());
    // runbook itself still reads it: only the commands' view is masked.
    assert!(std::fs::read_to_string(&secret).unwrap().contains("kernel-kept"));
}

/// A hard link is a second name no mount can cover: while one exists, no command runs.
#[test]
fn a_hard_linked_deny_read_file_stops_every_command() {
    if !rustix::process::geteuid().is_root() {
        cannot_run("masking deny_read files needs root");
        return;
    }
    let env = Env::new("version: 1\nsecrets: { deny_read: [ \"{dir}/etc/app/backend.env\" ] }\n");
    let secret = env.write("etc/app/backend.env", "API_KEY=linked-away-51c2\n");
    let other = env.path("elsewhere.txt");
    std::fs::hard_link(&secret, &other).unwrap();
    let s = start(&env, "diagnostic");
    let out = exec(&env, &s, &["cat", other.to_str().unwrap()]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        !out.stdout.contains("linked-away") && !out.stderr.contains("linked-away"),
        "{out:?}"
    );
    assert!(out.stderr.contains("hard links"), "{out:?}");
    assert!(out.stderr.contains("-samefile"), "{out:?}");
    assert!(state_files_holding(&env, "linked-away").is_empty());
    // Once the other name is gone, commands run again, and the secret stays masked.
    std::fs::remove_file(&other).unwrap();
    let out = exec(&env, &s, &["hostname"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(decisions(&env, &s), ["refused", "ran"]);
}

#[test]
fn a_command_with_control_characters_cannot_pass_for_another_on_screen() {
    let env = env();
    let s = start(&env, "maintenance");
    let spoof = "rm -rf /tmp/runbook-spoof-target \"\r\x1b[2Ksystemctl status app\"";
    let id = request_change(&env, &s, spoof);
    let shown = env.run(&["change", "show", &id]);
    assert_eq!(shown.code, 0, "{shown:?}");
    assert!(
        !shown.stdout.contains('\r') && !shown.stdout.contains('\x1b'),
        "{:?}",
        shown.stdout
    );
    assert!(
        shown
            .stdout
            .contains("rm -rf /tmp/runbook-spoof-target $'\\r\\x1b[2Ksystemctl status app'"),
        "{}",
        shown.stdout
    );
    let listed = env.run(&["change", "list"]);
    assert!(
        !listed.stdout.contains('\r') && !listed.stdout.contains('\x1b'),
        "{:?}",
        listed.stdout
    );
}

#[test]
fn a_command_interrupted_or_timed_out_is_recorded_as_such() {
    let env = Env::new("version: 1\nsessions: { limits: { timeout: 1s }, read_only: [ \"sleep *\" ] }\n");
    let s = start(&env, "diagnostic");
    // The session timeout kills it: recorded as timed out, not as ran, and said so (exit 1).
    let out = exec(&env, &s, &["sleep", "5"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("timed out"), "{out:?}");
    // runbook itself is killed while the command runs: the record says it started.
    let mut child = env
        .cmd()
        .args(["session", "exec", "--session", &s, "--", "sleep", "0.8"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for(std::time::Duration::from_secs(10), || decisions(&env, &s)
        .len()
        == 2));
    signal(child.id(), "KILL");
    let _ = child.wait();
    assert_eq!(decisions(&env, &s), ["timed out", "started"]);
    let (_, shown) = env.json(&["session", "show", &s]);
    assert!(
        shown["commands"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("outcome is not known"),
        "{shown}"
    );
    let (_, end) = env.json(&["session", "end", "--session", &s]);
    assert_eq!(end["commands_run"], 2, "{end}");
    assert_eq!(end["commands_refused"], 0, "{end}");
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'session.command_started'"),
        2
    );
}

#[test]
fn no_piece_of_a_secret_is_shown_neither_a_prefix_read_nor_one_cut_by_the_output_limit() {
    let env = Env::new(&format!(
        "{}  read_only: [ \"head *\", \"python3 *\" ]\n",
        config("secrets.env")
    ));
    env.write("secrets.env", "DB_PASSWORD=hunter2-from-env\n");
    let s = start(&env, "diagnostic");
    // The env file itself is masked, like a deny_read path.
    let out = exec(
        &env,
        &s,
        &["head", "-c", "24", env.path("secrets.env").to_str().unwrap()],
    );
    assert!(!out.stdout.contains("hunter2"), "{out:?}");
    // A secret straddling the cut between the head and the tail of captured output.
    for at in [16_380usize, 16_375, 16_370] {
        let script = format!("print('x' * {at} + 'hunter2-from-env' + 'y' * 70000, end='')");
        let out = exec(&env, &s, &["python3", "-c", &script]);
        assert!(
            out.stdout.contains("bytes omitted"),
            "the output was cut: {}",
            out.stdout.len()
        );
        for piece in ["hunt", "hunter2", "hunter2-fr", "from-env", "2-from-env"] {
            assert!(!out.stdout.contains(piece), "{at}: `{piece}` shown");
        }
    }
    // Refused, its reason quotes the argument: redacted too.
    let refused = exec(&env, &s, &["python3", "-c", "print('hunter2-from-env'); exit(1)"]);
    assert!(
        !refused.stdout.contains("hunter2") && !refused.stderr.contains("hunter2"),
        "{refused:?}"
    );
    let (_, shown) = env.json(&["session", "show", &s]);
    assert!(!shown.to_string().contains("hunter2"), "stored");
    assert!(state_files_holding(&env, "hunter2").is_empty(), "in the state file");
}

/// The order docs/sessions.md gives: diagnose, file the request from the diagnostic session,
/// have another person approve it, run it in a maintenance session of your own.
#[test]
fn the_documented_order_works_request_in_diagnosis_run_in_maintenance() {
    let env = env();
    let marker = env.path("restarted");
    let diag = start(&env, "diagnostic");
    let refused = exec(&env, &diag, &["touch", marker.to_str().unwrap()]);
    assert_eq!(refused.code, 2);
    assert!(refused.stderr.contains("maintenance session"), "{}", refused.stderr);
    let id = request_change(&env, &diag, &format!("touch {}", marker.display()));
    let token = token_of_another_user(&env, "alice");
    let (_server, port) = serve(&env);
    let approved = request(port, "POST", &format!("/v1/changes/{id}/approve"), Some(&token));
    assert_eq!(approved.status, 200, "{}", approved.body);
    // Approved, but a diagnostic session still runs read-only commands only.
    assert_eq!(exec(&env, &diag, &["touch", marker.to_str().unwrap()]).code, 2);
    assert!(!marker.exists());
    let maint = start(&env, "maintenance");
    let ran = exec(&env, &maint, &["touch", marker.to_str().unwrap()]);
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(marker.exists());
    let (_, c) = env.json(&["change", "show", &id]);
    assert_eq!(c["status"], "used");
}

#[test]
fn another_process_environment_stays_unread_in_a_diagnostic_session() {
    if !sandbox_here("the read-only sandbox") {
        return;
    }
    let env = Env::new("version: 1\n");
    let mut holder = std::process::Command::new("sleep")
        .arg("30")
        .env("APP_DB_PASSWORD", "environ-secret-91c2")
        .spawn()
        .unwrap();
    let s = start(&env, "diagnostic");
    let environ = format!("/proc/{}/environ", holder.id());
    let out = exec(&env, &s, &["cat", &environ]);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        !out.stdout.contains("environ-secret") && !out.stderr.contains("environ-secret"),
        "{out:?}"
    );
    assert_eq!(decisions(&env, &s), ["ran"], "it ran, and the kernel said no");
}

#[test]
fn a_program_found_through_a_dot_in_path_is_not_trusted_by_its_name() {
    let env = Env::new("version: 1\n");
    // A `cat` of the user's own making in the working directory, and `.` first in PATH.
    let fake = env.write("cat", "#!/bin/sh\ntouch \"$0.ran\"\n");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = start(&env, "diagnostic");
    let out = Out::from(
        env.cmd()
            .env("PATH", format!(".:{}", std::env::var("PATH").unwrap_or_default()))
            .args(["session", "exec", "--session", &s, "--", "cat", "/etc/hostname"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("not a system program"), "{}", out.stderr);
    assert!(!env.path("cat.ran").exists());
    // The system's cat, by its name, is still read-only.
    let fine = exec(&env, &s, &["cat", "/etc/hostname"]);
    assert_eq!(fine.code, 0, "{fine:?}");
}

#[test]
fn sessions_limits_output_bounds_what_is_shown_and_what_is_kept() {
    let env = Env::new("version: 1\nsessions: { limits: { output: 1K }, read_only: [ \"seq *\" ] }\n");
    let s = start(&env, "diagnostic");
    let out = exec(&env, &s, &["seq", "1", "100000"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("bytes omitted"), "{}", out.stdout.len());
    assert!(out.stdout.len() < 1200, "{} bytes shown", out.stdout.len());
    let (_, shown) = env.json(&["session", "show", &s]);
    let kept = shown["commands"][0]["output"].as_str().unwrap().len();
    assert!(kept < 1200, "{kept} bytes kept");
    let bad = Env::new("version: 1\nsessions: { limits: { output: lots } }\n");
    assert_eq!(bad.run(&["config", "check"]).code, 2);
}

/// A read-only command's one writable place is a scratch directory of its own (its TMPDIR),
/// gone when the command ends: a script that writes there and elsewhere leaves nothing, and
/// `runbook backup verify` (which copies a database out of the archive to check it) works in a
/// diagnostic session, says its outcome is not recorded, and changes no byte of the state.
#[test]
fn a_read_only_command_writes_only_a_scratch_directory_that_goes_with_it() {
    if !sandbox_here("the read-only sandbox") {
        return;
    }
    let env = Env::new(
        "version: 1\nsessions: { read_only: [\"{dir}/bin/probe*\"] }\nbackups:\n  main: { sources: [ { dir: data }, { sqlite: app.db } ], dest: archives, level: 1 }\n",
    );
    env.write("data/a.txt", "a\n");
    let db = rusqlite::Connection::open(env.path("app.db")).unwrap();
    db.execute_batch("CREATE TABLE jobs (id INTEGER PRIMARY KEY); INSERT INTO jobs DEFAULT VALUES;")
        .unwrap();
    drop(db);
    let created = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let archive = created.json()["path"].as_str().unwrap().to_string();
    let probe = env.write(
        "bin/probe",
        &format!(
            "#!/bin/sh\necho \"$TMPDIR\"\necho kept > \"$TMPDIR/work\" && cat \"$TMPDIR/work\"\ntouch {}/outside\n",
            env.dir.path().display()
        ),
    );
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = start(&env, "diagnostic");

    let out = exec(&env, &s, &[probe.to_str().unwrap()]);
    let mut lines = out.stdout.lines();
    let scratch = std::path::PathBuf::from(lines.next().unwrap_or_default());
    assert_eq!(lines.next(), Some("kept"), "the scratch directory is writable: {out:?}");
    assert!(
        scratch.is_absolute() && !scratch.exists(),
        "{scratch:?} outlived the command"
    );
    assert!(
        !file_exists(&env.path("outside")),
        "the command wrote outside its scratch"
    );

    // runbook.yaml is in the command's directory: it is the session's own configuration.
    let verified = exec(&env, &s, &[BIN, "backup", "verify", &archive]);
    let said = format!("{}{}", verified.stdout, verified.stderr);
    assert_eq!(verified.code, 0, "{said}");
    assert!(said.contains("ok: ") && said.contains("app.db"), "{said}");
    let shown = env.json(&["session", "show", &s]).1;
    let last = shown["commands"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["decision"], "ran", "{last}");
    // A state file is a file: the sandbox keeps it as it was. A PostgreSQL state is reached
    // over the network, which the sandbox leaves open: there the outcome is recorded.
    let recorded = env.count("SELECT count(*) FROM audit_events WHERE kind = 'backup.verified'");
    if on_postgres() {
        assert_eq!(recorded, 1, "{said}");
    } else {
        assert!(said.contains("not recorded"), "{said}");
        assert_eq!(recorded, 0);
    }
}
