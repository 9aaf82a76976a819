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
        .execute("UPDATE audit_events SET data = '{\"forged\":true}' WHERE seq = 4", ())
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
        .execute("UPDATE audit_events SET actor = 'someone-else' WHERE seq = 2", ())
        .unwrap();
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert_eq!(v["first_bad"]["seq"], 2);
}

#[test]
fn a_deleted_event_is_named() {
    let env = env_with_history();
    env.db().execute("DELETE FROM audit_events WHERE seq = 3", ()).unwrap();
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

/// Runs `sql` on the state from outside runbook: with the sqlite3 CLI on a state file, or
/// straight on the PostgreSQL database.
fn sqlite3(env: &Env, sql: &str) {
    if env.pg.is_some() {
        env.db().execute_batch(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        return;
    }
    let out = std::process::Command::new("sqlite3")
        .arg(env.state_db())
        .arg(sql)
        .output()
        .expect("sqlite3 CLI");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tampering_with_the_sqlite3_cli_is_named_edit_delete_and_swap() {
    for (sql, seq, why) in [
        (
            "UPDATE audit_events SET subject = 'nothing happened' WHERE seq = 5",
            5,
            "edited",
        ),
        ("DELETE FROM audit_events WHERE seq = 6", 6, "missing"),
        (
            "UPDATE audit_events SET seq = -1 WHERE seq = 7; UPDATE audit_events SET seq = 7 WHERE seq = 8; \
             UPDATE audit_events SET seq = 8 WHERE seq = -1;",
            7,
            "prev_hash",
        ),
    ] {
        let env = env_with_history();
        sqlite3(&env, sql);
        let out = env.run(&["audit", "verify"]);
        assert_eq!(out.code, 1, "{sql}: {}", out.stdout);
        assert!(
            out.stdout.contains(&format!("BROKEN at seq {seq}")),
            "{sql}: {}",
            out.stdout
        );
        assert!(out.stdout.contains(why), "{sql}: {}", out.stdout);
    }
}

/// A history, a signing key in the config, and a checkpoint copied "elsewhere".
fn signed_history() -> (Env, String, std::path::PathBuf) {
    let env = env_with_history();
    let (code, k) = env.json(&["audit", "keygen", "--out", "audit.key"]);
    assert_eq!(code, 0, "{k}");
    let public = k["public_key"].as_str().unwrap().to_string();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(env.path("audit.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the private key is private");
    let yaml = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("{yaml}audit: {{ signing_key: audit.key, public_keys: [ \"{public}\" ] }}\n"),
    )
    .unwrap();
    let elsewhere = env.path("elsewhere.json");
    let out = env.run(&["audit", "checkpoint", "--out", elsewhere.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&elsewhere).unwrap()).unwrap();
    assert_eq!(cp["seq"], 9);
    (env, public, elsewhere)
}

#[test]
fn a_cut_tail_is_shown_only_by_a_checkpoint_kept_elsewhere() {
    let (env, _, elsewhere) = signed_history();
    let (code, v) = env.json(&["audit", "verify", "--against", elsewhere.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["checkpoints"].as_array().unwrap().len(),
        2,
        "the kept one and the one from elsewhere"
    );

    // Someone cuts the last three events, and the checkpoints in the same file with them.
    sqlite3(
        &env,
        "DELETE FROM audit_events WHERE seq > 6; DELETE FROM audit_checkpoints;",
    );
    if env.pg.is_none() {
        // The head file beside the state file still names seq 9: the cut is reported.
        let (code, v) = env.json(&["audit", "verify"]);
        assert_eq!(code, 1, "{v}");
        assert_eq!(v["head_file"]["recorded_seq"], 9, "{v}");
        // Whoever can cut the log can delete that file too: then only a checkpoint kept
        // elsewhere shows the cut.
        std::fs::remove_file(env.path("state/runbook.db.audit-head")).unwrap();
    }
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "without a checkpoint from elsewhere a cut tail verifies: {v}");
    let out = env.run(&["audit", "verify", "--against", elsewhere.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("the log ends at seq 6") && out.stdout.contains("reached seq 9"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("were cut"), "{}", out.stdout);
}

#[test]
fn a_rewritten_log_with_a_fresh_chain_is_caught_by_the_checkpoint() {
    let (env, _, elsewhere) = signed_history();
    // Rewrite event 9 and re-hash it so the chain itself verifies again.
    let conn = env.db();
    let (prev, ts, actor, kind, subject): (String, String, String, String, String) = conn
        .query_row(
            "SELECT prev_hash, ts, actor, kind, subject FROM audit_events WHERE seq = 9",
            (),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    let data = "{\"rewritten\":true}";
    let hash = runbook::audit::hash(&prev, 9, &ts, &actor, &kind, &subject, data);
    conn.execute(
        "UPDATE audit_events SET data = ?1, hash = ?2 WHERE seq = 9",
        [data, hash.as_str()],
    )
    .unwrap();
    assert_eq!(
        env.json(&["audit", "verify"]).1["chain_intact"],
        true,
        "the chain alone is fooled"
    );
    let out = env.run(&["audit", "verify", "--against", elsewhere.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("event 9 is not the one signed"), "{}", out.stdout);
}

#[test]
fn a_checkpoint_signed_by_an_untrusted_key_proves_nothing() {
    let (env, _, _) = signed_history();
    // Another key signs a checkpoint of the same chain: valid signature, wrong signer.
    let (code, _) = env.json(&["audit", "keygen", "--out", "intruder.key"]);
    assert_eq!(code, 0);
    let forged = env.path("forged.json");
    let out = env.run(&[
        "audit",
        "checkpoint",
        "--key",
        "intruder.key",
        "--out",
        forged.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = env.run(&["audit", "verify", "--against", forged.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("not a trusted key"), "{}", out.stdout);
    // A checkpoint file edited by hand fails its signature.
    let mut cp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&forged).unwrap()).unwrap();
    cp["seq"] = 3.into();
    std::fs::write(&forged, cp.to_string()).unwrap();
    let (_, v) = env.json(&[
        "audit",
        "verify",
        "--against",
        forged.to_str().unwrap(),
        "--public-key",
        cp["public_key"].as_str().unwrap(),
    ]);
    let last = v["checkpoints"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["ok"], false);
    assert!(
        last["detail"].as_str().unwrap().contains("signature does not match"),
        "{last}"
    );
}

#[test]
fn a_broken_chain_is_never_signed() {
    let (env, _, _) = signed_history();
    sqlite3(&env, "UPDATE audit_events SET data = '{}' WHERE seq = 2");
    let out = env.run(&["audit", "checkpoint"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("broken at seq 2"), "{}", out.stderr);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_checkpoints"),
        1,
        "only the earlier one"
    );
}

#[test]
fn export_streams_every_event_and_summary_counts_them() {
    let env = env_with_history();
    let out = env.run(&["audit", "export", "--format", "jsonl"]);
    assert_eq!(out.code, 0);
    let lines: Vec<serde_json::Value> = out.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 9);
    assert_eq!(lines[0]["seq"], 1);
    let out = env.run(&["audit", "export", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 9);
    let out = env.run(&["audit", "export", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(out.stdout, "");
    assert_eq!(env.run(&["audit", "export", "--format", "xml"]).code, 2);
    let (code, s) = env.json(&["audit", "summary"]);
    assert_eq!(code, 0);
    assert_eq!(s["summary"]["events"], 9);
    assert_eq!(s["chain"]["intact"], true);
}

#[test]
fn a_checkpoint_can_be_fetched_from_a_url() {
    let (env, _, _) = signed_history();
    // A static file server on a port the kernel picks; it prints the port once it listens.
    let mut server = std::process::Command::new("python3")
        .args([
            "-c",
            "import http.server as h, sys\n\
             s = h.ThreadingHTTPServer(('127.0.0.1', 0), h.SimpleHTTPRequestHandler)\n\
             print(s.server_address[1], flush=True)\n\
             s.serve_forever()",
        ])
        .current_dir(env.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let port = common::announced_port(server.stdout.take().unwrap(), |l| l.trim().parse().ok())
        .expect("the file server did not start");
    sqlite3(
        &env,
        "DELETE FROM audit_events WHERE seq = 9; DELETE FROM audit_checkpoints;",
    );
    let url = format!("http://127.0.0.1:{port}/elsewhere.json");
    let out = env.run(&["audit", "verify", "--against", &url]);
    let missing = env.run(&[
        "audit",
        "verify",
        "--against",
        &format!("http://127.0.0.1:{port}/nope.json"),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("the log ends at seq 8"), "{}", out.stdout);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("cannot fetch the checkpoint"),
        "{}",
        missing.stderr
    );
}

#[test]
fn archiving_old_events_keeps_the_chain_verifiable_across_the_boundary() {
    let env = env_with_history();
    // Everything before event 6 goes.
    let cut: String = env
        .db()
        .query_row("SELECT ts FROM audit_events WHERE seq = 6", (), |r| r.get(0))
        .unwrap();
    let (code, plan) = env.json(&["audit", "archive", "--before", &cut]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["events"], 5);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events"),
        9,
        "a dry run moves nothing"
    );

    let (code, plan) = env.json(&["audit", "archive", "--before", &cut, "--apply"]);
    assert_eq!(code, 0, "{plan}");
    let file = std::path::PathBuf::from(plan["file"].as_str().unwrap());
    assert!(file.is_file());
    assert_eq!(env.count("SELECT min(seq) FROM audit_events"), 6);
    // The archived events are readable with zstd, one per line.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | wc -l", file.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5");

    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "the chain continues from the anchor: {v}");
    assert_eq!(v["archives"][0]["ok"], true, "{v}");
    // Damage in the archive file is found; damage in the state file too.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let out = env.run(&["audit", "verify"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains("SHA-256"), "{}", out.stdout);
    bytes[n / 2] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    sqlite3(&env, "DELETE FROM audit_events WHERE seq = 6");
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert_eq!(v["first_bad"]["seq"], 6, "{v}");
}

#[test]
fn archiving_every_event_leaves_a_chain_that_continues_from_the_anchor() {
    let env = env_with_history();
    let (code, plan) = env.json(&["audit", "archive", "--before", "2999-01-01", "--apply"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["events"], 9);
    // The `audit.archived` event and everything after chain on from the archived seq 9.
    assert_eq!(env.run(&["state", "set", "ns", "after", "v", "--apply"]).code, 0);
    assert_eq!(env.count("SELECT min(seq) FROM audit_events"), 10);
    let (code, v) = env.json(&["audit", "verify"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["head_seq"], 11);
}
