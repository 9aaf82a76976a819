//! `runbook recover`: the host rebuild drill into an empty root, from offsite or a directory,
//! with the phase times, the data's age, evidence and an audit event; the live host untouched.

mod common;

use common::*;
use std::path::Path;

fn env_with_data() -> Env {
    let env = Env::new(
        r#"version: 1
backups:
  app:
    sources:
      - { sqlite: "{dir}/srv/app.db" }
      - { dir: "{dir}/srv/uploads" }
    dest: "{dir}/backups"
    keep: { last: 3 }
    offsite: { url: "{dir}/offsite" }
    pre: [ [touch, "{dir}/pre-ran"] ]
recover:
  start: [ { sh: "echo up > started" } ]
  checks:
    - { name: orders, sh: "test \"$(sqlite3 \"$RUNBOOK_RECOVER_ROOT{dir}/srv/app.db\" 'select count(*) from orders')\" = 2" }
    - { name: uploads, sh: "test -s \"$RUNBOOK_RECOVER_ROOT{dir}/srv/uploads/a.txt\"" }
  rto_goal: 10m
"#,
    );
    std::fs::create_dir_all(env.path("srv/uploads")).unwrap();
    env.write("srv/uploads/a.txt", "upload\n");
    let db = rusqlite::Connection::open(env.path("srv/app.db")).unwrap();
    db.execute_batch("CREATE TABLE orders (id INTEGER); INSERT INTO orders VALUES (1), (2);")
        .unwrap();
    drop(db);
    assert_eq!(env.run(&["backup", "create", "app"]).code, 0);
    let push = env.run(&["backup", "push", "app"]);
    assert_eq!(push.code, 0, "{}{}", push.stdout, push.stderr);
    env
}

fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn recover_rebuilds_the_host_into_an_empty_root_and_measures_it() {
    if std::process::Command::new("sqlite3").arg("-version").output().is_err() {
        return cannot_run("sqlite3 is not installed");
    }
    let env = env_with_data();
    let live = std::fs::read(env.path("srv/app.db")).unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path().join("host");
    let rs = r.to_str().unwrap();

    // The plan: nothing written.
    let plan = env.run(&["recover", "--root", rs, "--from", "offsite"]);
    assert_eq!(plan.code, 0, "{}{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("fetch app-"), "{}", plan.stdout);
    assert_eq!(files_under(&r), 0, "the plan wrote into the root");

    let out = env.run(&["recover", "--root", rs, "--from", "offsite", "--execute", "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["install", "fetch", "verify", "restore", "start", "validate"],
        "{v}"
    );
    assert!(v["phases"].as_array().unwrap().iter().all(|p| p["ok"] == true), "{v}");
    assert_eq!(v["checks"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["rto_ms"].as_u64().unwrap() > 0);
    assert_eq!(v["rto_goal_ms"], 600_000);
    let target = &v["targets"][0];
    assert_eq!(target["target"], "app");
    assert!(target["rpo_s"].as_i64().unwrap() >= 0, "{v}");

    // The new host: installed, with this configuration, its data back, its services started.
    assert!(r.join("etc/systemd/system/runbook.service").exists());
    assert_eq!(
        std::fs::read_to_string(r.join("etc/runbook/runbook.yaml")).unwrap(),
        std::fs::read_to_string(&env.config).unwrap()
    );
    let restored = r.join(env.path("srv/app.db").strip_prefix("/").unwrap());
    let n: i64 = rusqlite::Connection::open(&restored)
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |row| row.get(0))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(std::fs::read_to_string(r.join("started")).unwrap(), "up\n");
    // The live host: untouched, its pre hook never run.
    assert_eq!(std::fs::read(env.path("srv/app.db")).unwrap(), live);
    assert!(!env.path("pre-ran").exists(), "a hook of the live host ran");
    // Evidence and the audit chain.
    let evidence = v["evidence"].as_str().unwrap();
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(evidence).unwrap()).unwrap();
    assert_eq!(saved["rto_ms"], v["rto_ms"]);
    let audit = env.run(&["audit", "list", "--kind", "recover.drilled", "--json"]);
    assert!(audit.stdout.contains("rto_ms"), "{}", audit.stdout);
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
    // The status page shows the newest rebuild's time.
    let secret = create_token(&env, "reader", "read");
    let (_server, port) = serve(&env);
    let page = common::http::get(port, "/", Some(&secret)).body;
    assert!(page.contains("id=\"rebuild\""), "{page}");
    assert!(page.contains("recovered</span> in "), "{page}");

    // An empty root only.
    let again = env.run(&["recover", "--root", rs, "--from", "offsite", "--execute"]);
    assert_eq!(again.code, 2, "{}", again.stderr);
}

#[test]
fn recover_from_a_directory_and_a_missed_goal_fails() {
    if std::process::Command::new("sqlite3").arg("-version").output().is_err() {
        return cannot_run("sqlite3 is not installed");
    }
    let env = env_with_data();
    env.edit_config("rto_goal: 10m", "rto_goal: 1ms");
    let root = tempfile::tempdir().unwrap();
    let r = root.path().join("host");
    let backups = env.path("backups");
    let out = env.run(&[
        "recover",
        "--root",
        r.to_str().unwrap(),
        "--from",
        backups.to_str().unwrap(),
        "--execute",
        "--json",
    ]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    // Every phase worked: the recovery only took longer than its goal.
    assert!(v["phases"].as_array().unwrap().iter().all(|p| p["ok"] == true), "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["rto_goal_ms"], 1);

    // A broken archive stops the rebuild at verify, before anything is restored.
    let root2 = tempfile::tempdir().unwrap();
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&archive).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    let out = env.run(&[
        "recover",
        "--root",
        root2.path().join("h").to_str().unwrap(),
        "--from",
        backups.to_str().unwrap(),
        "--execute",
        "--json",
    ]);
    assert_eq!(out.code, 1);
    let v = out.json();
    let verify = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "verify")
        .unwrap()
        .clone();
    assert_eq!(verify["ok"], false, "{v}");
    assert!(
        !root2
            .path()
            .join("h")
            .join(env.path("srv/app.db").strip_prefix("/").unwrap())
            .exists()
    );
}

#[test]
fn a_recover_drill_task_measures_the_rebuild_and_alerts_when_it_misses_its_goal() {
    if std::process::Command::new("sqlite3").arg("-version").output().is_err() {
        return cannot_run("sqlite3 is not installed");
    }
    let env = env_with_data();
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{text}profiles:\n  weekly:\n    cron: \"0 4 * * 0\"\n    tasks: [ {{ recover_drill: offsite }} ]\n"),
    )
    .unwrap();
    let out = env.run(&["run", "weekly", "--json"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    let summary = v["tasks"][0]["summary"].as_str().unwrap().to_string();
    assert!(summary.starts_with("RTO "), "{summary}");
    assert!(summary.contains("app RPO"), "{summary}");
    // The scratch root is gone; the evidence stays.
    let state_dir = env.state_db().parent().unwrap().to_path_buf();
    assert!(
        std::fs::read_dir(&state_dir)
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with("recover-drill-")),
        "the scratch root was left behind"
    );
    assert_eq!(files_under(&env.path("evidence/recover")), 1);

    // A rebuild slower than its goal fails the task, and the task's alert opens.
    env.edit_config("rto_goal: 10m", "rto_goal: 1ms");
    let out = env.run(&["run", "weekly", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let alerts = env.run(&["alerts", "list", "--json"]);
    assert!(alerts.stdout.contains("recover-drill"), "{}", alerts.stdout);

    // `offsite` needs every target to have one.
    let text = std::fs::read_to_string(&env.config).unwrap();
    let without: Vec<&str> = text.lines().filter(|l| !l.contains("offsite: { url:")).collect();
    std::fs::write(&env.config, without.join("\n") + "\n").unwrap();
    let check = env.run(&["config", "check"]);
    assert_eq!(check.code, 2);
    assert!(
        check.stderr.contains("backup target `app` has no `offsite:`"),
        "{}",
        check.stderr
    );
}

#[test]
fn recover_never_loads_a_dump_into_the_live_database_server() {
    if std::process::Command::new("pg_dump").arg("--version").output().is_err() {
        return cannot_run("pg_dump is not installed");
    }
    let live = PgDb::create();
    live.query("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1)");
    let env = Env::new(&format!(
        "version: 1\nbackups:\n  app:\n    sources: [ {{ postgres: \"{}\" }}, {{ dir: \"{{dir}}/srv\" }} ]\n    dest: \"{{dir}}/backups\"\n",
        live.url()
    ));
    env.write("srv/a.txt", "a\n");
    let made = env.run(&["backup", "create", "app"]);
    assert_eq!(made.code, 0, "{}{}", made.stdout, made.stderr);
    // The live database moves on after the archive.
    live.query("INSERT INTO orders VALUES (2)");
    let root = tempfile::tempdir().unwrap();
    let out = env.run(&[
        "recover",
        "--root",
        root.path().join("h").to_str().unwrap(),
        "--from",
        env.path("backups").to_str().unwrap(),
        "--execute",
        "--json",
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        live.query("SELECT count(*) FROM orders"),
        "2",
        "the rebuild loaded its dump into the live server"
    );
    let v = out.json();
    assert!(
        v["targets"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL dump(s) not loaded"),
        "{v}"
    );
    assert!(
        root.path()
            .join("h")
            .join(env.path("srv/a.txt").strip_prefix("/").unwrap())
            .exists()
    );
}
