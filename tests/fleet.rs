//! Fleet mode: three daemons with different host names on one PostgreSQL database, one local
//! webhook receiver, a profile ticking every two seconds and a check flapping on purpose. The
//! leader is killed (-9), paused past its lease and stopped cleanly, in turn; every tick must
//! be in the ledger once (run, or recorded as missed during a failover), every alert
//! transition must reach the receiver once, and failovers must stay within their bounds.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

const HOSTS: [&str; 3] = ["alpha", "beta", "gamma"];

fn host_env(db: &PgDb, host: &str, flag: &Path, hook: &str) -> Env {
    host_env_at(&db.url(), host, flag, hook)
}

/// A host whose connection to the database is `url` (a relay the test controls, or direct).
fn host_env_at(url: &str, host: &str, flag: &Path, hook: &str) -> Env {
    Env::new(&format!(
        r#"version: 1
host: {host}
state: {{ url: "{url}", dir: state }}
api: {{ listen: "127.0.0.1:0", rate_limit: off }}
checks:
  flap: {{ command: {{ sh: "test -e {flag}" }} }}
profiles:
  tick: {{ cron: "*/2 * * * * *", tasks: [ {{ sh: "sleep 1", name: work }}, {{ check: flap }} ] }}
  local: {{ cron: "*/3 * * * * *", run_on: all, tasks: [ {{ run: [true] }} ] }}
notify:
  channels:
    hook: {{ webhook: {{ url: "{hook}/hook" }} }}
"#,
        flag = flag.display(),
    ))
}

/// (holder, term) of the live leader lease, by the database's clock.
fn leader(db: &PgDb) -> Option<(String, i64)> {
    let row = db.query(
        "SELECT holder || ' ' || term FROM leases WHERE name = 'leader' AND instance IS NOT NULL \
         AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    );
    let (h, t) = row.split_once(' ')?;
    Some((h.to_string(), t.parse().ok()?))
}

fn db_ms(db: &PgDb) -> i64 {
    db.query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
        .parse()
        .unwrap()
}

/// Waits for a leader other than `not` (any, when `None`): its host, term and when (database
/// milliseconds) it was seen.
fn next_leader(db: &PgDb, not: Option<&str>, limit: Duration) -> (String, i64, i64) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((h, t)) = leader(db)
            && Some(h.as_str()) != not
        {
            return (h, t, db_ms(db));
        }
        assert!(Instant::now() < deadline, "no new leader within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs of lease term `term` that finished `ok` after `after_ms` (database milliseconds).
fn runs_recorded_after(db: &PgDb, term: i64, after_ms: i64) -> i64 {
    db.query(&format!(
        "SELECT count(*) FROM runs WHERE term = {term} AND status = 'ok' AND finished_at > '{}'",
        runbook::clock::to_text(jiff::Timestamp::from_millisecond(after_ms).unwrap())
    ))
    .parse()
    .unwrap()
}

/// The idempotency keys the receiver got, in the order they first came, as a receiver that
/// honours `Idempotency-Key` keeps them. A leader killed or frozen between a webhook's send and
/// its record of it is resent by the next leader with the same key (docs/fleet.md: the limit
/// every lease has): at most `unclean` keys (one send in flight per forced failover) may come
/// twice, none more often.
fn delivered(hook: &common::receiver::Receiver, unclean: usize) -> Vec<String> {
    let keys: Vec<String> = hook
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    let mut unique: Vec<String> = Vec::new();
    let mut repeats = Vec::new();
    for k in &keys {
        if unique.contains(k) {
            repeats.push(k.clone());
        } else {
            unique.push(k.clone());
        }
    }
    let twice: BTreeSet<&String> = repeats.iter().collect();
    assert!(
        repeats.len() <= unclean && twice.len() == repeats.len(),
        "more repeats than forced failovers ({unclean}): {repeats:?} of {keys:?}"
    );
    unique
}

#[test]
fn the_fleet_fails_over_without_a_duplicate_tick_or_notification() {
    let db = PgDb::create();
    let hook = common::receiver::Receiver::start();
    let shared = tempfile::tempdir().unwrap();
    let flag = shared.path().join("up");
    std::fs::write(&flag, "").unwrap();
    let envs: BTreeMap<&str, Env> = HOSTS
        .iter()
        .map(|h| (*h, host_env(&db, h, &flag, &hook.url())))
        .collect();
    assert_eq!(envs["alpha"].run(&["db", "migrate", "--apply"]).code, 0);
    let mut daemons: BTreeMap<&str, Daemon> = BTreeMap::new();
    for h in HOSTS {
        daemons.insert(h, Daemon::start(&envs[h]));
    }
    let logs = |d: &BTreeMap<&str, Daemon>| {
        d.iter()
            .map(|(h, d)| format!("--- {h}\n{}", d.log()))
            .collect::<String>()
    };

    // The check flaps every 3 s for the whole test, from a thread of its own.
    let stop_flapping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flapper = {
        let (stop, flag) = (stop_flapping.clone(), flag.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(3));
                if flag.exists() {
                    std::fs::remove_file(&flag).unwrap();
                } else {
                    std::fs::write(&flag, "").unwrap();
                }
            }
        })
    };

    let (first, _, _) = next_leader(&db, None, Duration::from_secs(20));
    let ran = |db: &PgDb| -> i64 {
        db.query(
            "SELECT count(*) FROM runs WHERE profile = 'tick' AND parent_id IS NULL AND status IN ('ok', 'failed')",
        )
        .parse()
        .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(20), || ran(&db) >= 3),
        "{}",
        logs(&daemons)
    );

    // 1. kill -9 of the leader: another host leads within 20 s.
    let killed_at = db_ms(&db);
    daemons.remove(first.as_str()).unwrap().kill_9();
    let (second, _, seen) = next_leader(&db, Some(&first), Duration::from_secs(25));
    let crash_failover = seen - killed_at;
    assert!(crash_failover <= 20_000, "crash failover took {crash_failover} ms");
    let before = ran(&db);
    assert!(
        wait_for(Duration::from_secs(10), || ran(&db) > before),
        "{}",
        logs(&daemons)
    );

    // 2. SIGSTOP of the leader past its lease, then SIGCONT: another host leads, and the paused
    // one's late writes are refused.
    let paused_pid = daemons[second.as_str()].pid();
    let (_, paused_term) = leader(&db).unwrap();
    signal(paused_pid, "STOP");
    let stopped_at = db_ms(&db);
    let (third, _, took) = next_leader(&db, Some(&second), Duration::from_secs(25));
    let pause_failover = took - stopped_at;
    assert!(pause_failover <= 20_000, "pause failover took {pause_failover} ms");
    signal(paused_pid, "CONT");
    // Resumed, it finds on its own clock that the lease is gone (and its run in flight ends).
    assert!(
        wait_for(Duration::from_secs(15), || daemons[second.as_str()]
            .log()
            .contains("the fleet lease is another host's now")),
        "{}",
        logs(&daemons)
    );
    std::thread::sleep(Duration::from_millis(1500));
    let late = runs_recorded_after(&db, paused_term, took);
    assert_eq!(late, 0, "a paused leader recorded a run after losing its lease");
    let before = ran(&db);
    assert!(
        wait_for(Duration::from_secs(10), || ran(&db) > before),
        "{}",
        logs(&daemons)
    );

    // 3. Twenty graceful stops: the lease moves in under a second each time (database clock, from
    // the resignation to the next holder taking it). The stopped host comes back each time.
    let mut graceful = Vec::new();
    let mut current = third;
    for _ in 0..20 {
        let (code, _, log) = daemons.remove(current.as_str()).unwrap().stop();
        assert_eq!(code, 0, "{log}");
        let (next, _, _) = next_leader(&db, Some(&current), Duration::from_secs(10));
        let gap: i64 = db
            .query("SELECT acquired_ms - (SELECT max(stopped_ms) FROM fleet_hosts) FROM leases WHERE name = 'leader'")
            .parse()
            .unwrap();
        graceful.push(gap);
        let host = HOSTS.iter().find(|h| **h == current).unwrap();
        daemons.insert(host, Daemon::start(&envs[host]));
        current = next;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        graceful.iter().all(|g| *g < 1_000),
        "graceful failovers (ms): {graceful:?}"
    );

    // Settle: the flapping stops with the check passing, the outbox drains.
    stop_flapping.store(true, std::sync::atomic::Ordering::SeqCst);
    flapper.join().unwrap();
    std::fs::write(&flag, "").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        wait_for(Duration::from_secs(20), || db.query(
            "SELECT (SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending')) \
             + (SELECT count(*) FROM alerts WHERE status = 'firing' AND name NOT LIKE 'host_down:%')"
        ) == "0"),
        "{}\n{}\n{}",
        db.query("SELECT string_agg(name || ' ' || status, ', ') FROM alerts"),
        db.query("SELECT string_agg(idempotency_key || ' ' || status, ', ') FROM notifications"),
        logs(&daemons)
    );
    let log = logs(&daemons);
    for (_, d) in std::mem::take(&mut daemons) {
        let (code, _, _) = d.stop();
        assert_eq!(code, 0);
    }

    // Every tick between the first and the last is in the ledger exactly once.
    let ticks: Vec<String> = db
        .query("SELECT string_agg(tick, ',' ORDER BY tick) FROM runs WHERE profile = 'tick' AND parent_id IS NULL")
        .split(',')
        .map(str::to_string)
        .collect();
    let distinct: BTreeSet<&String> = ticks.iter().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick was recorded twice");
    let as_ts = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
    let (start, end) = (as_ts(&ticks[0]), as_ts(ticks.last().unwrap()));
    let expected = (end.as_second() - start.as_second()) / 2 + 1;
    assert_eq!(
        ticks.len() as i64,
        expected,
        "ticks missing from the ledger: {ticks:?}\n{log}"
    );
    let missed: i64 = db
        .query("SELECT count(*) FROM runs WHERE profile = 'tick' AND parent_id IS NULL AND status = 'skipped'")
        .parse()
        .unwrap();
    // Missed ticks fall in failover windows only: the crash and pause windows (a tick every
    // 2 s), and at most one tick around each graceful handover.
    let window = (crash_failover + pause_failover) / 2000 + 4 + graceful.len() as i64;
    assert!(
        missed <= window,
        "{missed} ticks missed, more than the failover windows hold ({window})"
    );

    eprintln!(
        "failover: crash {crash_failover} ms, pause {pause_failover} ms, graceful {graceful:?} ms; ticks {}, missed {missed}",
        ticks.len()
    );

    // Every alert transition reached the receiver, once by its key (the kill and the freeze
    // may each repeat one send in flight, with the same key).
    let keys = delivered(&hook, 2);
    let unsent =
        db.query("SELECT string_agg(idempotency_key || ' ' || status, ', ') FROM notifications WHERE status <> 'sent'");
    assert_eq!(unsent, "", "every queued notification was sent: {log}");
    let queued: i64 = db.query("SELECT count(*) FROM notifications").parse().unwrap();
    assert_eq!(queued as usize, keys.len(), "every notification was received: {keys:?}");
    assert!(keys.len() >= 4, "the check flapped: {keys:?}");
    eprintln!("notifications: {} delivered, each once by its key", keys.len());
    // The killed host was noticed.
    assert!(
        hook.requests()
            .iter()
            .any(|r| r.json().to_string().contains("host_down:")),
        "no host_down alert was sent"
    );
    // One alert per key across leaders: the killed host is down once, not once per leader.
    assert_eq!(
        db.query(&format!("SELECT count(*) FROM alerts WHERE name = 'host_down:{first}'")),
        "1"
    );
    assert_eq!(envs["beta"].run(&["audit", "verify"]).code, 0);
}

#[test]
fn fleet_status_shows_hosts_the_leader_and_what_runs_where() {
    let db = PgDb::create();
    let hook = common::receiver::Receiver::start();
    let shared = tempfile::tempdir().unwrap();
    let flag = shared.path().join("up");
    let a = host_env(&db, "alpha", &flag, &hook.url());
    let b = host_env(&db, "beta", &flag, &hook.url());
    assert_eq!(a.run(&["db", "migrate", "--apply"]).code, 0);
    let da = Daemon::start(&a);
    let (leader_host, term, _) = next_leader(&db, None, Duration::from_secs(20));
    assert_eq!(leader_host, "alpha");
    let db_ = Daemon::start(&b);
    assert!(wait_for(Duration::from_secs(20), || db
        .query("SELECT count(*) FROM fleet_hosts")
        == "2"));
    let (code, v) = b.json(&["fleet", "status"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "fleet");
    assert_eq!(v["leader"]["host"], "alpha");
    assert_eq!(v["leader"]["term"], term);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "{v}");
    assert!(hosts.iter().all(|h| h["state"] == "up"), "{v}");
    let profile = |n: &str| {
        v["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(profile("tick")["hosts"], serde_json::json!(["alpha"]));
    assert_eq!(profile("local")["hosts"], serde_json::json!(["alpha", "beta"]));
    let human = b.run(&["fleet", "status"]);
    assert!(human.stdout.contains("leader: alpha"), "{}", human.stdout);

    // The API says the same.
    let token = create_token(&b, "reader", "read");
    let port = api_port_in_log(&db_.log);
    let page = common::http::get(port, "/v1/fleet", Some(&token));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()["leader"]["host"], "alpha");

    // A host that stops is `stopped`, not down; the other leads at once.
    let (code, _, _) = da.stop();
    assert_eq!(code, 0);
    let (now_leader, _, _) = next_leader(&db, Some("alpha"), Duration::from_secs(5));
    assert_eq!(now_leader, "beta");
    let (_, v) = b.json(&["fleet", "status"]);
    let alpha = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "alpha")
        .unwrap()
        .clone();
    assert_eq!(alpha["state"], "stopped", "{v}");
    drop(db_);
}

/// How the test cuts alpha off: a relay it closes (connections reset, new ones refused), or a
/// network namespace whose loopback it takes down (packets dropped in the kernel, no reset).
enum Network {
    Relay(common::relay::Relay),
    Netns(common::netns::Netns),
}

impl Network {
    fn cut(&self) {
        match self {
            Network::Relay(r) => r.cut(),
            Network::Netns(n) => n.cut(),
        }
    }

    fn restore(&self) {
        match self {
            Network::Relay(r) => r.restore(),
            Network::Netns(n) => n.restore(),
        }
    }
}

#[test]
fn a_leader_cut_off_from_the_database_stops_leading_and_its_writes_never_land() {
    a_leader_cut_off(|_| Some(Network::Relay(common::relay::Relay::start())));
}

#[test]
fn a_leader_partitioned_in_the_kernel_stops_leading_and_its_writes_never_land() {
    a_leader_cut_off(|hook_port| common::netns::Netns::create(&[hook_port]).map(Network::Netns));
}

/// alpha reaches the database (and the receiver) through a network the test cuts, as a host
/// whose network fails; beta reaches them directly.
fn a_leader_cut_off(network: impl FnOnce(u16) -> Option<Network>) {
    let db = PgDb::create();
    let hook = common::receiver::Receiver::start();
    let Some(network) = network(hook.port) else {
        return cannot_run("no network namespace here (needs root, `ip netns` and socat)");
    };
    let shared = tempfile::tempdir().unwrap();
    let flag = shared.path().join("up");
    std::fs::write(&flag, "").unwrap();
    let port = match &network {
        Network::Relay(r) => r.port,
        Network::Netns(_) => 5432,
    };
    let alpha_url = format!("postgres://postgres@127.0.0.1:{port}/{}?sslmode=disable", db.name);
    let alpha = host_env_at(&alpha_url, "alpha", &flag, &hook.url());
    let beta = host_env(&db, "beta", &flag, &hook.url());
    assert_eq!(beta.run(&["db", "migrate", "--apply"]).code, 0);
    let da = match &network {
        Network::Netns(n) => Daemon::start_via(&alpha, &n.exec(), &[], None),
        Network::Relay(_) => Daemon::start(&alpha),
    };
    assert_eq!(next_leader(&db, None, Duration::from_secs(20)).0, "alpha");
    let dbeta = Daemon::start(&beta);
    let ran = || -> i64 {
        db.query(
            "SELECT count(*) FROM runs WHERE profile = 'tick' AND parent_id IS NULL AND status IN ('ok', 'failed')",
        )
        .parse()
        .unwrap()
    };
    assert!(wait_for(Duration::from_secs(20), || ran() >= 2), "{}", da.log());
    let (_, cut_term) = leader(&db).unwrap();

    std::fs::remove_file(&flag).unwrap();
    let cut_at = db_ms(&db);
    network.cut();
    let (now_leader, _, took) = next_leader(&db, Some("alpha"), Duration::from_secs(25));
    assert_eq!(now_leader, "beta");
    assert!(
        took - cut_at <= 20_000,
        "failover after a cut took {} ms",
        took - cut_at
    );
    // beta runs the ticks and tells of the failing check.
    let before = ran();
    assert!(wait_for(Duration::from_secs(10), || ran() > before), "{}", dbeta.log());
    network.restore();
    std::fs::write(&flag, "").unwrap();
    std::thread::sleep(Duration::from_secs(6));
    // alpha is back as a follower: beta still leads, alpha heartbeats again.
    assert_eq!(leader(&db).map(|l| l.0).as_deref(), Some("beta"), "{}", da.log());
    let (_, v) = beta.json(&["fleet", "status"]);
    assert!(v["hosts"].as_array().unwrap().iter().all(|h| h["state"] == "up"), "{v}");
    let late = runs_recorded_after(&db, cut_term, took);
    assert_eq!(late, 0, "the cut-off leader recorded a run after losing its lease");
    assert!(
        wait_for(Duration::from_secs(20), || db.query(
            "SELECT (SELECT count(*) FROM notifications WHERE status IN ('pending', 'sending')) \
             + (SELECT count(*) FROM alerts WHERE status = 'firing')"
        ) == "0"),
        "{}",
        dbeta.log()
    );
    let (code, _, alpha_log) = da.stop();
    assert_eq!(code, 0, "{alpha_log}");
    let (code, _, beta_log) = dbeta.stop();
    assert_eq!(code, 0, "{beta_log}");
    let ticks: i64 = db
        .query("SELECT count(*) FROM runs WHERE profile = 'tick' AND parent_id IS NULL")
        .parse()
        .unwrap();
    let distinct: i64 = db
        .query("SELECT count(DISTINCT tick) FROM runs WHERE profile = 'tick' AND parent_id IS NULL")
        .parse()
        .unwrap();
    assert_eq!(ticks, distinct, "a tick was recorded twice");
    // One forced failover: at most one send in flight repeated, with its key.
    let keys = delivered(&hook, 1);
    let queued = db.query("SELECT string_agg(idempotency_key || ' ' || status || ' ' || coalesce(term::text, '-') || ' ' || coalesce(last_error, ''), '; ') FROM notifications");
    assert_eq!(
        queued.split("; ").count(),
        keys.len(),
        "every notification was received once: {keys:?}\n{queued}\n--- alpha\n{alpha_log}\n--- beta\n{beta_log}"
    );
}

#[test]
fn on_a_state_file_this_host_is_the_whole_fleet_and_run_on_filters_by_name_and_label() {
    let env = Env::new(
        r#"
version: 1
host: solo
host_labels: [db]
state: { url: "sqlite://state/runbook.db" }
profiles:
  a: { cron: "@hourly", tasks: [ { run: [true] } ] }
  b: { cron: "@hourly", run_on: all, tasks: [ { run: [true] } ] }
  c: { cron: "@hourly", run_on: [db], tasks: [ { run: [true] } ] }
  d: { cron: "@hourly", run_on: other, tasks: [ { run: [true] } ] }
"#,
    );
    let (code, v) = env.json(&["fleet", "status"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "single");
    assert!(v["leader"].is_null());
    let hosts = |n: &str| {
        v["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["hosts"]
            .clone()
    };
    assert_eq!(hosts("a"), serde_json::json!(["solo"]));
    assert_eq!(hosts("b"), serde_json::json!(["solo"]));
    assert_eq!(hosts("c"), serde_json::json!(["solo"]));
    assert_eq!(hosts("d"), serde_json::json!([]));

    // A list that names no host is refused with its line.
    env.edit_config("run_on: [db]", "run_on: []");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("`run_on` names no host"), "{}", out.stderr);
    assert!(out.stderr.contains("runbook.yaml:9"), "{}", out.stderr);
}

/// Runs `sql` in one transaction as a leader of `term` would (`SET LOCAL runbook.term`, none
/// when `None`); whether the database accepted it.
fn write_as(db: &PgDb, term: Option<i64>, sql: &str) -> bool {
    let set = term
        .map(|t| format!("SET LOCAL runbook.term = '{t}'; "))
        .unwrap_or_default();
    psql_ok(&db.name, &format!("BEGIN; {set}{sql}; COMMIT;"))
}

#[test]
fn the_database_refuses_a_former_leaders_writes_to_runs_the_outbox_alerts_and_check_states() {
    let db = PgDb::create();
    let env = host_env(&db, "alpha", Path::new("/nonexistent"), "http://127.0.0.1:9");
    assert_eq!(env.run(&["db", "migrate", "--apply"]).code, 0);
    // Term 7 leads until a minute from now; term 6 is a former leader's.
    db.query(
        "INSERT INTO leases (name, holder, instance, term, acquired_ms, expires_ms) VALUES ('leader', 'alpha', 'i', 7, 0, \
         (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 60000)",
    );
    let now = runbook::clock::to_text(runbook::clock::now());
    let writes = [
        (
            "notifications",
            format!(
                "INSERT INTO notifications (idempotency_key, change, channel, payload, status, next_attempt_at, created_at) \
                 VALUES ('k', 'test', 'hook', '{{}}', 'pending', '{now}', '{now}')"
            ),
        ),
        (
            "runs",
            format!(
                "INSERT INTO runs (profile, kind, trigger, status, host, started_at) VALUES ('p', 'profile', 'manual', 'running', 'alpha', '{now}')"
            ),
        ),
        (
            "check_state",
            format!("INSERT INTO check_state VALUES ('c', 'fleet', 0, 1, 0, '{now}')"),
        ),
        (
            "alerts",
            format!(
                "INSERT INTO alerts (key, source, name, host, severity, status, labels, summary, first_seen, last_seen, count) \
                 VALUES ('check:c@fleet', 'check', 'c', 'fleet', 'critical', 'firing', '{{}}', 's', '{now}', '{now}', 1)"
            ),
        ),
    ];
    for (table, insert) in &writes {
        assert!(
            !write_as(&db, Some(6), insert),
            "{table}: a former leader's insert landed"
        );
        assert!(
            write_as(&db, Some(7), insert),
            "{table}: the leader's insert was refused"
        );
        let column = if *table == "notifications" {
            "created_at"
        } else {
            "host"
        };
        let update = format!("UPDATE {table} SET {column} = {column}");
        assert!(
            !write_as(&db, Some(6), &update),
            "{table}: a former leader's update landed"
        );
        // Outside a fence (a follower answering a ping, a command): not the fence's business.
        assert!(write_as(&db, None, &update), "{table}: an unfenced update was refused");
    }
    assert_eq!(
        db.query("SELECT term FROM runs"),
        "7",
        "the leader's run carries its term"
    );
    assert_eq!(db.query("SELECT term FROM notifications"), "7");
    // Once the lease ran out, even its own term is refused.
    db.query("UPDATE leases SET expires_ms = 0");
    assert!(!write_as(&db, Some(7), "UPDATE check_state SET ok = 1"));
    assert_eq!(db.query("SELECT ok FROM check_state"), "0");
}

#[test]
fn a_check_with_run_on_is_probed_on_each_of_its_hosts_and_judged_per_host() {
    // One profile the leader runs (`run_on: any`) names three checks: `shared` (the fleet's,
    // probed once per tick by the leader), `disk` (`run_on: all`: every host probes its own)
    // and `edge` (`run_on: web`, a label only beta has). alpha's disk is full, beta's is not.
    let db = PgDb::create();
    let dirs = tempfile::tempdir().unwrap();
    let env = |host: &str, labels: &str| {
        let disk_ok = dirs.path().join(format!("{host}-disk-ok"));
        Env::new(&format!(
            r#"version: 1
host: {host}
host_labels: [{labels}]
state: {{ url: "{url}", dir: state }}
api: {{ listen: "127.0.0.1:0", rate_limit: off }}
checks:
  shared: {{ command: {{ run: [true] }} }}
  disk: {{ command: {{ sh: "test -e {disk_ok}" }}, run_on: all }}
  edge: {{ command: {{ run: [true] }}, run_on: [web] }}
profiles:
  watch: {{ cron: "* * * * * *", tasks: [ {{ check: shared }}, {{ check: disk }}, {{ check: edge }} ] }}
"#,
            url = db.url(),
            disk_ok = disk_ok.display(),
        ))
    };
    std::fs::write(dirs.path().join("beta-disk-ok"), "").unwrap();
    let a = env("alpha", "db");
    let b = env("beta", "web");
    assert_eq!(a.run(&["db", "migrate", "--apply"]).code, 0);
    let da = Daemon::start(&a);
    assert_eq!(next_leader(&db, None, Duration::from_secs(20)).0, "alpha");
    let dbeta = Daemon::start(&b);
    let probed = |check: &str, host: &str| -> i64 {
        db.query(&format!(
            "SELECT count(*) FROM check_results WHERE check_name = '{check}' AND host = '{host}'"
        ))
        .parse()
        .unwrap()
    };
    assert!(
        wait_for(Duration::from_secs(20), || probed("disk", "beta") >= 3
            && probed("edge", "beta") >= 3),
        "{}",
        dbeta.log()
    );
    let (_, _, alpha_log) = da.stop();
    let (_, _, beta_log) = dbeta.stop();
    let logs = format!("--- alpha\n{alpha_log}\n--- beta\n{beta_log}");
    assert!(probed("disk", "alpha") >= 3, "{logs}");
    assert!(probed("shared", "alpha") >= 3, "{logs}");
    assert_eq!(
        probed("shared", "beta"),
        0,
        "only the leader probes the fleet's check: {logs}"
    );
    assert_eq!(probed("edge", "alpha"), 0, "alpha is not `web`: {logs}");
    // Each host's disk is its own alert; the fleet's check is the fleet's.
    let firing = db.query("SELECT string_agg(key, ',' ORDER BY key) FROM alerts WHERE status = 'firing'");
    assert_eq!(firing, "disk@alpha", "{logs}");
    assert_eq!(
        db.query(
            "SELECT string_agg(check_name || '@' || host, ',' ORDER BY check_name, host) FROM check_state \
                  WHERE check_name NOT LIKE 'host_down:%'"
        ),
        "disk@alpha,disk@beta,edge@beta,shared@fleet",
        "{logs}"
    );
}
