//! Profiles: dry run, real runs in the ledger, non-overlap, pre-run git sync, crontab, list.

mod common;

use common::*;
use std::time::Duration;

const TWO_TASKS: &str = r#"
version: 1
profiles:
  hourly:
    cron: "0 * * * *"
    timeout: 1m
    tasks:
      - { run: [sh, -c, "echo cleaned > cleaned.txt"], name: cleanup, timeout: 2m }
      - { run: "echo 'report ready'", name: report }
      - { sh: "echo one; echo two | wc -l" }
"#;

#[test]
fn dry_run_prints_every_command_and_writes_nothing() {
    let env = Env::new(TWO_TASKS);
    let out = env.run(&["run", "hourly", "--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("nothing is executed"), "{}", out.stdout);
    assert!(
        out.stdout.contains("sh -c 'echo cleaned > cleaned.txt'"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("echo 'report ready'"), "{}", out.stdout);
    assert!(
        out.stdout.contains("timeout 2m"),
        "task timeout overrides the profile's: {}",
        out.stdout
    );
    assert!(out.stdout.contains("timeout 1m"), "{}", out.stdout);
    assert!(!env.path("cleaned.txt").exists(), "dry run executed a task");
    assert!(!env.state_db().exists(), "dry run created the state file");

    let (code, plan) = env.json(&["run", "hourly", "--dry-run"]);
    assert_eq!(code, 0);
    let steps = plan["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[1]["argv"], serde_json::json!(["echo", "report ready"]));
    assert_eq!(steps[2]["name"], "sh");
    assert!(!env.state_db().exists());
}

#[test]
fn real_run_records_one_row_per_profile_and_per_task() {
    let env = Env::new(TWO_TASKS);
    let (code, report) = env.json(&["run", "hourly"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["status"], "ok");
    assert_eq!(std::fs::read_to_string(env.path("cleaned.txt")).unwrap(), "cleaned\n");
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'ok'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'task' AND status = 'ok'"),
        3
    );
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'task' AND parent_id IS NULL"),
        0
    );
    let task = &report["tasks"][2];
    assert_eq!(task["output"], "one\n1\n");

    let (_, shown) = env.json(&["jobs", "show", &report["run_id"].to_string()]);
    assert_eq!(shown["tasks"].as_array().unwrap().len(), 3);
    assert_eq!(shown["run"]["trigger"], "manual");
}

#[test]
fn a_failing_task_fails_the_run_with_exit_1_and_later_tasks_still_run() {
    let env = Env::new(
        r#"
version: 1
profiles:
  p:
    cron: "@hourly"
    tasks:
      - { sh: "echo boom >&2; exit 7", name: broken }
      - { sh: "touch after.txt", name: after }
"#,
    );
    let out = env.run(&["run", "p"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("exit 7"), "{}", out.stdout);
    assert!(
        out.stdout.contains("boom"),
        "the failing task's output is shown: {}",
        out.stdout
    );
    assert!(env.path("after.txt").exists());
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'failed'"),
        1
    );
    assert_eq!(env.count("SELECT exit_code FROM runs WHERE task = 'broken'"), 7);
}

#[test]
fn unknown_profile_is_a_usage_error_with_a_suggestion() {
    let env = Env::new(TWO_TASKS);
    let out = env.run(&["run", "hourlly"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no profile named `hourlly`"), "{}", out.stderr);
    assert!(out.stderr.contains("did you mean `hourly`?"), "{}", out.stderr);
}

#[test]
fn a_second_start_while_running_is_skipped_not_queued() {
    let env = Env::new(
        r#"
version: 1
profiles:
  slow:
    cron: "* * * * *"
    tasks:
      - { sh: "touch started; while [ ! -f go ]; do sleep 0.05; done", name: wait-for-go, timeout: 60s }
"#,
    );
    let mut first = env.spawn(&["run", "slow"]);
    assert!(
        wait_for(Duration::from_secs(20), || env.path("started").exists()),
        "first run never started"
    );

    let (code, second) = env.json(&["run", "slow"]);
    assert_eq!(code, 0, "a skipped run is not a failure: {second}");
    assert_eq!(second["status"], "skipped");
    assert!(second["reason"].as_str().unwrap().contains("still running"));

    // A crontab line is `runbook run PROFILE`: the same lock applies to it.
    let out = env.run(&["run", "slow"]);
    assert!(out.stdout.contains("skipped"), "{}", out.stdout);

    std::fs::write(env.path("go"), "").unwrap();
    let status = first.wait().unwrap();
    assert!(status.success());
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'skipped'"),
        2
    );
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'ok'"),
        1
    );
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'task'"),
        1,
        "skipped runs run no task"
    );

    // Once the first run is over, the profile runs again.
    std::fs::remove_file(env.path("started")).unwrap();
    let (code, third) = env.json(&["run", "slow"]);
    assert_eq!((code, third["status"].as_str()), (0, Some("ok")));
}

#[test]
fn sync_before_run_resets_the_checkout_to_the_remote_branch_before_tasks() {
    let env = Env::new(
        r#"
version: 1
profiles:
  sync:
    cron: "*/10 * * * *"
    sync_before_run: { repo: checkout, branch: main }
    tasks:
      - { run: [cat, VERSION], cwd: checkout, name: show-version }
"#,
    );
    let origin = env.path("origin");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    std::fs::write(origin.join("VERSION"), "v1\n").unwrap();
    git(&origin, &["add", "VERSION"]);
    git(&origin, &["commit", "-qm", "v1"]);
    git(env.dir.path(), &["clone", "-q", origin.to_str().unwrap(), "checkout"]);

    // Upstream moves on; the checkout has a local hotfix that must be discarded.
    std::fs::write(origin.join("VERSION"), "v2\n").unwrap();
    git(&origin, &["commit", "-qam", "v2"]);
    std::fs::write(env.path("checkout/VERSION"), "hotfix\n").unwrap();

    let (code, report) = env.json(&["run", "sync"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["sync"]["status"], "ok");
    assert_eq!(report["tasks"][0]["output"], "v2\n");
    assert_eq!(
        git(&env.path("checkout"), &["rev-parse", "HEAD"]),
        git(&origin, &["rev-parse", "HEAD"])
    );
    assert!(env.count("SELECT count(*) FROM runs WHERE kind = 'sync' AND status = 'ok'") >= 1);
}

#[test]
fn a_failed_sync_is_recorded_and_tasks_run_anyway() {
    let env = Env::new(
        r#"
version: 1
profiles:
  sync:
    cron: "*/10 * * * *"
    sync_before_run: { repo: checkout, remote: nowhere, branch: main }
    tasks:
      - { sh: "echo still ran", name: check }
"#,
    );
    let checkout = env.path("checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    git(&checkout, &["init", "-q", "-b", "main"]);

    let (code, report) = env.json(&["run", "sync"]);
    assert_eq!(code, 0, "a sync failure alone does not fail the run: {report}");
    assert_eq!(report["sync"]["status"], "failed");
    assert_eq!(report["tasks"][0]["output"], "still ran\n");
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'sync' AND status = 'failed'"),
        1
    );
}

#[test]
fn render_crontab_has_one_line_per_enabled_profile() {
    let env = Env::new(
        r#"
version: 1
profiles:
  hourly: { cron: "0 * * * *", tasks: [ { run: [true] } ] }
  nightly: { cron: "30 3 * * *", timezone: Europe/Berlin, tasks: [ { run: [true] } ] }
  paused: { cron: "@daily", enabled: false, tasks: [ { run: [true] } ] }
"#,
    );
    let out = env.run(&["render-crontab", "--binary", "/usr/local/bin/runbook"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().filter(|l| !l.starts_with('#')).collect();
    let config = env.config.display().to_string();
    assert_eq!(
        lines,
        vec![
            format!("0 * * * * /usr/local/bin/runbook --config {config} run hourly"),
            "CRON_TZ=Europe/Berlin".to_string(),
            format!("30 3 * * * /usr/local/bin/runbook --config {config} run nightly"),
        ]
    );
}

#[test]
fn list_shows_cadence_next_run_and_last_status_without_creating_state() {
    let env = Env::new(TWO_TASKS);
    let (code, rows) = env.json(&["list"]);
    assert_eq!(code, 0);
    assert!(!env.state_db().exists(), "list must not create the state file");
    let row = &rows[0];
    assert_eq!(row["name"], "hourly");
    assert_eq!(row["tasks"], 3);
    assert!(row["next_run"].as_str().unwrap().ends_with(":00:00.000Z"), "{row}");
    assert!(row["last_run"].is_null());

    assert_eq!(env.run(&["run", "hourly"]).code, 0);
    let (_, rows) = env.json(&["list"]);
    assert_eq!(rows[0]["last_run"]["status"], "ok");
    let out = env.run(&["list"]);
    assert!(
        out.stdout.contains("ok ") && out.stdout.contains("ago"),
        "{}",
        out.stdout
    );
}

#[test]
fn consecutive_check_tasks_are_probed_concurrently_and_recorded_in_order() {
    let env = Env::new(
        r#"
version: 1
checks:
  a: { command: { sh: "sleep 1" } }
  b: { command: { sh: "sleep 1" } }
  c: { command: { sh: "sleep 1; exit 2" } }
  d: { command: { sh: "sleep 1" } }
  e: { command: { sh: "sleep 1" } }
profiles:
  p: { cron: "@hourly", tasks: [ a, b, c, d, e, { run: [true], name: after } ] }
"#,
    );
    let started = std::time::Instant::now();
    let (code, report) = env.json(&["run", "p"]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{report}");
    assert!(
        took < Duration::from_millis(4000),
        "five 1s checks took {took:?}: not concurrent"
    );
    let names: Vec<&str> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e", "after"]);
    assert_eq!(report["tasks"][2]["status"], "failed");
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE kind = 'task' AND status = 'running'"),
        0
    );
    assert_eq!(env.count("SELECT count(*) FROM check_results"), 5);
}
