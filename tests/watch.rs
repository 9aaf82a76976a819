//! Watching the watcher: a broken channel is reported on the others; the daemon pings a
//! heartbeat URL so an outside dead-man's switch notices when runbook stops.

mod common;

use common::receiver::Receiver;
use common::*;
use std::time::Duration;

#[test]
fn a_channel_failing_longer_than_channel_silent_after_is_reported_on_the_others() {
    let good = Receiver::start();
    let bad = Receiver::start();
    bad.respond(500, "{\"error\":\"down\"}");
    let beat = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up" }} }}
notify:
  channel_silent_after: 1s
  heartbeat_url: "{}/ping/runbook"
  channels:
    good: {{ webhook: {{ url: "{}/good" }} }}
    bad: {{ webhook: {{ url: "{}/bad" }} }}
profiles:
  idle: {{ cron: "@yearly", tasks: [ web ] }}
"#,
        beat.url(),
        good.url(),
        bad.url()
    ));
    env.run(&["check", "web"]);
    assert_eq!(good.requests().len(), 1, "the good channel got the alert at once");
    assert!(!bad.requests().is_empty(), "the bad channel was tried");

    let log = env.path("daemon.log");
    let mut daemon = env
        .cmd()
        .arg("daemon")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let reported = wait_for(Duration::from_secs(30), || {
        good.requests().iter().any(|r| {
            r.json()["text"]
                .as_str()
                .unwrap_or("")
                .contains("channel `bad` has failed since")
        })
    });
    let pinged = wait_for(Duration::from_secs(10), || {
        beat.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/ping/runbook")
    });
    signal(daemon.id(), "TERM");
    daemon.wait().unwrap();
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(reported, "good: {:#?}\nlog: {log}", good.requests());
    assert!(pinged, "no heartbeat: {log}");
    assert!(
        !bad.requests()
            .iter()
            .any(|r| r.body.contains("channel `bad` has failed")),
        "a broken channel is not told about itself"
    );
    let (_, health) = env.json(&["notify", "health"]);
    let bad_health = health
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["channel"] == "bad")
        .unwrap()
        .clone();
    assert!(bad_health["failing_since"].is_string() && bad_health["last_error"].as_str().unwrap().contains("500"));
    let good_health = health
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["channel"] == "good")
        .unwrap()
        .clone();
    assert!(good_health["last_success"].is_string());
}

#[test]
fn a_notification_that_could_not_be_delivered_shows_in_alerts_list() {
    let bad = Receiver::start();
    bad.respond(500, "oops");
    let good = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "exit 1" }} }}
notify:
  max_attempts: 1
  channels:
    bad: {{ webhook: {{ url: "{}/x" }} }}
    good: {{ webhook: {{ url: "{}/y" }} }}
"#,
        bad.url(),
        good.url()
    ));
    env.run(&["check", "web"]);
    let (_, alerts) = env.json(&["alerts", "list"]);
    assert_eq!(alerts[0]["delivery"]["dead"], 1, "{alerts}");
    assert_eq!(
        alerts[0]["delivery"]["sent"], 1,
        "the other channel still got it: {alerts}"
    );
    let human = env.run(&["alerts", "list"]);
    assert!(human.stdout.contains("1 DEAD, 1 sent"), "{}", human.stdout);
    let (_, outbox) = env.json(&["notify", "list"]);
    let dead = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["status"] == "dead")
        .unwrap()
        .clone();
    assert!(dead["last_error"].as_str().unwrap().contains("HTTP 500"), "{dead}");
}
