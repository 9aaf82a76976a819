//! The audit chain: every change appends a hash-chained event; tampering is found and named.

mod common;

use common::*;

fn env_with_history() -> Env {
    let env = Env::new("version: 1\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { run: [true] } ] }\n");
    for i in 0..3 {
        assert_eq!(env.run(&["run", "p"]).code, 0);
        assert_eq!(
            env.run(&["state", "set", "ns", &format!("k{i}"), "v", "--apply"]).code,
            0
        );
    }
    env
}

#[test]
fn an_untouched_chain_verifies() {
    let env = env_with_history();
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["intact"], true);
    assert_eq!(v["checked"], 9, "3 runs (started + finished) and 3 state sets");
    assert_eq!(v["head_seq"], 9);
    let out = env.run(&["audit", "verify"]);
    assert!(out.stdout.starts_with("audit chain intact: 9 events"), "{}", out.stdout);
}

#[test]
fn an_edited_event_is_named() {
    let env = env_with_history();
    env.db()
        .execute("UPDATE audit_events SET data = '{\"forged\":true}' WHERE seq = 4", [])
        .unwrap();
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("BROKEN at seq 4"), "{}", out.stdout);
    assert!(out.stdout.contains("edited"), "{}", out.stdout);
}

#[test]
fn an_edited_actor_is_found_too() {
    let env = env_with_history();
    env.db()
        .execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2", [])
        .unwrap();
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert_eq!(v["first_bad"]["seq"], 2);
}

#[test]
fn a_deleted_event_is_named() {
    let env = env_with_history();
    env.db().execute("DELETE FROM audit_events WHERE seq = 3", []).unwrap();
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert_eq!(v["first_bad"]["seq"], 3, "{v}");
    assert!(v["first_bad"]["reason"].as_str().unwrap().contains("missing"));
}

#[test]
fn reordered_events_are_found() {
    let env = env_with_history();
    let db = env.db();
    // Swap the contents of events 2 and 3, keeping seq numbers contiguous.
    db.execute_batch(
        "UPDATE audit_events SET seq = -2 WHERE seq = 2;
         UPDATE audit_events SET seq = 2 WHERE seq = 3;
         UPDATE audit_events SET seq = 3 WHERE seq = -2;",
    )
    .unwrap();
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert_eq!(v["first_bad"]["seq"], 2, "{v}");
}

#[test]
fn audit_list_shows_newest_first_and_filters_by_kind() {
    let env = env_with_history();
    let (_, all) = env.json(&["audit", "list", "--limit", "2"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["seq"], 9);
    let (_, runs) = env.json(&["audit", "list", "--kind", "run.finished"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|e| e["kind"] == "run.finished" && e["subject"] == "p"));
    assert_eq!(runs[0]["data"]["status"], "ok");
    let (_, starts) = env.json(&["audit", "list", "--kind", "run.started"]);
    assert_eq!(starts.as_array().unwrap().len(), 3, "each run's start is audited too");
    assert!(!runs[0]["actor"].as_str().unwrap().is_empty());
}
