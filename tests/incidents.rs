//! Incidents through the real binary: a note from a template, the lifecycle, closing only when
//! verified, and a timeline that assembles itself from the audit chain.

mod common;

use common::*;

const CONFIG: &str = r#"version: 1
checks:
  public: { command: { sh: "test -f {dir}/up" } }
profiles:
  recover: { cron: "@yearly", tasks: [ { run: [touch, "{dir}/up"], name: recover-stale } ] }
gates:
  release: { checks: [public] }
incidents:
  dir: notes
  template: template.md
  severities:
    sev1: { meaning: "down for everyone", respond_within: 15m }
    sev2: { meaning: "degraded", respond_within: 1h }
  verify: [public]
"#;

/// A session started for incident `slug`; its id.
fn session_for(env: &Env, mode: &str, reason: &str, slug: &str) -> (Out, String) {
    let out = env.run(&[
        "session",
        "start",
        "--mode",
        mode,
        "--reason",
        reason,
        "--incident",
        slug,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = out
        .stdout
        .lines()
        .last()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    (out, id)
}

/// `session exec -- ARGV…` in session `id`; its exit code.
fn session_exec(env: &Env, id: &str, argv: &[&str]) -> Option<i32> {
    let mut c = env.cmd();
    c.args(["session", "exec", "--"]).args(argv).env("RUNBOOK_SESSION", id);
    c.output().unwrap().status.code()
}

fn env() -> Env {
    let env = Env::new(CONFIG);
    env.write(
        "template.md",
        "# {{title}}\n\nseverity {{severity}} ({{meaning}}) on {{host}}, runbook {{version}}\nopened {{opened_at}} by {{commander}}\nopen alerts: {{open_alerts}}\nlast verified backup: {{last_verified_backup}}\n\n## Timeline\n",
    );
    env
}

#[test]
fn an_incident_opens_from_its_template_moves_step_by_step_and_closes_only_when_verified() {
    let env = env();
    assert_eq!(env.run(&["check"]).code, 1, "the public surface fails");
    let (code, o) = env.json(&[
        "incident",
        "open",
        "api-down",
        "--severity",
        "sev1",
        "--title",
        "API returns 502",
    ]);
    assert_eq!(code, 0, "{o:#}");
    assert_eq!(o["new"], true);
    let note = std::path::PathBuf::from(o["incident"]["note"].as_str().unwrap());
    assert!(note.file_name().unwrap().to_str().unwrap().ends_with("-api-down.md"));
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(text.starts_with("# API returns 502\n"), "{text}");
    assert!(text.contains("severity sev1 (down for everyone)"), "{text}");
    assert!(text.contains("open alerts: public@"), "{text}");
    assert!(!text.contains("{{"), "every placeholder filled: {text}");
    // Opening it again returns the same incident.
    let (_, again) = env.json(&["incident", "new", "api-down", "--severity", "sev1"]);
    assert_eq!(
        (again["new"].as_bool(), again["incident"]["id"].as_i64()),
        (Some(false), o["incident"]["id"].as_i64())
    );
    // An unknown severity, a skipped state, a state gone back to: refused.
    assert_eq!(env.run(&["incident", "open", "x", "--severity", "sev9"]).code, 2);
    let out = env.run(&["incident", "status", "api-down", "mitigated"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the next state is investigating"), "{}", out.stderr);
    for state in ["investigating", "mitigated", "resolved"] {
        assert_eq!(
            env.run(&["incident", "status", "1", state, "--note", "moving on"]).code,
            0,
            "{state}"
        );
    }
    assert_eq!(env.run(&["incident", "status", "api-down", "investigating"]).code, 2);
    // Closing needs the verification to pass now.
    let out = env.run(&["incident", "close", "api-down", "--cause", "disk full"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("verification fails") && out.stderr.contains("public"),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.run(&["incident", "close", "api-down", "--cause", "x", "--force"])
            .code,
        2,
        "--force needs --reason"
    );
    assert_eq!(env.run(&["run", "recover"]).code, 0);
    let (code, closed) = env.json(&["incident", "close", "api-down", "--cause", "disk full"]);
    assert_eq!(code, 0, "{closed:#}");
    assert_eq!(closed["incident"]["state"], "closed");
    assert_eq!(closed["verification"][0]["ok"], true);
    let text = std::fs::read_to_string(&note).unwrap();
    for line in ["**investigating**: moving on", "**resolved**", "**closed**: disk full"] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn a_forced_close_is_recorded_with_its_reason() {
    let env = env();
    env.json(&["incident", "open", "db", "--severity", "sev2"]);
    let out = env.run(&[
        "incident",
        "close",
        "db",
        "--cause",
        "unknown",
        "--force",
        "--reason",
        "vendor outage, cannot verify",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let n =
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'incident.closed' AND data LIKE '%vendor outage%'");
    assert_eq!(n, 1);
}

/// Seed 001 replayed: the public surface fails, an alert fires, a guarded session looks, a gate
/// is measured, the recovery runs, the check recovers, the incident closes. Its timeline is
/// what the audit chain recorded, each line citing its event, and the export carries them.
#[test]
fn the_timeline_assembles_itself_from_the_audit_chain() {
    let env = env();
    let (_, o) = env.json(&[
        "incident",
        "open",
        "public-502",
        "--severity",
        "sev1",
        "--title",
        "public surface 502",
    ]);
    assert_eq!(o["new"], true);
    env.run(&["check"]);
    env.run(&["incident", "status", "public-502", "investigating"]);
    let (session, id) = session_for(&env, "diagnostic", "why 502", "public-502");
    // The start-of-session checklist, printed and recorded.
    for item in [
        "mode",
        "access window",
        "recording",
        "sandbox",
        "incident       public-502",
        "policy",
    ] {
        assert!(session.stdout.contains(item), "{item} in {}", session.stdout);
    }
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'session.started' AND data LIKE '%\"checklist\"%access window%'"),
        1
    );
    assert_eq!(session_exec(&env, &id, &["uptime"]), Some(0));
    env.run(&["gate", "run", "release"]);
    env.run(&[
        "incident",
        "log",
        "public-502",
        "follow-up: alert on disk before it fills",
    ]);
    env.run(&["run", "recover"]);
    env.run(&["check"]);
    env.run(&["incident", "status", "public-502", "mitigated"]);
    env.run(&["incident", "status", "public-502", "resolved"]);
    assert_eq!(
        env.run(&["incident", "close", "public-502", "--cause", "stale state"])
            .code,
        0
    );

    let (code, timeline) = env.json(&["incident", "timeline", "public-502"]);
    assert_eq!(code, 0);
    let entries = timeline.as_array().unwrap();
    let kinds: Vec<&str> = entries.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in [
        "incident.opened",
        "alert.opened",
        "session.started",
        "session.command",
        "gate.run",
        "run.finished",
        "alert.resolved",
        "incident.closed",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let typed = entries.iter().filter(|e| e["typed"] == true).count();
    assert!(
        typed * 10 <= entries.len(),
        "{typed} of {} entries typed",
        entries.len()
    );
    for e in entries {
        let hash = e["hash"].as_str().unwrap();
        assert_eq!(
            env.count(&format!("SELECT count(*) FROM audit_events WHERE hash = '{hash}'")),
            1,
            "{e}"
        );
    }
    let out = env.run(&["incident", "export", "public-502", "--format", "md"]);
    assert_eq!(out.code, 0);
    for e in entries {
        assert!(
            out.stdout.contains(e["hash"].as_str().unwrap()),
            "every line cites its event"
        );
    }
    assert!(
        out.stdout.contains("## Follow-ups\n\n- follow-up: alert on disk"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("- cause: stale state"), "{}", out.stdout);
    let (_, json) = env.json(&["incident", "export", "public-502", "--format", "json"]);
    assert_eq!(json["entries_typed"], typed);
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
}

#[test]
fn the_api_and_the_status_page_show_open_incidents() {
    let env = env();
    env.json(&[
        "incident",
        "open",
        "slow",
        "--severity",
        "sev2",
        "--title",
        "slow pages",
    ]);
    let secret = create_token(&env, "reader", "read");
    let (_server, port) = serve(&env);
    let list = common::http::get(port, "/v1/incidents", Some(&secret));
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["items"][0]["slug"], "slow");
    let one = common::http::get(port, "/v1/incidents/slow", Some(&secret));
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.json()["timeline"][0]["kind"], "incident.opened");
    assert_eq!(common::http::get(port, "/v1/incidents/1", Some(&secret)).status, 200);
    assert_eq!(common::http::get(port, "/v1/incidents/nope", Some(&secret)).status, 404);
    let page = common::http::get(port, "/", Some(&secret)).body;
    assert!(
        page.contains("data-incident=\"slow\"") && page.contains("slow pages"),
        "{page}"
    );
}

#[test]
fn a_notifying_severity_tells_its_channels_of_the_opening_and_each_update() {
    let hook = common::receiver::Receiver::start();
    let env = Env::new(&format!(
        "version: 1\nnotify:\n  channels:\n    ops: {{ webhook: {{ url: \"{}/hook\" }} }}\nincidents:\n  severities:\n    sev1: {{ meaning: \"down\", notify: [ops] }}\n    sev3: {{ meaning: \"minor\" }}\n",
        hook.url()
    ));
    env.json(&["incident", "open", "quiet", "--severity", "sev3"]);
    assert!(hook.requests().is_empty(), "sev3 notifies nobody");
    env.json(&["incident", "open", "loud", "--severity", "sev1", "--title", "all down"]);
    env.json(&["incident", "open", "loud", "--severity", "sev1"]);
    env.json(&["incident", "status", "loud", "investigating", "--note", "db disk full"]);
    let bodies: Vec<String> = hook.requests().iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        bodies.len(),
        2,
        "one for the opening (not repeated), one for the update: {bodies:#?}"
    );
    assert!(
        bodies[0].contains("all down") && bodies[0].contains("opened"),
        "{}",
        bodies[0]
    );
    assert!(
        bodies[1].contains("investigating") && bodies[1].contains("db disk full"),
        "{}",
        bodies[1]
    );
}

/// The postmortem of a replayed incident, its times, hashes, numbers, paths and names made
/// stable, is exactly the one kept in tests/golden/.
#[test]
fn the_exported_postmortem_of_a_replayed_incident_matches_the_golden_file() {
    let env = env();
    env.json(&[
        "incident",
        "open",
        "public-502",
        "--severity",
        "sev1",
        "--title",
        "public surface 502",
    ]);
    env.run(&["check"]);
    env.run(&[
        "incident",
        "status",
        "public-502",
        "investigating",
        "--note",
        "502 from the API",
    ]);
    env.run(&["incident", "classify", "public-502", "stale-state"]);
    env.run(&[
        "incident",
        "log",
        "public-502",
        "follow-up: alert before the disk fills",
    ]);
    // A diagnostic session looks; a maintenance session runs the recovery under a change
    // request another person approved.
    let diag = session_for(&env, "diagnostic", "public 502", "public-502").1;
    assert_eq!(session_exec(&env, &diag, &["hostname"]), Some(0));
    let up = env.path("up").display().to_string();
    assert_eq!(
        session_exec(&env, &diag, &["touch", &up]),
        Some(2),
        "refused in diagnosis"
    );
    let maint = session_for(&env, "maintenance", "public 502", "public-502").1;
    let (code, change) = env.json(&[
        "change",
        "request",
        "--session",
        &maint,
        "--objective",
        "recover the public surface",
        "--command",
        &format!("touch {up}"),
        "--impact",
        "the marker exists again",
        "--rollback",
        "rm it",
    ]);
    assert_eq!(code, 0, "{change:#}");
    let token = token_of_another_user(&env, "second");
    let (server, port) = serve(&env);
    let approved = common::http::request(
        port,
        "POST",
        &format!("/v1/changes/{}/approve", change["change"]),
        Some(&token),
    );
    assert_eq!(approved.status, 200, "{}", approved.body);
    drop(server);
    assert_eq!(session_exec(&env, &maint, &["touch", &up]), Some(0));
    env.run(&["session", "end", "--session", &maint]);
    env.run(&["session", "end", "--session", &diag]);
    env.run(&["check"]);
    env.run(&["incident", "status", "public-502", "mitigated"]);
    env.run(&["incident", "status", "public-502", "resolved"]);
    env.run(&[
        "incident",
        "close",
        "public-502",
        "--cause",
        "stale job state after a restart",
    ]);
    let out = env.run(&["incident", "export", "public-502"]);
    assert_eq!(out.code, 0);
    let stable = normalise(&out.stdout, env.dir.path());
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/incident_postmortem.md");
    if std::env::var_os("RUNBOOK_BLESS").is_some() {
        std::fs::write(&golden, &stable).unwrap();
    }
    assert_eq!(
        stable,
        std::fs::read_to_string(&golden).unwrap(),
        "RUNBOOK_BLESS=1 rewrites the golden file"
    );
}

/// Times, hashes, event numbers, the temp dir, the host and the operator made stable.
fn normalise(text: &str, dir: &std::path::Path) -> String {
    let host = String::from_utf8(std::process::Command::new("uname").arg("-n").output().unwrap().stdout).unwrap();
    let mut out = text
        .replace(&dir.display().to_string(), "DIR")
        .replace(&format!("@{}", host.trim()), "@HOST")
        // On a shared (PostgreSQL) state the keys are the fleet's.
        .replace("@fleet", "@HOST");
    let user = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    out = out.replace(&format!("commander: {}", user.trim()), "commander: USER");
    let re_time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z").unwrap();
    let re_hash = regex::Regex::new(r"audit [0-9a-f]{64} #\d+").unwrap();
    let re_ms = regex::Regex::new(r"\b\d+ms\b").unwrap();
    let re_day = regex::Regex::new(r"/\d{4}-\d\d-\d\d-").unwrap();
    out = re_day.replace_all(&out, "/DATE-").into_owned();
    out = re_time.replace_all(&out, "TIME").into_owned();
    out = re_hash.replace_all(&out, "audit HASH #N").into_owned();
    re_ms.replace_all(&out, "Nms").into_owned()
}

#[test]
fn a_session_linked_to_an_incident_is_in_its_timeline_even_after_it_closed() {
    let env = env();
    env.json(&["incident", "open", "late", "--severity", "sev2"]);
    env.run(&[
        "incident", "close", "late", "--cause", "x", "--force", "--reason", "test",
    ]);
    let id = session_for(&env, "diagnostic", "afterwards", "late").1;
    assert_eq!(session_exec(&env, &id, &["uptime"]), Some(0));
    let (_, timeline) = env.json(&["incident", "timeline", "late"]);
    let kinds: Vec<&str> = timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"session.started") && kinds.contains(&"session.command"),
        "{kinds:?}"
    );
}

/// Writers of one note at once, each its own process: incident lines, updates and the
/// end-of-session records of sessions linked to the incident. Every one of them is in the note
/// afterwards, whole and on its own line; the note that was opened is the one that stays.
#[test]
fn concurrent_writers_of_a_note_lose_nothing() {
    let env = env();
    let opened = env.run(&[
        "incident",
        "open",
        "api-down",
        "--severity",
        "sev1",
        "--title",
        "API down",
    ]);
    assert_eq!(opened.code, 0, "{}", opened.stderr);
    let sessions: Vec<String> = (0..4)
        .map(|n| session_for(&env, "diagnostic", &format!("look {n}"), "api-down").1)
        .collect();
    let mut writers = Vec::new();
    for n in 0..16 {
        let mut c = env.cmd();
        c.args(["incident", "log", "api-down", &format!("line {n} of the timeline")]);
        writers.push(c.spawn().unwrap());
    }
    for id in &sessions {
        let mut c = env.cmd();
        c.args(["session", "end", "--session", id]);
        writers.push(c.spawn().unwrap());
    }
    for mut w in writers {
        assert!(w.wait().unwrap().success());
    }
    let notes = env.names("notes");
    assert_eq!(notes.len(), 1, "one note, no temporary file left: {notes:?}");
    let note = std::fs::read_to_string(env.path("notes").join(&notes[0])).unwrap();
    assert!(note.starts_with("# API down\n"), "{note}");
    for n in 0..16 {
        let line = format!(" line {n} of the timeline\n");
        assert_eq!(note.matches(&line).count(), 1, "line {n} lost or doubled:\n{note}");
    }
    for id in &sessions {
        assert!(
            note.contains(&format!("## Session {id} (")),
            "session {id}'s record lost:\n{note}"
        );
    }
}

/// Eight processes open one slug at once, each with a title of its own: one incident, one
/// note, and the note's title is the incident's. A note that is gone is made again from the
/// template by the next line written to it.
#[test]
fn one_slug_opened_at_once_is_one_incident_with_its_own_note() {
    let env = env();
    let openers: Vec<_> = (0..8)
        .map(|n| {
            let mut c = env.cmd();
            c.args(["incident", "open", "db-slow", "--severity", "sev2", "--title"])
                .arg(format!("opened by {n}"));
            c.spawn().unwrap()
        })
        .collect();
    for mut o in openers {
        assert!(o.wait().unwrap().success());
    }
    assert_eq!(env.count("SELECT count(*) FROM incidents"), 1);
    let (_, shown) = env.json(&["incident", "show", "db-slow"]);
    let title = shown["incident"]["title"]
        .as_str()
        .or(shown["title"].as_str())
        .unwrap_or_else(|| panic!("{shown}"))
        .to_string();
    let notes = env.names("notes");
    assert_eq!(notes.len(), 1, "{notes:?}");
    let path = env.path("notes").join(&notes[0]);
    let note = std::fs::read_to_string(&path).unwrap();
    assert!(
        note.starts_with(&format!("# {title}\n")),
        "the note is not the incident's ({title}):\n{note}"
    );

    std::fs::remove_file(&path).unwrap();
    assert_eq!(env.run(&["incident", "log", "db-slow", "replica lag 40s"]).code, 0);
    let again = std::fs::read_to_string(&path).unwrap();
    assert!(again.starts_with(&format!("# {title}\n")), "{again}");
    assert!(again.trim_end().ends_with("replica lag 40s"), "{again}");
}
