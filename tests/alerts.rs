//! Alerts: fail_after / recover_after, one open alert per key, dependencies, silences, acks,
//! task failures, and an audit event for every transition.

mod common;

use common::*;

/// A check that passes while `up-NAME` exists in the temp dir.
fn cfg(extra: &str) -> String {
    format!(
        r#"
version: 1
checks:
  api-unit: {{ command: {{ sh: "test -f up-api" }} }}
  web: {{ command: {{ sh: "test -f up-web" }}, fail_after: 2, recover_after: 2, depends_on: [api-unit], severity: critical }}
  disk: {{ command: {{ sh: "test -f up-disk" }} }}
{extra}
"#
    )
}

fn alerts(env: &Env, status: &str) -> Vec<serde_json::Value> {
    let (code, v) = env.json(&["alerts", "list", "--status", status]);
    assert_eq!(code, 0);
    v.as_array().unwrap().clone()
}

#[test]
fn fail_after_and_recover_after_count_consecutive_outcomes() {
    let env = Env::new(&cfg(""));
    std::fs::write(env.path("up-api"), "").unwrap();
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert!(
        alerts(&env, "firing").is_empty(),
        "fail_after: 2 — one failure opens nothing"
    );
    let out = env.run(&["check", "web"]);
    assert!(
        out.stdout.contains("alert opened (critical, firing): web@"),
        "{}",
        out.stdout
    );
    let firing = alerts(&env, "firing");
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0]["severity"], "critical");
    assert_eq!(firing[0]["count"], 1);

    // Still failing: the same alert, counted; never a second open alert for the key.
    env.run(&["check", "web"]);
    let firing = alerts(&env, "firing");
    assert_eq!(firing.len(), 1);
    assert_eq!(firing[0]["count"], 2);

    std::fs::write(env.path("up-web"), "").unwrap();
    assert_eq!(env.run(&["check", "web"]).code, 0);
    assert_eq!(
        alerts(&env, "firing").len(),
        1,
        "recover_after: 2 — one success resolves nothing"
    );
    let out = env.run(&["check", "web"]);
    assert!(out.stdout.contains("alert resolved: web@"), "{}", out.stdout);
    assert!(alerts(&env, "firing").is_empty());
    let resolved = alerts(&env, "resolved");
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0]["resolved_at"].is_string());
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'alert.opened'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'alert.resolved'"),
        1
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn a_failure_while_a_dependency_fails_is_recorded_as_suppressed() {
    let env = Env::new(&cfg(""));
    // Both down: api-unit is the root cause, web depends on it.
    env.run(&["check", "web", "api-unit"]);
    env.run(&["check", "web", "api-unit"]);
    let firing = alerts(&env, "firing");
    let web = firing.iter().find(|a| a["name"] == "web").expect("web alert recorded");
    assert_eq!(web["suppressed_by"], "api-unit");
    let api = firing.iter().find(|a| a["name"] == "api-unit").expect("root alert");
    assert!(api["suppressed_by"].is_null());
    let human = env.run(&["alerts", "list"]);
    assert!(human.stdout.contains("suppressed: api-unit down"), "{}", human.stdout);
}

#[test]
fn silences_keep_alerts_but_mark_them_silenced_and_need_apply() {
    let env = Env::new(&cfg(""));
    env.run(&["check", "disk"]);
    let dry = env.run(&[
        "alerts",
        "silence",
        "disk",
        "--for",
        "2h",
        "--reason",
        "resizing the volume",
    ]);
    assert_eq!(dry.code, 0);
    assert!(dry.stdout.contains("dry run"), "{}", dry.stdout);
    assert_eq!(alerts(&env, "firing").len(), 1, "dry run changed nothing");

    let out = env.run(&[
        "alerts",
        "silence",
        "disk",
        "--for",
        "2h",
        "--reason",
        "resizing the volume",
        "--apply",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(alerts(&env, "firing").is_empty());
    assert_eq!(alerts(&env, "silenced").len(), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'alert.silenced'"),
        1
    );

    // Still failing under the silence: kept silenced, still counted.
    env.run(&["check", "disk"]);
    let silenced = alerts(&env, "silenced");
    assert_eq!(silenced[0]["count"], 2);
    // The silence ends (moved into the past): the next failure makes it fire again.
    env.db()
        .execute("UPDATE silences SET until = '2000-01-01T00:00:00.000Z'", ())
        .unwrap();
    env.run(&["check", "disk"]);
    assert_eq!(alerts(&env, "firing").len(), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'alert.unsilenced'"),
        1
    );
}

#[test]
fn ack_marks_open_alerts_and_unknown_targets_are_an_error() {
    let env = Env::new(&cfg(""));
    env.run(&["check", "disk"]);
    let out = env.run(&["alerts", "ack", "disk"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let firing = alerts(&env, "firing");
    assert!(firing[0]["acked_by"].is_string());
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'alert.acked'"),
        1
    );
    let none = env.run(&["alerts", "ack", "nothing-like-this"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no open alert matches"), "{}", none.stderr);
}

#[test]
fn a_failing_command_task_raises_an_alert_that_its_next_success_resolves() {
    let env = Env::new(&cfg(
        "profiles:\n  hourly: { cron: \"@hourly\", tasks: [ { sh: \"test -f fixed\", name: cleanup }, disk ] }\n",
    ));
    std::fs::write(env.path("up-disk"), "").unwrap();
    assert_eq!(env.run(&["run", "hourly"]).code, 1);
    let firing = alerts(&env, "firing");
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["source"], "task");
    assert_eq!(firing[0]["name"], "hourly/cleanup");
    assert!(firing[0]["key"].as_str().unwrap().starts_with("task:hourly/cleanup@"));

    std::fs::write(env.path("fixed"), "").unwrap();
    assert_eq!(env.run(&["run", "hourly"]).code, 0);
    assert!(alerts(&env, "firing").is_empty());
    assert_eq!(alerts(&env, "resolved").len(), 1);
}

#[test]
fn alerts_list_filters_by_source() {
    let env = Env::new(&cfg(
        "profiles:\n  p: { cron: \"@hourly\", tasks: [ { run: [false], name: boom }, disk ] }\n",
    ));
    env.run(&["run", "p"]);
    let (_, tasks) = env.json(&["alerts", "list", "--source", "task"]);
    let (_, checks) = env.json(&["alerts", "list", "--source", "check"]);
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(checks.as_array().unwrap().len(), 1);
    assert_eq!(checks[0]["name"], "disk");
}

#[test]
fn the_daemon_keeps_check_history_and_resolved_alerts_within_retention() {
    let env = Env::new(&cfg(
        "retention: { check_results: 2, resolved_alerts: 1d }\nprofiles:\n  idle: { cron: \"@yearly\", tasks: [ disk ] }\n",
    ));
    for _ in 0..5 {
        env.run(&["check", "disk", "api-unit"]);
    }
    std::fs::write(env.path("up-disk"), "").unwrap();
    env.run(&["check", "disk"]);
    assert_eq!(alerts(&env, "resolved").len(), 1);
    env.db()
        .execute(
            "UPDATE alerts SET resolved_at = '2000-01-01T00:00:00.000Z' WHERE status = 'resolved'",
            (),
        )
        .unwrap();
    // Without a daemon, `check` itself keeps history within retention.
    assert_eq!(
        env.count("SELECT count(*) FROM check_results WHERE check_name = 'disk'"),
        2
    );
    let pruned_by_commands = env.count("SELECT count(*) FROM audit_events WHERE kind = 'retention.pruned'");
    assert!(pruned_by_commands >= 1);

    let log = env.path("daemon.log");
    let mut daemon = env
        .cmd()
        .arg("daemon")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pruned = wait_for(std::time::Duration::from_secs(20), || {
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'retention.pruned'") == pruned_by_commands + 1
    });
    signal(daemon.id(), "TERM");
    daemon.wait().unwrap();
    assert!(pruned, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(
        env.count("SELECT count(*) FROM check_results WHERE check_name = 'disk'"),
        2
    );
    assert_eq!(
        env.count("SELECT count(*) FROM check_results WHERE check_name = 'api-unit'"),
        2
    );
    assert!(alerts(&env, "resolved").is_empty(), "an old resolved alert was pruned");
    assert_eq!(
        alerts(&env, "firing").len(),
        1,
        "open alerts are never pruned (api-unit)"
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}
