//! The daemon: ticks profiles at cron times, never overlaps a profile, reloads on SIGHUP
//! (keeping the old configuration when the new one is bad), drains on SIGTERM, survives kill -9.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;

use std::time::Duration;

fn runs(env: &Env, sql_where: &str) -> i64 {
    if env.pg.is_none() && !env.state_db().exists() {
        return 0;
    }
    env.db()
        .query_row(&format!("SELECT count(*) FROM runs WHERE {sql_where}"), (), |r| {
            r.get(0)
        })
        .unwrap_or(0)
}

#[test]
fn daemon_runs_profiles_at_their_cron_times_and_speaks_sd_notify() {
    let env = Env::new(
        r#"
version: 1
profiles:
  every-second: { cron: "* * * * * *", tasks: [ { sh: "echo tick" } ] }
  yearly: { cron: "0 0 1 1 *", tasks: [ { run: [true] } ] }
"#,
    );
    let sock_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let daemon = Daemon::start_with(&env, &[], Some(&sock_path));

    let mut buf = [0u8; 512];
    let n = sock.recv(&mut buf).expect("READY notification");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));

    assert!(
        wait_for(Duration::from_secs(20), || runs(
            &env,
            "profile = 'every-second' AND status = 'ok' AND trigger = 'schedule'"
        ) >= 2),
        "daemon did not tick: {}",
        daemon.log()
    );
    assert_eq!(runs(&env, "profile = 'yearly'"), 0);

    let (code, took, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(10));
    let mut saw_stopping = false;
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while let Ok(n) = sock.recv(&mut buf) {
        saw_stopping |= String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1");
    }
    assert!(saw_stopping, "no STOPPING=1");
    assert!(
        log.contains("daemon started") && log.contains("daemon stopped"),
        "{log}"
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn daemon_never_overlaps_a_profile_and_records_skipped_ticks() {
    let env = Env::new(
        r#"
version: 1
profiles:
  slow: { cron: "* * * * * *", tasks: [ { sh: "sleep 2.5", name: slow-task } ] }
"#,
    );
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(30), || runs(
            &env,
            "kind = 'profile' AND status = 'skipped'"
        ) >= 2
            && runs(&env, "kind = 'profile' AND status = 'ok'") >= 1),
        "{}",
        daemon.log()
    );
    let (code, _, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    // Never two task rows running at the same time: each started after the previous ended.
    let db = env.db();
    let mut stmt = db
        .prepare("SELECT started_at, finished_at FROM runs WHERE kind = 'task' ORDER BY id")
        .unwrap();
    let rows: Vec<(String, Option<String>)> = stmt
        .query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for pair in rows.windows(2) {
        let prev_end = pair[0].1.clone().unwrap();
        assert!(pair[1].0 >= prev_end, "overlap: {pair:?}");
    }
}

#[test]
fn sigterm_lets_running_tasks_finish_within_the_grace_then_kills_and_records_them() {
    let env = Env::new(
        r#"
version: 1
profiles:
  long: { cron: "* * * * * *", tasks: [ { sh: "touch started; sleep 60", name: long-task, kill_grace: 500ms } ] }
"#,
    );
    let daemon = Daemon::start_with(&env, &["--shutdown-grace", "1s"], None);
    assert!(
        wait_for(Duration::from_secs(20), || env.path("started").exists()),
        "{}",
        daemon.log()
    );
    let (code, took, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(15), "shutdown took {took:?}");
    assert_eq!(runs(&env, "status = 'running'"), 0, "a run was left open");
    let error: String = env
        .db()
        .query_row("SELECT error FROM runs WHERE task = 'long-task'", (), |r| r.get(0))
        .unwrap();
    assert_eq!(error, "failed (shutdown)");
    assert_eq!(runs(&env, "kind = 'profile' AND status = 'failed'"), 1);
}

#[test]
fn sighup_with_a_bad_file_keeps_the_old_configuration_and_a_good_file_is_applied() {
    let good = r#"
version: 1
profiles:
  first: { cron: "* * * * * *", tasks: [ { run: [true] } ] }
"#;
    let env = Env::new(good);
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(20), || runs(&env, "profile = 'first'") >= 1),
        "{}",
        daemon.log()
    );

    // A broken file: `runbook reload` refuses it and does not signal the daemon.
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, text.replace("first:", "first:\n    crn: bad\n  x:")).unwrap();
    let out = env.run(&["reload"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("runbook.yaml:"), "{}", out.stderr);
    // A raw SIGHUP with the broken file: the daemon logs the errors and keeps going.
    signal(daemon.pid(), "HUP");
    assert!(
        wait_for(Duration::from_secs(10), || daemon
            .log()
            .contains("configuration not reloaded")),
        "{}",
        daemon.log()
    );
    let before = runs(&env, "profile = 'first'");
    assert!(
        wait_for(Duration::from_secs(20), || runs(&env, "profile = 'first'") > before),
        "old config stopped ticking"
    );

    // A good file with a second profile.
    std::fs::write(
        &env.config,
        format!("{text}  second: {{ cron: \"* * * * * *\", tasks: [ {{ run: [true] }} ] }}\n"),
    )
    .unwrap();
    let out = env.run(&["reload"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("asked the daemon"), "{}", out.stdout);
    assert!(
        wait_for(Duration::from_secs(20), || runs(&env, "profile = 'second'") >= 1),
        "{}",
        daemon.log()
    );
    let (code, _, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("unknown key `crn`"), "reload errors are logged: {log}");
}

#[test]
fn reload_without_a_daemon_says_so() {
    let env = Env::new("version: 1\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { run: [true] } ] }\n");
    let out = env.run(&["reload"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no runbook daemon is running"), "{}", out.stderr);
}

#[test]
fn kill_9_mid_run_leaves_a_recoverable_ledger_and_an_intact_chain() {
    let env = Env::new(
        r#"
version: 1
profiles:
  crawl: { cron: "* * * * * *", tasks: [ { sh: "touch started; sleep 60", name: crawl-task } ] }
"#,
    );
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(20), || env.path("started").exists()),
        "{}",
        daemon.log()
    );
    daemon.kill_9();
    assert!(runs(&env, "status = 'running'") >= 2);

    // The next start works (the kernel released the daemon and profile locks).
    std::fs::remove_file(env.path("started")).unwrap();
    let second = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(20), || env.path("started").exists()),
        "{}",
        second.log()
    );
    let (code, _, log) = second.stop();
    assert_eq!(code, 0, "{log}");

    let (_, found) = env.json(&["jobs", "recover-stale", "--older-than-minutes", "180"]);
    let stale = found["stale"].as_array().unwrap();
    assert_eq!(stale.len(), 2, "the orphaned profile and task runs: {found}");
    assert!(stale.iter().all(|s| s["reason"].as_str().unwrap().contains("is gone")));
    assert_eq!(
        env.run(&["jobs", "recover-stale", "--older-than-minutes", "180", "--apply"])
            .code,
        0
    );
    assert_eq!(runs(&env, "status = 'running'"), 0);
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
    assert_eq!(env.integrity(), "ok");
}

#[test]
fn a_second_daemon_on_the_same_state_refuses_to_start() {
    let env = Env::new("version: 1\nprofiles:\n  p: { cron: \"@yearly\", tasks: [ { run: [true] } ] }\n");
    let first = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(20), || first.log().contains("daemon started")),
        "{}",
        first.log()
    );
    let out = env.run(&["daemon"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("another runbook daemon"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&first.pid().to_string()),
        "names the pid: {}",
        out.stderr
    );
    let (code, _, _) = first.stop();
    assert_eq!(code, 0);
}

#[test]
fn the_daemon_signs_an_audit_checkpoint_every_checkpoint_every() {
    let env = Env::new("version: 1\nprofiles:\n  p: { cron: \"@yearly\", tasks: [ { run: [true] } ] }\n");
    assert_eq!(env.run(&["state", "set", "ns", "k", "v", "--apply"]).code, 0);
    let (code, key) = env.json(&["audit", "keygen", "--out", "audit.key"]);
    assert_eq!(code, 0, "{key}");
    let public = key["public_key"].as_str().unwrap().to_string();
    let yaml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{yaml}audit: {{ signing_key: audit.key, checkpoint_every: 1s, public_keys: [ \"{public}\" ] }}\n"),
    )
    .unwrap();
    let daemon = Daemon::start(&env);
    let signed = wait_for(Duration::from_secs(20), || {
        (env.pg.is_some() || env.state_db().exists())
            && env
                .db()
                .query_row("SELECT count(*) FROM audit_checkpoints", (), |r| r.get::<_, i64>(0))
                .unwrap_or(0)
                >= 2
    });
    let (code, _, log) = daemon.stop();
    assert!(signed, "no checkpoints signed:\n{log}");
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("audit checkpoint signed"), "{log}");
    // Every one of them holds against the chain and is signed by the trusted key.
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "{v}");
    assert!(
        v["checkpoints"].as_array().unwrap().iter().all(|c| c["ok"] == true),
        "{v}"
    );
}

#[test]
fn a_scheduled_run_that_cannot_start_is_recorded_as_failed_and_alerts() {
    let env = Env::new(
        r#"
version: 1
profiles:
  tick: { cron: "* * * * * *", tasks: [ { run: [true] } ] }
"#,
    );
    // The profile's lock cannot be opened (a directory stands where its file goes), as when
    // the daemon is out of file descriptors: no run can start.
    std::fs::create_dir_all(runbook::util::lock::lock_dir(&env.state_anchor()).join("tick.lock")).unwrap();
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(20), || runs(
            &env,
            "status = 'failed' AND error LIKE '%could not start%'"
        ) >= 1),
        "the missed run is in the ledger: {}",
        daemon.log()
    );
    // The alert is written just after the run: wait for it, too.
    assert!(
        wait_for(Duration::from_secs(10), || env.count(
            "SELECT count(*) FROM alerts WHERE name = 'missed-run:tick' AND status = 'firing'"
        ) == 1),
        "{}",
        daemon.log()
    );
    assert!(env.count("SELECT count(*) FROM audit_events WHERE kind = 'run.missed'") >= 1);
    assert!(
        daemon.log().contains("a scheduled run could not start"),
        "{}",
        daemon.log()
    );

    // The lock can be taken again: the next run is recorded and the alert resolves.
    std::fs::remove_dir(runbook::util::lock::lock_dir(&env.state_anchor()).join("tick.lock")).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || env.count(
            "SELECT count(*) FROM alerts WHERE name = 'missed-run:tick' AND status = 'resolved'"
        ) == 1),
        "{}",
        daemon.log()
    );
    assert!(runs(&env, "status = 'ok'") >= 1);
    let (code, _, _) = daemon.stop();
    assert_eq!(code, 0);
}
