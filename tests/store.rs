//! The state file: schema versions, and faults (read-only, full disk, damaged, too new) that
//! must end in a clear error with exit 3 and no corruption.

mod common;

use common::*;

const CONFIG: &str = "version: 1\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { sh: \"echo hello\" } ] }\n";

#[test]
fn db_status_reports_current_and_head_versions() {
    let env = Env::new(CONFIG);
    let (code, before) = env.json(&["db", "status"]);
    assert_eq!(code, 0);
    assert_eq!(before["exists"], false);
    assert_eq!(before["current"], 0);
    assert_eq!(before["status"], "behind");
    assert!(!env.state_db().exists(), "status must not create the file");
    if let Some(db) = &env.pg {
        assert_eq!(
            db.query("SELECT to_regclass('runbook_schema') IS NULL"),
            "t",
            "status must not create tables"
        );
    }

    let (_, dry) = env.json(&["db", "migrate"]);
    assert_eq!(dry["apply"], false);
    assert!(!env.state_db().exists(), "migrate without --apply wrote");
    assert_eq!(env.run(&["db", "migrate", "--apply"]).code, 0);
    let (_, after) = env.json(&["db", "status"]);
    assert_eq!(after["current"], after["head"]);
    assert_eq!(after["status"], "head");
    if env.pg.is_none() {
        let mode: String = env.db().query_row("PRAGMA journal_mode", (), |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }
}

#[test]
fn a_state_file_from_a_newer_runbook_is_refused() {
    let env = Env::new(CONFIG);
    assert_eq!(env.run(&["run", "p"]).code, 0);
    match &env.pg {
        Some(db) => drop(db.query("UPDATE runbook_schema SET version = 99")),
        None => env.db().execute_batch("PRAGMA user_version = 99").unwrap(),
    }
    let out = env.run(&["run", "p"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("schema version 99, newer than this runbook knows"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: upgrade runbook"), "{}", out.stderr);
}

#[test]
fn a_file_that_is_not_a_database_gives_a_clear_error() {
    let env = Env::new(CONFIG);
    env.write("state/runbook.db", &"this is not sqlite\n".repeat(200));
    let out = env.run(&["jobs", "list"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("state file"), "{}", out.stderr);
    assert!(
        out.stderr.contains("damaged or not a runbook database"),
        "{}",
        out.stderr
    );
}

fn tmpfs_env() -> Env {
    Env::new(&format!("state: {{ url: \"sqlite://mnt/runbook.db\" }}\n{CONFIG}"))
}

#[test]
fn a_full_disk_gives_exit_3_and_loses_nothing_already_recorded() {
    let env = tmpfs_env();
    let Some(log) = in_tmpfs(
        &env,
        "2m",
        r#"
R run p >/dev/null; echo "first=$?"
dd if=/dev/zero of="$MNT/filler" bs=4k 2>/dev/null
R run p; echo "full=$?"
R state set ns key "$(head -c 100000 /dev/zero | tr '\0' x)" --apply; echo "state=$?"
rm "$MNT/filler"
R audit verify; echo "verify=$?"
R jobs list --json | grep -c '"status": "ok"' | sed 's/^/ok_rows=/'
sqlite3 "$MNT/runbook.db" 'PRAGMA integrity_check' 2>/dev/null | sed 's/^/integrity=/'
"#,
    ) else {
        return;
    };
    assert!(log.contains("first=0"), "{log}");
    assert!(
        log.contains("full=3"),
        "a full disk is an internal error (exit 3): {log}"
    );
    assert!(log.contains("disk holding the state file is full"), "{log}");
    assert!(log.contains("state=3"), "{log}");
    assert!(log.contains("verify=0"), "the chain survived: {log}");
    assert!(log.contains("ok_rows=2"), "the first run's rows are intact: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_read_only_state_gives_exit_3_with_a_clear_error_and_no_corruption() {
    let env = tmpfs_env();
    let Some(log) = in_tmpfs(
        &env,
        "8m",
        r#"
R run p >/dev/null; echo "first=$?"
mount -o remount,ro "$MNT"
R run p; echo "ro_run=$?"
R state set ns key value --apply; echo "ro_state=$?"
mount -o remount,rw "$MNT"
R audit verify; echo "verify=$?"
R run p >/dev/null; echo "after=$?"
"#,
    ) else {
        return;
    };
    assert!(log.contains("first=0"), "{log}");
    assert!(log.contains("ro_run=3"), "{log}");
    assert!(log.contains("ro_state=3"), "{log}");
    assert!(
        log.contains("not writable") || log.contains("read-only"),
        "the error says why: {log}"
    );
    assert!(log.contains("verify=0"), "{log}");
    assert!(log.contains("after=0"), "works again once writable: {log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// Bytes in the state file's WAL (0 when there is none).
fn wal_len(env: &Env) -> u64 {
    std::fs::metadata(env.path("state/runbook.db-wal")).map_or(0, |m| m.len())
}

#[test]
fn a_big_wal_is_truncated_by_the_last_process_to_close_the_state_file() {
    let env = Env::new(CONFIG);
    assert_eq!(env.run(&["db", "migrate", "--apply"]).code, 0);
    // `state import` of 4 keys of 100 KiB: one command that writes ~400 KiB.
    let set = |tag: &str| {
        for i in 0..4 {
            env.write(
                &format!("import-{tag}/key{i}.txt"),
                &format!("{tag}{}", "x".repeat(100 * 1024)),
            );
        }
        let out = env.run(&["state", "import", &format!("import-{tag}"), "--apply"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    };
    // Alone, a command that leaves a big WAL truncates it as it exits: the next command
    // does not have to read it all again.
    set("a");
    assert_eq!(wal_len(&env), 0);

    // Another process with the file open (here `runbook serve`) changes nothing: the
    // checkpoint goes through SQLite's own locks, which an idle reader does not hold against
    // it; no second descriptor on the file is ever opened and closed behind SQLite's back.
    let (server, _port) = serve(&env);
    set("b");
    assert_eq!(wal_len(&env), 0);
    drop(server);
    set("c");
    assert_eq!(wal_len(&env), 0);
    let integrity: String = env.db().query_row("PRAGMA integrity_check", (), |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let (_, keys) = env.json(&["state", "list"]);
    assert!(keys.to_string().contains("key3"), "{keys}");
}
