//! The Debian package (packaging/build-deb, run by .ci/run) installed with dpkg into a
//! scratch root, its postinst run there, and `runbook doctor` run against the result.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn newest_deb() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_debian_package_installs_with_dpkg_and_doctor_reads_the_result() {
    let Some(deb) = newest_deb() else {
        return cannot_run("no target/debian/*.deb: build it with packaging/build-deb");
    };
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    let out = Command::new("dpkg")
        .arg(format!("--root={}", r.display()))
        .args([
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
            "--log=/dev/null",
            "-i",
        ])
        .arg(&deb)
        .output()
        .expect("dpkg");
    assert!(
        out.status.success(),
        "dpkg -i: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // What the package holds and what its postinst made.
    let bin = r.join("usr/bin/runbook");
    assert_eq!(mode(&bin), 0o755);
    let unit = std::fs::read_to_string(r.join("lib/systemd/system/runbook.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/runbook daemon"), "{unit}");
    assert!(
        unit.contains("Type=notify") && unit.contains("ProtectSystem=strict"),
        "{unit}"
    );
    assert!(r.join("lib/systemd/system/runbook-serve.service").exists());
    assert!(r.join("usr/share/bash-completion/completions/runbook").exists());
    assert!(r.join("usr/share/zsh/vendor-completions/_runbook").exists());
    assert!(r.join("usr/share/man/man1/runbook.1.gz").exists());
    assert_eq!(mode(&r.join("etc/runbook")), 0o750);
    assert_eq!(mode(&r.join("var/lib/runbook")), 0o750);
    assert_eq!(mode(&r.join("etc/runbook/runbook.env")), 0o640);
    assert_eq!(mode(&r.join("etc/runbook/runbook.yaml")), 0o640);
    let version = Command::new(&bin).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("commit"),
        "{version:?}"
    );

    // The doctor, on the installed configuration pointed into the root: the state is missing
    // (fix: migrate); once migrated it is at head, and the env file is private.
    let config = r.join("etc/runbook/runbook.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("/var/lib/runbook", &r.join("var/lib/runbook").display().to_string())
            .replace(
                "/etc/runbook/runbook.env",
                &r.join("etc/runbook/runbook.env").display().to_string(),
            ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Out::from(
            Command::new(&bin)
                .arg("--config")
                .arg(&config)
                .args(args)
                .env_remove("RUNBOOK_CONFIG")
                .output()
                .unwrap(),
        )
    };
    let out = run(&["doctor", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = out.json();
    let status = |v: &serde_json::Value, check: &str| -> Vec<String> {
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == check)
            .map(|f| f["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(status(&v, "config"), ["ok"], "{v}");
    assert_eq!(status(&v, "state"), ["problem"], "{v}");
    assert_eq!(status(&v, "secrets"), ["ok"], "{v}");
    assert_eq!(run(&["db", "migrate", "--apply"]).code, 0);
    let out = run(&["doctor", "--json"]);
    assert_eq!(status(&out.json(), "state"), ["ok"], "{}", out.stdout);
}
