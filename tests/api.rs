//! The HTTP API through the real binary: open health endpoints, bearer tokens stored hashed,
//! readiness, paging with cursors, and JSON errors for every kind of bad request.

mod common;

use common::http::{get, request, request_with};
use common::*;
use std::time::Duration;

const FAILING: &str = r#"
version: 1
checks:
  c1: { command: { sh: "exit 1" } }
  c2: { command: { sh: "exit 1" } }
  c3: { command: { sh: "exit 1" } }
  c4: { command: { sh: "exit 1" } }
  c5: { command: { sh: "exit 1" } }
  fine: { command: { sh: "true" } }
"#;

fn token(env: &Env, name: &str, scope: &str) -> String {
    create_token(env, name, scope)
}

#[test]
fn health_is_open_and_everything_else_needs_a_valid_token() {
    let env = Env::new(FAILING);
    let secret = token(&env, "ci", "read");
    assert!(secret.starts_with("rbk_"));
    let stored = env
        .db()
        .query_row("SELECT hash FROM api_tokens WHERE name = 'ci'", (), |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert_ne!(stored, secret, "only a hash is stored");
    // The bytes at rest: the state file, or a dump of the whole PostgreSQL database.
    let at_rest = env.state_bytes();
    assert!(!at_rest.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let (_server, port) = serve(&env);

    for path in ["/healthz", "/v1/live"] {
        let r = get(port, path, None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json()["status"], "ok");
    }
    let r = get(port, "/v1/alerts", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(get(port, "/v1/alerts", Some("rbk_wrong")).status, 401);
    let ok = get(port, "/v1/alerts", Some(&secret));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["items"], serde_json::json!([]));

    // A read token cannot write.
    assert_eq!(request(port, "POST", "/v1/alerts", Some(&secret)).status, 403);

    let listed = env.run(&["token", "list", "--json"]);
    assert!(listed.stdout.contains("\"ci\"") && !listed.stdout.contains(&secret));
    assert_eq!(env.run(&["token", "revoke", "ci"]).code, 0);
    assert!(
        wait_for(Duration::from_secs(15), || get(port, "/v1/alerts", Some(&secret))
            .status
            == 401),
        "a revoked token is refused"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind IN ('token.created', 'token.revoked')"),
        2
    );
}

#[test]
fn alerts_and_runs_are_paged_newest_first_with_an_opaque_cursor() {
    let env = Env::new(&format!(
        "{FAILING}profiles:\n  p: {{ cron: \"@yearly\", tasks: [ fine ] }}\n"
    ));
    env.run(&["check"]);
    env.run(&["run", "p"]);
    let secret = token(&env, "reader", "read");
    let (_server, port) = serve(&env);

    let mut seen = Vec::new();
    let mut path = "/v1/alerts?limit=2".to_string();
    for _ in 0..10 {
        let page = get(port, &path, Some(&secret)).json();
        assert!(page["items"].is_array(), "{path}: {page}");
        for a in page["items"].as_array().unwrap() {
            seen.push(a["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/alerts?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, vec![5, 4, 3, 2, 1], "every alert once, newest first");

    let firing = get(
        port,
        "/v1/alerts?status=firing&source=check&since=2000-01-01T00:00:00Z",
        Some(&secret),
    )
    .json();
    assert_eq!(firing["items"].as_array().unwrap().len(), 5);
    let one = get(port, "/v1/alerts/3", Some(&secret)).json();
    assert_eq!(one["name"], "c3");

    let runs = get(port, "/v1/runs?limit=1", Some(&secret)).json();
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    let run_id = env.count("SELECT id FROM runs WHERE kind = 'profile'");
    let run = get(port, &format!("/v1/runs/{run_id}"), Some(&secret)).json();
    assert_eq!(run["run"]["profile"], "p");
    assert_eq!(run["tasks"].as_array().unwrap().len(), 1);

    let checks = get(port, "/v1/checks", Some(&secret)).json();
    let items = checks["items"].as_array().unwrap();
    assert_eq!(items.len(), 6);
    assert!(items.iter().any(|c| c["name"] == "fine" && c["ok"] == true));
    assert!(items.iter().any(|c| c["name"] == "c1" && c["ok"] == false));
}

#[test]
fn repeated_reads_carry_an_etag_and_see_every_commit_from_another_process_at_once() {
    let env = Env::new(FAILING);
    env.run(&["check"]);
    let secret = token(&env, "reader", "read");
    let (_server, port) = serve(&env);

    let first = get(port, "/v1/alerts?limit=5", Some(&secret));
    assert_eq!(first.status, 200, "{}", first.body);
    let tag = first.header("etag").expect("an ETag on a list").to_string();
    let again = get(port, "/v1/alerts?limit=5", Some(&secret));
    assert_eq!(again.body, first.body);
    assert_eq!(again.header("etag"), Some(tag.as_str()), "same state, same tag");
    let unchanged = request_with(
        port,
        "GET",
        "/v1/alerts?limit=5",
        Some(&secret),
        &[("If-None-Match", &tag)],
    );
    assert_eq!(unchanged.status, 304);
    assert!(unchanged.body.is_empty());
    // The tag does not stand in for a token.
    let anonymous = request_with(port, "GET", "/v1/alerts?limit=5", None, &[("If-None-Match", &tag)]);
    assert_eq!(anonymous.status, 401);

    // Another process commits: the next read shows it, and the old tag no longer matches.
    assert_eq!(env.run(&["alerts", "ack", "c1"]).code, 0);
    let after = request_with(
        port,
        "GET",
        "/v1/alerts?limit=5",
        Some(&secret),
        &[("If-None-Match", &tag)],
    );
    assert_eq!(after.status, 200, "a commit makes the cached page stale");
    assert_ne!(after.header("etag"), Some(tag.as_str()));
    let page = after.json();
    let c1 = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "c1")
        .unwrap()
        .clone();
    assert!(c1["acked_by"].is_string(), "the ack is visible at once: {c1}");
    let one = get(port, &format!("/v1/alerts/{}", c1["id"]), Some(&secret)).json();
    assert!(one["acked_by"].is_string());
}

#[test]
fn concurrent_readers_never_get_a_page_older_than_their_request() {
    // Readers hammer a cached list while another process commits runs one by one: a request
    // sent after a commit returned must show it, however many requests share a version read.
    let env = Env::new(
        "version: 1\napi: { rate_limit: off }\nprofiles:\n  p: { cron: \"0 0 1 1 *\", tasks: [ { run: [true] } ] }\n",
    );
    assert_eq!(env.run(&["run", "p"]).code, 0);
    let secret = token(&env, "reader", "read");
    let (_server, port) = serve(&env);
    let committed = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(1));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (committed, done, secret) = (committed.clone(), done.clone(), secret.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    let before = committed.load(std::sync::atomic::Ordering::SeqCst);
                    let page = get(port, "/v1/runs?limit=100", Some(&secret));
                    assert_eq!(page.status, 200, "{}", page.body);
                    let seen = page.json()["items"].as_array().unwrap().len() as i64;
                    assert!(
                        seen >= before,
                        "{before} runs were committed before the request, the page shows {seen}"
                    );
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for n in 2..=12 {
        assert_eq!(env.run(&["run", "p"]).code, 0);
        committed.store(n, std::sync::atomic::Ordering::SeqCst);
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads: i32 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(reads > 12, "the readers ran ({reads} reads)");
}

#[test]
fn bad_requests_get_json_errors_never_a_500() {
    let env = Env::new(FAILING);
    let secret = token(&env, "reader", "read");
    let (_server, port) = serve(&env);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/v1/alerts?limit=0", 400, "bad_limit"),
        ("GET", "/v1/alerts?limit=1000000", 400, "bad_limit"),
        ("GET", "/v1/alerts?limit=abc", 400, "bad_query"),
        ("GET", "/v1/alerts?cursor=zzz", 400, "bad_cursor"),
        ("GET", "/v1/alerts?cursor=zzzzzzzzzzzzzzzz", 400, "bad_cursor"),
        ("GET", "/v1/alerts?status=bogus", 400, "bad_status"),
        ("GET", "/v1/alerts?since=yesterday", 400, "bad_since"),
        ("GET", "/v1/runs?status=exploded", 400, "bad_status"),
        ("GET", "/v1/alerts/abc", 404, "not_found"),
        ("GET", "/v1/alerts/999999", 404, "not_found"),
        ("GET", "/v1/runs/-1", 404, "not_found"),
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("DELETE", "/v1/checks", 403, "forbidden"),
    ];
    for (method, path, status, code) in cases {
        let r = request(port, method, path, Some(&secret));
        assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], *code, "{method} {path}: {}", r.body);
    }
    // A token created while the server runs is picked up within a second or so.
    let writer = token(&env, "writer", "write");
    assert!(wait_for(Duration::from_secs(10), || request(
        port,
        "DELETE",
        "/v1/checks",
        Some(&writer)
    )
    .status
        != 401));
    let r = request(port, "DELETE", "/v1/checks", Some(&writer));
    assert_eq!(r.status, 405, "{}", r.body);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
}

#[test]
fn ready_needs_a_ticking_scheduler_and_migration_state_reports_head() {
    let env = Env::new(
        "version: 1\napi: { listen: \"127.0.0.1:0\" }\nprofiles:\n  p: { cron: \"@yearly\", tasks: [ { run: [true] } ] }\n",
    );
    let secret = token(&env, "reader", "read");
    {
        let (_api, port) = start_api(&env, &["serve"]);
        let r = get(port, "/v1/ready", Some(&secret));
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(
            r.json()["reasons"][0]
                .as_str()
                .unwrap()
                .contains("scheduler has never ticked"),
            "{}",
            r.body
        );
        let m = get(port, "/v1/migration/state", Some(&secret)).json();
        assert_eq!(m["status"], "head");
        assert_eq!(m["current"], m["head"]);
    }
    // The daemon serves the API itself and publishes its tick.
    let (_daemon, port) = start_api(&env, &["daemon"]);
    assert!(wait_for(Duration::from_secs(20), || get(
        port,
        "/v1/ready",
        Some(&secret)
    )
    .status
        == 200));
    let health = get(port, "/v1/health", Some(&secret));
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "ok");
}

#[test]
fn serving_a_non_loopback_address_without_any_token_is_refused() {
    let env = Env::new("version: 1\n");
    let out = env.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("without any API token"), "{}", out.stderr);
    assert!(out.stderr.contains("runbook token create"), "{}", out.stderr);
}

#[test]
fn metrics_are_prometheus_text_that_promtool_accepts_and_openmetrics_on_request() {
    let env = Env::new(&format!(
        "{FAILING}profiles:\n  p: {{ cron: \"@yearly\", tasks: [ fine, c1 ] }}\n"
    ));
    env.run(&["run", "p"]);
    env.run(&["check"]);
    let secret = token(&env, "prom", "read");
    let (_server, port) = serve(&env);
    let r = get(port, "/metrics", Some(&secret));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.body.clone();
    assert!(
        text.contains("runbook_check_up{check=\"fine\",kind=\"command\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("runbook_check_up{check=\"c1\",kind=\"command\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("runbook_runs_total{profile=\"p\",status=\"failed\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("runbook_alerts_open{severity=\"warning\",status=\"firing\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE runbook_last_success_timestamp_seconds gauge"),
        "{text}"
    );
    // A cumulative histogram per check: c1 ran twice (as a task and by `check`).
    assert!(
        text.contains("# TYPE runbook_check_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("runbook_check_duration_seconds_count{check=\"c1\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("runbook_check_duration_seconds_bucket{check=\"c1\",le=\"+Inf\"} 2"),
        "{text}"
    );

    // promtool (Debian's prometheus package) validates the exposition when it is installed.
    promtool_accepts(&text);

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.contains("content-type: application/openmetrics-text"), "{raw}");
    assert!(
        raw.contains("# TYPE runbook_runs counter") && raw.contains("# TYPE runbook_build info"),
        "{raw}"
    );
    assert!(raw.trim_end().ends_with("# EOF"), "{raw}");
}

#[test]
fn the_audit_log_is_served_summarised_verified_and_exported_as_a_stream() {
    let env = Env::new(&format!(
        "{FAILING}profiles:\n  p: {{ cron: \"@yearly\", tasks: [ fine ] }}\n"
    ));
    env.run(&["run", "p"]);
    env.run(&["check", "c1"]);
    env.run(&[
        "alerts",
        "silence",
        "c1",
        "--for",
        "1h",
        "--reason",
        "maintenance",
        "--apply",
    ]);
    let secret = token(&env, "auditor", "read");
    let (_server, port) = serve(&env);
    let total = env.count("SELECT count(*) FROM audit_events");

    let page = get(port, "/v1/audit?limit=2", Some(&secret)).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["items"][0]["seq"], total, "newest first");
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = get(port, &format!("/v1/audit?limit=2&cursor={next}"), Some(&secret)).json();
    assert_eq!(page2["items"][0]["seq"], total - 2);

    let summary = get(port, "/v1/audit/summary", Some(&secret)).json();
    assert_eq!(summary["events"], total);
    assert_eq!(summary["chain"]["intact"], true);
    assert_eq!(summary["by_kind"]["run.finished"], 1);

    let decisions = get(port, "/v1/audit/decisions", Some(&secret)).json();
    let kinds: Vec<&str> = decisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"alert.silenced") && kinds.contains(&"token.created"),
        "{kinds:?}"
    );
    assert!(!kinds.contains(&"run.finished"));
    let actions = get(port, "/v1/audit/actions", Some(&secret)).json();
    assert!(
        actions["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "alert.opened")
    );

    let json = get(port, "/v1/audit/export?format=json", Some(&secret));
    assert_eq!(json.status, 200);
    let events: serde_json::Value = serde_json::from_str(&json.body).expect("the export is one JSON array");
    assert_eq!(events.as_array().unwrap().len() as i64, total);
    assert_eq!(events[0]["prev_hash"], "0".repeat(64));
    let jsonl = get(port, "/v1/audit/export?format=jsonl", Some(&secret));
    assert_eq!(jsonl.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<&str> = jsonl.body.lines().collect();
    assert_eq!(lines.len() as i64, total, "{}", jsonl.body);
    assert_eq!(serde_json::from_str::<serde_json::Value>(lines[0]).unwrap()["seq"], 1);
    assert_eq!(
        get(port, "/v1/audit/export?format=xml", Some(&secret)).json()["error"]["code"],
        "bad_format"
    );
}

/// A heartbeat check that no profile probes still fires when the pings stop: the daemon
/// judges its deadline on its own tick, and a ping resolves it.
#[test]
fn a_heartbeat_in_no_profile_fires_when_pings_stop_under_the_daemon() {
    let hook = common::receiver::Receiver::start();
    let key = "lonely-ping-key-0123456789ab";
    let env = Env::new(&format!(
        r#"
version: 1
api: {{ listen: "127.0.0.1:0", rate_limit: off }}
checks:
  lonely: {{ heartbeat: {{ period: 1s, grace: 1s, key: "{key}" }}, severity: critical }}
notify:
  channels: {{ ops: {{ webhook: {{ url: "{}/hook" }} }} }}
"#,
        hook.url()
    ));
    let (_daemon, port) = start_api(&env, &["daemon"]);
    assert_eq!(
        request(port, "POST", &format!("/ping/lonely?key={key}"), None).status,
        200
    );
    // No more pings: past period and grace, the daemon's own tick opens the alert.
    assert!(
        wait_for(Duration::from_secs(30), || hook.requests().iter().any(
            |r| r.json()["alert"]["name"] == "lonely" && r.json()["change"] == "opened"
        )),
        "no alert for a heartbeat that stopped"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE name = 'lonely' AND status = 'firing'"),
        1
    );
    // A ping resolves it.
    assert_eq!(
        request(port, "POST", &format!("/ping/lonely?key={key}"), None).status,
        200
    );
    assert!(wait_for(Duration::from_secs(10), || env.count(
        "SELECT count(*) FROM alerts WHERE name = 'lonely' AND status != 'resolved'"
    ) == 0));
}

#[test]
fn heartbeat_pings_record_the_job_and_a_failure_or_silence_opens_the_alert() {
    let hook = common::receiver::Receiver::start();
    let key = "crawler-ping-key-0123456789";
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  crawler: {{ heartbeat: {{ period: 1h, grace: 10m, key: "{key}" }}, severity: critical }}
  nightly: {{ heartbeat: {{ period: 1s, grace: 1s }} }}
notify:
  channels: {{ ops: {{ webhook: {{ url: "{}/hook" }} }} }}
"#,
        hook.url()
    ));
    let (_server, port) = serve(&env);

    // Never pinged: the check fails when probed.
    let (_, v) = env.json(&["check", "crawler"]);
    assert!(v[0]["detail"].as_str().unwrap().starts_with("no ping yet"), "{v}");

    // A wrong key or no credential is refused; the right key is accepted, GET or POST.
    assert_eq!(request(port, "POST", "/ping/crawler?key=nope", None).status, 401);
    assert_eq!(request(port, "POST", "/ping/crawler", None).status, 401);
    assert_eq!(request(port, "POST", "/ping/unknown?key=x", None).status, 404);
    let start = request(port, "POST", &format!("/ping/crawler/start?key={key}"), None);
    assert_eq!(start.status, 200, "{}", start.body);
    std::thread::sleep(Duration::from_millis(50));
    let done = get(port, &format!("/ping/crawler?key={key}"), None);
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["ok"], true, "{}", done.body);
    assert!(
        done.json()["detail"].as_str().unwrap().contains("ran "),
        "start→finish pairs record the duration: {}",
        done.body
    );
    assert!(env.count("SELECT duration_ms FROM heartbeats WHERE check_name = 'crawler'") >= 50);

    // The job reports exit 3: the alert opens at once and is notified.
    let failed = request(port, "POST", &format!("/ping/crawler/3?key={key}"), None);
    assert_eq!(failed.json()["ok"], false);
    assert!(
        failed.json()["detail"].as_str().unwrap().contains("exit 3"),
        "{}",
        failed.body
    );
    assert!(wait_for(Duration::from_secs(10), || hook
        .requests()
        .iter()
        .any(|r| r.json()["alert"]["name"] == "crawler")));
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE name = 'crawler' AND status = 'firing'"),
        1
    );
    // It succeeds again: resolved.
    request(port, "POST", &format!("/ping/crawler/0?key={key}"), None);
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE name = 'crawler' AND status != 'resolved'"),
        0
    );

    // A check without a key takes pings with an API token only; then silence past period + grace.
    let secret = token(&env, "cron", "write");
    assert!(wait_for(Duration::from_secs(10), || request(
        port,
        "POST",
        "/ping/nightly",
        Some(&secret)
    )
    .status
        == 200));
    assert!(wait_for(Duration::from_secs(15), || {
        let (_, v) = env.json(&["check", "nightly"]);
        v[0]["ok"] == false && v[0]["detail"].as_str().unwrap_or("").starts_with("last ping ")
    }));
}

#[test]
fn telemetry_counts_recent_requests_and_failures_and_responses_are_compressed_on_request() {
    let env = Env::new(&format!(
        "{FAILING}profiles:\n  p: {{ cron: \"@yearly\", tasks: [ c1 ] }}\n"
    ));
    env.run(&["run", "p"]);
    env.run(&["check", "c2", "c3"]);
    let secret = token(&env, "ops", "read");
    let (_server, port) = serve(&env);
    for _ in 0..5 {
        get(port, "/v1/alerts", Some(&secret));
    }
    get(port, "/v1/nowhere", Some(&secret));
    let t = get(port, "/v1/telemetry", Some(&secret)).json();
    let w = &t["history"]["windows"]["last_60s"];
    assert!(w["requests"].as_u64().unwrap() >= 6, "{t}");
    assert_eq!(w["errors_5xx"], 0);
    assert_eq!(w["check_failures"], 3, "c1 as a task, then c2 and c3: {t}");
    assert_eq!(w["run_failures"], 1);
    assert!(t["history"]["windows"]["last_300s"]["requests"].as_u64().unwrap() >= w["requests"].as_u64().unwrap());

    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAuthorization: Bearer {secret}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head = String::from_utf8_lossy(&raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()]).to_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
}

#[test]
fn a_client_over_its_rate_limit_gets_429_with_retry_after_and_others_are_not_affected() {
    let env = Env::new("version: 1\napi: { listen: \"127.0.0.1:0\", rate_limit: { per_second: 1, burst: 3 } }\n");
    let a = token(&env, "a", "read");
    let b = token(&env, "b", "read");
    let (_server, port) = start_api(&env, &["serve"]);
    let codes: Vec<u16> = (0..5).map(|_| get(port, "/v1/alerts", Some(&a)).status).collect();
    assert_eq!(&codes[..3], &[200, 200, 200], "the burst passes: {codes:?}");
    assert_eq!(codes[4], 429, "{codes:?}");
    let limited = get(port, "/v1/alerts", Some(&a));
    assert_eq!(limited.json()["error"]["code"], "rate_limited");
    assert!(limited.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(
        get(port, "/v1/alerts", Some(&b)).status,
        200,
        "another token has its own bucket"
    );
}

#[test]
fn a_compressed_audit_export_is_complete() {
    let env = Env::new(FAILING);
    env.run(&["check"]);
    let secret = token(&env, "gz", "read");
    let (_server, port) = serve(&env);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --compressed -H 'Authorization: Bearer {secret}' 'http://127.0.0.1:{port}/v1/audit/export?format=jsonl&x=%C2%B4'"
        ))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        body.lines().count() as i64,
        env.count("SELECT count(*) FROM audit_events"),
        "{body}"
    );
    // The server survived: it still answers.
    assert_eq!(get(port, "/v1/live", None).status, 200);
}

/// The endpoints and filters added for seed 003 and 004, through `runbook serve`: the
/// metrics under /v1, an audit archive over HTTP (a dry run, then applied), the label filter
/// (also `alerts list --label`), and a 404 for a path the API does not serve, token or not.
#[test]
fn metrics_archive_label_filter_and_unknown_paths_through_the_server() {
    let env = Env::new(
        r#"
version: 1
api: { rate_limit: off }
checks:
  smtp-in: { command: { sh: "exit 1" }, labels: { protocol: smtp } }
  imap-in: { command: { sh: "exit 1" }, labels: { protocol: imap } }
"#,
    );
    assert_eq!(env.run(&["check"]).code, 1);
    let read = token(&env, "reader", "read");
    let write = token(&env, "writer", "write");
    let (_server, port) = serve(&env);

    let m = get(port, "/v1/metrics", Some(&read));
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(m.body.contains("runbook_check_up"), "{}", m.body);

    let smtp = get(port, "/v1/alerts?label=protocol:smtp", Some(&read));
    assert_eq!(smtp.status, 200, "{}", smtp.body);
    let names: Vec<String> = smtp.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["smtp-in"]);
    assert_eq!(get(port, "/v1/alerts?source=protocol", Some(&read)).status, 400);
    let (code, listed) = env.json(&["alerts", "list", "--label", "protocol:imap"]);
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["name"], "imap-in");
    assert_eq!(env.run(&["alerts", "list", "--source", "protocol"]).code, 2);

    for token in [None, Some(read.as_str()), Some(write.as_str())] {
        assert_eq!(
            request(port, "POST", "/v1/no/such/path", token).status,
            404,
            "{token:?}"
        );
    }

    let events = env.count("SELECT count(*) FROM audit_events");
    let body = r#"{"before": "2999-01-01"}"#;
    assert_eq!(
        common::http::post_raw_json(port, "/v1/audit/archive", Some(&read), body).status,
        403
    );
    let plan = common::http::post_raw_json(port, "/v1/audit/archive", Some(&write), body);
    assert_eq!(plan.status, 200, "{}", plan.body);
    assert_eq!(plan.json()["applied"], false);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events"),
        events,
        "a dry run moves nothing"
    );
    let done = common::http::post_raw_json(
        port,
        "/v1/audit/archive",
        Some(&write),
        r#"{"before": "2999-01-01", "apply": true}"#,
    );
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.json()["applied"], true);
    assert!(
        env.count("SELECT count(*) FROM audit_events") < events,
        "events moved out"
    );
    assert_eq!(
        env.run(&["audit", "verify"]).code,
        0,
        "the chain verifies across the archive"
    );
}

#[test]
fn metrics_carry_the_phases_of_each_http_probe_on_a_connection_of_its_own() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let env = Env::new(&format!(
        "version: 1\nchecks:\n  web: {{ http: {{ url: \"http://127.0.0.1:{port}/\" }} }}\n  pooled: {{ http: {{ url: \"http://127.0.0.1:{port}/\", reuse_connection: true }} }}\n"
    ));
    let out = env.run(&["check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let secret = token(&env, "prom", "read");
    let (_server, api) = serve(&env);
    let text = get(api, "/metrics", Some(&secret)).body;
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        let sample = format!("runbook_http_duration_seconds{{check=\"web\",phase=\"{phase}\"}} ");
        assert!(text.contains(&sample), "{sample} in\n{text}");
    }
    assert!(
        !text.contains("runbook_http_duration_seconds{check=\"pooled\""),
        "{text}"
    );
    promtool_accepts(&text);
}
