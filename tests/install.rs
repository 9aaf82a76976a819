//! `runbook install --root DIR` and `runbook doctor`: a host tree made ready, idempotent,
//! never over a file someone changed; the doctor names each problem with its fix.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every file under `dir` with its mode and bytes.
fn snapshot(dir: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.push((p.display().to_string(), mode(&p), Vec::new()));
                stack.push(p);
            } else {
                out.push((p.display().to_string(), mode(&p), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn install(env: &Env, root: &Path, extra: &[&str]) -> Out {
    let mut args = vec!["install", "--root", root.to_str().unwrap()];
    args.extend(extra);
    env.run(&args)
}

#[test]
fn install_prints_its_plan_then_applies_it_once_and_leaves_a_changed_unit_alone() {
    let env = Env::new("version: 1\n");
    let root = tempfile::tempdir().unwrap();

    // Without --apply: every file with its content, mode and owner; nothing written.
    let plan = install(&env, root.path(), &["--serve"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    for needle in [
        "/etc/runbook/runbook.env",
        "0640 root:runbook",
        "Type=notify",
        "WatchdogSec=",
        "ExecStartPre=/usr/local/bin/runbook config check",
        "Restart=on-failure",
        "StartLimitBurst=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/backups/runbook /var/lib/runbook",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=",
        "runbook-serve.service",
        "dry run",
    ] {
        assert!(plan.stdout.contains(needle), "{needle} missing from:\n{}", plan.stdout);
    }
    assert!(snapshot(root.path()).is_empty(), "a dry run wrote files");

    // Applied: the tree as promised.
    let applied = install(&env, root.path(), &["--serve", "--apply"]);
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    let at = |p: &str| root.path().join(p);
    assert_eq!(mode(&at("etc/runbook")), 0o750);
    assert_eq!(mode(&at("var/lib/runbook")), 0o750);
    assert_eq!(mode(&at("var/backups/runbook")), 0o750);
    assert_eq!(mode(&at("etc/runbook/runbook.env")), 0o640);
    assert_eq!(mode(&at("etc/runbook/runbook.yaml")), 0o640);
    assert_eq!(mode(&at("usr/local/bin/runbook")), 0o755);
    let unit = std::fs::read_to_string(at("etc/systemd/system/runbook.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/runbook daemon"), "{unit}");
    assert!(
        !unit.contains("EnvironmentFile"),
        "secrets go through secrets.env_files: {unit}"
    );
    assert!(at("etc/systemd/system/runbook-serve.service").exists());
    // The copied binary runs, and the starter configuration it was given is valid.
    let version = std::process::Command::new(at("usr/local/bin/runbook"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
    let starter = std::fs::read_to_string(at("etc/runbook/runbook.yaml")).unwrap();
    let scratch = Env::new(&starter.replace("/var/lib/runbook", "{dir}/state").replace(
        "/etc/runbook/runbook.env",
        &at("etc/runbook/runbook.env").display().to_string(),
    ));
    let check = scratch.run(&["config", "check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);

    // Again: nothing to change, said so, and not a byte or mode moved.
    let before = snapshot(root.path());
    let again = install(&env, root.path(), &["--serve", "--apply", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let v = again.json();
    assert_eq!(v["changes"], 0, "{v}");
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["action"] == "unchanged" || i["action"] == "skipped"),
        "{v}"
    );
    assert!(
        install(&env, root.path(), &["--serve", "--apply"])
            .stdout
            .contains("nothing to change")
    );
    assert_eq!(snapshot(root.path()), before);

    // A unit edited by hand is left alone (exit 1), the edit kept; --force overwrites it.
    let unit_path = at("etc/systemd/system/runbook.service");
    let edited = unit.replace("RestartSec=5s", "RestartSec=30s");
    std::fs::write(&unit_path, &edited).unwrap();
    // A secret file opened to everyone is narrowed, its content kept.
    std::fs::write(at("etc/runbook/runbook.env"), "TOKEN=abc\n").unwrap();
    std::fs::set_permissions(at("etc/runbook/runbook.env"), std::fs::Permissions::from_mode(0o666)).unwrap();
    let refused = install(&env, root.path(), &["--serve", "--apply"]);
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    assert!(refused.stdout.contains("REFUSED"), "{}", refused.stdout);
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), edited);
    assert_eq!(mode(&at("etc/runbook/runbook.env")), 0o640);
    assert_eq!(
        std::fs::read_to_string(at("etc/runbook/runbook.env")).unwrap(),
        "TOKEN=abc\n"
    );
    let forced = install(&env, root.path(), &["--serve", "--apply", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stdout);
    assert_eq!(std::fs::read_to_string(&unit_path).unwrap(), unit);
    // No temporary file is left behind.
    assert!(
        snapshot(root.path())
            .iter()
            .all(|(p, _, _)| !p.ends_with(".runbook-new")),
        "a temporary file was left"
    );
}

#[test]
fn install_units_pass_systemd_analyze_verify() {
    let Ok(out) = std::process::Command::new("systemd-analyze").arg("--version").output() else {
        return cannot_run("systemd-analyze is not installed");
    };
    assert!(out.status.success());
    let env = Env::new("version: 1\n");
    let root = tempfile::tempdir().unwrap();
    let v = install(&env, root.path(), &["--serve", "--json"]).json();
    assert_eq!(v["verify"], "ok", "{v}");
}

#[test]
fn doctor_names_each_problem_with_its_fix_and_changes_nothing() {
    let env =
        Env::new("version: 1\nsecrets: { env_files: [ \"{dir}/secrets.env\" ] }\napi: { listen: \"0.0.0.0:0\" }\n");
    env.write("secrets.env", "TOKEN=abc\n");
    std::fs::set_permissions(env.path("secrets.env"), std::fs::Permissions::from_mode(0o644)).unwrap();

    // No state yet: a problem, and the doctor does not create it.
    let out = env.run(&["doctor", "--json"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let v = out.json();
    let finding = |v: &serde_json::Value, check: &str| -> serde_json::Value {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check && f["status"] == "problem")
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    assert_eq!(finding(&v, "state")["fix"], "runbook db migrate --apply", "{v}");
    if env.pg.is_none() {
        assert!(!env.state_db().exists(), "the doctor created the state");
    }
    assert!(
        finding(&v, "secrets")["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("chmod o-rwx"),
        "{v}"
    );
    assert!(finding(&v, "daemon")["fix"].is_string(), "{v}");

    // Fixed as told: those problems are gone; the API on 0.0.0.0 without a token remains one.
    assert_eq!(env.run(&["db", "migrate", "--apply"]).code, 0);
    std::fs::set_permissions(env.path("secrets.env"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let v = env.run(&["doctor", "--json"]).json();
    assert!(finding(&v, "state").is_null(), "{v}");
    assert!(finding(&v, "secrets").is_null(), "{v}");
    assert!(
        finding(&v, "api")["fix"]
            .as_str()
            .unwrap_or_default()
            .contains("token create"),
        "{v}"
    );
    let human = env.run(&["doctor"]);
    assert_eq!(human.code, 1);
    assert!(
        human.stdout.contains("fix api: runbook token create"),
        "{}",
        human.stdout
    );
    create_token(&env, "reader", "read");
    let v = env.run(&["doctor", "--json"]).json();
    assert!(finding(&v, "api").is_null(), "{v}");
}

#[test]
fn install_on_the_real_root_makes_the_user_and_owns_what_is_theirs() {
    // The host's /etc, /var and /usr/local, each under an overlay in a mount namespace of the
    // test's own: the install really runs on `/`, and nothing of it outlives the namespace.
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path().display();
    let bin = env!("CARGO_BIN_EXE_runbook");
    let script = format!(
        r#"set -e
for d in etc usr/local var; do
  mkdir -p "{s}/$d-up" "{s}/$d-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir={s}/$d-up,workdir={s}/$d-work" "/$d" || exit 42
done
cd "{s}"
'{bin}' install --apply --user rbinstalltest >/dev/null
getent passwd rbinstalltest | cut -d: -f1,6,7
stat -c '%a %U:%G %n' /etc/runbook /var/lib/runbook /var/backups/runbook /etc/runbook/runbook.env /usr/local/bin/runbook
'{bin}' install --apply --user rbinstalltest --json
"#
    );
    let unit_before = std::fs::read("/etc/systemd/system/runbook.service").ok();
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "bash", "-c", &script])
        .output()
        .unwrap();
    if out.status.code() == Some(42) || (!out.status.success() && out.stdout.is_empty()) {
        return cannot_run(&format!(
            "no overlay mounts in a mount namespace here (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("rbinstalltest:/var/lib/runbook:/usr/sbin/nologin"));
    let modes: Vec<&str> = lines.by_ref().take(5).collect();
    assert_eq!(
        modes,
        [
            "750 root:rbinstalltest /etc/runbook",
            "750 rbinstalltest:rbinstalltest /var/lib/runbook",
            "750 rbinstalltest:rbinstalltest /var/backups/runbook",
            "640 root:rbinstalltest /etc/runbook/runbook.env",
            "755 root:root /usr/local/bin/runbook",
        ]
    );
    let again: serde_json::Value = serde_json::from_str(&lines.collect::<Vec<_>>().join("\n")).unwrap();
    assert_eq!(again["changes"], 0, "{again}");
    // The host itself never saw any of it.
    assert_eq!(std::fs::read("/etc/systemd/system/runbook.service").ok(), unit_before);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(
        !passwd.contains("rbinstalltest"),
        "the user leaked out of the namespace"
    );
}

#[test]
fn doctor_checks_each_offsite_remote_and_the_room_for_the_next_archive() {
    let env = Env::new(
        r#"version: 1
backups:
  near:
    sources: [ { dir: data } ]
    dest: archives
    offsite: { url: "{dir}/offsite" }
  far:
    sources: [ { dir: data } ]
    dest: far-archives
    offsite: { url: "s3://bucket/x", endpoint: "http://127.0.0.1:9", access_key_id: a, secret_access_key: b }
"#,
    );
    env.write("data/a.txt", "a\n");
    assert_eq!(env.run(&["backup", "create", "near"]).code, 0);
    assert_eq!(env.run(&["backup", "push", "near"]).code, 0);
    let v = env.run(&["doctor", "--json"]).json();
    let of = |check: &str, needle: &str| -> serde_json::Value {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == check && f["detail"].as_str().unwrap_or_default().starts_with(needle))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    assert_eq!(of("offsite", "near")["status"], "ok", "{v}");
    assert_eq!(of("offsite", "far")["status"], "problem", "{v}");
    assert!(
        of("offsite", "far")["fix"]
            .as_str()
            .unwrap()
            .contains("backup push far"),
        "{v}"
    );
    assert_eq!(of("disk", "near")["status"], "ok", "{v}");
}
