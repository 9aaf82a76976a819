//! Restore drills and restores through the real binary: scratch restores with timed phases
//! and evidence, a real PostgreSQL scratch database, and restores that put data back with
//! safety copies and hooks, or refuse before touching anything.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn sqlite(path: &Path, sql: &str) {
    rusqlite::Connection::open(path).unwrap().execute_batch(sql).unwrap();
}

fn rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT count(*) FROM t", (), |r| r.get(0))
        .unwrap()
}

fn create(env: &Env, target: &str) -> String {
    let out = env.run(&["backup", "create", target, "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.json()["path"].as_str().unwrap().to_string()
}

/// A new database `PREFIX_<pid>` on the machine's PostgreSQL, holding what `sql` makes.
fn fresh_database(prefix: &str, sql: &str) -> String {
    let db = format!("{prefix}_{}", std::process::id());
    psql("test", &format!("DROP DATABASE IF EXISTS {db}"));
    psql("test", &format!("CREATE DATABASE {db}"));
    psql(&db, sql);
    db
}

/// A fresh database `PREFIX_<pid>` backed up by target `pg` (one archive made), whose drill
/// runs one check `name`: `sh` (a YAML double-quoted string's content).
fn pg_drill_with_check(prefix: &str, name: &str, sh: &str) -> (String, Env) {
    let db = fresh_database(prefix, "CREATE TABLE orders(id int);");
    let env = pg_target(
        &db,
        &format!("    drill:\n      checks:\n        - {{ name: {name}, sh: \"{sh}\" }}\n"),
    );
    create(&env, "pg");
    (db, env)
}

/// The `postgres` phases of a drill's report, in source order.
fn postgres_phases(r: &serde_json::Value) -> Vec<serde_json::Value> {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "postgres")
        .cloned()
        .collect()
}

/// The scratch databases a drill's report names, one per dump.
fn scratch_databases(r: &serde_json::Value) -> Vec<String> {
    postgres_phases(r)
        .iter()
        .map(|p| {
            let detail = p["detail"].as_str().unwrap();
            let name = detail
                .split("restored into ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            assert!(name.starts_with("runbook_drill_"), "{detail}");
            name.to_string()
        })
        .collect()
}

/// The scratch database of a drill of one dump.
fn scratch_database(r: &serde_json::Value) -> String {
    scratch_databases(r).remove(0)
}

/// A config with one backup target `pg` of database `db`; `more` adds lines to the target.
fn pg_target(db: &str, more: &str) -> Env {
    Env::new(&format!(
        "version: 1\nbackups:\n  pg:\n    sources: [ {{ postgres: \"postgres://postgres@127.0.0.1:5432/{db}\" }} ]\n    dest: archives\n{more}"
    ))
}

const TARGET: &str = r#"
version: 1
checks:
  data-present: { command: { sh: "test -f {dir}/data/notes.txt" } }
backups:
  main:
    sources: [ { sqlite: app.db }, { dir: data } ]
    dest: archives
    pre:  [ [sh, -c, "echo pre >> {dir}/hooks.log"] ]
    post: [ "sh -c 'echo post >> {dir}/hooks.log'" ]
    restore_checks: [ data-present ]
    drill:
      checks:
        - { name: rows, sh: "test \"$(sqlite3 sqlite/app.db 'SELECT count(*) FROM t')\" = 3" }
        - { name: notes, sh: "grep -q notes \"$RUNBOOK_DRILL_DIR/dir/data/notes.txt\"" }
"#;

fn setup(env: &Env) {
    sqlite(
        &env.path("app.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('a'), ('b'), ('c');",
    );
    env.write("data/notes.txt", "notes\n");
    env.write("data/sub/more.txt", "more\n");
}

#[test]
fn a_drill_restores_into_scratch_times_each_phase_and_writes_evidence() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    let (code, r) = env.json(&["backup", "drill", "--latest", "main"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["ok"], true);
    let phases: Vec<&str> = r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(phases, vec!["sidecar", "extract", "sqlite"]);
    let checks: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(checks, vec!["rows", "notes"]);
    assert!(r["recovery_ms"].as_u64().unwrap() <= r["total_ms"].as_u64().unwrap());
    let evidence = PathBuf::from(r["evidence"].as_str().unwrap());
    assert!(evidence.starts_with(env.path("evidence/drills")), "{evidence:?}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&evidence).unwrap()).unwrap();
    assert_eq!(saved["archive"], archive.as_str());
    assert_eq!(saved["sha256"], r["sha256"]);
    assert!(saved["host"].is_string());
    // The scratch tree is gone; the store knows the drill.
    let left: Vec<_> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.starts_with(".drill-"))
        .collect();
    assert!(left.is_empty());
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list[0]["drill_ok"], true);
    assert!(list[0]["drill_ms"].is_i64());
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'backup.drilled'"),
        1
    );
}

#[test]
fn a_drill_whose_check_fails_exits_1_and_says_so_in_the_evidence() {
    let env = Env::new(&TARGET.replace("= 3", "= 4"));
    setup(&env);
    create(&env, "main");
    let out = env.run(&["backup", "drill", "--latest", "main"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("FAIL rows"), "{}", out.stdout);
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list[0]["drill_ok"], false);
}

#[test]
fn a_drill_of_a_damaged_database_fails_its_sqlite_phase_and_still_unpacks_the_rest() {
    let env = Env::new(TARGET);
    setup(&env);
    // Pages damaged at the source are archived as they are (create fails, naming them), so the archive
    // matches its manifest and sidecar, and only the database check can tell.
    damage_sqlite(&env.path("app.db"));
    let out = env.run(&["backup", "create", "main"]);
    assert_eq!(out.code, 1, "the damaged source fails the backup: {}", out.stdout);
    assert!(
        out.stdout.contains("PROBLEM: sqlite/app.db: integrity_check"),
        "{}",
        out.stdout
    );
    let (code, r) = env.json(&["backup", "drill", "--latest", "main"]);
    assert_eq!(code, 1, "{r:#}");
    let phase = |name: &str| {
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} phase: {r:#}"))
    };
    assert_eq!(phase("extract")["ok"], true, "{r:#}");
    assert_eq!(r["files"], 3, "the database and both files came back: {r:#}");
    let sqlite = phase("sqlite");
    assert_eq!(sqlite["ok"], false, "{r:#}");
    assert!(
        sqlite["detail"]
            .as_str()
            .unwrap()
            .starts_with("sqlite/app.db: integrity_check: "),
        "{r:#}"
    );
    // No check ran against data known to be bad, and nothing is left behind.
    assert_eq!(r["checks"].as_array().unwrap().len(), 0, "{r:#}");
    assert!(env.names("archives").iter().all(|n| !n.starts_with(".drill-")));
    // The archive is recorded as failing verification too.
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list[0]["verify_ok"], false, "{list}");
}

#[test]
fn a_drill_restores_a_postgres_dump_into_a_scratch_database_and_drops_it() {
    let db = fresh_database(
        "runbook_drill_src",
        "CREATE TABLE orders(id int); INSERT INTO orders VALUES (1), (2);",
    );
    let psql = |sql: &str, dbname: &str| psql(dbname, sql);
    let env = pg_target(
        &db,
        r#"    drill:
      checks:
        - { name: orders, sh: "test \"$(psql -tA -c 'SELECT count(*) FROM orders' \"$RUNBOOK_DRILL_DATABASE_URL\")\" = 2" }
"#,
    );
    create(&env, "pg");
    let (code, r) = env.json(&["backup", "drill", "--latest", "pg"]);
    psql(&format!("DROP DATABASE IF EXISTS {db}"), "test");
    assert_eq!(code, 0, "{r:#}");
    let pg = &postgres_phases(&r)[0];
    assert!(pg["detail"].as_str().unwrap().contains("1 tables"), "{pg}");
    assert_eq!(r["checks"][0]["ok"], true, "{r:#}");
    let scratch = scratch_database(&r);
    let leftover = psql(
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'"),
        "test",
    );
    assert_eq!(leftover, "0", "the scratch database was dropped");
}

#[test]
fn a_drill_of_two_dumps_keeps_both_scratch_databases_for_its_checks_then_drops_both() {
    let a = fresh_database("runbook_drill_two_a", "CREATE TABLE a(id int);");
    let b = fresh_database("runbook_drill_two_b", "CREATE TABLE b(id int);");
    let env = Env::new(&format!(
        r#"version: 1
backups:
  pg:
    sources: [ {{ postgres: "postgres://postgres@127.0.0.1:5432/{a}" }}, {{ postgres: "postgres://postgres:second-pw@127.0.0.1:5432/{b}" }} ]
    dest: archives
    drill:
      checks:
        - {{ name: both, sh: "psql -tA -c 'SELECT 1 FROM a' \"$RUNBOOK_DRILL_DATABASE_URL_1\" && psql -tA -c 'SELECT 1 FROM b' \"$RUNBOOK_DRILL_DATABASE_URL_2\" && test \"$RUNBOOK_DRILL_DATABASE_URL\" = \"$RUNBOOK_DRILL_DATABASE_URL_1\" && test \"$RUNBOOK_DRILL_PGPASSWORD_2\" = second-pw && test -z \"$RUNBOOK_DRILL_PGPASSWORD_1\"" }}
"#
    ));
    create(&env, "pg");
    let (code, r) = env.json(&["backup", "drill", "--latest", "pg"]);
    psql("test", &format!("DROP DATABASE IF EXISTS {a}"));
    psql("test", &format!("DROP DATABASE IF EXISTS {b}"));
    assert_eq!(code, 0, "{r:#}");
    let names = scratch_databases(&r);
    assert_eq!(names.len(), 2, "{r:#}");
    for n in names {
        assert_eq!(
            psql(
                "test",
                &format!("SELECT count(*) FROM pg_database WHERE datname = '{n}'")
            ),
            "0"
        );
    }
}

#[test]
fn the_scratch_database_of_a_killed_drill_is_dropped_by_the_next_create() {
    let (db, env) = pg_drill_with_check("runbook_drill_killed", "hold", "sleep 29.321");
    let mut drill = env.spawn(&["backup", "drill", "--latest", "pg"]);
    let pid = drill.id();
    let ours = format!("SELECT count(*) FROM pg_database WHERE datname LIKE 'runbook\\_drill\\_{pid}\\_%'");
    // The scratch database is restored and the drill's check is running.
    let up = wait_for(Duration::from_secs(60), || {
        psql("test", &ours) == "1"
            && Command::new("pgrep")
                .args(["-f", "sleep 29.321"])
                .output()
                .is_ok_and(|o| o.status.success())
    });
    assert!(up, "the drill did not reach its check");
    signal(pid, "KILL");
    let _ = drill.wait();
    let _ = Command::new("pkill").args(["-KILL", "-f", "sleep 29.321"]).status();
    assert_eq!(psql("test", &ours), "1", "a killed drill cannot drop its database");

    // An abandoned drill of another target whose name starts like this one's: its database
    // is not this target's to drop.
    let other = format!("runbook_drill_other_{pid}");
    psql("test", &format!("DROP DATABASE IF EXISTS {other}"));
    psql("test", &format!("CREATE DATABASE {other}"));
    env.write("archives/.drill-pg-old-x1/.lock", "");
    env.write(
        "archives/.drill-pg-old-x1/.databases.json",
        &format!(r#"{{"target":"pg-old","databases":[{{"server":"postgres://postgres@127.0.0.1:5432/postgres","name":"{other}"}}]}}"#),
    );

    create(&env, "pg");
    let other_left = psql(
        "test",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{other}'"),
    );
    psql("test", &format!("DROP DATABASE IF EXISTS {other}"));
    psql("test", &format!("DROP DATABASE IF EXISTS {db}"));
    assert_eq!(
        psql("test", &ours),
        "0",
        "the next create dropped the killed drill's database"
    );
    let names = env.names("archives");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(".drill-pg-") && !n.starts_with(".drill-pg-old")),
        "{names:?}"
    );
    assert_eq!(other_left, "1", "another target's scratch database stays");
    assert!(names.iter().any(|n| n == ".drill-pg-old-x1"), "{names:?}");
}

#[test]
fn a_scratch_database_still_in_use_when_the_drill_ends_is_dropped_by_the_next_create() {
    // The check leaves a session open on the scratch database: dropping it fails (the
    // server waits 5 s for other sessions to go first).
    let (db, env) = pg_drill_with_check(
        "runbook_drill_busy",
        "linger",
        r#"setsid psql -q -c 'SELECT pg_sleep(8)' \"$RUNBOOK_DRILL_DATABASE_URL\" >/dev/null 2>&1 < /dev/null & sleep 0.5"#,
    );
    let (code, r) = env.json(&["backup", "drill", "--latest", "pg"]);
    assert_eq!(code, 0, "{r:#}");
    let scratch = scratch_database(&r);
    let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'");
    assert_eq!(psql("test", &exists), "1", "the database in use could not be dropped");
    let kept: Vec<String> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.starts_with(".drill-pg-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let left = env.names(&format!("archives/{}", kept[0]));
    assert!(left.iter().any(|n| n == ".databases.json"), "{left:?}");
    assert!(
        !left.iter().any(|n| n == "postgres"),
        "the restored tree is removed: {left:?}"
    );

    // Once the session has ended, the next create drops it.
    let idle = wait_for(Duration::from_secs(30), || {
        psql(
            "test",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{scratch}'"),
        ) == "0"
    });
    assert!(idle);
    create(&env, "pg");
    let after = psql("test", &exists);
    psql("test", &format!("DROP DATABASE IF EXISTS {scratch}"));
    psql("test", &format!("DROP DATABASE IF EXISTS {db}"));
    assert_eq!(after, "0", "the next create dropped it");
    assert!(env.names("archives").iter().all(|n| !n.starts_with(".drill-pg-")));
}

#[test]
fn restore_puts_each_database_back_in_its_own_place_when_the_sources_were_reordered() {
    let two = "version: 1\nbackups:\n  main:\n    sources: [ { sqlite: users.db }, { sqlite: orders.db } ]\n    dest: archives\n";
    let env = Env::new(two);
    sqlite(&env.path("users.db"), "CREATE TABLE users(id INTEGER PRIMARY KEY);");
    sqlite(&env.path("orders.db"), "CREATE TABLE orders(id INTEGER PRIMARY KEY);");
    let archive = create(&env, "main");
    let tables = |db: &str| -> String {
        rusqlite::Connection::open(env.path(db))
            .unwrap()
            .query_row(
                "SELECT group_concat(name) FROM sqlite_master WHERE type = 'table'",
                (),
                |r| r.get(0),
            )
            .unwrap()
    };
    // The config lists them the other way round now.
    std::fs::write(
        &env.config,
        two.replace(
            "[ { sqlite: users.db }, { sqlite: orders.db } ]",
            "[ { sqlite: orders.db }, { sqlite: users.db } ]",
        )
        .replace(
            "version: 1\n",
            "state: { url: \"sqlite://state/runbook.db\" }\nversion: 1\n",
        ),
    )
    .unwrap();
    let out = env.run(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(tables("users.db"), "users");
    assert_eq!(tables("orders.db"), "orders");

    // A source replaced by another database in the same place is refused, before anything
    // is touched.
    std::fs::write(
        &env.config,
        "state: { url: \"sqlite://state/runbook.db\" }\nversion: 1\nbackups:\n  main:\n    sources: [ { sqlite: users.db }, { sqlite: billing.db } ]\n    dest: archives\n",
    )
    .unwrap();
    sqlite(
        &env.path("billing.db"),
        "CREATE TABLE invoices(id INTEGER PRIMARY KEY);",
    );
    let out = env.run(&["backup", "restore", &archive, "--execute"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(said.contains("matches no source of target `main`"), "{said}");
    assert_eq!(tables("billing.db"), "invoices", "untouched");
}

#[test]
fn restore_without_execute_only_prints_the_plan() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    sqlite(&env.path("app.db"), "DELETE FROM t;");
    let out = env.run(&["backup", "restore", &archive]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for want in [
        "pre",
        "sqlite/app.db ->",
        "dir/data ->",
        "post",
        "check    data-present",
        "current data first copied to",
        "dry run",
    ] {
        assert!(out.stdout.contains(want), "{want} in:\n{}", out.stdout);
    }
    assert_eq!(rows(&env.path("app.db")), 0, "nothing was restored");
    assert!(!env.path("hooks.log").exists(), "no hook ran");
}

#[test]
fn restore_execute_puts_the_data_back_after_a_safety_copy_with_hooks_and_checks() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    // Damage: rows deleted, a file changed, a file added.
    sqlite(&env.path("app.db"), "DELETE FROM t WHERE id > 1;");
    env.write("data/notes.txt", "scribbled\n");
    env.write("data/stray.txt", "stray\n");

    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["ok"], true);
    assert_eq!(rows(&env.path("app.db")), 3);
    assert_eq!(std::fs::read_to_string(env.path("data/notes.txt")).unwrap(), "notes\n");
    assert!(!env.path("data/stray.txt").exists());
    assert_eq!(std::fs::read_to_string(env.path("hooks.log")).unwrap(), "pre\npost\n");
    // The data as it was before the restore is kept.
    let safety = PathBuf::from(r["plan"]["safety_dir"].as_str().unwrap());
    let copy = std::fs::read_dir(&safety)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with("app.db"))
        .expect("a safety copy of the database");
    assert_eq!(rows(&copy.path()), 1);
    let moved = r["plan"]["steps"][1]["safety"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(moved).join("notes.txt")).unwrap(),
        "scribbled\n"
    );
    let log = r["log"].to_string();
    assert!(log.contains("check data-present: ok"), "{log}");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'backup.restored'"),
        1
    );
}

#[test]
fn restore_execute_over_a_database_sqlite_cannot_read_keeps_its_files_as_they_are() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    // The reason to restore: the live database is garbage.
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(env.path("app.db"), &garbage).unwrap();
    let _ = std::fs::remove_file(env.path("app.db-wal"));
    let _ = std::fs::remove_file(env.path("app.db-shm"));
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(rows(&env.path("app.db")), 3);
    let log = r["log"].to_string();
    assert!(log.contains("could not be read through SQLite"), "{log}");
    let kept = PathBuf::from(r["plan"]["steps"][0]["safety"].as_str().unwrap());
    assert_eq!(
        std::fs::read(kept).unwrap(),
        garbage,
        "the damaged file is kept byte for byte"
    );
}

#[test]
fn restore_execute_over_a_database_a_crash_left_with_a_hot_journal_keeps_its_files() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    // A writer killed mid-transaction, its changes spilled into the file: a hot journal,
    // which a read-only open cannot roll back.
    let db = env.path("app.db");
    sqlite(&db, "PRAGMA journal_mode=DELETE;");
    let script = format!(
        "import sqlite3, os\nc = sqlite3.connect('{}', isolation_level=None)\nc.execute('PRAGMA cache_size=1')\nc.execute('BEGIN')\nfor i in range(2000): c.execute('INSERT INTO t(v) VALUES (?)', ('x' * 500,))\nos._exit(1)\n",
        db.display()
    );
    let status = Command::new("python3").args(["-c", &script]).status().unwrap();
    assert!(!status.success());
    assert!(env.path("app.db-journal").exists(), "a hot journal is left");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(rows(&db), 3);
    let kept = r["plan"]["steps"][0]["safety"].as_str().unwrap().to_string();
    assert!(
        Path::new(&format!("{kept}-journal")).exists(),
        "the journal is kept with the file: {r:#}"
    );
}

#[test]
fn restore_execute_onto_a_new_host_makes_the_database_directory() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    // The new host keeps the database elsewhere, in a directory that does not exist yet.
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace("{ sqlite: app.db }", "{ sqlite: fresh/var/lib/app/app.db }"),
    )
    .unwrap();
    let plan = env.run(&["backup", "restore", &archive]);
    assert!(
        plan.stdout.contains("sqlite/app.db ->") && plan.stdout.contains("fresh/var/lib/app/app.db"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("(archived from "),
        "where it came from is shown: {}",
        plan.stdout
    );
    // The database is not there yet: no safety copy of it is promised.
    assert!(plan.stdout.contains("nothing there yet"), "{}", plan.stdout);
    assert_eq!(
        plan.stdout.matches("current data first copied to").count(),
        1,
        "only the tree's: {}",
        plan.stdout
    );
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(rows(&env.path("fresh/var/lib/app/app.db")), 3);
}

#[test]
fn every_post_hook_runs_even_when_one_fails_after_the_data_is_back() {
    let env = Env::new(&TARGET.replace(
        r#"post: [ "sh -c 'echo post >> {dir}/hooks.log'" ]"#,
        r#"post: [ "false", "sh -c 'echo post >> {dir}/hooks.log'" ]"#,
    ));
    setup(&env);
    let archive = create(&env, "main");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(rows(&env.path("app.db")), 3, "the data is back");
    assert_eq!(std::fs::read_to_string(env.path("hooks.log")).unwrap(), "pre\npost\n");
    assert!(
        r.to_string().contains("the data is back, but post `false` failed"),
        "{r:#}"
    );
}

#[test]
fn a_restore_that_fails_before_replacing_anything_starts_again_what_pre_stopped() {
    // The second pre hook fails: nothing is replaced, and post (starting the service) runs.
    let env = Env::new(&TARGET.replace(
        r#"pre:  [ [sh, -c, "echo pre >> {dir}/hooks.log"] ]"#,
        r#"pre:  [ [sh, -c, "echo pre >> {dir}/hooks.log"], [sh, -c, "exit 3"] ]"#,
    ));
    setup(&env);
    let archive = create(&env, "main");
    sqlite(&env.path("app.db"), "DELETE FROM t;");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 1, "{r:#}");
    let log = r["log"].to_string();
    assert!(log.contains("nothing was replaced, and the post hooks ran"), "{log}");
    // The hook said nothing: its exit is the whole reason, with nothing dangling after it.
    assert!(log.contains("failed: exit 3;"), "{log}");
    assert_eq!(std::fs::read_to_string(env.path("hooks.log")).unwrap(), "pre\npost\n");
    assert_eq!(rows(&env.path("app.db")), 0, "the database was not touched");
    let safety = PathBuf::from(r["plan"]["safety_dir"].as_str().unwrap());
    assert!(!safety.join("staging").exists(), "no staging copy is left");
    assert!(!safety.exists(), "no empty safety directory is left");
    // The text says so, without pointing at safety copies that were never made.
    let out = env.run(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("restore FAILED: see above"), "{}", out.stdout);
    assert!(!out.stdout.contains("safety copies are kept"), "{}", out.stdout);
}

#[test]
fn restore_execute_as_root_gives_the_database_back_to_its_owner() {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        cannot_run("ownership is only restored by root");
        return;
    }
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { sqlite: app.db } ], dest: archives }\n");
    sqlite(
        &env.path("app.db"),
        "CREATE TABLE t(id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);",
    );
    std::os::unix::fs::chown(env.path("app.db"), Some(1001), Some(1002)).unwrap();
    let archive = create(&env, "main");
    sqlite(&env.path("app.db"), "DELETE FROM t;");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(rows(&env.path("app.db")), 3);
    let m = std::fs::metadata(env.path("app.db")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (1001, 1002),
        "the application can still write to it"
    );
}

#[test]
fn a_restored_symlink_keeps_its_own_time() {
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives }\n");
    env.write("data/target.txt", "t\n");
    std::os::unix::fs::symlink("target.txt", env.path("data/link")).unwrap();
    let set = Command::new("touch")
        .args(["-h", "-d", "2020-01-02 03:04:05Z"])
        .arg(env.path("data/link"))
        .status()
        .unwrap();
    assert!(set.success());
    let archive = create(&env, "main");
    std::fs::remove_file(env.path("data/link")).unwrap();
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    let m = std::fs::symlink_metadata(env.path("data/link")).unwrap();
    assert!(m.file_type().is_symlink());
    let secs = m
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(secs, 1_577_934_245, "the link's own mtime");
}

#[test]
fn a_directory_named_with_a_trailing_slash_is_restored_beside_itself_not_into_itself() {
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data/ } ], dest: archives }\n");
    env.write("data/notes.txt", "notes\n");
    let archive = create(&env, "main");
    env.write("data/notes.txt", "scribbled\n");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(std::fs::read_to_string(env.path("data/notes.txt")).unwrap(), "notes\n");
    let inside: Vec<String> = std::fs::read_dir(env.path("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        inside,
        vec!["notes.txt".to_string()],
        "nothing of the restore inside the tree"
    );
    let safety = r["plan"]["steps"][0]["safety"].as_str().unwrap();
    assert!(!safety.contains("data/.pre-restore"), "{safety}");
    assert_eq!(
        std::fs::read_to_string(Path::new(safety).join("notes.txt")).unwrap(),
        "scribbled\n"
    );
}

#[test]
fn restore_into_a_path_that_cannot_be_written_fails_before_touching_anything() {
    let env = Env::new(&TARGET.replace("{ dir: data }", "{ dir: blocked/data }"));
    setup(&env);
    std::fs::create_dir_all(env.path("blocked")).unwrap();
    std::fs::rename(env.path("data"), env.path("blocked/data")).unwrap();
    let archive = create(&env, "main");
    // `blocked` becomes a plain file: nothing can be created under it.
    std::fs::remove_dir_all(env.path("blocked")).unwrap();
    std::fs::write(env.path("blocked"), "not a directory").unwrap();
    sqlite(&env.path("app.db"), "DELETE FROM t;");

    let out = env.run(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("PROBLEM") && out.stdout.contains("blocked"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("nothing was changed"), "{}", out.stdout);
    assert_eq!(rows(&env.path("app.db")), 0, "the database was not touched");
    assert!(!env.path("hooks.log").exists(), "the pre hook did not run");
    assert!(!env.path("archives/safety").exists(), "no safety directory was made");
}

#[test]
fn restore_refuses_an_archive_that_does_not_match_its_sidecar() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    sqlite(&env.path("app.db"), "DELETE FROM t;");
    let out = env.run(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("sidecar says"), "{}", out.stdout);
    assert_eq!(rows(&env.path("app.db")), 0);
}

#[test]
fn an_archive_damaged_where_its_manifest_is_fails_its_drill_with_evidence_and_is_not_restored() {
    let env = Env::new(TARGET);
    setup(&env);
    let archive = create(&env, "main");
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    // Named or the latest, the drill runs and says what is wrong: the sidecar phase fails,
    // nothing is unpacked, and the failure is evidence and on record.
    for how in [vec![archive.as_str()], vec!["--latest", "main"]] {
        let mut args = vec!["backup", "drill"];
        args.extend(&how);
        let (code, r) = env.json(&args);
        assert_eq!(code, 1, "{how:?}: {r:#}");
        assert_eq!(r["ok"], false, "{r:#}");
        let phases = r["phases"].as_array().unwrap();
        assert_eq!(phases.len(), 1, "{r:#}");
        assert_eq!(phases[0]["name"], "sidecar");
        assert!(
            phases[0]["detail"].as_str().unwrap().contains("the sidecar says"),
            "{r:#}"
        );
        let evidence = PathBuf::from(r["evidence"].as_str().unwrap());
        assert!(evidence.is_file(), "{evidence:?}");
    }
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list[0]["drill_ok"], false, "{list}");
    // A restore cannot even be planned from it, and says why.
    sqlite(&env.path("app.db"), "DELETE FROM t;");
    for execute in [false, true] {
        let mut args = vec!["backup", "restore", archive.as_str()];
        if execute {
            args.push("--execute");
        }
        let out = env.run(&args);
        assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("is damaged") && out.stderr.contains("sidecar says"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(rows(&env.path("app.db")), 0);
}

#[test]
fn restore_execute_puts_a_postgres_database_back_after_dumping_its_current_state() {
    let db = fresh_database(
        "runbook_restore_src",
        "CREATE TABLE orders(id int); INSERT INTO orders VALUES (1), (2), (3);",
    );
    let psql = |sql: &str, dbname: &str| psql(dbname, sql);
    let env = pg_target(&db, "");
    let archive = create(&env, "pg");
    psql("DELETE FROM orders WHERE id > 1; INSERT INTO orders VALUES (99);", &db);

    let out = env.run(&["backup", "restore", &archive]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("pg_restore --clean --if-exists"), "{}", out.stdout);
    assert_eq!(
        psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM orders", &db),
        "1,99",
        "a plan changes nothing"
    );

    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    let now = psql("SELECT string_agg(id::text, ',' ORDER BY id) FROM orders", &db);
    psql(&format!("DROP DATABASE IF EXISTS {db}"), "test");
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(now, "1,2,3", "the archived rows are back, the later one gone");
    // The state before the restore was dumped first, and that dump restores.
    let safety = r["plan"]["steps"][0]["safety"].as_str().unwrap();
    let listed = Command::new("pg_restore").args(["--list", safety]).output().unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(String::from_utf8_lossy(&listed.stdout).contains("TABLE DATA public orders"));
}

#[test]
fn a_postgres_password_in_the_url_stays_out_of_the_archive_whichever_way_it_is_written() {
    // Trust authentication: the dump works whatever the password; what matters is where it goes.
    let db = fresh_database("runbook_password", "CREATE TABLE t(id int); INSERT INTO t VALUES (1);");
    let env = Env::new(&format!(
        "version: 1\nbackups:\n  pg:\n    sources: [ {{ postgres: \"postgres://postgres:p%40ss@127.0.0.1:5432/{db}?sslmode=disable&password=q-s3cr3t\" }} ]\n    dest: archives\n"
    ));
    let archive = create(&env, "pg");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{archive}' | tar -xOf - manifest.json"))
        .output()
        .unwrap();
    psql("test", &format!("DROP DATABASE IF EXISTS {db}"));
    let manifest = String::from_utf8_lossy(&out.stdout);
    assert!(manifest.contains("sslmode=disable"), "{manifest}");
    for secret in ["q-s3cr3t", "p%40ss", "p@ss"] {
        assert!(!manifest.contains(secret), "{secret} in {manifest}");
    }
}

#[test]
fn restore_execute_as_root_gives_files_back_to_their_owners() {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        cannot_run("ownership is only restored by root");
        return;
    }
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives }\n");
    env.write("data/sub/owned.txt", "owned by the app\n");
    std::os::unix::fs::symlink("sub/owned.txt", env.path("data/link")).unwrap();
    std::os::unix::fs::chown(env.path("data/sub/owned.txt"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::chown(env.path("data/sub"), Some(2000), Some(2001)).unwrap();
    std::os::unix::fs::lchown(env.path("data/link"), Some(4321), Some(8765)).unwrap();
    let archive = create(&env, "main");
    std::fs::remove_dir_all(env.path("data/sub")).unwrap();
    std::fs::remove_file(env.path("data/link")).unwrap();

    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    let owner = |p: &str| {
        let m = std::fs::symlink_metadata(env.path(p)).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner("data/sub/owned.txt"), (1234, 5678));
    assert_eq!(owner("data/sub"), (2000, 2001));
    assert_eq!(owner("data/link"), (4321, 8765));
}

#[test]
fn a_drill_by_an_unprivileged_user_leaves_no_scratch_behind_even_with_read_only_directories() {
    // Root ignores directory permissions, so the drill runs as `nobody` (through setpriv).
    if !rustix::process::geteuid().is_root() {
        cannot_run("becoming another user needs root");
        return;
    }
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives }\n");
    env.write("data/ro/a.txt", "a\n");
    env.write("data/b.txt", "b\n");
    let as_nobody = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "--config"])
            .arg(&env.config)
            .args(args)
            .current_dir(env.dir.path())
            .output()
            .expect("setpriv");
        Out::from(out)
    };
    std::fs::set_permissions(env.path("data/ro"), std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    for args in [&["db", "migrate", "--apply"][..], &["backup", "create", "main"]] {
        let out = as_nobody(args);
        assert_eq!(out.code, 0, "{args:?}: {}{}", out.stdout, out.stderr);
    }
    let out = as_nobody(&["backup", "drill", "--latest", "main"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let left: Vec<String> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.starts_with(".drill-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_drill_check_gets_the_scratch_databases_password_but_its_output_keeps_it_out_of_the_evidence() {
    // Trust authentication: any password is taken; what matters is where it goes.
    let db = fresh_database("runbook_drillpw", "CREATE TABLE t(id int);");
    let env = Env::new(&format!(
        "version: 1\nbackups:\n  pg:\n    sources: [ {{ postgres: \"postgres://postgres:drill-s3cret@127.0.0.1:5432/{db}\" }} ]\n    dest: archives\n    drill:\n      checks:\n        - {{ name: env, sh: \"echo pw=$PGPASSWORD one=$RUNBOOK_DRILL_PGPASSWORD_1\" }}\n"
    ));
    create(&env, "pg");
    let (code, r) = env.json(&["backup", "drill", "--latest", "pg"]);
    psql("test", &format!("DROP DATABASE IF EXISTS {db}"));
    assert_eq!(code, 0, "{r:#}");
    let detail = r["checks"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("pw=[redacted]") && detail.contains("one=[redacted]"),
        "{detail}"
    );
    let evidence = std::fs::read_to_string(r["evidence"].as_str().unwrap()).unwrap();
    assert!(!evidence.contains("drill-s3cret"), "{evidence}");
    assert!(!r.to_string().contains("drill-s3cret"), "{r:#}");
}

#[test]
fn a_restore_onto_a_filesystem_without_room_for_it_is_refused_before_anything_is_touched() {
    let env = Env::new(&TARGET.replace("{ dir: data }", "{ dir: mnt/data }"));
    setup(&env);
    // The tree is archived from where there is room, then its place is a 1 MiB filesystem.
    std::fs::create_dir_all(env.path("mnt")).unwrap();
    std::fs::rename(env.path("data"), env.path("mnt/data")).unwrap();
    env.write_incompressible("mnt/data/blob.bin", 3 << 20);
    let archive = create(&env, "main");
    std::fs::remove_dir_all(env.path("mnt/data")).unwrap();
    let Some(out) = in_tmpfs(
        &env,
        "1m",
        &format!(
            "mkdir \"$MNT/data\"; echo kept > \"$MNT/data/notes.txt\"; R backup restore '{archive}' --execute; echo \"exit=$?\"; ls \"$MNT/data\""
        ),
    ) else {
        return;
    };
    assert!(out.contains("exit=1"), "{out}");
    assert!(out.contains("not enough room on the filesystem of"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert_eq!(out.lines().last(), Some("notes.txt"), "the tree is as it was: {out}");
    assert!(!env.path("hooks.log").exists(), "the pre hook did not run");
}

#[test]
fn a_directory_that_cannot_be_written_is_one_problem_naming_everything_that_needs_it() {
    let env = Env::new(
        &TARGET
            .replace("{ dir: data }", "{ dir: blocked/data }")
            .replace("{ sqlite: app.db }", "{ sqlite: blocked/app.db }"),
    );
    setup(&env);
    std::fs::create_dir_all(env.path("blocked")).unwrap();
    std::fs::rename(env.path("data"), env.path("blocked/data")).unwrap();
    std::fs::rename(env.path("app.db"), env.path("blocked/app.db")).unwrap();
    let _ = std::fs::rename(env.path("app.db-wal"), env.path("blocked/app.db-wal"));
    let archive = create(&env, "main");
    std::fs::remove_dir_all(env.path("blocked")).unwrap();
    std::fs::write(env.path("blocked"), "not a directory").unwrap();
    let out = env.run(&["backup", "restore", &archive]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let problems: Vec<&str> = out.stdout.lines().filter(|l| l.contains("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{}", out.stdout);
    assert!(
        problems[0].contains("blocked/app.db") && problems[0].contains("blocked/data"),
        "{}",
        out.stdout
    );
}

/// An archive cannot plant a setuid program or a world-writable directory on the host: a
/// restore strips setuid, setgid and write for others unless the target keeps them.
#[test]
fn a_restore_strips_setuid_setgid_and_world_write_unless_the_target_keeps_them() {
    use std::os::unix::fs::PermissionsExt;
    for keep in [false, true] {
        let env = Env::new(&format!(
            "version: 1\nbackups:\n  main: {{ sources: [ {{ dir: data }} ], dest: archives, keep_special_modes: {keep} }}\n"
        ));
        env.write("data/tool", "#!/bin/sh\n");
        env.write("data/open/f.txt", "f\n");
        std::fs::set_permissions(env.path("data/tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
        std::fs::set_permissions(env.path("data/open"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let archive = create(&env, "main");
        std::fs::remove_dir_all(env.path("data/open")).unwrap();
        std::fs::remove_file(env.path("data/tool")).unwrap();
        let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
        assert_eq!(code, 0, "{r:#}");
        let mode = |p: &str| std::fs::metadata(env.path(p)).unwrap().permissions().mode() & 0o7777;
        if keep {
            assert_eq!(mode("data/tool"), 0o6755);
            assert_eq!(mode("data/open"), 0o1777);
        } else {
            assert_eq!(mode("data/tool"), 0o755, "setuid and setgid stripped");
            assert_eq!(
                mode("data/open"),
                0o1775,
                "write for others stripped, the sticky bit kept"
            );
        }
        assert_eq!(std::fs::read_to_string(env.path("data/open/f.txt")).unwrap(), "f\n");
    }
}

#[test]
fn a_restored_tree_keeps_runbooks_own_state_evidence_and_archives_as_they_are() {
    // Everything lives under the one directory that is backed up: the state file, the drill
    // evidence, the archives themselves.
    let env = Env::new(
        "state: { url: \"sqlite://srv/state/runbook.db\" }\nversion: 1\nbackups:\n  main:\n    sources: [ { dir: srv } ]\n    dest: srv/archives\n    drill: { evidence_dir: srv/evidence/drills }\n",
    );
    env.write("srv/app/notes.txt", "notes\n");
    std::fs::create_dir_all(env.path("srv/evidence/drills")).unwrap();
    env.write("srv/evidence/drills/old.json", "{}\n");
    let archive = create(&env, "main");
    // After the archive: application data changes, and so does runbook's own.
    env.write("srv/app/notes.txt", "scribbled\n");
    env.write("srv/evidence/drills/new.json", "{\"new\": true}\n");
    let (code, drill) = env.json(&["backup", "drill", "--latest", "main"]);
    assert_eq!(code, 0, "{drill:#}");
    let state_inode =
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(env.path("srv/state/runbook.db")).unwrap());
    let events = || -> i64 {
        rusqlite::Connection::open(env.path("srv/state/runbook.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM audit_events", (), |r| r.get(0))
            .unwrap()
    };
    let events_before = events();

    let (code, plan) = env.json(&["backup", "restore", &archive]);
    assert_eq!(code, 0, "{plan:#}");
    let keeps: Vec<&str> = plan["steps"][0]["keeps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for own in ["archives", "evidence/drills", "state/runbook.db"] {
        assert!(keeps.contains(&own), "{own} in {keeps:?}");
    }

    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    // The application's data is the archive's ...
    assert_eq!(
        std::fs::read_to_string(env.path("srv/app/notes.txt")).unwrap(),
        "notes\n"
    );
    // ... runbook's own is what it was a moment ago: the newer evidence, the archive itself,
    // the same state file (not a copy) with every event since, and the restore's own.
    assert!(env.path("srv/evidence/drills/new.json").exists());
    assert!(Path::new(drill["evidence"].as_str().unwrap()).exists());
    assert!(Path::new(&archive).exists());
    let after = std::fs::metadata(env.path("srv/state/runbook.db")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&after), state_inode);
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&after),
        1,
        "no second name left in the safety copy"
    );
    assert!(events() > events_before);
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    // The old tree, moved aside, still has the scribbled data.
    let safety = r["plan"]["steps"][0]["safety"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(safety).join("app/notes.txt")).unwrap(),
        "scribbled\n"
    );
}

#[test]
fn a_source_that_names_runbooks_own_evidence_restores_it() {
    let env = Env::new("version: 1\nbackups:\n  ev:\n    sources: [ { dir: evidence } ]\n    dest: archives\n");
    env.write("evidence/drills/a.json", "{\"a\": 1}\n");
    let archive = create(&env, "ev");
    env.write("evidence/drills/a.json", "{\"a\": 2}\n");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert!(r["plan"]["steps"][0].get("keeps").is_none(), "{r:#}");
    assert_eq!(
        std::fs::read_to_string(env.path("evidence/drills/a.json")).unwrap(),
        "{\"a\": 1}\n"
    );
}

#[test]
fn a_link_in_the_archive_where_runbooks_own_directory_stands_leads_nowhere() {
    let env = Env::new(
        "version: 1\nbackups:\n  main:\n    sources: [ { dir: srv } ]\n    dest: archives\n    drill: { evidence_dir: srv/evidence/drills }\n",
    );
    // When the archive was made, `srv/evidence` was a link to a directory outside the tree.
    env.write("victim/drills/precious", "precious\n");
    env.write("srv/app/notes.txt", "notes\n");
    std::os::unix::fs::symlink(env.path("victim"), env.path("srv/evidence")).unwrap();
    let archive = create(&env, "main");
    std::fs::remove_file(env.path("srv/evidence")).unwrap();
    env.write("srv/evidence/drills/live.json", "{}\n");
    let (code, r) = env.json(&["backup", "restore", &archive, "--execute"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        std::fs::read_to_string(env.path("victim/drills/precious")).unwrap(),
        "precious\n"
    );
    assert!(env.path("srv/evidence/drills/live.json").is_file());
    assert!(
        !std::fs::symlink_metadata(env.path("srv/evidence"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}
