//! Notifications end to end through the real binary: a signed webhook sent exactly once per
//! transition, Telegram (against a local stand-in speaking the Bot API), routing, retries and
//! dead letters, `notify test`, the real Alertmanager, and exactly-once across a crash.
//! Every receiver listens on 127.0.0.1.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// A recording HTTP server: every request is kept; the reply is set per test.

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

#[derive(Debug, Clone)]
enum Reply {
    Status(u16, String),
    /// Read the request, then never answer (until the recorder is dropped).
    Hang,
}

struct Recorder {
    port: u16,
    requests: Arc<Mutex<Vec<Req>>>,
    reply: Arc<Mutex<Reply>>,
    stop: Arc<AtomicBool>,
}

/// What Telegram's Bot API answers to a good `sendMessage`.
const TELEGRAM_OK: &str = r#"{"ok":true,"result":{}}"#;

impl Recorder {
    fn start() -> Recorder {
        Recorder::serve(TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
    }

    fn serve(listener: TcpListener) -> Recorder {
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(Reply::Status(200, TELEGRAM_OK.to_string())));
        let stop = Arc::new(AtomicBool::new(false));
        let (reqs, rep, st) = (requests.clone(), reply.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (reqs, rep, st) = (reqs.clone(), rep.clone(), st.clone());
                std::thread::spawn(move || answer(stream, &reqs, &rep, &st));
            }
        });
        Recorder {
            port,
            requests,
            reply,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    fn respond(&self, status: u16, body: &str) {
        *self.reply.lock().unwrap() = Reply::Status(status, body.to_string());
    }

    fn hang(&self) {
        *self.reply.lock().unwrap() = Reply::Hang;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop` and releases the port.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(stream: TcpStream, reqs: &Mutex<Vec<Req>>, reply: &Mutex<Reply>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    reqs.lock().unwrap().push(Req {
        method,
        path,
        headers,
        body,
    });
    let reply = reply.lock().unwrap().clone();
    let mut stream = stream;
    match reply {
        Reply::Hang => {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Reply::Status(code, text) => {
            let reason = match code {
                200 => "OK",
                400 => "Bad Request",
                500 => "Internal Server Error",
                _ => "Whatever",
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.flush();
        }
    }
}

/// A port nothing listens on (tcpmux): a send there is refused at once. Tests that need
/// a receiver to be down first start it later on a port of its own and point the config
/// at it, so no port is chosen early and raced for.
const NOBODY: &str = "127.0.0.1:1";

/// `GET path` on 127.0.0.1:port (HTTP/1.0, so no chunked reply): status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256 (RFC 2104), written here independently of runbook's own.

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&ipad).chain_update(message).finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What alert keys of host `test-host` end in: the host on a state file; on a shared
/// (PostgreSQL) state, outcomes are the fleet's (docs/fleet.md).
fn scope() -> &'static str {
    if on_postgres() { "fleet" } else { "test-host" }
}

#[test]
fn the_tests_own_hmac_matches_rfc_4231() {
    assert_eq!(
        hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

// ---------------------------------------------------------------------------------------------
// The daemon and Alertmanager as child processes, killed on drop (also when a test panics).

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

struct Alertmanager {
    _server: Server,
    port: u16,
}

impl Alertmanager {
    /// Started in `dir` with a root route to a receiver that sends nowhere; waits until ready.
    fn start(dir: &std::path::Path) -> Alertmanager {
        std::fs::write(
            dir.join("am.yml"),
            "route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("am-data")).unwrap();
        let log = dir.join("alertmanager.log");
        let (server, port) = spawn_listening(
            &format!("alertmanager (its log: {})", log.display()),
            |port| {
                Command::new(ALERTMANAGER)
                    .arg(format!("--config.file={}", dir.join("am.yml").display()))
                    .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                    .arg("--cluster.listen-address=")
                    .arg(format!("--storage.path={}", dir.join("am-data").display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("start alertmanager")
            },
            |port| http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200),
        );
        Alertmanager { _server: server, port }
    }

    fn alerts(&self) -> Vec<serde_json::Value> {
        let Some((200, body)) = http_get(self.port, "/api/v2/alerts") else {
            return Vec::new();
        };
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    fn active(&self, name: &str) -> Option<serde_json::Value> {
        self.alerts()
            .into_iter()
            .find(|a| a["labels"]["alertname"] == name && a["status"]["state"] == "active")
    }
}

// ---------------------------------------------------------------------------------------------
// Outbox helpers.

fn outbox(env: &Env) -> Vec<serde_json::Value> {
    let (code, v) = env.json(&["notify", "list"]);
    assert_eq!(code, 0);
    v.as_array().unwrap().clone()
}

fn outbox_row(env: &Env, channel: &str, change: &str) -> serde_json::Value {
    outbox(env)
        .into_iter()
        .find(|n| n["channel"] == channel && n["change"] == change)
        .unwrap_or_else(|| panic!("no {change} notification for `{channel}`: {:#?}", outbox(env)))
}

fn status_of(env: &Env, channel: &str) -> String {
    env.db()
        .query_row(
            "SELECT status FROM notifications WHERE channel = ?1 ORDER BY id DESC LIMIT 1",
            [channel],
            |r| r.get(0),
        )
        .unwrap_or_default()
}

fn health(env: &Env, channel: &str) -> serde_json::Value {
    let (code, v) = env.json(&["notify", "health"]);
    assert_eq!(code, 0);
    v.as_array()
        .unwrap()
        .iter()
        .find(|h| h["channel"] == channel)
        .cloned()
        .unwrap_or_else(|| panic!("no health for `{channel}`: {v}"))
}

/// Waits until no pending notification is waiting out its backoff.
fn wait_until_due(env: &Env) -> bool {
    wait_for(Duration::from_secs(30), || {
        env.count(&format!(
            "SELECT count(*) FROM notifications WHERE status = 'pending' AND next_attempt_at > '{}'",
            ago(0)
        )) == 0
    })
}

fn names(reqs: &[Req]) -> Vec<String> {
    reqs.iter()
        .map(|r| {
            let v = r.json();
            format!(
                "{}:{}",
                v["alert"]["name"].as_str().unwrap_or("?"),
                v["change"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Webhook

const HOOK_SECRET: &str = "hmac-shared-secret-42";

#[test]
fn a_webhook_gets_one_signed_post_per_transition_and_nothing_while_the_state_holds() {
    let hook = Recorder::start();
    let env = Env::new(&format!(
        r#"
version: 1
host: test-host
checks:
  web: {{ command: {{ sh: "test -f up-web" }}, severity: critical }}
notify:
  channels:
    ops: {{ webhook: {{ url: "{}/hook", secret: "{HOOK_SECRET}", headers: {{ X-Team: ops }} }} }}
"#,
        hook.url()
    ));
    let verify = |r: &Req| {
        let expected = format!("sha256={}", hex(&hmac_sha256(HOOK_SECRET.as_bytes(), &r.body)));
        assert_eq!(r.header("x-runbook-signature"), Some(expected.as_str()), "{r:#?}");
    };

    assert_eq!(env.run(&["check", "web"]).code, 1);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let opened = &reqs[0];
    assert_eq!(opened.method, "POST");
    assert_eq!(opened.path, "/hook");
    assert!(
        opened
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    assert_eq!(opened.header("x-team"), Some("ops"), "configured headers are sent");
    verify(opened);
    let body = opened.json();
    assert_eq!(body["version"], "1");
    assert_eq!(body["change"], "opened");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alert"]["key"], format!("web@{}", scope()));
    assert_eq!(body["alert"]["name"], "web");
    assert_eq!(body["alert"]["severity"], "critical");
    assert_eq!(body["alert"]["host"], "test-host");
    let summary = body["alert"]["summary"].as_str().unwrap();
    assert!(!summary.is_empty(), "{body}");
    assert!(body["text"].as_str().unwrap().contains(summary), "{body}");
    let opened_key = opened.header("idempotency-key").expect("Idempotency-Key").to_string();
    assert!(!opened_key.is_empty());

    // Still failing: recorded, not sent again.
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(hook.count(), 1, "{:#?}", hook.requests());

    std::fs::write(env.path("up-web"), "").unwrap();
    assert_eq!(env.run(&["check", "web"]).code, 0);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let resolved = &reqs[1];
    verify(resolved);
    let body = resolved.json();
    assert_eq!(body["change"], "resolved");
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alert"]["key"], format!("web@{}", scope()));
    assert!(body["alert"]["ends_at"].is_string(), "{body}");
    let resolved_key = resolved.header("idempotency-key").expect("Idempotency-Key");
    assert_ne!(resolved_key, opened_key);

    // Still passing: nothing more.
    assert_eq!(env.run(&["check", "web"]).code, 0);
    assert_eq!(hook.count(), 2, "{:#?}", hook.requests());
    let rows = outbox(&env);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(
        rows.iter().all(|n| n["status"] == "sent" && n["attempts"] == 1),
        "{rows:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Telegram (a local stand-in speaking the Bot API)

const BOT_TOKEN: &str = "123456789:AAF-very-secret-bot-token";

fn telegram_env(api: &Recorder, extra_notify: &str, checks: &str) -> Env {
    let env = Env::new(&format!(
        r#"
version: 1
host: test-host
secrets: {{ env_files: [tg.env] }}
checks:
{checks}
notify:
  channels:
    tg: {{ telegram: {{ bot_token: "${{TG_TOKEN}}", chat_id: "-1001234", topic_id: 42, api_url: "{}" }} }}
{extra_notify}
"#,
        api.url()
    ));
    env.write("tg.env", &format!("TG_TOKEN={BOT_TOKEN}\n"));
    env
}

/// Telegram's HTML escaping.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[test]
fn telegram_gets_escaped_html_in_its_topic_and_the_token_stays_out_of_output_and_logs() {
    let api = Recorder::start();
    let env = telegram_env(
        &api,
        "",
        r#"  html: { command: { sh: "echo fine", expect: { stdout_contains: "a<b && c" } }, severity: critical }"#,
    );
    let out = env
        .cmd()
        .args(["check", "html"])
        .env("RUNBOOK_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );

    let reqs = api.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/bot{BOT_TOKEN}/sendMessage"));
    let body = r.json();
    assert_eq!(body["chat_id"], "-1001234");
    assert_eq!(body["parse_mode"], "HTML");
    assert_eq!(body["message_thread_id"], 42);
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with(&format!("FIRING [critical] html@{}\n", scope())),
        "{text}"
    );
    assert!(text.contains("a&lt;b &amp;&amp; c"), "{text}");
    assert!(!text.contains("a<b"), "{text}");

    // The token came from an env file: it appears nowhere runbook writes.
    assert!(!stdout.contains(BOT_TOKEN), "stdout: {stdout}");
    assert!(!stderr.contains(BOT_TOKEN), "debug log: {stderr}");
    let list = env.run(&["notify", "list", "--json"]);
    assert!(!list.stdout.contains(BOT_TOKEN) && !list.stderr.contains(BOT_TOKEN));
    assert!(list.stdout.contains("\"tg\""), "{}", list.stdout);
    let health = env.run(&["notify", "health", "--json"]);
    assert!(!health.stdout.contains(BOT_TOKEN), "{}", health.stdout);
    let shown = env.run(&["config", "show", "--json"]);
    assert!(!shown.stdout.contains(BOT_TOKEN), "{}", shown.stdout);
    assert!(
        !env.state_bytes()
            .windows(BOT_TOKEN.len())
            .any(|w| w == BOT_TOKEN.as_bytes()),
        "the token is in the state"
    );

    // An error from the Bot API: its description is reported, the token still is not.
    api.respond(400, r#"{"ok":false,"description":"Bad Request: chat not found"}"#);
    let out = env
        .cmd()
        .args(["notify", "test", "tg"])
        .env("RUNBOOK_LOG", "debug")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("chat not found") && all.contains("400"), "{all}");
    assert!(!all.contains(BOT_TOKEN), "{all}");
}

/// A resolution goes where the firing went: turning the test route off (or editing a route)
/// between the two sends the end of an alert to nobody who never saw it start.
#[test]
fn a_resolution_goes_only_where_its_firing_went() {
    let test = Recorder::start();
    let prod = Recorder::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up" }}, severity: critical }}
notify:
  channels:
    test: {{ webhook: {{ url: "{}/hook" }} }}
    prod: {{ webhook: {{ url: "{}/hook" }} }}
  test_route: test
"#,
        test.url(),
        prod.url()
    ));
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(names(&test.requests()), ["web:opened"]);
    assert!(prod.requests().is_empty());
    // The test route is turned off; then the check recovers.
    env.edit_config("  test_route: test\n", "");
    std::fs::write(env.path("up"), "").unwrap();
    assert_eq!(env.run(&["check", "web"]).code, 0);
    assert_eq!(names(&test.requests()), ["web:opened", "web:resolved"]);
    assert!(prod.requests().is_empty(), "{:?}", names(&prod.requests()));
}

#[test]
fn under_the_test_route_telegram_gets_everything_prefixed_with_its_source_and_without_topic() {
    let api = Recorder::start();
    let hook = Recorder::start();
    let env = telegram_env(
        &api,
        &format!(
            r#"    ops: {{ webhook: {{ url: "{}/hook" }} }}
  routes:
    - {{ channels: [ops] }}
  test_route: tg"#,
            hook.url()
        ),
        r#"  web: { command: { sh: "test -f up-web" } }"#,
    );
    assert_eq!(env.run(&["check", "web"]).code, 1);
    let reqs = api.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let body = reqs[0].json();
    assert!(
        body.get("message_thread_id").is_none(),
        "no topic under the test route: {body}"
    );
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("[web] FIRING"), "{text}");
    assert_eq!(hook.count(), 0, "the test route bypasses production routes");
}

#[test]
fn a_long_telegram_message_is_split_into_pieces_of_at_most_4096_characters() {
    let api = Recorder::start();
    let needle = "x<&".repeat(1500);
    let env = telegram_env(
        &api,
        "",
        &format!(r#"  long: {{ command: {{ sh: "echo fine", expect: {{ stdout_contains: "{needle}" }} }} }}"#),
    );
    assert_eq!(env.run(&["check", "long"]).code, 1);
    let reqs = api.requests();
    let (_, alerts) = env.json(&["alerts", "list"]);
    let summary = alerts[0]["summary"].as_str().unwrap().to_string();
    assert!(summary.contains(&needle), "the needle is in the summary: {summary}");
    let whole = escape(&format!("FIRING [warning] long@{}\n{summary}", scope()));
    assert!(whole.chars().count() > 3 * 4096, "{}", whole.len());

    assert!(reqs.len() >= 4, "{} piece(s)", reqs.len());
    let mut joined = String::new();
    for r in &reqs {
        assert_eq!(r.path, format!("/bot{BOT_TOKEN}/sendMessage"));
        let body = r.json();
        assert_eq!(body["message_thread_id"], 42);
        assert_eq!(body["parse_mode"], "HTML");
        let piece = body["text"].as_str().unwrap();
        assert!(piece.chars().count() <= 4096, "{} chars", piece.chars().count());
        let without_entities = piece.replace("&lt;", "").replace("&gt;", "").replace("&amp;", "");
        assert!(
            !without_entities.contains('&'),
            "an entity was cut: …{}",
            &piece[piece.len() - 20..]
        );
        joined.push_str(piece);
    }
    assert_eq!(joined, whole, "the pieces add up to the whole message");
    assert_eq!(outbox_row(&env, "tg", "opened")["status"], "sent");
}

// ---------------------------------------------------------------------------------------------
// Routing

#[test]
fn routes_pick_channels_by_severity_and_continue_goes_on_to_the_next_match() {
    let hook = Recorder::start();
    let u = hook.url();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  db: {{ command: {{ sh: "test -f up-db" }}, severity: critical }}
  disk: {{ command: {{ sh: "test -f up-disk" }}, severity: warning }}
notify:
  channels:
    pager: {{ webhook: {{ url: "{u}/pager" }} }}
    everything: {{ webhook: {{ url: "{u}/everything" }} }}
    chat: {{ webhook: {{ url: "{u}/chat" }} }}
  routes:
    - {{ match: {{ severity: critical }}, channels: [pager], continue: true }}
    - {{ match: {{ severity: critical }}, channels: [everything] }}
    - {{ channels: [chat, everything] }}
"#
    ));
    assert_eq!(env.run(&["check", "db", "disk"]).code, 1);
    let reqs = hook.requests();
    let at = |path: &str| -> Vec<String> {
        let mut v: Vec<String> = reqs
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.json()["alert"]["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(at("/pager"), ["db"], "{:?}", names(&reqs));
    assert_eq!(
        at("/everything"),
        ["db", "disk"],
        "continue: db reaches the second route, which stops it"
    );
    assert_eq!(at("/chat"), ["disk"], "db never reaches the catch-all route");
    assert_eq!(reqs.len(), 4);
}

#[test]
fn without_routes_every_channel_gets_every_alert() {
    let a = Recorder::start();
    let b = Recorder::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  disk: {{ command: {{ sh: "test -f up-disk" }} }}
notify:
  channels:
    a: {{ webhook: {{ url: "{}/a" }} }}
    b: {{ webhook: {{ url: "{}/b" }} }}
"#,
        a.url(),
        b.url()
    ));
    assert_eq!(env.run(&["check", "disk"]).code, 1);
    assert_eq!(a.count(), 1);
    assert_eq!(b.count(), 1);
    assert_eq!(a.requests()[0].json()["alert"]["name"], "disk");
}

fn dependency_env(hook: &Recorder) -> Env {
    Env::new(&format!(
        r#"
version: 1
checks:
  api: {{ command: {{ sh: "test -f up-api" }} }}
  web: {{ command: {{ sh: "test -f up-web" }}, depends_on: [api] }}
  disk: {{ command: {{ sh: "test -f up-disk" }} }}
notify:
  channels:
    ops: {{ webhook: {{ url: "{}/hook" }} }}
"#,
        hook.url()
    ))
}

#[test]
fn suppressed_and_silenced_alerts_are_recorded_but_not_notified() {
    let hook = Recorder::start();
    let env = dependency_env(&hook);
    // Both down: only the root cause is notified.
    assert_eq!(env.run(&["check", "api", "web"]).code, 1);
    assert_eq!(names(&hook.requests()), ["api:opened"]);
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE name = 'web' AND suppressed_by = 'api'"),
        1
    );

    // A silence set before the failure: the alert opens silenced, nothing is sent.
    let out = env.run(&[
        "alerts", "silence", "disk", "--for", "2h", "--reason", "resizing", "--apply",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.run(&["check", "disk"]).code, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE name = 'disk' AND status = 'silenced'"),
        1
    );
    assert_eq!(hook.count(), 1, "{:?}", names(&hook.requests()));

    // Both recover: the root cause's resolution is sent, the suppressed one's is not.
    std::fs::write(env.path("up-api"), "").unwrap();
    std::fs::write(env.path("up-web"), "").unwrap();
    assert_eq!(env.run(&["check", "api", "web"]).code, 0);
    assert_eq!(names(&hook.requests()), ["api:opened", "api:resolved"]);
    assert_eq!(outbox(&env).len(), 2);
}

#[test]
fn an_alert_silenced_for_its_whole_life_sends_nothing_when_it_resolves() {
    let hook = Recorder::start();
    let env = dependency_env(&hook);
    let out = env.run(&[
        "alerts", "silence", "disk", "--for", "2h", "--reason", "resizing", "--apply",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(env.run(&["check", "disk"]).code, 1);
    std::fs::write(env.path("up-disk"), "").unwrap();
    assert_eq!(env.run(&["check", "disk"]).code, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE name = 'disk' AND status = 'resolved'"),
        1
    );
    assert_eq!(hook.count(), 0, "{:?}", names(&hook.requests()));
}

#[test]
fn an_alert_notified_then_silenced_still_sends_its_resolution() {
    let hook = Recorder::start();
    let env = dependency_env(&hook);
    assert_eq!(env.run(&["check", "disk"]).code, 1);
    assert_eq!(names(&hook.requests()), ["disk:opened"]);
    let out = env.run(&[
        "alerts", "silence", "disk", "--for", "2h", "--reason", "on it", "--apply",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(env.path("up-disk"), "").unwrap();
    assert_eq!(env.run(&["check", "disk"]).code, 0);
    assert_eq!(names(&hook.requests()), ["disk:opened", "disk:resolved"]);
}

// ---------------------------------------------------------------------------------------------
// Failures: retries, dead letters, channel health, timeouts

/// What the receiver answers decides whether a notification is sent again: a refusal that
/// cannot change (400, 401, 403, 404) is dead at once; a status that may (503, 429) and no
/// answer at all wait for the next attempt.
#[test]
fn a_refusal_is_dead_at_once_while_an_outage_is_retried() {
    for (status, retried) in [(400, false), (401, false), (404, false), (503, true), (429, true)] {
        let hook = Recorder::start();
        hook.respond(status, "the receiver says so");
        let env = Env::new(&format!(
            r#"
version: 1
checks:
  web: {{ command: {{ sh: "exit 1" }}, severity: critical }}
notify:
  channels:
    hook: {{ webhook: {{ url: "{}/hook" }} }}
"#,
            hook.url()
        ));
        assert_eq!(env.run(&["check", "web"]).code, 1);
        assert_eq!(hook.count(), 1, "{status}");
        let row = outbox_row(&env, "hook", "opened");
        assert_eq!(row["attempts"], 1, "{status}: {row}");
        assert_eq!(
            row["status"],
            if retried { "pending" } else { "dead" },
            "{status}: {row}"
        );
        assert!(
            row["last_error"].as_str().unwrap().contains(&status.to_string()),
            "{status}: {row}"
        );
    }
    // Nobody listening: retried.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = Env::new(&format!(
        "version: 1\nchecks:\n  web: {{ command: {{ sh: \"exit 1\" }}, severity: critical }}\nnotify:\n  channels:\n    hook: {{ webhook: {{ url: \"http://127.0.0.1:{port}/hook\" }} }}\n"
    ));
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(outbox_row(&env, "hook", "opened")["status"], "pending");
}

#[test]
fn a_failing_channel_is_retried_then_dead_while_its_sibling_delivers_and_health_tells_which() {
    let bad = Recorder::start();
    bad.respond(500, "upstream exploded");
    let good = Recorder::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up-web" }}, severity: critical }}
profiles:
  idle: {{ cron: "@yearly", tasks: [ {{ run: [true] }} ] }}
notify:
  max_attempts: 2
  channels:
    bad: {{ webhook: {{ url: "{}/hook" }} }}
    good: {{ webhook: {{ url: "{}/hook" }} }}
  routes:
    - {{ match: {{ severity: critical }}, channels: [bad, good] }}
"#,
        bad.url(),
        good.url()
    ));
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(bad.count(), 1);
    assert_eq!(good.count(), 1, "the other channel of the route still gets its message");

    let row = outbox_row(&env, "bad", "opened");
    assert_eq!(row["status"], "pending", "{row}");
    assert_eq!(row["attempts"], 1, "{row}");
    assert!(row["last_error"].as_str().unwrap().contains("500"), "{row}");
    assert_eq!(outbox_row(&env, "good", "opened")["status"], "sent");

    let h = health(&env, "bad");
    assert!(h["failing_since"].is_string(), "{h}");
    assert!(h["last_error"].as_str().unwrap().contains("500"), "{h}");
    assert!(h["last_success"].is_null(), "{h}");
    let h = health(&env, "good");
    assert!(h["last_success"].is_string(), "{h}");
    assert!(h["failing_since"].is_null() && h["last_error"].is_null(), "{h}");

    // The daemon's dispatcher retries after the backoff; the second failure is the last.
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(30), || status_of(&env, "bad") == "dead"),
        "{}",
        daemon.log()
    );
    let (code, _, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");
    let row = outbox_row(&env, "bad", "opened");
    assert_eq!(row["attempts"], 2, "{row}");
    assert!(row["last_error"].as_str().unwrap().contains("500"), "{row}");
    assert_eq!(bad.count(), 2, "one retry, then given up");
    let keys: BTreeSet<String> = bad
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 1, "a retry carries the same Idempotency-Key");
    assert_eq!(good.count(), 1, "the delivered message is not sent again");
    assert!(health(&env, "bad")["failing_since"].is_string());
    assert!(log.contains("notification dead"), "{log}");
}

#[test]
fn a_receiver_that_never_answers_times_out_and_the_send_is_retried() {
    let hook = Recorder::start();
    hook.hang();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up-web" }} }}
notify:
  channels:
    slow: {{ webhook: {{ url: "{}/hook" }} }}
"#,
        hook.url()
    ));
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(hook.count(), 1);
    let row = outbox_row(&env, "slow", "opened");
    assert_eq!(row["status"], "pending", "{row}");
    assert_eq!(row["attempts"], 1, "{row}");
    let error = row["last_error"].as_str().unwrap();
    assert!(error.contains(&format!("{}/hook", hook.url())), "{row}");
    // The send is bounded: runbook gave up on the silent receiver itself (the receiver holds
    // the request for far longer and then just closes the connection).
    assert!(error.contains("timed out"), "{row}");

    hook.respond(200, "{}");
    assert!(wait_until_due(&env));
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(hook.count(), 2);
    let row = outbox_row(&env, "slow", "opened");
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["attempts"], 2, "{row}");
    let reqs = hook.requests();
    assert_eq!(reqs[0].header("idempotency-key"), reqs[1].header("idempotency-key"));
}

// ---------------------------------------------------------------------------------------------
// notify test

#[test]
fn notify_test_sends_one_message_and_reports_failures_and_unknown_channels() {
    let hook = Recorder::start();
    hook.respond(200, "{}");
    let env = Env::new(&format!(
        r#"
version: 1
notify:
  channels:
    ops: {{ webhook: {{ url: "{}/hook" }} }}
"#,
        hook.url()
    ));
    let out = env.run(&["notify", "test", "ops"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("sent a test message to `ops`"), "{}", out.stdout);
    assert_eq!(hook.count(), 1);
    let body = hook.requests()[0].json();
    assert_eq!(body["change"], "test");
    assert!(hook.requests()[0].header("idempotency-key").is_some());

    hook.respond(500, "boom");
    let out = env.run(&["notify", "test", "ops"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("500"), "{}", out.stdout);
    assert_eq!(hook.count(), 2);
    let (code, v) = env.json(&["notify", "test", "ops"]);
    assert_eq!(code, 1);
    assert_eq!(v["ok"], false);
    assert!(v["result"].as_str().unwrap().contains("500"), "{v}");

    let out = env.run(&["notify", "test", "nope"]);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("no channel named `nope`"), "{}", out.stderr);
    assert_eq!(hook.count(), 3, "nothing sent for an unknown channel");
    assert!(outbox(&env).is_empty(), "a test message does not go through the outbox");
}

// ---------------------------------------------------------------------------------------------
// The real Alertmanager

#[test]
fn alertmanager_shows_a_failing_check_as_an_active_alert_until_it_recovers() {
    if !std::path::Path::new(ALERTMANAGER).exists() {
        cannot_run(&format!("{ALERTMANAGER} is not installed for the Alertmanager test"));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let am = Alertmanager::start(dir.path());
    let env = Env::new(&format!(
        r#"
version: 1
host: test-host
checks:
  am-web: {{ command: {{ sh: "test -f up-web" }}, severity: critical, labels: {{ team: ops }} }}
notify:
  channels:
    am: {{ alertmanager: {{ url: "http://127.0.0.1:{}" }} }}
"#,
        am.port
    ));
    assert_eq!(env.run(&["check", "am-web"]).code, 1);
    assert_eq!(outbox_row(&env, "am", "opened")["status"], "sent");
    let mut alert = None;
    assert!(
        wait_for(Duration::from_secs(20), || {
            alert = am.active("am-web");
            alert.is_some()
        }),
        "no active alert: {:#?}",
        am.alerts()
    );
    let alert = alert.unwrap();
    assert_eq!(alert["labels"]["severity"], "critical", "{alert:#}");
    assert_eq!(alert["labels"]["host"], "test-host", "{alert:#}");
    assert_eq!(alert["labels"]["team"], "ops", "{alert:#}");
    let summary = alert["annotations"]["summary"].as_str().unwrap_or("");
    assert!(!summary.is_empty(), "{alert:#}");

    std::fs::write(env.path("up-web"), "").unwrap();
    assert_eq!(env.run(&["check", "am-web"]).code, 0);
    assert_eq!(outbox_row(&env, "am", "resolved")["status"], "sent");
    assert!(
        wait_for(Duration::from_secs(20), || am.active("am-web").is_none()),
        "still active after recovery: {:#?}",
        am.alerts()
    );
}

// ---------------------------------------------------------------------------------------------
// Exactly once across a crash

#[test]
fn a_queued_alert_is_delivered_once_across_a_daemon_kill_9_and_restart() {
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up-web" }} }}
profiles:
  idle: {{ cron: "@yearly", tasks: [ {{ run: [true] }} ] }}
notify:
  channels:
    ops: {{ webhook: {{ url: "http://{NOBODY}/hook" }} }}
"#
    ));
    // Nobody listens yet: the first send fails and the notification waits for a retry.
    assert_eq!(env.run(&["check", "web"]).code, 1);
    let row = outbox_row(&env, "ops", "opened");
    assert_eq!(row["status"], "pending", "{row}");
    assert_eq!(row["attempts"], 1, "{row}");
    assert!(row["last_error"].is_string(), "{row}");

    let hook = Recorder::start();
    env.edit_config(&format!("http://{NOBODY}/hook"), &format!("{}/hook", hook.url()));
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(30), || hook.count() >= 1
            && status_of(&env, "ops") == "sent"),
        "{}",
        daemon.log()
    );
    daemon.kill_9();

    // The restarted daemon pings a heartbeat URL at the start of each dispatcher pass (one a
    // second), before it sends what is due: three pings mean the recovery of interrupted
    // sends and two whole passes are done, and nothing more must have gone out.
    let beat = Recorder::start();
    env.edit_config(
        "notify:\n",
        &format!(
            "notify:\n  heartbeat_url: \"{}/beat\"\n  heartbeat_every: 100ms\n",
            beat.url()
        ),
    );
    let again = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(30), || beat.count() >= 3),
        "{}",
        again.log()
    );
    let (code, _, log) = again.stop();
    assert_eq!(code, 0, "{log}");

    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    let keys: BTreeSet<&str> = reqs.iter().filter_map(|r| r.header("idempotency-key")).collect();
    assert_eq!(keys.len(), 1);
    assert_eq!(reqs[0].json()["change"], "opened");
    let row = outbox_row(&env, "ops", "opened");
    assert_eq!(row["status"], "sent", "{row}");
    assert_eq!(row["attempts"], 2, "{row}");

    // The next transition is its own notification, sent once.
    std::fs::write(env.path("up-web"), "").unwrap();
    assert_eq!(env.run(&["check", "web"]).code, 0);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(reqs[1].json()["change"], "resolved");
    let keys: BTreeSet<&str> = reqs.iter().filter_map(|r| r.header("idempotency-key")).collect();
    assert_eq!(keys.len(), 2);
}

#[test]
fn an_interrupted_send_is_retried_on_a_webhook_but_given_up_on_telegram() {
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up-web" }} }}
profiles:
  idle: {{ cron: "@yearly", tasks: [ {{ run: [true] }} ] }}
notify:
  channels:
    tg: {{ telegram: {{ bot_token: "4242:crash-test-token", chat_id: "1", api_url: "http://{NOBODY}" }} }}
    hook: {{ webhook: {{ url: "http://{NOBODY}/hook" }} }}
"#
    ));
    assert_eq!(env.run(&["check", "web"]).code, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM notifications WHERE status = 'pending'"),
        2
    );
    // As a process killed mid-send leaves them: claimed, maybe sent, never marked.
    env.db()
        .execute(
            "UPDATE notifications SET status = 'sending', claimed_at = '2000-01-01T00:00:00.000Z'",
            (),
        )
        .unwrap();

    let (tg, hook) = (Recorder::start(), Recorder::start());
    env.edit_config(&format!("http://{NOBODY}\""), &format!("{}\"", tg.url()));
    env.edit_config(&format!("http://{NOBODY}/hook"), &format!("{}/hook", hook.url()));
    let daemon = Daemon::start(&env);
    assert!(
        wait_for(Duration::from_secs(30), || status_of(&env, "hook") == "sent"
            && status_of(&env, "tg") == "dead"),
        "{}",
        daemon.log()
    );
    let (code, _, log) = daemon.stop();
    assert_eq!(code, 0, "{log}");

    assert_eq!(hook.count(), 1, "the webhook deduplicates: sent again, once");
    assert_eq!(tg.count(), 0, "Telegram cannot tell a repeat apart: not sent again");
    let row = outbox_row(&env, "tg", "opened");
    assert_eq!(row["status"], "dead", "{row}");
    assert!(row["last_error"].as_str().unwrap().contains("crash"), "{row}");
    assert!(log.contains("send interrupted by a crash"), "{log}");
}
