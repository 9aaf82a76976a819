//! What the API guarantees under hostile or unlucky use: a revoked token is refused by the
//! next request, made-up tokens buy no rate-limit bucket, every client error is JSON, a read
//! token changes nothing through a ping, a reload never makes a request panic, and every API
//! setting follows a reload of `runbook serve` as well as of the daemon.

mod common;

use common::http::{get, request, request_with};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[test]
fn a_revoked_token_is_refused_by_the_very_next_request() {
    let env = Env::new("version: 1\n");
    let write = create_token(&env, "deploy", "write");
    let (_server, port) = serve(&env);
    assert_eq!(get(port, "/v1/alerts", Some(&write)).status, 200);
    assert_eq!(env.run(&["token", "revoke", "deploy"]).code, 0);
    let after = get(port, "/v1/alerts", Some(&write));
    assert_eq!(after.status, 401, "{}", after.body);
    // And a token created a moment ago works at once.
    let fresh = create_token(&env, "fresh", "read");
    assert_eq!(get(port, "/v1/alerts", Some(&fresh)).status, 200);
}

#[test]
fn made_up_tokens_share_their_address_bucket_and_a_real_token_has_its_own() {
    let env = Env::new("version: 1\napi: { rate_limit: { per_second: 1, burst: 3 } }\n");
    let real = create_token(&env, "dash", "read");
    let (_server, port) = serve(&env);
    // Each request carries another random token: they are all the same unauthenticated
    // client, and the fourth one is over its burst.
    let statuses: Vec<u16> = (0..6)
        .map(|i| get(port, "/v1/alerts", Some(&format!("rbk_made_up_{i}"))).status)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 3, "{statuses:?}");
    // The real token is counted by its name, not with the address.
    assert_eq!(get(port, "/v1/alerts", Some(&real)).status, 200);
    let over = (0..5)
        .map(|_| get(port, "/v1/alerts", Some(&real)))
        .find(|r| r.status == 429);
    let over = over.expect("a token has a bucket too");
    assert_eq!(over.json()["error"]["code"], "rate_limited");
    assert!(over.header("retry-after").is_some());
}

#[test]
fn a_malformed_json_body_gets_the_json_error_shape() {
    let env = Env::new("version: 1\n");
    let write = create_token(&env, "ops", "write");
    let (_server, port) = serve(&env);
    for body in ["{not json", "[1,2", "\"signature\""] {
        let r = common::http::post_raw_json(port, "/v1/changes/1/approve", Some(&write), body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "bad_json", "{}", r.body);
    }
}

#[test]
fn a_read_token_cannot_ping_and_a_ping_is_audited_as_its_key_or_token() {
    let key = "beat-key-0123456789abcdef";
    let env = Env::new(&format!(
        "version: 1\nchecks:\n  beat: {{ heartbeat: {{ period: 1h, key: \"{key}\" }} }}\n"
    ));
    let read = create_token(&env, "viewer", "read");
    let write = create_token(&env, "cron", "write");
    let (_server, port) = serve(&env);

    let refused = request(port, "POST", "/ping/beat/fail", Some(&read));
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(
        env.count("SELECT count(*) FROM heartbeats"),
        0,
        "a read token changed nothing"
    );

    assert_eq!(
        request(port, "POST", &format!("/ping/beat?key={key}"), None).status,
        200
    );
    assert_eq!(request(port, "POST", "/ping/beat/start", Some(&write)).status, 200);
    let actors: Vec<String> = {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT actor FROM audit_events WHERE kind = 'heartbeat.pinged' ORDER BY seq")
            .unwrap();
        stmt.query_map((), |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    assert_eq!(actors, ["ping:beat", "token:cron"]);
}

#[test]
fn a_heartbeat_check_removed_by_reload_while_pinged_is_a_404_never_a_panic() {
    let key = "beat-key-0123456789abcdef";
    let env = Env::new(&format!(
        "version: 1\napi: {{ listen: \"127.0.0.1:0\", rate_limit: off }}\nchecks:\n  beat: {{ heartbeat: {{ period: 1h, key: \"{key}\" }} }}\n  other: {{ heartbeat: {{ period: 1h, key: \"{key}\" }} }}\n"
    ));
    let (daemon, port) = start_api(&env, &["daemon"]);
    let stop = AtomicBool::new(false);
    let statuses = std::thread::scope(|s| {
        let pinger = s.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(request(port, "POST", &format!("/ping/beat/1?key={key}"), None).status);
            }
            seen
        });
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..6 {
            if i % 2 == 0 {
                env.edit_config("  beat: {", "  gone: {");
            } else {
                env.edit_config("  gone: {", "  beat: {");
            }
            assert_eq!(env.run(&["reload"]).code, 0);
            std::thread::sleep(Duration::from_millis(200));
        }
        stop.store(true, Ordering::SeqCst);
        pinger.join().unwrap()
    });
    assert!(statuses.contains(&200) && statuses.contains(&404), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 404),
        "every ping is answered 200 or 404: {statuses:?}"
    );
    drop(daemon);
}

#[test]
fn api_settings_follow_a_reload_of_runbook_serve() {
    let env = Env::new("version: 1\napi: { public: [/healthz, /v1/alerts] }\n");
    let (_server, port) = serve(&env);
    assert_eq!(get(port, "/v1/alerts", None).status, 200, "public as configured");
    env.edit_config("public: [/healthz, /v1/alerts]", "public: [/healthz]");
    let reload = env.run(&["reload", "--json"]);
    assert_eq!(reload.code, 0, "{reload:?}");
    assert!(reload.json()["serve_pid"].is_u64(), "{}", reload.stdout);
    assert!(
        wait_for(Duration::from_secs(10), || get(port, "/v1/alerts", None).status == 401),
        "a path removed from api.public needs a token again"
    );
    // A bad file is refused by `reload` itself and the server keeps the old one.
    env.edit_config("public: [/healthz]", "public: 7");
    assert_eq!(env.run(&["reload"]).code, 2);
    assert_eq!(get(port, "/healthz", None).status, 200);
    let _ = request_with(port, "GET", "/healthz", None, &[]);
}

#[test]
fn three_hundred_half_open_sockets_under_ulimit_256_starve_neither_health_nor_the_schedule() {
    let env = Env::new(
        "version: 1\napi: { listen: \"127.0.0.1:0\", rate_limit: off }\nprofiles:\n  tick: { cron: \"* * * * * *\", tasks: [ { run: [true] } ] }\n",
    );
    let log = env.path("daemon.log");
    let mut daemon = Server(
        std::process::Command::new("bash")
            .arg("-c")
            .arg("ulimit -n 256 && exec \"$0\" --config \"$1\" daemon --log-format text")
            .arg(BIN)
            .arg(&env.config)
            .current_dir(env.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let port = api_port_in_log(&log);

    let ok_runs = || env.count("SELECT count(*) FROM runs WHERE kind = 'profile' AND status = 'ok'");
    assert!(wait_for(Duration::from_secs(10), || ok_runs() >= 1));

    // 300 clients that start a request and never finish its head: more than the daemon has
    // file descriptors for.
    let mut held = Vec::new();
    for _ in 0..300 {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n");
        held.push(s);
    }
    let before = ok_runs();
    let health = get(port, "/healthz", None);
    assert_eq!(health.status, 200, "{}", health.body);
    // The schedule goes on meanwhile: runs every second, each recorded and finished.
    assert!(
        wait_for(Duration::from_secs(15), || ok_runs() >= before + 3),
        "runs stopped: {} ok before, {} now\n{}",
        before,
        ok_runs(),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        env.count("SELECT count(*) FROM runs WHERE status NOT IN ('ok', 'running')"),
        0,
        "no run failed for want of a descriptor"
    );
    drop(held);
    assert_eq!(get(port, "/healthz", None).status, 200);
    let _ = daemon.0.kill();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
}
