//! Script state through the real binary: `runbook state get | set | list | import`, dry runs
//! that write nothing, idempotent imports, and the audit events that applied changes leave.

mod common;
use common::*;

use serde_json::{Value, json};

const CONFIG: &str = "version: 1\n";

fn state_rows(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM monitor_state")
}

fn audit_rows(env: &Env) -> i64 {
    env.count("SELECT count(*) FROM audit_events")
}

fn get(env: &Env, namespace: &str, key: &str) -> Option<String> {
    let out = env.run(&["state", "get", namespace, key]);
    match out.code {
        0 => Some(out.stdout.strip_suffix('\n').unwrap_or(&out.stdout).to_string()),
        1 => None,
        code => panic!("state get exited {code}: {}", out.stderr),
    }
}

fn set_applied(env: &Env, namespace: &str, key: &str, value: &str) {
    let out = env.run(&["state", "set", namespace, key, value, "--apply"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// `state import DIR [extra…] --json`: the exit code must be 0; returns the summary.
fn import(env: &Env, dir: &str, extra: &[&str]) -> Value {
    let dir = env.path(dir).display().to_string();
    let (code, summary) = env.json(&[&["state", "import", dir.as_str()], extra].concat());
    assert_eq!(code, 0, "{summary}");
    summary
}

/// A legacy cache directory: two one-value files, one key=value file, and files to skip.
fn legacy_cache(env: &Env) {
    env.write("legacy-cache/last_seen.txt", "2024-05-01T10:00:00Z\n");
    env.write("legacy-cache/motd", "line one\nline two\n\n");
    env.write(
        "legacy-cache/counters.env",
        "# counters\nretries=3\nlast-host = web-1\n\n",
    );
    env.write("legacy-cache/.lock", "12345\n");
    std::fs::write(env.path("legacy-cache/blob.bin"), [0xff, 0xfe, 0x00, 0x80]).unwrap();
    env.write("legacy-cache/huge.txt", &"a".repeat((1 << 20) + 1));
}

fn skipped_reason(summary: &Value, file: &str) -> Option<String> {
    summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"].as_str().is_some_and(|p| p.ends_with(file)))
        .map(|s| s["reason"].as_str().unwrap().to_string())
}

fn keys(summary: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<_> = summary["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["key"].as_str().unwrap().to_string(),
                i["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn state_set_is_a_dry_run_until_apply() {
    let env = Env::new(CONFIG);
    let (code, dry) = env.json(&["state", "set", "backup", "last_ok", "2024-05-01"]);
    assert_eq!(code, 0, "{dry}");
    assert_eq!(
        dry,
        json!({ "apply": false, "namespace": "backup", "key": "last_ok", "value": "2024-05-01", "previous": null })
    );
    let text = env.run(&["state", "set", "backup", "last_ok", "2024-05-01"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("dry run"), "{}", text.stdout);
    assert!(text.stdout.contains("--apply"), "{}", text.stdout);

    let missing = env.run(&["state", "get", "backup", "last_ok"]);
    assert_eq!(missing.code, 1, "nothing was written by the dry run");
    assert!(
        missing.stderr.contains("backup/last_ok is not set"),
        "{}",
        missing.stderr
    );
    assert_eq!(state_rows(&env), 0);
    assert_eq!(audit_rows(&env), 0);

    let (code, applied) = env.json(&["state", "set", "backup", "last_ok", "2024-05-01", "--apply"]);
    assert_eq!(code, 0, "{applied}");
    assert_eq!(
        applied,
        json!({ "apply": true, "namespace": "backup", "key": "last_ok", "value": "2024-05-01", "previous": null })
    );
    assert_eq!(get(&env, "backup", "last_ok").as_deref(), Some("2024-05-01"));
}

#[test]
fn state_get_prints_the_value_and_json_shapes_describe_the_key() {
    let env = Env::new(CONFIG);
    set_applied(&env, "deploy", "version", "v1.2.3");

    let out = env.run(&["state", "get", "deploy", "version"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.stdout, "v1.2.3\n");

    let (code, entry) = env.json(&["state", "get", "deploy", "version"]);
    assert_eq!(code, 0);
    assert_eq!(entry["namespace"], "deploy");
    assert_eq!(entry["key"], "version");
    assert_eq!(entry["value"], "v1.2.3");
    assert!(entry["updated_at"].as_str().is_some_and(|t| !t.is_empty()), "{entry}");

    let (code, missing) = env.json(&["state", "get", "deploy", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(missing, json!({ "namespace": "deploy", "key": "nope", "found": false }));

    // A second set reports what it replaced.
    let (code, replaced) = env.json(&["state", "set", "deploy", "version", "v1.2.4", "--apply"]);
    assert_eq!(code, 0);
    assert_eq!(replaced["previous"], "v1.2.3");
    assert_eq!(get(&env, "deploy", "version").as_deref(), Some("v1.2.4"));

    set_applied(&env, "other", "k", "v");
    let (code, all) = env.json(&["state", "list"]);
    assert_eq!(code, 0);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let (code, deploy) = env.json(&["state", "list", "deploy"]);
    assert_eq!(code, 0);
    let deploy = deploy.as_array().unwrap();
    assert_eq!(deploy.len(), 1);
    assert_eq!(deploy[0]["key"], "version");
    assert_eq!(deploy[0]["value"], "v1.2.4");
}

#[test]
fn import_dry_run_lists_the_plan_and_writes_nothing() {
    let env = Env::new(CONFIG);
    legacy_cache(&env);
    let plan = import(&env, "legacy-cache", &[]);
    assert_eq!(plan["apply"], false);
    assert_eq!(plan["namespace"], "legacy-cache");
    assert_eq!(plan["added"], 4);
    assert_eq!(plan["written"], 0);
    assert_eq!(
        keys(&plan),
        [
            ("last-host", "add"),
            ("last_seen", "add"),
            ("motd", "add"),
            ("retries", "add")
        ]
        .map(|(k, a)| (k.to_string(), a.to_string()))
    );
    assert_eq!(state_rows(&env), 0);
    assert_eq!(audit_rows(&env), 0);
    assert_eq!(get(&env, "legacy-cache", "last_seen"), None);

    let dir = env.path("legacy-cache").display().to_string();
    let text = env.run(&["state", "import", &dir]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("last_seen"), "{}", text.stdout);
    assert!(text.stdout.contains("nothing written"), "{}", text.stdout);
    assert_eq!(state_rows(&env), 0);
}

#[test]
fn import_apply_reads_one_value_and_key_value_files_and_skips_the_rest() {
    let env = Env::new(CONFIG);
    legacy_cache(&env);
    let done = import(&env, "legacy-cache", &["--apply"]);
    assert_eq!(done["apply"], true);
    assert_eq!(done["written"], 4);

    let ns = "legacy-cache";
    assert_eq!(get(&env, ns, "last_seen").as_deref(), Some("2024-05-01T10:00:00Z"));
    // Only the final newline goes; the rest of the content is kept as is.
    assert_eq!(
        env.db()
            .query_row(
                "SELECT value FROM monitor_state WHERE namespace = ?1 AND key = 'motd'",
                [ns],
                |r| r.get::<_, String>(0),
            )
            .unwrap(),
        "line one\nline two\n"
    );
    assert_eq!(get(&env, ns, "retries").as_deref(), Some("3"));
    assert_eq!(get(&env, ns, "last-host").as_deref(), Some("web-1"));
    assert_eq!(get(&env, ns, "counters"), None, "a key=value file is not one key");
    assert_eq!(state_rows(&env), 4);

    // Hidden files are ignored silently; unreadable ones are reported.
    assert_eq!(skipped_reason(&done, ".lock"), None);
    assert_eq!(get(&env, ns, ".lock"), None);
    assert_eq!(get(&env, ns, "lock"), None);
    assert_eq!(skipped_reason(&done, "blob.bin").as_deref(), Some("not UTF-8 text"));
    assert_eq!(skipped_reason(&done, "huge.txt").as_deref(), Some("larger than 1 MiB"));
    assert_eq!(done["skipped"].as_array().unwrap().len(), 2, "{}", done["skipped"]);
    assert_eq!(get(&env, ns, "blob"), None);
    assert_eq!(get(&env, ns, "huge"), None);

    let dir = env.path("legacy-cache").display().to_string();
    let text = env.run(&["state", "import", &dir]);
    assert!(text.stdout.contains("not UTF-8 text"), "{}", text.stdout);
    assert!(text.stdout.contains("larger than 1 MiB"), "{}", text.stdout);
}

#[test]
fn import_namespace_option_overrides_the_directory_name() {
    let env = Env::new(CONFIG);
    env.write("cache/token_expiry", "1700000000\n");
    let done = import(&env, "cache", &["--namespace", "billing", "--apply"]);
    assert_eq!(done["namespace"], "billing");
    assert_eq!(done["written"], 1);
    assert_eq!(get(&env, "billing", "token_expiry").as_deref(), Some("1700000000"));
    assert_eq!(get(&env, "cache", "token_expiry"), None);
}

#[test]
fn reimporting_the_same_directory_changes_nothing() {
    let env = Env::new(CONFIG);
    legacy_cache(&env);
    let first = import(&env, "legacy-cache", &["--apply"]);
    assert_eq!(first["written"], 4);
    let events = audit_rows(&env);
    let rows_before: Vec<(String, String, String)> = {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT key, value, updated_at FROM monitor_state ORDER BY key")
            .unwrap();
        stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };

    let again = import(&env, "legacy-cache", &["--apply"]);
    assert_eq!(again["written"], 0, "{again}");
    assert_eq!(again["added"], 0);
    assert_eq!(again["unchanged"], 4);
    assert!(keys(&again).iter().all(|(_, action)| action == "unchanged"), "{again}");
    assert_eq!(
        audit_rows(&env),
        events,
        "an import that changes nothing is not audited"
    );

    let rows_after: Vec<(String, String, String)> = {
        let db = env.db();
        let mut stmt = db
            .prepare("SELECT key, value, updated_at FROM monitor_state ORDER BY key")
            .unwrap();
        stmt.query_map((), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(rows_after, rows_before);
}

#[test]
fn import_keeps_a_different_existing_value_unless_overwrite() {
    let env = Env::new(CONFIG);
    env.write("cache/last_seen", "2024-05-01\n");
    env.write("cache/fresh", "new\n");
    set_applied(&env, "cache", "last_seen", "2024-06-30");

    let kept = import(&env, "cache", &["--apply"]);
    assert_eq!(kept["kept"], 1, "{kept}");
    assert_eq!(kept["added"], 1);
    assert_eq!(kept["written"], 1);
    assert_eq!(
        keys(&kept),
        [("fresh", "add"), ("last_seen", "keep")].map(|(k, a)| (k.to_string(), a.to_string()))
    );
    assert_eq!(get(&env, "cache", "last_seen").as_deref(), Some("2024-06-30"));
    assert_eq!(get(&env, "cache", "fresh").as_deref(), Some("new"));

    let dry = import(&env, "cache", &["--overwrite"]);
    assert_eq!(dry["overwritten"], 1);
    assert_eq!(dry["written"], 0);
    assert_eq!(get(&env, "cache", "last_seen").as_deref(), Some("2024-06-30"));

    let replaced = import(&env, "cache", &["--overwrite", "--apply"]);
    assert_eq!(replaced["overwritten"], 1, "{replaced}");
    assert_eq!(replaced["unchanged"], 1);
    assert_eq!(replaced["written"], 1);
    assert_eq!(get(&env, "cache", "last_seen").as_deref(), Some("2024-05-01"));
}

#[test]
fn applied_sets_and_imports_are_audited_and_the_chain_verifies() {
    let env = Env::new(CONFIG);
    env.write("cache/a", "1\n");
    env.write("cache/b", "2\n");

    set_applied(&env, "svc", "mode", "maintenance");
    let after_set = audit_rows(&env);
    assert!(after_set >= 1);
    import(&env, "cache", &["--apply"]);
    assert_eq!(audit_rows(&env), after_set + 1, "one event per applied import");
    // Dry runs leave no event.
    env.run(&["state", "set", "svc", "mode", "normal"]);
    import(&env, "cache", &["--overwrite"]);
    assert_eq!(audit_rows(&env), after_set + 1);

    let (code, events) = env.json(&["audit", "list"]);
    assert_eq!(code, 0);
    let events = events.as_array().unwrap();
    let set = events
        .iter()
        .find(|e| e["kind"] == "state.set")
        .unwrap_or_else(|| panic!("no state.set event in {events:?}"));
    assert_eq!(set["subject"], "svc/mode");
    assert_eq!(set["data"]["created"], true);
    let imported = events
        .iter()
        .find(|e| e["kind"] == "state.imported")
        .unwrap_or_else(|| panic!("no state.imported event in {events:?}"));
    assert_eq!(imported["subject"], "cache");
    let mut imported_keys: Vec<&str> = imported["data"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    imported_keys.sort();
    assert_eq!(imported_keys, ["a", "b"]);

    let verify = env.run(&["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0);
    assert_eq!(v["intact"], true);
    assert_eq!(v["checked"], audit_rows(&env));
}

#[test]
fn import_refuses_a_key_that_two_files_provide_and_writes_nothing() {
    let env = Env::new(CONFIG);
    env.write("cache/retries", "7\n");
    env.write("cache/counters.env", "retries=3\nother=1\n");
    let dir = env.path("cache").display().to_string();
    let out = env.run(&["state", "import", &dir, "--apply"]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("cache/retries"), "{}", out.stderr);
    assert!(
        out.stderr.contains("counters.env") && out.stderr.contains("retries"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--namespace"), "suggests a way out: {}", out.stderr);
    assert_eq!(state_rows(&env), 0);
    assert_eq!(audit_rows(&env), 0);
}
