//! The jobs ledger: list, show, recover-stale (dry run, then --apply), retry linked to the original.

mod common;

use common::*;
use std::time::Duration;

const SLOW: &str = r#"
version: 1
profiles:
  slow:
    cron: "* * * * *"
    tasks:
      - { sh: "touch started; sleep 60", name: crawl, timeout: 5m }
"#;

/// Starts `runbook run slow`, waits until its task runs, then kills the runner with SIGKILL:
/// the runs it recorded stay `running` with a dead pid.
fn orphan_a_run(env: &Env) {
    let mut child = env.spawn(&["run", "slow"]);
    assert!(wait_for(Duration::from_secs(20), || env.path("started").exists()));
    signal(child.id(), "KILL");
    child.wait().unwrap();
}

#[test]
fn recover_stale_marks_dead_runs_retryable_only_with_apply() {
    let env = Env::new(SLOW);
    orphan_a_run(&env);
    assert_eq!(env.count("SELECT count(*) FROM runs WHERE status = 'running'"), 2);

    let (code, dry) = env.json(&["jobs", "recover-stale", "--older-than-minutes", "180"]);
    assert_eq!(code, 0);
    assert_eq!(dry["apply"], false);
    let stale = dry["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 2, "{dry}");
    assert!(stale[0]["reason"].as_str().unwrap().contains("is gone"), "{dry}");
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE status = 'running'"),
        2,
        "dry run changed state"
    );
    let human = env.run(&["jobs", "recover-stale", "--older-than-minutes", "180"]);
    assert!(
        human.stdout.contains("dry run: 2 run(s) would be marked retryable"),
        "{}",
        human.stdout
    );

    let events_before = env.count("SELECT count(*) FROM audit_events");
    let (code, applied) = env.json(&["jobs", "recover-stale", "--older-than-minutes", "180", "--apply"]);
    assert_eq!(code, 0);
    assert_eq!(applied["marked_retryable"], 2);
    assert_eq!(env.count("SELECT count(*) FROM runs WHERE status = 'retryable'"), 2);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'run.recovered'"),
        2
    );
    assert_eq!(env.count("SELECT count(*) FROM audit_events"), events_before + 2);
    assert_eq!(env.run(&["audit", "verify"]).code, 0);

    let (_, again) = env.json(&["jobs", "recover-stale", "--older-than-minutes", "180"]);
    assert_eq!(again["stale"].as_array().unwrap().len(), 0, "recovery is not repeated");
}

#[test]
fn recover_stale_also_finds_runs_older_than_the_limit() {
    let env = Env::new(SLOW);
    assert_eq!(env.run(&["db", "migrate", "--apply"]).code, 0);
    // A run recorded by a live process (this test), started four hours ago.
    env.db()
        .execute(
            "INSERT INTO runs (profile, kind, trigger, status, host, pid, started_at) \
             VALUES ('slow', 'profile', 'schedule', 'running', 'elsewhere', ?1, '2000-01-01T00:00:00.000Z')",
            [std::process::id()],
        )
        .unwrap();
    let (_, found) = env.json(&["jobs", "recover-stale", "--older-than-minutes", "180"]);
    let stale = found["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 1);
    assert!(stale[0]["reason"].as_str().unwrap().contains("limit 180"), "{found}");
}

#[test]
fn retry_runs_a_failed_task_again_linked_to_the_original() {
    let env = Env::new(
        r#"
version: 1
profiles:
  p:
    cron: "@hourly"
    tasks:
      - { sh: "test -f fixed", name: needs-fix }
      - { sh: "echo other >> other.log", name: other }
"#,
    );
    assert_eq!(env.run(&["run", "p"]).code, 1);
    let failed: i64 = env.count("SELECT id FROM runs WHERE task = 'needs-fix'");

    let runs_before = env.count("SELECT count(*) FROM runs");
    let dry = env.run(&["jobs", "retry", &failed.to_string()]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("test -f fixed"),
        "the dry run shows the command: {}",
        dry.stdout
    );
    assert_eq!(
        env.count("SELECT count(*) FROM runs"),
        runs_before,
        "dry run recorded a run"
    );

    std::fs::write(env.path("fixed"), "").unwrap();
    let (code, report) = env.json(&["jobs", "retry", &failed.to_string(), "--apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "ok");
    assert_eq!(
        report["tasks"].as_array().unwrap().len(),
        1,
        "only the failed task runs again"
    );
    assert_eq!(std::fs::read_to_string(env.path("other.log")).unwrap(), "other\n");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM runs WHERE retry_of = {failed} AND trigger = 'retry'"
        )),
        1
    );

    let (_, shown) = env.json(&["jobs", "show", &failed.to_string()]);
    assert_eq!(shown["retried_by"].as_array().unwrap().len(), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'run.finished'"),
        2
    );
}

#[test]
fn retry_refuses_runs_that_did_not_fail() {
    let env = Env::new("version: 1\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { run: [true] } ] }\n");
    assert_eq!(env.run(&["run", "p"]).code, 0);
    let out = env.run(&["jobs", "retry", "1", "--apply"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("only failed or retryable runs can be retried"),
        "{}",
        out.stderr
    );
    let missing = env.run(&["jobs", "show", "999"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no run with id 999"));
}

#[test]
fn a_recovered_profile_run_can_be_retried_whole() {
    let env = Env::new(SLOW);
    orphan_a_run(&env);
    assert_eq!(
        env.run(&["jobs", "recover-stale", "--older-than-minutes", "180", "--apply"])
            .code,
        0
    );
    let profile_run = env.count("SELECT id FROM runs WHERE kind = 'profile'");
    // Make the crawl quick now, as a fix deployed before the recovery would.
    std::fs::write(
        &env.config,
        format!(
            "{}\nversion: 1\nprofiles:\n  slow:\n    cron: \"* * * * *\"\n    tasks:\n      - {{ sh: \"echo quick\", name: crawl }}\n",
            env.state_line()
        ),
    )
    .unwrap();
    let (code, report) = env.json(&["jobs", "retry", &profile_run.to_string(), "--apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["trigger"], "retry");
    assert_eq!(
        env.count(&format!(
            "SELECT count(*) FROM runs WHERE kind = 'profile' AND retry_of = {profile_run}"
        )),
        1
    );
}

#[test]
fn jobs_list_filters_by_status_and_limit() {
    let env = Env::new(
        "version: 1\nprofiles:\n  ok: { cron: \"@hourly\", tasks: [ { run: [true] } ] }\n  bad: { cron: \"@hourly\", tasks: [ { run: [false] } ] }\n",
    );
    env.run(&["run", "ok"]);
    env.run(&["run", "bad"]);
    let (_, failed) = env.json(&["jobs", "list", "--status", "failed"]);
    let failed = failed.as_array().unwrap();
    assert_eq!(failed.len(), 2, "the profile run and its task");
    assert!(failed.iter().all(|r| r["status"] == "failed" && r["profile"] == "bad"));
    let (_, limited) = env.json(&["jobs", "list", "--limit", "1"]);
    assert_eq!(limited.as_array().unwrap().len(), 1);
    let bad_status = env.run(&["jobs", "list", "--status", "exploded"]);
    assert_eq!(bad_status.code, 2);
}
