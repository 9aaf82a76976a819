//! Baseline drift against the real host: files, real listeners on 127.0.0.1, users and groups
//! from /etc, dpkg, a real git checkout, kernel parameters, mounts; the closed world of ports;
//! a drift check; and what a running deploy writes is not judged meanwhile.

mod common;

use common::*;

fn drift(env: &Env) -> (i32, Vec<serde_json::Value>) {
    let (code, v) = env.json(&["drift"]);
    (code, v["items"].as_array().cloned().unwrap_or_default())
}

fn ids(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            format!(
                "{} {}:{}:{}",
                i["change"].as_str().unwrap(),
                i["kind"].as_str().unwrap(),
                i["key"].as_str().unwrap(),
                i["attribute"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn files_users_packages_git_and_kernel_parameters_drift_attribute_by_attribute() {
    let env = Env::new("version: 1\n");
    let secret = env.write("app.env", "API_TOKEN=s3cr3t-value\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let sha = String::from_utf8(
        std::process::Command::new("sha256sum")
            .arg(&secret)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let sha = sha.split_whitespace().next().unwrap().to_string();
    let repo = env.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q"]);
    env.write("repo/a.txt", "a\n");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "a"]);
    git(&repo, &["tag", "v1"]);
    env.edit_config(
        "version: 1\n",
        &format!(
            r#"version: 1
baseline:
  file:
    app.env: {{ mode: "0640", owner: root, sha256: "{sha}", contains: [API_TOKEN=] }}
    gone.txt: {{ exists: false }}
  user:
    root: {{ uid: "0", groups: [root] }}
  group:
    root: {{ gid: "0" }}
  package:
    dpkg: {{ installed: "true", version: ">= 1.0" }}
  git:
    repo: {{ ref: v1, clean: "true" }}
  kernel_param:
    kernel.ostype: {{ value: Linux }}
  command:
    "echo hello": {{ exit: "0", stdout: /hel+o/ }}
  mount:
    /proc: {{ fstype: proc }}
"#
        ),
    );
    let (code, items) = drift(&env);
    assert_eq!((code, items.len()), (0, 0), "{items:#?}");

    // Now the host changes under it.
    std::fs::write(&secret, "API_TOKEN=another-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    env.write("gone.txt", "back\n");
    env.write("repo/a.txt", "changed\n");
    let (code, items) = drift(&env);
    assert_eq!(code, 1);
    let got = ids(&items);
    let app = env.path("app.env").display().to_string();
    for want in [
        format!("changed file:{app}:mode"),
        format!("changed file:{app}:sha256"),
        format!("changed git:{}:clean", env.path("repo").display()),
    ] {
        assert!(got.contains(&want), "{want} in {got:#?}");
    }
    assert!(got.iter().any(|g| g.contains("gone.txt:exists")), "{got:#?}");
    let out = env.run(&["drift"]);
    assert!(
        !out.stdout.contains("another-secret") && !out.stdout.contains("s3cr3t"),
        "a file's content is never shown"
    );
    assert!(
        out.stdout.contains("0640") && out.stdout.contains("0644"),
        "{}",
        out.stdout
    );
}

#[test]
fn ports_are_declared_listening_and_a_closed_world_names_every_other() {
    let declared = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = declared.local_addr().unwrap().port();
    let env = Env::new(&format!(
        "version: 1\nbaseline:\n  port:\n    \"tcp:127.0.0.1:{port}\": {{ listening: \"true\", process: /./ }}\n  ports: {{ closed: true }}\n"
    ));
    let before = drift(&env).1;
    assert!(
        !ids(&before).iter().any(|i| i.contains(&format!(":{port}:"))),
        "{before:#?}"
    );
    // A new listener nobody declared is drift.
    let extra = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra_port = extra.local_addr().unwrap().port();
    let (code, items) = drift(&env);
    assert_eq!(code, 1);
    assert!(
        ids(&items).contains(&format!("added port:tcp:127.0.0.1:{extra_port}:listening")),
        "{items:#?}"
    );
    // The declared one closing is drift too.
    drop(declared);
    let items = drift(&env).1;
    assert!(
        ids(&items).contains(&format!("changed port:tcp:127.0.0.1:{port}:listening")),
        "{items:#?}"
    );
    drop(extra);
}

#[test]
fn a_drift_check_fails_while_anything_drifted_and_opens_an_alert() {
    let env = Env::new(
        "version: 1\nchecks:\n  baseline: { drift: {} }\nbaseline:\n  file:\n    marker: { exists: \"true\" }\n",
    );
    let (code, o) = env.json(&["check"]);
    assert_eq!(code, 1, "{o:#}");
    let detail = o[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 difference(s)") && detail.contains("marker"),
        "{detail}"
    );
    env.write("marker", "");
    let (code, o) = env.json(&["check"]);
    assert_eq!(code, 0, "{o:#}");
}

#[test]
fn what_a_running_deploy_writes_is_not_judged_until_it_ends() {
    let env = Env::new(
        "version: 1\ndeploy:\n  site: { repo: src, path: app }\nbaseline:\n  file:\n    app/current: { exists: \"true\" }\n",
    );
    std::fs::create_dir_all(env.path("src")).unwrap();
    assert_eq!(drift(&env).0, 1, "nothing deployed: drift");
    let lock = runbook::util::lock::try_lock(&env.state_anchor(), "deploy-site")
        .unwrap()
        .expect("free");
    assert_eq!(drift(&env).0, 0, "the deploy is writing app/: not judged");
    drop(lock);
    assert_eq!(drift(&env).0, 1);
}

#[test]
fn a_captured_baseline_has_no_drift_on_the_host_it_was_captured_on() {
    let env = Env::new("version: 1\n");
    env.write("conf.txt", "x\n");
    let out = env.run(&[
        "baseline",
        "capture",
        "--only",
        "user,group,file",
        "--file",
        &env.path("conf.txt").display().to_string(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("root") && out.stdout.contains("sha256"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("x\\n"), "never a file's content");
    env.edit_config("version: 1\n", &format!("version: 1\n{}", out.stdout));
    let (code, items) = drift(&env);
    assert_eq!(code, 0, "{items:#?}");
}

#[test]
fn baseline_mistakes_are_named_with_their_line() {
    for (yaml, needle) in [
        ("baseline:\n  fiel: {}\n", "unknown key `fiel`"),
        ("baseline:\n  file:\n    /x: { colour: red }\n", "unknown key `colour`"),
        (
            "baseline:\n  file:\n    /x: { owner: \"/(/\" }\n",
            "invalid regular expression",
        ),
        ("baseline:\n  port:\n    \"443\": { listening: \"true\" }\n", "tcp:PORT"),
    ] {
        let env = Env::new(&format!("version: 1\n{yaml}"));
        let out = env.run(&["config", "check"]);
        assert_eq!(out.code, 2, "{yaml}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{yaml}: {}", out.stderr);
    }
}

#[test]
fn an_acknowledged_difference_is_reported_without_failing_until_it_expires_and_history_keeps_it() {
    let env = Env::new(
        "version: 1\nbaseline:\n  file:\n    marker: { exists: \"true\" }\ngates:\n  release: { conditions: [drift_clean] }\n",
    );
    let (code, v) = env.json(&["drift"]);
    assert_eq!(code, 1);
    let item = v["items"][0]["item"].as_str().unwrap().to_string();
    assert_eq!(env.json(&["gate", "run", "release"]).0, 1, "drift fails drift_clean");
    let (code, _) = env.json(&[
        "drift",
        "ack",
        &item,
        "--reason",
        "being rebuilt, INC-7",
        "--expires",
        "2s",
    ]);
    assert_eq!(code, 0);
    let (code, v) = env.json(&["drift"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["items"][0]["acked"]["reason"], "being rebuilt, INC-7");
    assert_eq!(
        env.json(&["gate", "run", "release"]).0,
        0,
        "acknowledged drift passes drift_clean"
    );
    assert!(
        wait_for(std::time::Duration::from_secs(10), || env.json(&["drift"]).0 == 1),
        "the acknowledgement expires"
    );
    // It came, and once the file is there it went.
    env.write("marker", "");
    assert_eq!(env.json(&["drift"]).0, 0);
    let (_, history) = env.json(&["drift", "history"]);
    assert_eq!(history[0]["item"], item.as_str());
    assert!(history[0]["gone_at"].is_string(), "{history:#}");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'drift.changed'"),
        2
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'drift.acked'"),
        1
    );
}

/// Services through a small fake `systemctl` on PATH (this machine kind runs no systemd): it
/// answers is-active, is-enabled and list-unit-files as systemd does.
#[test]
fn services_drift_when_stopped_and_a_closed_world_names_other_enabled_units() {
    let env = Env::new(
        "version: 1\nbaseline:\n  service:\n    app.service: { active: \"true\", enabled: \"true\" }\n  services: { enabled_closed: true }\n",
    );
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nunit=\"$3\"\ncase \"$1\" in\n  is-active) if [ -f {0}/running ] && [ \"$unit\" = app.service ]; then echo active; else echo inactive; exit 3; fi ;;\n  is-enabled) echo enabled ;;\n  list-unit-files) printf 'app.service enabled enabled\\nextra.service enabled enabled\\n' ;;\nesac\n",
            env.dir.path().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let run = || {
        let out = Out::from(env.cmd().args(["drift", "--json"]).env("PATH", &path).output().unwrap());
        (out.code, ids(out.json()["items"].as_array().unwrap()))
    };
    let (code, got) = run();
    assert_eq!(code, 1);
    assert!(
        got.contains(&"changed service:app.service:active".to_string()),
        "{got:?}"
    );
    assert!(
        got.contains(&"added service:extra.service:enabled".to_string()),
        "{got:?}"
    );
    env.write("running", "");
    let (_, got) = run();
    assert!(!got.iter().any(|g| g.contains("app.service")), "{got:?}");
    assert!(
        got.contains(&"added service:extra.service:enabled".to_string()),
        "{got:?}"
    );
}

#[test]
fn a_goss_file_is_imported_as_a_baseline_that_judges_the_same_host() {
    let env = Env::new("version: 1\n");
    env.write("conf.txt", "hello\n");
    let goss = env.write(
        "goss.yaml",
        &format!(
            "file:\n  {}:\n    exists: true\n    mode: \"0644\"\n    filetype: file\n    contains: [hello]\n    md5: abc\nuser:\n  root:\n    exists: true\n    uid: 0\n    groups: [root]\nkernel-param:\n  kernel.ostype:\n    value: Linux\ncommand:\n  say-hi:\n    exec: echo hi\n    exit-status: 0\n    stdout: [hi]\ndns:\n  localhost: {{ resolvable: true }}\n",
            env.path("conf.txt").display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(env.path("conf.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["baseline", "import", &goss.display().to_string()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("md5: no equivalent") && out.stderr.contains("dns: not a kind"),
        "{}",
        out.stderr
    );
    env.edit_config("version: 1\n", &format!("version: 1\n{}", out.stdout));
    let (code, items) = drift(&env);
    assert_eq!(code, 0, "{}\n{items:#?}", out.stdout);
    std::fs::set_permissions(env.path("conf.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(drift(&env).0, 1);
}

#[test]
fn an_http_resource_drifts_on_its_status_and_body_never_showing_the_body() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = Env::new(&format!(
        "version: 1\nbaseline:\n  http:\n    \"http://127.0.0.1:{port}/\": {{ status: \"200\", body: [version-2] }}\n"
    ));
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 21\r\nConnection: close\r\n\r\nversion-1 secret-body");
        }
    });
    let (code, items) = drift(&env);
    assert_eq!(code, 1, "{items:#?}");
    assert_eq!(ids(&items), [format!("changed http:http://127.0.0.1:{port}/:body")]);
    let out = env.run(&["drift"]);
    assert!(!out.stdout.contains("secret-body"), "{}", out.stdout);
}
