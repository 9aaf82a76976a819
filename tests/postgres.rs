//! The PostgreSQL state: moving a state between backends, and what a user sees when the
//! server is unreachable, refuses to write, or goes away under a running daemon. On the
//! machine's PostgreSQL (127.0.0.1:5432), one database per test.

mod common;

use common::relay::Relay;
use common::*;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::Duration;

const PROFILES: &str = r#"
version: 1
profiles:
  tick: { cron: "* * * * * *", tasks: [ { run: [true] } ] }
  manual: { cron: "0 0 1 1 *", tasks: [ { sh: "echo hello", name: hello } ] }
checks:
  always-fails: { command: { sh: "exit 1" }, labels: { team: ops } }
"#;

/// An env whose state is in `db` (whatever RUNBOOK_TEST_STATE says).
fn env_on(db: &PgDb, url: &str, yaml: &str) -> Env {
    let _ = db;
    Env::new(&format!("state: {{ url: \"{url}\", dir: state }}\n{yaml}"))
}

#[test]
fn a_state_moves_to_postgresql_and_back_with_every_row_and_the_chain_intact() {
    let env = Env::new(&format!("state: {{ url: \"sqlite://state/runbook.db\" }}\n{PROFILES}"));
    for _ in 0..3 {
        assert_eq!(env.run(&["run", "manual"]).code, 0);
    }
    assert_eq!(env.run(&["check", "always-fails"]).code, 1);
    assert_eq!(env.run(&["state", "set", "cache", "last-id", "42", "--apply"]).code, 0);
    let runs = env.count("SELECT count(*) FROM runs");
    let events = env.count("SELECT count(*) FROM audit_events");
    assert!(runs >= 6 && events >= 7, "{runs} runs, {events} events");

    let db = PgDb::create();
    // A dry run writes nothing, not even runbook's tables.
    let (code, plan) = env.json(&["db", "copy", "--to", &db.url()]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["apply"], false);
    assert_eq!(db.query("SELECT to_regclass('runs') IS NULL"), "t");

    let (code, report) = env.json(&["db", "copy", "--to", &db.url(), "--apply"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["audit"]["verified"], true, "{report}");
    assert_eq!(report["audit"]["same_head"], true, "{report}");
    assert_eq!(db.query("SELECT count(*) FROM runs"), runs.to_string());
    assert_eq!(db.query("SELECT count(*) FROM audit_events"), events.to_string());
    assert!(
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["source"] == t["target"]),
        "{report}"
    );

    // The copy is a working state: runbook runs on it, and new rows continue the ids.
    let pg = env_on(&db, &db.url(), PROFILES);
    assert_eq!(pg.run(&["run", "manual"]).code, 0);
    assert_eq!(pg.run(&["audit", "verify"]).code, 0);
    let (_, jobs) = pg.json(&["jobs", "list"]);
    let newest = jobs[0]["id"].as_i64().unwrap();
    assert!(
        newest > runs,
        "new runs continue after the copied ones: {newest} vs {runs}"
    );
    let (_, value) = pg.json(&["state", "get", "cache", "last-id"]);
    assert_eq!(value["value"], "42", "{value}");

    // A second copy into the same database is refused: it already holds a state.
    let held = db.query("SELECT count(*) FROM audit_events");
    let (code, again) = env.json(&["db", "copy", "--to", &db.url(), "--apply"]);
    assert_eq!(code, 1, "{again}");
    assert_eq!(
        db.query("SELECT count(*) FROM audit_events"),
        held,
        "a refused copy writes nothing"
    );

    // And back to a new SQLite file, from the PostgreSQL state.
    let (code, back) = pg.json(&["db", "copy", "--to", "back.db", "--apply"]);
    assert_eq!(code, 0, "{back}");
    assert_eq!(back["audit"]["verified"], true, "{back}");
    let file = rusqlite::Connection::open(pg.path("back.db")).unwrap();
    let copied: i64 = file.query_row("SELECT count(*) FROM runs", [], |r| r.get(0)).unwrap();
    assert_eq!(copied.to_string(), db.query("SELECT count(*) FROM runs"));

    // --force empties the target first and copies again.
    let (code, forced) = env.json(&["db", "copy", "--to", &db.url(), "--apply", "--force"]);
    assert_eq!(code, 0, "{forced}");
    assert_eq!(db.query("SELECT count(*) FROM runs"), runs.to_string());
}

#[test]
fn an_unreachable_server_is_an_internal_error_that_names_it_and_changes_nothing() {
    let port = http::free_port();
    let env = Env::new(&format!(
        "state: {{ url: \"postgres://runbook@127.0.0.1:{port}/runbook?sslmode=disable\", dir: state }}\n{PROFILES}"
    ));
    let out = env.run(&["run", "manual"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("127.0.0.1:{port}")), "{}", out.stderr);
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    assert!(!env.path("hello").exists());
    let (code, v) = env.json(&["db", "status"]);
    assert_eq!(code, 3, "{v}");
}

#[test]
fn a_profile_runs_once_at_a_time_across_hosts_that_share_the_database() {
    // Two hosts: two configurations on one database, each with its own local directory (so
    // no file lock is shared between them), as two machines would be.
    let db = PgDb::create();
    let yaml = "version: 1\nprofiles:\n  slow: { cron: \"0 0 1 1 *\", tasks: [ { sh: \"sleep 4; echo done >> ran\", name: work } ] }\n";
    let a = env_on(&db, &db.url(), yaml);
    let b = env_on(&db, &db.url(), yaml);
    assert_ne!(a.state_anchor(), b.state_anchor());
    assert_eq!(a.run(&["db", "migrate", "--apply"]).code, 0);
    let mut first = a.spawn(&["run", "slow"]);
    assert!(
        wait_for(Duration::from_secs(20), || db.query(
            "SELECT EXISTS (SELECT 1 FROM runs WHERE status = 'running' AND kind = 'profile')"
        ) == "t"),
        "the first run never started"
    );
    let (code, v) = b.json(&["run", "slow"]);
    assert_eq!(v["status"], "skipped", "{v}");
    assert_eq!(code, 0, "{v}");
    assert!(first.wait().unwrap().success());
    assert_eq!(std::fs::read_to_string(a.path("ran")).unwrap(), "done\n");
    assert!(!b.path("ran").exists(), "the second host ran the work too");
    // Released with the run: the second host runs it now.
    let (code, v) = b.json(&["run", "slow"]);
    assert_eq!((code, v["status"].as_str()), (0, Some("ok")), "{v}");

    // A holder that dies releases the lock with its session (kill -9: no unlock is sent).
    let mut killed = a.spawn(&["run", "slow"]);
    assert!(wait_for(Duration::from_secs(20), || db.query(
        "SELECT count(*) FROM runs WHERE status = 'running' AND kind = 'profile'"
    ) == "1"));
    signal(killed.id(), "KILL");
    let _ = killed.wait();
    let (code, v) = b.json(&["run", "slow"]);
    assert_eq!((code, v["status"].as_str()), (0, Some("ok")), "{v}");
}

#[test]
fn a_role_that_cannot_write_gets_a_clear_error_and_nothing_half_written() {
    let db = PgDb::create();
    // The schema exists (made by its owner); the reader may only read.
    let owner = env_on(&db, &db.url(), PROFILES);
    assert_eq!(owner.run(&["run", "manual"]).code, 0);
    let before = db.query("SELECT count(*) FROM runs");
    let role = format!("{}_ro", db.name);
    psql(&db.name, &format!("CREATE ROLE {role} LOGIN"));
    psql(
        &db.name,
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
    );
    let url = format!("postgres://{role}@127.0.0.1:5432/{}?sslmode=disable", db.name);
    let reader = env_on(&db, &url, PROFILES);
    // Reading works.
    let (code, jobs) = reader.json(&["jobs", "list"]);
    assert_eq!(code, 0, "{jobs}");
    // Writing is refused by the server, told plainly, and leaves nothing behind.
    let out = reader.run(&["run", "manual"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    assert!(out.stderr.contains("cannot write the state"), "{}", out.stderr);
    assert_eq!(db.query("SELECT count(*) FROM runs"), before);
    assert_eq!(owner.run(&["audit", "verify"]).code, 0);
    drop(reader);
    drop(owner);
    psql("test", &format!("DROP DATABASE {} WITH (FORCE)", db.name));
    psql("test", &format!("DROP ROLE {role}"));
}

#[test]
fn the_daemon_keeps_scheduling_while_the_server_is_gone_and_records_again_when_it_returns() {
    let db = PgDb::create();
    let relay = Relay::start();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable",
        relay.port, db.name
    );
    let hook = common::receiver::Receiver::start();
    let env = env_on(
        &db,
        &url,
        &format!(
            "version: 1\nprofiles:\n  tick: {{ cron: \"* * * * * *\", tasks: [ {{ run: [true] }} ] }}\n\
             notify:\n  channels:\n    ops: {{ webhook: {{ url: \"{}/hook\" }} }}\n",
            hook.url()
        ),
    );
    let daemon = Daemon::start(&env);
    let runs = || {
        db.query("SELECT count(*) FROM runs WHERE kind = 'profile'")
            .parse::<i64>()
            .unwrap()
    };
    let migrated = || db.query("SELECT to_regclass('runs') IS NOT NULL") == "t";
    assert!(
        wait_for(Duration::from_secs(20), || migrated() && runs() >= 2),
        "{}",
        daemon.log()
    );

    relay.cut();
    std::thread::sleep(Duration::from_secs(6));
    let during = runs();
    // The daemon backs off while the server is away: a few attempts, not one per tick and
    // per upkeep pass (which would be 3 a second or more).
    let attempts = relay.refused.load(Ordering::SeqCst);
    relay.restore();
    // Back: ticks are recorded again, by the same daemon.
    assert!(
        wait_for(Duration::from_secs(30), || runs() >= during + 2),
        "no runs after the server came back:\n{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(log.contains("PostgreSQL"), "the outage is logged:\n{log}");
    assert!(
        (1..=14).contains(&attempts),
        "{attempts} connection attempts in 6 s:\n{log}"
    );
    // The ticks that could not be recorded are in the ledger as failed, and the operator
    // heard of them through the outbox: the missed-run alert opened, then resolved once runs
    // were recorded again.
    let failed = db.query("SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'failed'");
    assert!(failed.parse::<i64>().unwrap() >= 1, "{log}");
    let sent = |change: &str| {
        hook.requests()
            .iter()
            .map(|r| r.json().to_string())
            .filter(|j| j.contains("missed-run:tick") && j.contains(change))
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(30), || sent("resolved") >= 1),
        "the missed-run alert was not sent and resolved: {:?}\n{}",
        hook.requests().iter().map(|r| r.json()).collect::<Vec<_>>(),
        daemon.log()
    );
    let (code, _, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    // Nothing half-written: no run left `running`, and the chain verifies.
    assert_eq!(
        db.query("SELECT count(*) FROM runs WHERE status = 'running'"),
        "0",
        "{log}"
    );
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

/// A PostgreSQL server of this test's own (initdb in a temp dir, run as the `postgres` user)
/// that asks for a password (SCRAM) and accepts only TLS connections with the certificate of
/// `certificates()`: what the machine's trust-everyone server cannot show.
struct PrivateServer {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

const PASSWORD: &str = "s3cret-pw";

impl PrivateServer {
    fn start() -> PrivateServer {
        let bin = pg_bin("initdb").parent().unwrap().to_path_buf();
        let dir = tempfile::tempdir().unwrap();
        certificates(dir.path()).expect("openssl makes a CA and a server certificate");
        std::fs::write(dir.path().join("pw"), PASSWORD).unwrap();
        let as_postgres = |args: &[&str]| {
            let out = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        assert!(
            std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
        let data = dir.path().join("data");
        as_postgres(&[
            bin.join("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            "--pwfile",
            dir.path().join("pw").to_str().unwrap(),
        ]);
        let port = http::free_port();
        let d = dir.path().display();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(
            conf,
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\nssl = on\n\
             ssl_cert_file = '{d}/srv.pem'\nssl_key_file = '{d}/srv.key'\nfsync = off"
        )
        .unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "hostnossl all all 127.0.0.1/32 reject\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        as_postgres(&["chmod", "0600", &format!("{d}/srv.key")]);
        as_postgres(&[
            bin.join("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-l",
            &format!("{d}/log"),
            "-w",
            "start",
        ]);
        PrivateServer { dir, port, bin }
    }

    fn url(&self, password: Option<&str>, query: &str) -> String {
        let user = match password {
            Some(p) => format!("postgres:{p}"),
            None => "postgres".into(),
        };
        format!("postgres://{user}@localhost:{}/postgres?{query}", self.port)
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn passwords_and_tls_are_read_as_libpq_reads_them_and_refusals_are_explained() {
    let server = PrivateServer::start();
    let ca = server.dir.path().join("ca.pem");
    let home = tempfile::tempdir().unwrap();
    let run = |url: &str, envs: &[(&str, &str)]| {
        let env = Env::new(&format!("state: {{ url: \"{url}\", dir: state }}\n{PROFILES}"));
        let mut cmd = env.cmd();
        cmd.args(["run", "manual"])
            .env("HOME", home.path())
            .env_remove("PGPASSWORD");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Out::from(cmd.output().unwrap())
    };

    // A wrong password: refused by the server, explained, and never printed.
    let out = run(&server.url(Some("wrong-pw"), "sslmode=require"), &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("password authentication failed"), "{}", out.stderr);
    assert!(out.stderr.contains("refused the password"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong-pw"), "{}", out.stderr);

    // The right password (from PGPASSWORD), but no TLS: this server takes only TLS.
    let out = run(&server.url(None, "sslmode=disable"), &[("PGPASSWORD", PASSWORD)]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("sslmode=require"), "{}", out.stderr);

    // verify-full checks the server's certificate: unknown CA, refused; its CA, accepted.
    let out = run(&server.url(None, "sslmode=verify-full"), &[("PGPASSWORD", PASSWORD)]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let verified = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let out = run(&server.url(None, &verified), &[("PGPASSWORD", PASSWORD)]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The password from ~/.pgpass, read only when the file is closed to others.
    let pgpass = home.path().join(".pgpass");
    std::fs::write(&pgpass, format!("localhost:{}:*:postgres:{PASSWORD}\n", server.port)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&server.url(None, "sslmode=require"), &[]);
    assert_eq!(out.code, 3, "a .pgpass others can read is ignored: {}", out.stderr);
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&server.url(None, "sslmode=require"), &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
