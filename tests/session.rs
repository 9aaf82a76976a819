//! Guarded sessions through the real binary: a diagnostic session refuses what changes state
//! (and nothing happens), approvals bind to one command in one session and are spent once,
//! the requester cannot approve, approvals arrive over the API, output is redacted.

mod common;

use common::http::request;
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
    let (_, shown) = env.json(&["session", "show", &s]);
    let decisions: Vec<&str> = shown["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, vec!["refused"; 6]);
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
    let other = start(&env, "maintenance");
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

    // Another person approves it through the API with a write token.
    let token = env
        .run(&["token", "create", "alice", "--scope", "write"])
        .stdout
        .trim()
        .to_string();
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
    assert_eq!(
        request(port, "POST", "/v1/changes/999/approve", Some(&token)).status,
        404
    );

    // Not another command, not another session.
    assert_eq!(exec(&env, &s, &["touch", b.to_str().unwrap()]).code, 2);
    assert_eq!(exec(&env, &other, &["touch", a.to_str().unwrap()]).code, 2);
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
    assert!(env.count("SELECT count(*) FROM audit_events WHERE kind = 'change.self_approval_refused'") == 1);
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
        .query_row("SELECT output FROM session_commands", [], |r| r.get(0))
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
