//! Deploys through the real binary: real git repositories, a real HTTP service restarted by
//! `restart`, gates probing it, the atomic switch of `current`, and rollback when the gate
//! after the switch fails.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// A repository with tags v1, v2 (each serving "vN ok") and v3 (serving "v3 broken").
fn source(env: &Env) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "-q", "-b", "main"]);
    for (tag, body) in [("v1", "v1 ok"), ("v2", "v2 ok"), ("v3", "v3 broken")] {
        std::fs::write(src.join("index.html"), format!("{body}\n")).unwrap();
        git(&src, &["add", "."]);
        git(&src, &["commit", "-q", "-m", tag]);
        git(&src, &["tag", tag]);
    }
}

struct Service(std::path::PathBuf);

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            signal(pid.trim().parse().unwrap_or(0), "KILL");
        }
    }
}

fn app(env: &Env, port: u16) -> Service {
    source(env);
    std::fs::create_dir_all(env.path("app/shared")).unwrap();
    env.write("app/shared/.env", "SECRET_KEY=x\n");
    env.edit_config(
        "version: 1\n",
        &format!(
            r#"version: 1
checks:
  web: {{ http: {{ url: "http://127.0.0.1:{port}/index.html", expect: {{ body_contains: " ok" }} }}, timeout: 2s }}
gates:
  after: {{ checks: [ {{ check: web, count: 5, interval: 300ms, consecutive_error_limit: 4, failure_limit: 0 }} ] }}
deploy:
  site:
    repo: src
    path: app
    refs: tags
    shared: [.env]
    build: [ {{ sh: "test -L .env && echo built > BUILT" }} ]
    restart:
      - sh: "kill $(cat {{dir}}/run.pid 2>/dev/null) 2>/dev/null; sleep 0.2; python3 -m http.server {port} --bind 127.0.0.1 --directory . >/dev/null 2>&1 & echo $! > {{dir}}/run.pid"
    gates: {{ after: after }}
"#
        )
        .replace("{dir}", &env.dir.path().display().to_string()),
    );
    Service(env.path("run.pid"))
}

fn body(port: u16) -> String {
    let mut last = String::new();
    wait_for(Duration::from_secs(10), || {
        last = common::http::get(port, "/index.html", None).body;
        !last.is_empty()
    });
    last
}

fn live(env: &Env) -> String {
    std::fs::read_link(env.path("app/current"))
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn a_plan_changes_nothing_and_a_deploy_switches_restarts_and_verifies() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    let out = env.run(&["deploy", "site", "v1"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("switch: current -> releases/"), "{}", out.stdout);
    assert!(!env.path("app/releases").exists() && !env.path("app/current").exists());

    let (code, r) = env.json(&["deploy", "site", "v1", "--apply"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["deploy"]["status"], "good");
    assert!(live(&env).starts_with("releases/"), "{}", live(&env));
    assert_eq!(body(port), "v1 ok\n");
    let release = env.path("app/current");
    assert!(
        std::fs::symlink_metadata(release.join(".env"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(release.join("BUILT").exists());
    assert_eq!(env.json(&["deploy", "verify", "site", "v1"]).0, 0);
    assert_eq!(env.json(&["deploy", "verify", "site", "v2"]).0, 1);

    let (code, r) = env.json(&["deploy", "site", "v2", "--apply"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(body(port), "v2 ok\n");
    let (_, s) = env.json(&["deploy", "status", "site"]);
    assert_eq!(s["sha"].as_str().unwrap(), git(&env.path("src"), &["rev-parse", "v2"]));
    // A file changed in the live tree is seen: not clean.
    std::fs::write(env.path("app/current/index.html"), "hacked\n").unwrap();
    let (code, v) = env.json(&["deploy", "verify", "site", "v2"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["live"]["clean"], false);
    git(&env.path("app/current"), &["checkout", "--", "index.html"]);
    let steps = env.count("SELECT count(*) FROM audit_events WHERE kind = 'deploy.step'");
    assert!(steps >= 6, "{steps}");

    // The API, the metrics and the status page say what is live.
    let secret = create_token(&env, "reader", "read");
    let (_server, api) = serve(&env);
    let d = common::http::get(api, "/v1/deploys", Some(&secret));
    assert_eq!(d.status, 200, "{}", d.body);
    let live_release = live(&env).trim_start_matches("releases/").to_string();
    assert_eq!(d.json()["items"][0]["live"], live_release.as_str());
    assert_eq!(d.json()["items"][0]["deploys"][0]["ref"], "v2");
    let metrics = common::http::get(api, "/metrics", Some(&secret)).body;
    assert!(
        metrics.contains(&format!(
            "runbook_deploy_release_info{{app=\"site\",release=\"{live_release}\",sha=\"{}\"}} 1",
            s["sha"].as_str().unwrap()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("runbook_deploy_last_success_timestamp_seconds{app=\"site\"}"),
        "{metrics}"
    );
    promtool_accepts(&metrics);
    let page = common::http::get(api, "/", Some(&secret)).body;
    assert!(
        page.contains("data-app=\"site\"") && page.contains(&live_release),
        "{page}"
    );
}

#[test]
fn a_release_that_fails_the_gate_after_the_switch_is_rolled_back_and_marked_bad() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    for tag in ["v1", "v2"] {
        let (code, r) = env.json(&["deploy", "site", tag, "--apply"]);
        assert_eq!(code, 0, "{r:#}");
    }
    let good = live(&env);
    let (code, r) = env.json(&["deploy", "site", "v3", "--apply"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(live(&env), good, "the previous release is live again");
    assert_eq!(body(port), "v2 ok\n", "and the service answers from it");
    let (_, history) = env.json(&["deploy", "history", "site"]);
    assert_eq!(history[0]["ref"], "v3");
    assert_eq!(history[0]["status"], "bad");
    // Rollback goes to the newest good release that is not live, never the bad one.
    let (code, plan) = env.json(&["deploy", "rollback", "site"]);
    assert_eq!(code, 0, "{plan:#}");
    assert!(
        plan["to"]
            .as_str()
            .unwrap()
            .starts_with(&git(&env.path("src"), &["rev-parse", "v1"])[..12]),
        "{plan:#}"
    );
    let (code, done) = env.json(&["deploy", "rollback", "site", "--apply"]);
    assert_eq!(code, 0, "{done:#}");
    assert_eq!(body(port), "v1 ok\n");
}

#[test]
fn refused_refs_and_layouts_touch_nothing_live() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    for (reference, needle) in [
        ("main", "is a branch"),
        ("v9", "no such tag"),
        ("--upload-pack=touch x", "not a ref name"),
    ] {
        let out = env.run(&["deploy", "site", "--apply", "--", reference]);
        assert_eq!(out.code, 1, "{reference}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{reference}: {}", out.stderr);
    }
    assert!(!env.path("x").exists());
    assert!(!env.path("app/current").exists());
    // A legacy layout: `current` is a real directory.
    std::fs::create_dir_all(env.path("app/current")).unwrap();
    env.write("app/current/keep", "old\n");
    let out = env.run(&["deploy", "site", "v1", "--apply"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("real directory"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(env.path("app/current/keep")).unwrap(), "old\n");
    assert!(Path::new(&env.path("app/current")).is_dir());
    // A build that fails leaves no release behind and nothing live changed.
    std::fs::remove_dir_all(env.path("app/current")).unwrap();
    env.edit_config("test -L .env && echo built > BUILT", "exit 3");
    let out = env.run(&["deploy", "site", "v1", "--apply"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!env.path("app/current").exists());
    assert!(env.names("app/releases").is_empty(), "{:?}", env.names("app/releases"));
}

/// kill -9 of runbook at ten points of a deploy, before and after the switch (each a command
/// the deploy runs kills its parent, runbook, when told to): `current` is never missing or
/// half-switched, always a complete release; `--resume` finishes with a good release live
/// and the service answering from it.
#[test]
fn a_deploy_killed_at_any_step_resumes_to_a_good_release() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    let dir = env.dir.path().display().to_string();
    // Kills runbook (the shell's parent) when `kill-at` names this point, once.
    let die = |point: &str| {
        format!(
            "[ \\\"$(cat {dir}/kill-at 2>/dev/null)\\\" = {point} ] && {{ rm -f {dir}/kill-at; kill -9 $PPID; sleep 5; }}; true"
        )
    };
    let yaml = format!(
        r#"version: 1
checks:
  web: {{ http: {{ url: "http://127.0.0.1:{port}/index.html", expect: {{ body_contains: " ok" }} }}, timeout: 2s }}
  before-a: {{ command: {{ sh: "{before_a}" }} }}
  before-b: {{ command: {{ sh: "{before_b}" }} }}
  after-a: {{ command: {{ sh: "{after_a}" }} }}
  after-b: {{ command: {{ sh: "{after_b}" }} }}
backups:
  data: {{ sources: [ {{ command: [sh, -c, "{backup}; echo data"], name: data }} ], dest: archives }}
gates:
  before: {{ checks: [before-a, before-b] }}
  after: {{ checks: [after-a, after-b, {{ check: web, count: 5, interval: 300ms, consecutive_error_limit: 4 }} ] }}
deploy:
  site:
    repo: src
    path: app
    shared: [.env]
    build: [ {{ sh: "{build1}; echo one > B1" }}, {{ sh: "{build2}; echo two > B2" }} ]
    migrate: {{ sh: "{migrate}; echo migrated >> {dir}/migrations" }}
    backup: data
    restart:
      - sh: "{restart1}"
      - sh: "{restart2}; kill $(cat {dir}/run.pid 2>/dev/null) 2>/dev/null; sleep 0.2; python3 -m http.server {port} --bind 127.0.0.1 --directory . >/dev/null 2>&1 & echo $! > {dir}/run.pid"
    gates: {{ before: before, after: after }}
"#,
        before_a = die("before-a"),
        before_b = die("before-b"),
        after_a = die("after-a"),
        after_b = die("after-b"),
        backup = die("backup"),
        build1 = die("build1"),
        build2 = die("build2"),
        migrate = die("migrate"),
        restart1 = die("restart1"),
        restart2 = die("restart2"),
    );
    std::fs::write(
        &env.config,
        format!("state: {{ url: \"sqlite://state/runbook.db\" }}\n{yaml}"),
    )
    .unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, r) = env.json(&["deploy", "site", "v1", "--apply"]);
    assert_eq!(code, 0, "{r:#}");
    let points = [
        "build1", "build2", "before-a", "before-b", "backup", "migrate", "restart1", "restart2", "after-a", "after-b",
    ];
    let mut live_tag = "v1";
    for point in points {
        let next = if live_tag == "v1" { "v2" } else { "v1" };
        env.write("kill-at", point);
        let out = env.run(&["deploy", "site", next, "--apply"]);
        assert_eq!(
            out.code, -1,
            "{point}: runbook was to be killed: {}{}",
            out.stdout, out.stderr
        );
        assert!(!env.path("kill-at").exists(), "{point} was reached");
        // Never missing, never half-switched: a complete release.
        let current = env.path("app/current");
        assert!(
            std::fs::symlink_metadata(&current).unwrap().file_type().is_symlink(),
            "{point}"
        );
        assert!(
            current.join("index.html").is_file(),
            "{point}: current is not a complete release"
        );
        let out = env.run(&["deploy", "site", "--resume"]);
        assert_eq!(out.code, 0, "{point}: {}{}", out.stdout, out.stderr);
        let (_, history) = env.json(&["deploy", "history", "site"]);
        assert_eq!(history[0]["status"], "good", "{point}: {history:#}");
        assert_eq!(history[0]["ref"], next, "{point}: {history:#}");
        assert_eq!(body(port), format!("{next} ok\n"), "{point}");
        assert_eq!(env.json(&["deploy", "verify", "site", next]).0, 0, "{point}");
        live_tag = next;
    }
}

#[test]
fn prune_keeps_the_live_and_the_previous_good_release_and_removes_bad_ones_first() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    env.edit_config(
        "    gates: { after: after }\n",
        "    gates: { after: after }\n    keep: 1\n",
    );
    let mut releases = Vec::new();
    for tag in ["v1", "v2", "v3", "v1"] {
        env.run(&["deploy", "site", tag, "--apply"]);
        let (_, h) = env.json(&["deploy", "history", "site"]);
        releases.push((
            tag,
            h[0]["release"].as_str().unwrap().to_string(),
            h[0]["status"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(releases[2].2, "bad", "{releases:?}");
    let (code, plan) = env.json(&["deploy", "prune", "site"]);
    assert_eq!(code, 0, "{plan:#}");
    let removed: Vec<&str> = plan["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        [releases[2].1.as_str(), releases[0].1.as_str()],
        "the bad one first: {plan:#}"
    );
    assert_eq!(env.names("app/releases").len(), 4, "a dry run removes nothing");
    let (code, _) = env.json(&["deploy", "prune", "site", "--apply"]);
    assert_eq!(code, 0);
    let mut left = env.names("app/releases");
    left.sort();
    let mut want = vec![releases[1].1.clone(), releases[3].1.clone()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(body(port), "v1 ok\n");
    // The previous good release is still there to roll back to.
    let (code, _) = env.json(&["deploy", "rollback", "site", "--apply"]);
    assert_eq!(code, 0);
    assert_eq!(body(port), "v2 ok\n");
}

#[test]
fn a_live_release_changed_by_hand_is_not_deployed_over_unless_allowed() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    assert_eq!(env.json(&["deploy", "site", "v1", "--apply"]).0, 0);
    std::fs::write(env.path("app/current/index.html"), "hot fix ok\n").unwrap();
    let before = live(&env);
    let out = env.run(&["deploy", "site", "v2", "--apply"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("changed by hand") && out.stderr.contains("index.html"),
        "{}",
        out.stderr
    );
    assert_eq!(live(&env), before);
    let out = env.run(&["deploy", "site", "v2", "--apply", "--allow-dirty"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(body(port), "v2 ok\n");
    // The hand-made change stays on disk in the old release.
    assert_eq!(
        std::fs::read_to_string(env.path("app").join(&before).join("index.html")).unwrap(),
        "hot fix ok\n"
    );
}

#[test]
fn with_verify_signature_only_a_tag_signed_by_an_allowed_key_deploys() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    let key = env.path("signer");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status();
    if !made.map(|s| s.success()).unwrap_or(false) {
        cannot_run("ssh-keygen is needed to sign a tag");
        return;
    }
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    env.write("allowed_signers", &format!("t@example.org {public}"));
    git(
        &env.path("src"),
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={}", key.display()),
            "tag",
            "-s",
            "v2-signed",
            "-m",
            "v2",
            "v2",
        ],
    );
    env.edit_config(
        "    refs: tags\n",
        "    refs: tags\n    verify_signature: { allowed_signers: allowed_signers }\n",
    );
    let out = env.run(&["deploy", "site", "v1", "--apply"]);
    assert_eq!(out.code, 1, "an unsigned tag: {}", out.stderr);
    assert!(out.stderr.contains("signature does not verify"), "{}", out.stderr);
    assert!(!env.path("app/current").exists());
    let out = env.run(&["deploy", "site", "v2-signed", "--apply"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(body(port), "v2 ok\n");
}

#[test]
fn a_full_disk_during_the_build_fails_the_deploy_and_leaves_the_live_release() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    env.edit_config("    path: app\n", "    path: mnt/app\n");
    env.edit_config(
        "test -L .env && echo built > BUILT",
        &format!(
            "if [ -f {}/fill ]; then dd if=/dev/zero of=big bs=1M count=64 2>&1 || exit 1; fi; : > BUILT",
            env.dir.path().display()
        ),
    );
    std::fs::create_dir_all(env.path("mnt")).unwrap();
    let Some(out) = in_tmpfs(
        &env,
        "24m",
        &format!(
            "mkdir -p \"$MNT/app/shared\"; echo SECRET_KEY=x > \"$MNT/app/shared/.env\"\n\
             R deploy site v1 --apply >/dev/null 2>&1; echo first=$?\n\
             touch {dir}/fill\n\
             R deploy site v2 --apply; echo second=$?\n\
             echo live=$(readlink \"$MNT/app/current\")\n\
             echo releases=$(ls \"$MNT/app/releases\" | wc -l)\n",
            dir = env.dir.path().display()
        ),
    ) else {
        cannot_run("mounting a small tmpfs needs root and mount namespaces");
        return;
    };
    assert!(out.contains("first=0"), "{out}");
    assert!(out.contains("second=1"), "{out}");
    assert!(out.contains("No space left on device"), "{out}");
    let first = git(&env.path("src"), &["rev-parse", "v1"]);
    assert!(out.contains(&format!("live=releases/{}", &first[..12])), "{out}");
    assert!(out.contains("releases=1"), "the failed release is gone: {out}");
    assert_eq!(body(port), "v1 ok\n");
}

#[test]
fn a_second_deploy_of_the_same_app_is_refused_naming_the_one_running() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    env.edit_config(
        "test -L .env && echo built > BUILT",
        &format!(
            "touch {0}/building; while [ ! -f {0}/go ]; do sleep 0.05; done",
            env.dir.path().display()
        ),
    );
    let mut first = env.spawn(&["deploy", "site", "v1", "--apply"]);
    assert!(wait_for(Duration::from_secs(20), || env.path("building").exists()));
    let out = env.run(&["deploy", "site", "v2", "--apply"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("is running (pid") && out.stderr.contains("one at a time"),
        "{}",
        out.stderr
    );
    env.write("go", "");
    assert!(first.wait().unwrap().success());
    assert_eq!(body(port), "v1 ok\n");
}

#[test]
fn a_release_name_already_on_disk_is_never_reused() {
    let env = Env::new("version: 1\n");
    let port = common::http::free_port();
    let _service = app(&env, port);
    let sha = git(&env.path("src"), &["rev-parse", "v1"]);
    // The names the next seconds would give.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for t in now..now + 30 {
        let stamp = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y%m%dT%H%M%SZ"])
            .output()
            .unwrap();
        let stamp = String::from_utf8_lossy(&stamp.stdout).trim().to_string();
        env.write(&format!("app/releases/{}-{stamp}/keep", &sha[..12]), "someone's\n");
    }
    let out = env.run(&["deploy", "site", "v1", "--apply"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("a release is never reused"), "{}", out.stderr);
    assert!(!env.path("app/current").exists());
    assert_eq!(env.names("app/releases").len(), 30);
}
