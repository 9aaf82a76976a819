//! Release and rollback gates through the real binary: sampling and limits, comparisons with
//! the last passing run, built-in conditions against real git repositories and state, sealed
//! evidence that `gate verify` holds against the audit chain.

mod common;

use common::*;
use std::path::Path;

fn evidence(r: &serde_json::Value) -> serde_json::Value {
    let path = r["evidence"].as_str().unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn measure<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["measures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no measure {name} in {r:#}"))
}

/// A repository with one commit tagged v1.
fn repo(env: &Env) -> String {
    let dir = env.path("repo");
    std::fs::create_dir_all(&dir).unwrap();
    git(&dir, &["init", "-q"]);
    std::fs::write(dir.join("app.txt"), "v1\n").unwrap();
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "v1"]);
    git(&dir, &["tag", "v1"]);
    git(&dir, &["rev-parse", "HEAD"])
}

#[test]
fn a_passing_gate_exits_0_and_writes_sealed_evidence_that_verifies() {
    let env = Env::new(
        r#"version: 1
checks:
  fine: { command: { sh: "true" } }
gates:
  release:
    repo: repo
    checks: [fine]
    conditions:
      - config_valid
      - { git_clean: repo }
      - { disk_free: { path: /, min_free: 1% } }
      - { no_open_alerts: critical }
"#,
    );
    let sha = repo(&env);
    let (code, r) = env.json(&["gate", "run", "release", "--release", "v1"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["verdict"], "pass");
    assert_eq!(r["release"]["sha"], sha.as_str());
    let e = evidence(&r);
    assert_eq!(e["format"], "runbook-gate-evidence/1");
    assert_eq!(e["release"]["ref"], "v1");
    assert_eq!(e["release"]["sha"], sha.as_str());
    assert_eq!(e["sha256"], r["sha256"]);
    assert!(e["definition_sha256"].as_str().unwrap().len() == 64);
    for m in ["fine", "config_valid", "git_clean", "disk_free", "no_open_alerts"] {
        assert_eq!(measure(&e, m)["verdict"], "pass", "{m}: {e:#}");
        assert!(measure(&e, m)["samples"][0]["at"].is_string());
    }
    assert!(
        Path::new(r["evidence"].as_str().unwrap()).starts_with(env.path("evidence/releases")),
        "{r:#}"
    );
    // The audit chain records the seal.
    let events = env.count(&format!(
        "SELECT count(*) FROM audit_events WHERE kind = 'gate.run' AND data LIKE '%{}%'",
        r["sha256"].as_str().unwrap()
    ));
    assert_eq!(events, 1);
    let (code, v) = env.json(&["gate", "verify", r["evidence"].as_str().unwrap()]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["sealed"], true);
    assert!(v["audit_event"]["seq"].as_i64().is_some(), "{v:#}");
    // `gate NAME` is `gate run NAME`.
    let out = env.run(&["gate", "release", "--release", "v1"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("gate release: PASS (release v1)"), "{}", out.stdout);
    let (_, list) = env.json(&["gate", "list"]);
    assert_eq!(list[0]["name"], "release");
    assert_eq!(list[0]["last"]["verdict"], "pass");
}

#[test]
fn evidence_changed_after_the_run_fails_verify_whatever_is_changed() {
    let env =
        Env::new("version: 1\nchecks:\n  no: { command: { sh: \"exit 1\" } }\ngates:\n  release: { checks: [no] }\n");
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!(code, 1, "{r:#}");
    let path = r["evidence"].as_str().unwrap().to_string();
    let original = std::fs::read_to_string(&path).unwrap();
    let edits: [(&str, &str); 3] = [
        ("\"verdict\": \"fail\"", "\"verdict\": \"pass\""),
        ("\"exit 1\"", "\"exit 0\""),
        ("\"sha256\": \"", "\"sha256\": \"0"),
    ];
    for (from, to) in edits {
        assert!(original.contains(from), "{from}");
        std::fs::write(&path, original.replacen(from, to, 1)).unwrap();
        let (code, v) = env.json(&["gate", "verify", &path]);
        assert_eq!(code, 1, "{from} -> {to}: {v:#}");
        assert_eq!(v["ok"], false);
    }
    // A file from elsewhere, sealed correctly but never recorded here, is not evidence.
    let other =
        Env::new("version: 1\nchecks:\n  no: { command: { sh: \"exit 1\" } }\ngates:\n  release: { checks: [no] }\n");
    let (_, r2) = other.json(&["gate", "run", "release"]);
    let (code, v) = env.json(&["gate", "verify", r2["evidence"].as_str().unwrap()]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["sealed"], true);
    assert!(v["audit_event"].is_null());
    std::fs::write(&path, &original).unwrap();
    let (code, _) = env.json(&["gate", "verify", &path]);
    assert_eq!(code, 0);
}

/// Samples judged against limits: the second of three samples fails.
#[test]
fn sampled_checks_fail_only_past_their_failure_limit() {
    let env = Env::new(
        r#"version: 1
checks:
  second-fails: { command: { sh: "n=$(cat {dir}/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > {dir}/n; [ $n -ne 2 ]" } }
gates:
  tolerant: { checks: [ { check: second-fails, count: 3, interval: 50ms, failure_limit: 1 } ] }
  strict:   { checks: [ { check: second-fails, count: 3, interval: 50ms } ] }
"#,
    );
    let (code, r) = env.json(&["gate", "run", "tolerant"]);
    assert_eq!(code, 0, "{r:#}");
    let m = measure(&r, "second-fails");
    assert_eq!(m["samples"].as_array().unwrap().len(), 3);
    assert_eq!(m["failures"], 1);
    let verdicts: Vec<&str> = m["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["pass", "fail", "pass"]);
    std::fs::remove_file(env.path("n")).unwrap();
    let (code, r) = env.json(&["gate", "run", "strict"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["verdict"], "fail");
    assert_eq!(measure(&r, "second-fails")["verdict"], "fail");
}

#[test]
fn a_probe_that_cannot_reach_its_target_is_an_error_not_a_pass() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new(&format!(
        "version: 1\nchecks:\n  down: {{ tcp: {{ address: \"127.0.0.1:{port}\" }} }}\ngates:\n  release: {{ checks: [down] }}\n  patient: {{ checks: [ {{ check: down, count: 2, interval: 10ms, consecutive_error_limit: 2 }} ] }}\n"
    ));
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["verdict"], "error");
    assert_eq!(measure(&r, "down")["samples"][0]["verdict"], "error");
    // Within its error limit a measure passes: errors are tolerated, not counted as failures.
    let (code, r) = env.json(&["gate", "run", "patient"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(measure(&r, "down")["errors"], 2);
}

/// `latency_ms: "<= +100%"` is judged against the mean of the last passing run; a run with
/// nothing to compare with records the value and passes.
#[test]
fn values_are_compared_with_the_last_passing_run_of_the_gate() {
    let env = Env::new(
        r#"version: 1
checks:
  slow: { command: { sh: "sleep $(cat {dir}/delay)" } }
gates:
  release: { checks: [ { check: slow, latency_ms: "<= +100%", days_left: ">= 1" } ] }
  measured: { checks: [ { check: slow, latency_ms: "<= +100%" } ] }
"#,
    );
    env.write("delay", "0.2\n");
    // A value the check does not report cannot be judged: inconclusive, not a pass.
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["verdict"], "inconclusive");

    let (code, first) = env.json(&["gate", "run", "measured"]);
    assert_eq!(code, 0, "{first:#}");
    let baseline = measure(&first, "slow")["samples"][0]["values"]["latency_ms"]
        .as_f64()
        .unwrap();
    assert!(baseline >= 200.0, "{first:#}");
    assert!(measure(&first, "slow")["compare"][0]["baseline"].is_null());

    env.write("delay", "1.5\n");
    let (code, slower) = env.json(&["gate", "run", "measured"]);
    assert_eq!(code, 1, "{slower:#}");
    let c = &measure(&slower, "slow")["compare"][0];
    assert_eq!(c["baseline"].as_f64(), Some(baseline));
    assert_eq!(c["bound"].as_f64(), Some(baseline * 2.0));

    // The failed run is no baseline: the next is judged against the first again.
    env.write("delay", "0.2\n");
    let (code, again) = env.json(&["gate", "run", "measured"]);
    assert_eq!(code, 0, "{again:#}");
    assert_eq!(
        measure(&again, "slow")["compare"][0]["baseline"].as_f64(),
        Some(baseline)
    );
}

#[test]
fn a_dry_run_check_is_recorded_and_never_blocks() {
    let env = Env::new(
        "version: 1\nchecks:\n  fine: { command: { sh: \"true\" } }\n  new: { command: { sh: \"exit 1\" } }\ngates:\n  release: { checks: [fine, new], dry_run: [new] }\n",
    );
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!(code, 0, "{r:#}");
    let m = measure(&r, "new");
    assert_eq!(m["verdict"], "dry-run");
    assert_eq!(m["would_be"], "fail");
}

#[test]
fn each_condition_fails_on_what_it_guards() {
    let env = Env::new(
        r#"version: 1
secrets: { env_files: [app.env] }
checks:
  broken: { command: { sh: "exit 1" }, severity: critical }
backups:
  main: { sources: [ { dir: data } ], dest: archives }
gates:
  clean: { conditions: [ { git_clean: repo } ] }
  alerts: { conditions: [ { no_open_alerts: { severity: critical } } ] }
  backed-up: { conditions: [ { backup_verified_within: { target: main, within: 1h } } ] }
  rollback: { checks: [], require_verified_backup: main }
  config: { conditions: [ config_valid ] }
  migrated: { conditions: [ { migration_at_head: { sh: "echo '2 pending: 0042_add_index, 0043_drop_col'; exit 1" } } ] }
"#,
    );
    env.write("app.env", "TOKEN=abcdef\n");
    env.write("data/x", "x\n");
    repo(&env);
    let fails = |gate: &str, needle: &str| {
        let (code, r) = env.json(&["gate", "run", gate]);
        assert_eq!(code, 1, "{gate}: {r:#}");
        assert_eq!(r["verdict"], "fail", "{gate}: {r:#}");
        let detail = r["measures"][0]["samples"][0]["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(needle), "{gate}: {detail}");
    };
    env.write("repo/app.txt", "edited\n");
    fails("clean", "app.txt");
    env.run(&["check", "broken"]);
    fails("alerts", "broken");
    fails("backed-up", "no archive of `main`");
    fails("rollback", "no archive of `main`");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.path("app.env"), std::fs::Permissions::from_mode(0o644)).unwrap();
    fails("config", "readable by other users");
    fails("migrated", "0042_add_index");
    // Once there is a verified archive, both backup conditions pass.
    let out = env.run(&["backup", "create", "main"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, list) = env.json(&["backup", "list"]);
    assert_eq!(code, 0);
    let archive = list[0]["path"].as_str().unwrap().to_string();
    assert_eq!(env.run(&["backup", "verify", &archive]).code, 0);
    for gate in ["backed-up", "rollback"] {
        let (code, r) = env.json(&["gate", "run", gate]);
        assert_eq!(code, 0, "{gate}: {r:#}");
    }
}

#[test]
fn gate_mistakes_in_runbook_yaml_are_named_with_their_line() {
    let cases = [
        ("gates:\n  g: { checks: [nope] }\n", "no check named `nope`"),
        (
            "gates:\n  g: { conditions: [disk_fre] }\n",
            "unknown condition `disk_fre`",
        ),
        (
            "gates:\n  g: { checks: [ { check: fine, latency_ms: \"fast\" } ] }\n",
            "starts with none of",
        ),
        (
            "gates:\n  g: { checks: [ { check: fine, latency_ms: \"<= 10%\" } ] }\n",
            "+10%",
        ),
        (
            "gates:\n  g: { checks: [fine], dry_run: [other] }\n",
            "not measured by this gate",
        ),
        (
            "gates:\n  g: { checks: [ { check: fine, count: 3 } ] }\n",
            "how far apart",
        ),
        (
            "gates:\n  g: { conditions: [ { backup_verified_within: { target: nope } } ] }\n",
            "no backup target named `nope`",
        ),
        ("gates:\n  g: {}\n", "measures nothing"),
    ];
    for (yaml, needle) in cases {
        let env = Env::new(&format!(
            "version: 1\nchecks:\n  fine: {{ command: {{ sh: \"true\" }} }}\n{yaml}"
        ));
        let out = env.run(&["config", "check"]);
        assert_eq!(out.code, 2, "{yaml}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{yaml}: {}", out.stderr);
        assert!(out.stderr.contains("runbook.yaml:"), "{yaml}: {}", out.stderr);
    }
}

#[test]
fn an_unknown_gate_or_release_is_refused_and_nothing_is_recorded() {
    let env = Env::new(
        "version: 1\nchecks:\n  fine: { command: { sh: \"true\" } }\ngates:\n  release: { repo: repo, checks: [fine] }\n",
    );
    repo(&env);
    let out = env.run(&["gate", "run", "relase"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `release`") || out.stderr.contains("gate list"),
        "{}",
        out.stderr
    );
    let out = env.run(&["gate", "run", "release", "--release", "v9"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("v9"), "{}", out.stderr);
    let out = env.run(&["gate", "run", "release", "--release=--upload-pack=touch x"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!env.path("x").exists());
    assert!(env.names("evidence/releases").is_empty());
}

#[test]
fn evidence_files_are_never_overwritten() {
    let env =
        Env::new("version: 1\nchecks:\n  fine: { command: { sh: \"true\" } }\ngates:\n  release: { checks: [fine] }\n");
    let mut seals = std::collections::HashSet::new();
    for _ in 0..4 {
        let (code, r) = env.json(&["gate", "run", "release"]);
        assert_eq!(code, 0, "{r:#}");
        seals.insert(r["evidence"].as_str().unwrap().to_string());
    }
    assert_eq!(seals.len(), 4);
    assert_eq!(
        env.names("evidence/releases").len(),
        4,
        "{:?}",
        env.names("evidence/releases")
    );
}

#[test]
fn the_api_and_the_status_page_show_each_gate_with_its_last_run() {
    let env = Env::new(
        "version: 1\nchecks:\n  fine: { command: { sh: \"true\" } }\ngates:\n  release: { checks: [fine] }\n  rollback: { checks: [fine] }\n",
    );
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!(code, 0, "{r:#}");
    let secret = create_token(&env, "reader", "read");
    let (_server, port) = serve(&env);
    let g = common::http::get(port, "/v1/gates", Some(&secret));
    assert_eq!(g.status, 200, "{}", g.body);
    let items = g.json()["items"].clone();
    assert_eq!(items[0]["name"], "release");
    assert_eq!(items[0]["runs"][0]["verdict"], "pass");
    assert_eq!(items[0]["runs"][0]["evidence_sha256"], r["sha256"]);
    assert_eq!(items[1]["name"], "rollback");
    assert!(items[1]["runs"].as_array().unwrap().is_empty());
    let page = common::http::get(port, "/", Some(&secret));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-gate=\"release\""), "{}", page.body);
    assert!(page.body.contains(r["evidence"].as_str().unwrap()), "{}", page.body);
    assert_eq!(common::http::get(port, "/v1/gates", None).status, 401);
}

/// A waiver is a change request approved by someone else; it makes a failing gate `waived`
/// (exit 0) until it expires, and the evidence says who let it through.
#[test]
fn an_approved_waiver_lets_a_failing_gate_through_until_it_expires() {
    let env =
        Env::new("version: 1\nchecks:\n  no: { command: { sh: \"exit 1\" } }\ngates:\n  release: { checks: [no] }\n");
    let (code, w) = env.json(&[
        "gate",
        "waive",
        "release",
        "--reason",
        "known flaky probe, INC-42",
        "--expires",
        "2s",
    ]);
    assert_eq!(code, 0, "{w:#}");
    let id = w["change"].as_i64().unwrap().to_string();
    // Pending is not approved.
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!((code, r["verdict"].as_str()), (1, Some("fail")), "{r:#}");
    // Not by the one who asked.
    let out = env.run(&["change", "approve", &id]);
    assert_ne!(out.code, 0, "self-approval: {}", out.stdout);
    let token = token_of_another_user(&env, "second-person");
    let (_server, port) = serve(&env);
    let approved = common::http::request(port, "POST", &format!("/v1/changes/{id}/approve"), Some(&token));
    assert_eq!(approved.status, 200, "{}", approved.body);
    let (code, r) = env.json(&["gate", "run", "release"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["verdict"], "waived");
    let e = evidence(&r);
    assert_eq!(e["measured_verdict"], "fail");
    assert_eq!(e["waiver"]["reason"], "known flaky probe, INC-42");
    assert_eq!(e["waiver"]["approver"], "token:second-person");
    // It ends by itself.
    assert!(wait_for(std::time::Duration::from_secs(10), || env
        .json(&["gate", "run", "release"])
        .0
        == 1));
}

#[test]
fn a_gate_that_does_not_pass_tells_its_channels_what_failed_once() {
    let hook = common::receiver::Receiver::start();
    let env = Env::new(&format!(
        "version: 1\nchecks:\n  fine: {{ command: {{ sh: \"true\" }} }}\n  no: {{ command: {{ sh: \"echo migrations pending; exit 1\" }} }}\nnotify:\n  channels:\n    ops: {{ webhook: {{ url: \"{}/hook\" }} }}\ngates:\n  release: {{ checks: [fine, no], notify: [ops] }}\n  quiet: {{ checks: [fine], notify: [ops] }}\n",
        hook.url()
    ));
    let (code, _) = env.json(&["gate", "run", "quiet"]);
    assert_eq!(code, 0);
    let (code, r) = env.json(&["gate", "run", "release", "--release", "v2"]);
    assert_eq!(code, 1, "{r:#}");
    let got = hook.requests();
    assert_eq!(
        got.len(),
        1,
        "one message for the failing run, none for the passing one"
    );
    let body = got[0].body.clone();
    assert!(
        body.contains("release") && body.contains("no (fail)") && body.contains("v2"),
        "{body}"
    );
    assert!(body.contains(r["evidence"].as_str().unwrap()), "{body}");
    let out = Env::new(
        "version: 1\nchecks:\n  fine: { command: { sh: \"true\" } }\ngates:\n  g: { checks: [fine], notify: [opz] }\n",
    )
    .run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no channel named `opz`"), "{}", out.stderr);
}
