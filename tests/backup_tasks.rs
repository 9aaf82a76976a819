//! Backups in the rest of runbook: profile tasks (`backup`, `verify`, `drill`, `prune`, `push`) in the jobs
//! ledger, the `backup_age` check, and the backup figures on `/metrics`.

mod common;

use common::http::get;
use common::*;
use std::path::Path;

const CONFIG: &str = r#"
version: 1
checks:
  backup-fresh: { backup_age: { target: main, max_age: 1h } }
backups:
  main:
    sources: [ { dir: data } ]
    dest: archives
    keep: { last: 2 }
    drill:
      checks: [ "test -f dir/data/a.txt" ]
profiles:
  nightly:
    cron: "@daily"
    tasks: [ { backup: main }, { drill: main }, { prune: main, name: tidy } ]
"#;

#[test]
fn a_profile_backs_up_drills_and_prunes_with_one_ledger_row_per_task() {
    let env = Env::new(CONFIG);
    env.write("data/a.txt", "a\n");
    let dry = env.run(&["run", "nightly", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("runbook backup create main"), "{}", dry.stdout);
    assert!(
        dry.stdout.contains("runbook backup prune main --apply"),
        "{}",
        dry.stdout
    );
    assert!(!env.path("archives").exists(), "a dry run writes nothing");

    for _ in 0..3 {
        let out = env.run(&["run", "nightly"]);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    }
    let tasks: Vec<(String, String)> = {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT task, status FROM runs WHERE kind = 'task' ORDER BY id")
            .unwrap();
        stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(tasks.len(), 9, "{tasks:?}");
    assert_eq!(
        tasks[..3],
        [
            ("backup-main".to_string(), "ok".to_string()),
            ("drill-main".to_string(), "ok".to_string()),
            ("tidy".to_string(), "ok".to_string())
        ]
    );
    // Retention ran: two archives stay. Every archive written was drilled before it went.
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(env.count("SELECT count(*) FROM backups WHERE drilled_at IS NULL"), 0);
    // A drill reads every byte back: the drilled archive counts as verified.
    assert_eq!(list[0]["verify_ok"], true, "{list}");
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 0, "{v}");
}

#[test]
fn a_verify_task_checks_the_newest_archive_and_fails_on_a_damaged_one() {
    let env = Env::new(&format!(
        "{CONFIG}  checkup:\n    cron: \"@daily\"\n    tasks: [ {{ verify: main }} ]\n"
    ));
    env.write("data/a.txt", "a\n");
    let dry = env.run(&["run", "checkup", "--dry-run"]);
    assert!(
        dry.stdout.contains("runbook backup verify --latest main"),
        "{}",
        dry.stdout
    );
    let out = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let archive = out.json()["path"].as_str().unwrap().to_string();
    let (code, _) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1, "not verified yet");

    let out = env.run(&["run", "checkup"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 0, "{v}");

    // One flipped byte: the task fails, says why, and the archive no longer counts.
    let mut bytes = std::fs::read(&archive).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&archive, &bytes).unwrap();
    let out = env.run(&["run", "checkup"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let output: String = env
        .db()
        .query_row(
            "SELECT output FROM runs WHERE task = 'verify-main' ORDER BY id DESC LIMIT 1",
            (),
            |r| r.get(0),
        )
        .unwrap();
    assert!(output.contains("FAILED") && output.contains("SHA-256"), "{output}");
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert_eq!(list[0]["verify_ok"], false, "{list}");
    let (code, _) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1);
}

#[test]
fn a_failing_drill_task_fails_the_run_and_opens_the_task_alert() {
    let env = Env::new(&CONFIG.replace("test -f dir/data/a.txt", "test -f dir/data/missing.txt"));
    env.write("data/a.txt", "a\n");
    let out = env.run(&["run", "nightly"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let (_, alerts) = env.json(&["alerts", "list", "--status", "firing"]);
    assert!(
        alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "nightly/drill-main"),
        "{alerts}"
    );
    // A drill check that fails says nothing against the archive, which was read back whole.
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert_eq!(list[0]["drill_ok"], false, "{list}");
    assert_eq!(list[0]["verify_ok"], true, "{list}");
}

#[test]
fn backup_age_needs_a_recent_verified_archive() {
    let env = Env::new(CONFIG);
    env.write("data/a.txt", "a\n");
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1);
    assert!(v[0]["detail"].as_str().unwrap().contains("no archive"), "{v}");

    let out = env.run(&["backup", "create", "main"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1, "an unverified archive does not count: {v}");
    assert!(v[0]["detail"].as_str().unwrap().contains("never verified"), "{v}");

    assert_eq!(env.run(&["backup", "verify", "--latest", "main"]).code, 0);
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 0, "{v}");
    assert!(
        v[0]["detail"].as_str().unwrap().contains("newest verified archive is"),
        "{v}"
    );

    // Make the archive look two hours old: the check fails with the limit in its detail.
    env.db()
        .execute("UPDATE backups SET created_at = ?1", [ago(2 * 3600)])
        .unwrap();
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1);
    assert!(v[0]["detail"].as_str().unwrap().contains("limit 1h"), "{v}");

    // Recent again, but its file is gone: it restores nothing, and does not count.
    env.db()
        .execute("UPDATE backups SET created_at = ?1", [ago(0)])
        .unwrap();
    assert_eq!(env.json(&["check", "backup-fresh"]).0, 0);
    let (_, list) = env.json(&["backup", "list", "main"]);
    std::fs::remove_file(list[0]["path"].as_str().unwrap()).unwrap();
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1, "{v}");
    assert!(v[0]["detail"].as_str().unwrap().contains("is missing"), "{v}");
    // Nor when the whole dest is not there (its disk not mounted): missing, not "none yet".
    std::fs::rename(env.path("archives"), env.path("archives.away")).unwrap();
    let (code, v) = env.json(&["check", "backup-fresh"]);
    assert_eq!(code, 1, "{v}");
    assert!(v[0]["detail"].as_str().unwrap().contains("is its disk mounted"), "{v}");
}

/// What `backup list` says of the archive at `path`: verified ok, failed, or never.
fn verify_ok(env: &Env, path: &str) -> Option<bool> {
    let (_, list) = env.json(&["backup", "list", "main"]);
    let row = list.as_array().unwrap().iter().find(|r| r["path"] == path).cloned();
    row.unwrap_or_else(|| panic!("{path} is not listed: {list}"))["verify_ok"].as_bool()
}

#[test]
fn verify_latest_takes_this_configs_dest_and_fails_when_the_newest_file_is_gone() {
    let env = Env::new(CONFIG);
    env.write("data/a.txt", "a\n");
    let first = env.run(&["backup", "create", "main", "--json"]).json()["path"]
        .as_str()
        .unwrap()
        .to_string();
    // Another config sharing the state file, with a target of the same name elsewhere.
    let other = env.path("other.yaml");
    std::fs::write(
        &other,
        "state: { url: \"sqlite://state/runbook.db\" }\nversion: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: elsewhere }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["--config", other.to_str().unwrap(), "backup", "create", "main"])
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, v) = env.json(&["backup", "verify", "--latest", "main"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["archive"].as_str().unwrap(),
        first,
        "this config's archive, not the other's"
    );

    std::fs::remove_file(&first).unwrap();
    // Named relative to the working directory, it is still the recorded archive that is gone.
    let relative = Path::new(&first)
        .strip_prefix(env.dir.path())
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let (code, v) = env.json(&["backup", "verify", &relative]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(verify_ok(&env, &first), Some(false), "recorded against the archive");
    let (code, v) = env.json(&["backup", "verify", "--latest", "main"]);
    assert_eq!(code, 1, "{v}");
    assert!(v["problems"][0].as_str().unwrap().contains("gone"), "{v}");
    assert_eq!(verify_ok(&env, &first), Some(false));
}

#[test]
fn unknown_backup_targets_in_tasks_and_checks_are_config_errors() {
    let env = Env::new(
        r#"
version: 1
checks:
  fresh: { backup_age: { target: mian, max_age: 1h } }
backups:
  main: { sources: [ { dir: data } ], dest: archives }
profiles:
  p: { cron: "@daily", tasks: [ { prune: nope } ] }
"#,
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("backup_age: no backup target named `mian`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("did you mean `main`?"), "{}", out.stderr);
    assert!(
        out.stderr.contains("`prune:` task: no backup target named `nope`"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("runbook.yaml:5:34"), "{}", out.stderr);
}

#[test]
fn metrics_carry_the_newest_archive_its_verification_and_the_drill_time() {
    let env = Env::new(CONFIG);
    env.write("data/a.txt", "a\n");
    assert_eq!(env.run(&["backup", "create", "main"]).code, 0);
    assert_eq!(env.run(&["backup", "drill", "--latest", "main"]).code, 0);
    assert_eq!(env.run(&["backup", "verify", "--latest", "main"]).code, 0);
    let size = env.count("SELECT size FROM backups");
    let token = env.run(&["token", "create", "prom"]).stdout.trim().to_string();
    let text = {
        let (_server, port) = serve(&env);
        get(port, "/metrics", Some(&token)).body
    };
    assert!(
        text.contains(&format!("runbook_backup_size_bytes{{target=\"main\"}} {size}")),
        "{text}"
    );
    for family in [
        "runbook_backup_last_success_timestamp_seconds{target=\"main\"}",
        "runbook_backup_last_verified_timestamp_seconds{target=\"main\"}",
        "runbook_backup_drill_recovery_seconds{target=\"main\"}",
    ] {
        assert!(text.contains(family), "{family} in:\n{text}");
    }
    promtool_accepts(&text);
}

#[test]
fn a_push_task_copies_new_archives_offsite_on_schedule() {
    let env = Env::new(
        r#"
version: 1
backups:
  main: { sources: [ { dir: data } ], dest: archives, offsite: { url: offsite } }
profiles:
  nightly: { cron: "@daily", tasks: [ { backup: main }, { push: main } ] }
"#,
    );
    env.write("data/a.txt", "a\n");
    let dry = env.run(&["run", "nightly", "--dry-run"]);
    assert!(dry.stdout.contains("runbook backup push main"), "{}", dry.stdout);
    let out = env.run(&["run", "nightly"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let (_, list) = env.json(&["backup", "list", "main"]);
    let name = std::path::Path::new(list[0]["path"].as_str().unwrap())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let offsite = env.names("offsite");
    assert!(
        offsite.contains(&name) && offsite.contains(&format!("{name}.sha256")),
        "{offsite:?}"
    );
    let (status, output): (String, String) = env
        .db()
        .query_row("SELECT status, output FROM runs WHERE task = 'push-main'", (), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "ok");
    assert!(output.contains("pushed 1"), "{output}");

    // A target without `offsite:` cannot be pushed: said when the config is read.
    env.edit_config(", offsite: { url: offsite }", "");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("`push:` task: backup target `main` has no `offsite:`"),
        "{}",
        out.stderr
    );
}

/// The ids of the target's archives the state file records as drilled, pruned, or neither.
fn ids(env: &Env, cond: &str) -> Vec<i64> {
    let db = env.db();
    let mut stmt = db
        .prepare(&format!("SELECT id FROM backups WHERE {cond} ORDER BY id"))
        .unwrap();
    stmt.query_map((), |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// `main` with the policy `keep` and the nightly profile's `tasks`, and `n` archives of it
/// made before any runs.
fn archives_made_before(n: usize, keep: &str, tasks: &str) -> Env {
    let env = Env::new(&CONFIG.replace("keep: { last: 2 }", keep).replace(
        "[ { backup: main }, { drill: main }, { prune: main, name: tidy } ]",
        tasks,
    ));
    env.write("data/a.txt", "a\n");
    for _ in 0..n {
        assert_eq!(env.run(&["backup", "create", "main"]).code, 0);
    }
    env
}

/// A drill that failed is not a drill: its archive is drilled again, and a prune keeps it
/// meanwhile.
#[test]
fn a_failed_drill_does_not_count_as_drilled() {
    let env = Env::new(&CONFIG.replace("keep: { last: 2 }", "keep: { last: 1 }").replace(
        "[ { backup: main }, { drill: main }, { prune: main, name: tidy } ]",
        "[ { drill: main }, { prune: main, name: tidy } ]",
    ));
    // The first archive lacks what the drill's check looks for; the second has it.
    env.write("data/b.txt", "b\n");
    assert_eq!(env.run(&["backup", "create", "main"]).code, 0);
    env.write("data/a.txt", "a\n");
    assert_eq!(env.run(&["backup", "create", "main"]).code, 0);
    for round in 0..2 {
        let out = env.run(&["run", "nightly"]);
        assert_eq!(
            out.code, 1,
            "round {round}: the drill fails\n{}\n{}",
            out.stdout, out.stderr
        );
        assert_eq!(ids(&env, "drill_ok = 0"), vec![1], "round {round}");
        assert!(
            ids(&env, "drill_ok = 1").is_empty(),
            "round {round}: the same archive again"
        );
        assert!(
            ids(&env, "pruned_at IS NOT NULL").is_empty(),
            "round {round}: kept until drilled"
        );
    }
    let (_, plan) = env.json(&["backup", "prune", "main"]);
    assert!(plan["keep"].to_string().contains("next to drill"), "{plan}");
}

#[test]
fn every_archive_is_drilled_before_a_scheduled_prune_removes_it() {
    // Four archives before the first drill: two more than `last: 2` keeps.
    let env = archives_made_before(
        4,
        "keep: { last: 2 }",
        "[ { drill: main }, { prune: main, name: tidy } ]",
    );
    let out = env.run(&["run", "nightly"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(ids(&env, "drilled_at IS NOT NULL"), vec![1]);
    // The first is kept as the newest verified one (a passing drill verifies); the second,
    // which `last: 2` lets go, waits for its drill.
    assert!(ids(&env, "pruned_at IS NOT NULL").is_empty());
    let (_, plan) = env.json(&["backup", "prune", "main"]);
    assert!(plan["keep"].to_string().contains("next to drill"), "{plan}");
    for _ in 0..2 {
        let out = env.run(&["run", "nightly"]);
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    }
    assert_eq!(ids(&env, "pruned_at IS NOT NULL"), vec![1, 2]);
    assert!(
        ids(&env, "pruned_at IS NOT NULL AND drilled_at IS NULL").is_empty(),
        "none went undrilled"
    );
}

#[test]
fn the_scheduled_drill_takes_what_the_next_prune_removes_before_what_the_policy_keeps() {
    let env = archives_made_before(3, "keep: { daily: 1, monthly: 6 }", "[ { drill: main } ]");
    // The oldest is from September: `monthly` keeps it for months. The second is today's
    // but not the newest of today: the next prune removes it.
    env.db()
        .execute(
            "UPDATE backups SET created_at = '2026-09-15T00:00:00.000Z' WHERE id = 1",
            (),
        )
        .unwrap();
    let out = env.run(&["run", "nightly"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(ids(&env, "drilled_at IS NOT NULL"), vec![2]);
}

#[test]
fn once_all_are_drilled_the_drill_takes_the_one_drilled_longest_ago() {
    let env = archives_made_before(4, "keep: { last: 2 }", "[ { drill: main } ]");
    // The two `last: 2` lets go were drilled lately; the two it keeps, weeks ago.
    env.db()
        .execute_batch(
            "UPDATE backups SET drilled_at = '2026-11-20T10:00:00.000Z', drill_ok = 1 WHERE id IN (1, 2);
             UPDATE backups SET drilled_at = '2026-11-01T09:00:00.000Z', drill_ok = 1 WHERE id = 3;
             UPDATE backups SET drilled_at = '2026-11-01T09:30:00.000Z', drill_ok = 1 WHERE id = 4;",
        )
        .unwrap();
    let mut taken = Vec::new();
    for _ in 0..2 {
        let before = ids(&env, "drilled_at > '2026-11-25'");
        assert_eq!(env.run(&["run", "nightly"]).code, 0);
        let after = ids(&env, "drilled_at > '2026-11-25'");
        taken.extend(after.into_iter().filter(|id| !before.contains(id)));
    }
    assert_eq!(taken, vec![3, 4]);
}
