//! Notification shapes that span time or runs: one digest per profile run, repeats while an
//! alert keeps firing.

mod common;

use common::receiver::Receiver;
use common::*;
use std::time::Duration;

#[test]
fn failing_tasks_of_one_profile_run_go_out_as_one_digest() {
    let hook = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
notify:
  channels: {{ ops: {{ webhook: {{ url: "{}/hook" }} }} }}
profiles:
  hourly:
    cron: "@hourly"
    tasks:
      - {{ sh: "exit 3", name: cleanup }}
      - {{ sh: "echo 'disk full' >&2; exit 1", name: report }}
      - {{ sh: "test -f fixed", name: sync }}
      - {{ run: [true], name: fine }}
"#,
        hook.url()
    ));
    assert_eq!(env.run(&["run", "hourly"]).code, 1);
    let reqs = hook.requests();
    assert_eq!(
        reqs.len(),
        1,
        "one digest for the run, not one message per task: {reqs:#?}"
    );
    let body = reqs[0].json();
    assert_eq!(body["change"], "digest");
    let text = body["text"].as_str().unwrap();
    assert!(text.contains("3 task(s) failed in profile hourly"), "{text}");
    assert!(
        text.contains("- cleanup: exit 3") && text.contains("- report: exit 1") && text.contains("- sync: exit 1"),
        "{text}"
    );
    assert!(!text.contains("fine"), "{text}");
    // Three alerts are recorded, each on its own.
    assert_eq!(
        env.count("SELECT count(*) FROM alerts WHERE status = 'firing' AND source = 'task'"),
        3
    );

    // Next run: one task recovers, the others keep failing (no new transition for them).
    std::fs::write(env.path("fixed"), "").unwrap();
    assert_eq!(env.run(&["run", "hourly"]).code, 1);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    let body = reqs[1].json();
    assert_eq!(body["change"], "resolved", "a single transition goes out as itself");
    assert!(body["alert"]["key"].as_str().unwrap().starts_with("task:hourly/sync@"));
}

#[test]
fn a_firing_alert_is_repeated_at_repeat_every_until_acknowledged() {
    let hook = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up" }}, severity: critical }}
  db: {{ command: {{ sh: "exit 1" }}, severity: critical }}
notify:
  channels: {{ pager: {{ webhook: {{ url: "{}/page" }} }} }}
  routes:
    - {{ match: {{ severity: critical }}, channels: [pager], repeat_every: 2s }}
"#,
        hook.url()
    ));
    env.run(&["check", "web"]);
    assert_eq!(hook.requests().len(), 1);
    assert_eq!(hook.requests()[0].json()["change"], "opened");
    // Still firing after repeat_every: the next pass sends a repeat, once.
    assert!(wait_for(Duration::from_secs(15), || {
        env.run(&["check", "web"]);
        hook.requests().len() >= 2
    }));
    let repeat = &hook.requests()[1];
    assert_eq!(repeat.json()["change"], "repeat");
    assert!(
        repeat.json()["text"]
            .as_str()
            .unwrap()
            .starts_with("STILL FIRING [critical] web@")
    );
    let keys: Vec<String> = hook
        .requests()
        .iter()
        .filter_map(|r| r.header("idempotency-key").map(str::to_string))
        .collect();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(keys, unique, "each repeat has its own key");

    // Acknowledged: no more repeats. `db`, on the same route, opens only now, after web's last
    // message: once db is repeated, repeat_every has passed since web's last message too, and
    // that same pass would have repeated web had the acknowledgement not stopped it.
    assert_eq!(env.run(&["alerts", "ack", "web"]).code, 0);
    let before = hook.requests().len();
    let since_ack = |name: &str| -> Vec<common::receiver::Request> {
        hook.requests()[before..]
            .iter()
            .filter(|r| r.json()["alert"]["name"] == name)
            .cloned()
            .collect()
    };
    assert!(
        wait_for(Duration::from_secs(15), || {
            env.run(&["check", "web", "db"]);
            since_ack("db").iter().any(|r| r.json()["change"] == "repeat")
        }),
        "db, still firing, was never repeated: {:#?}",
        hook.requests()
    );
    let web = since_ack("web");
    assert!(web.is_empty(), "an acknowledged alert is not repeated: {web:#?}");
}

fn maintenance_env(hook: &Receiver, restore: bool) -> Env {
    let start = if restore { "touch up" } else { "true" };
    Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "test -f up" }} }}
notify:
  channels: {{ ops: {{ webhook: {{ url: "{}/hook" }} }} }}
profiles:
  deploy:
    cron: "@yearly"
    silences: [web]
    tasks:
      - {{ sh: "rm -f up", name: stop }}
      - web
      - {{ sh: "{start}", name: start }}
"#,
        hook.url()
    ))
}

#[test]
fn a_profile_that_silences_a_check_notifies_nothing_when_the_check_recovers_by_its_end() {
    let hook = Receiver::start();
    let env = maintenance_env(&hook, true);
    std::fs::write(env.path("up"), "").unwrap();
    let (_, report) = env.json(&["run", "deploy"]);
    assert_eq!(
        report["tasks"][1]["status"], "failed",
        "the check failed during the deploy: {report}"
    );
    assert!(
        hook.requests().is_empty(),
        "silenced during maintenance: {:#?}",
        hook.requests()
    );
    // Probed again at the end, it passed: the alert opened silenced and is resolved.
    assert_eq!(env.count("SELECT count(*) FROM alerts WHERE status = 'resolved'"), 1);
    assert_eq!(
        env.count("SELECT count(*) FROM silences"),
        0,
        "the maintenance silence is removed"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'silence.ended'"),
        1
    );
}

#[test]
fn a_check_still_broken_after_maintenance_fires_at_once() {
    let hook = Receiver::start();
    let env = maintenance_env(&hook, false);
    std::fs::write(env.path("up"), "").unwrap();
    env.run(&["run", "deploy"]);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].json()["change"], "opened");
    assert_eq!(reqs[0].json()["alert"]["name"], "web");
    assert_eq!(env.count("SELECT count(*) FROM alerts WHERE status = 'firing'"), 1);
}

#[test]
fn a_suppressed_alert_notifies_once_its_dependency_recovers_and_it_still_fails() {
    let hook = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  api-unit: {{ command: {{ sh: "test -f up-api" }} }}
  web: {{ command: {{ sh: "test -f up-web" }}, depends_on: [api-unit] }}
notify:
  channels: {{ ops: {{ webhook: {{ url: "{}/hook" }} }} }}
"#,
        hook.url()
    ));
    env.run(&["check", "api-unit", "web"]);
    let names: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| r.json()["alert"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["api-unit"], "web is suppressed while api-unit is down");
    assert!(
        hook.requests()[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("api-unit down; 1 dependent check(s) suppressed: web"),
        "the suppressed checks are named: {}",
        hook.requests()[0].json()["text"]
    );

    std::fs::write(env.path("up-api"), "").unwrap();
    env.run(&["check", "api-unit", "web"]);
    let reqs = hook.requests();
    let web: Vec<&common::receiver::Request> = reqs.iter().filter(|r| r.json()["alert"]["name"] == "web").collect();
    assert_eq!(web.len(), 1, "web is announced once the root cause is gone: {reqs:#?}");
    assert_eq!(web[0].json()["change"], "opened");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'alert.unsuppressed'"),
        1
    );
}

#[test]
fn group_wait_sends_what_is_due_together_as_one_message() {
    let hook = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  a: {{ command: {{ sh: "exit 1" }} }}
  b: {{ command: {{ sh: "exit 1" }} }}
  c: {{ command: {{ sh: "exit 1" }} }}
notify:
  channels: {{ ops: {{ webhook: {{ url: "{}/hook" }} }} }}
  routes:
    - {{ channels: [ops], group_wait: 1s }}
"#,
        hook.url()
    ));
    env.run(&["check"]);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "three alerts, one message: {reqs:#?}");
    let text = reqs[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("3 notifications from runbook on "), "{text}");
    for name in ["a@", "b@", "c@"] {
        assert!(text.contains(&format!("FIRING [warning] {name}")), "{text}");
    }
    assert_eq!(env.count("SELECT count(*) FROM notifications WHERE status = 'sent'"), 3);
}

#[test]
fn a_webhook_with_format_alertmanager_posts_alertmanager_alerts() {
    let am = Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
checks:
  web: {{ command: {{ sh: "exit 1" }}, labels: {{ team: ops }} }}
notify:
  channels: {{ pager: {{ webhook: {{ url: "{}/api/v2/alerts", format: alertmanager }} }} }}
"#,
        am.url()
    ));
    env.run(&["check", "web"]);
    let reqs = am.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].path, "/api/v2/alerts");
    let alert = &reqs[0].json()[0];
    assert_eq!(alert["labels"]["alertname"], "web");
    assert_eq!(alert["labels"]["team"], "ops");
    assert!(alert["startsAt"].is_string() && alert["endsAt"].is_string());
}
