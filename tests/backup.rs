//! Backups through the real binary: archives of live SQLite databases, directory trees,
//! dump commands and a real PostgreSQL; verification that catches any flipped byte; crashes
//! and a full disk that leave nothing behind; retention; the small-archive alert.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIG: &str = r#"
version: 1
backups:
  main:
    sources:
      - { sqlite: app.db }
      - { dir: data, exclude: ["*.log", "cache"] }
      - { command: [sh, -c, "echo dumped"], name: extra.out }
    dest: archives
    keep: { last: 2 }
"#;

/// One target of one directory.
const DATA_ONLY: &str = "version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives, level: 1 }\n";

fn sqlite(path: &Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

fn setup(env: &Env) {
    sqlite(
        &env.path("app.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); \
         INSERT INTO t(v) VALUES ('one'), ('two'), ('three');",
    );
    env.write("data/notes.txt", "runbook backup notes\n");
    env.write("data/sub/deep.txt", &"x".repeat(100_000));
    env.write("data/app.log", "excluded\n");
    env.write("data/cache/blob", "excluded too\n");
    std::os::unix::fs::symlink("notes.txt", env.path("data/link")).unwrap();
    std::fs::set_permissions(
        env.path("data/notes.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();
}

fn archives(env: &Env) -> Vec<PathBuf> {
    env.names("archives")
        .into_iter()
        .filter(|n| n.ends_with(".tar.zst"))
        .map(|n| env.path("archives").join(n))
        .collect()
}

fn create(env: &Env) -> serde_json::Value {
    let out = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(out.code, 0, "create failed: {}\n{}", out.stdout, out.stderr);
    out.json()
}

/// Unpacks `archive` with the real `zstd` and `tar`, runs `change` in it, packs `entries`
/// again in its place and writes a sidecar that matches: tampering that gets past the sidecar.
fn repack(env: &Env, archive: &Path, change: &str, entries: &str) {
    let work = env.path("repack");
    std::fs::create_dir_all(&work).unwrap();
    let script = format!(
        "set -e; cd '{w}'; zstd -dc '{a}' | tar -xpf -; {change}; \
         tar -cf - {entries} | zstd -q -o '{a}.new'; mv '{a}.new' '{a}'; \
         sha256sum '{a}' | sed 's#  .*#  x#' > '{a}.sha256'",
        w = work.display(),
        a = archive.display()
    );
    assert!(Command::new("sh").arg("-c").arg(&script).status().unwrap().success());
}

/// `backup verify ARCHIVE` fails (exit 1) saying `what`; its output, for more assertions.
fn verify_fails_saying(env: &Env, archive: &Path, what: &str) -> String {
    let out = env.run(&["backup", "verify", archive.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stdout.contains(what), "{}", out.stdout);
    out.stdout
}

/// The `problems` of a `backup verify --json`.
fn problems(verify: &serde_json::Value) -> Vec<&str> {
    verify["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect()
}

/// The archive listed by the real `zstd` and `tar`, in order.
fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{}' | tar -tf -", archive.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect()
}

#[test]
fn an_archive_holds_manifest_first_then_every_source_and_verifies() {
    let env = Env::new(CONFIG);
    setup(&env);
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    assert!(
        archive.file_name().unwrap().to_string_lossy().starts_with("main-"),
        "{archive:?}"
    );
    let sidecar = std::fs::read_to_string(format!("{}.sha256", archive.display())).unwrap();
    assert!(sidecar.starts_with(created["sha256"].as_str().unwrap()));

    let names = tar_list(&archive);
    assert_eq!(names[0], "manifest.json", "{names:?}");
    for want in [
        "sqlite/app.db",
        "dir/data",
        "dir/data/notes.txt",
        "dir/data/sub/deep.txt",
        "dir/data/link",
        "command/extra.out",
    ] {
        assert!(
            names.iter().any(|n| n.trim_end_matches('/') == want),
            "{want} missing: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("app.log") || n.contains("cache")),
        "{names:?}"
    );

    // `sha256sum -c` agrees with the sidecar.
    let ok = Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{}.sha256", archive.display()))
        .current_dir(archive.parent().unwrap())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));

    let (code, v) = env.json(&["backup", "verify", archive.to_str().unwrap()]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(first_value(&v["sqlite"]), "ok", "{v}");
    let (code, v) = env.json(&["backup", "verify", "--latest", "main"]);
    assert_eq!(code, 0, "{v}");

    let (_, list) = env.json(&["backup", "list"]);
    let row = &list.as_array().unwrap()[0];
    assert_eq!(row["verify_ok"], true);
    assert_eq!(row["present"], true);
    // `entries` counts what create archived (files, directories, symlinks), as `files` did;
    // verify's `files_checked` counts regular files.
    assert!(row["entries"].as_i64().unwrap() >= 1, "{row}");
    assert_eq!(row["entries"], row["files"], "{row}");
    // Ages read as people say them: an archive made three days ago, verified two hours ago.
    env.db()
        .execute(
            "UPDATE backups SET created_at = ?1, verified_at = ?2",
            [ago(3 * 86400 + 4 * 3600), ago(2 * 3600 + 5 * 60)],
        )
        .unwrap();
    let out = env.run(&["backup", "list"]);
    assert!(
        out.stdout.contains(" 3d04h ") && out.stdout.contains("ok, 2h05m ago"),
        "{}",
        out.stdout
    );
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind IN ('backup.created', 'backup.verified')"),
        3
    );

    // The restored files are the originals: content, mode, symlink.
    let out_dir = env.path("x");
    std::fs::create_dir_all(&out_dir).unwrap();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xpf - -C '{}'",
            archive.display(),
            out_dir.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read_to_string(out_dir.join("dir/data/notes.txt")).unwrap(),
        "runbook backup notes\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out_dir.join("dir/data/notes.txt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        std::fs::read_link(out_dir.join("dir/data/link")).unwrap(),
        PathBuf::from("notes.txt")
    );
    let restored = rusqlite::Connection::open(out_dir.join("sqlite/app.db")).unwrap();
    let n: i64 = restored.query_row("SELECT count(*) FROM t", (), |r| r.get(0)).unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("command/extra.out")).unwrap(),
        "dumped\n"
    );
}

#[test]
fn databases_come_first_in_the_archive_whatever_the_order_of_the_sources() {
    // Verify and drill can check a database only once they have all of it: first in the
    // archive, it is checked while the rest streams.
    let env = Env::new(
        "version: 1\nbackups:\n  main:\n    sources: [ { dir: data }, { command: [sh, -c, \"echo dumped\"], name: extra.out }, { sqlite: app.db } ]\n    dest: archives\n",
    );
    setup(&env);
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    let names = tar_list(&archive);
    assert_eq!(&names[..2], ["manifest.json", "sqlite/app.db"], "{names:?}");
    let data = names.iter().position(|n| n.starts_with("dir/data")).unwrap();
    let command = names.iter().position(|n| n == "command/extra.out").unwrap();
    assert!(data < command, "the other sources keep their order: {names:?}");
    let out = env.run(&["backup", "verify", archive.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert_eq!(first_value(&out.json()["sqlite"]), "ok");
}

#[test]
fn one_flipped_byte_anywhere_fails_verify_and_names_what_is_wrong() {
    let env = Env::new(CONFIG);
    setup(&env);
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    let original = std::fs::read(&archive).unwrap();
    let len = original.len();
    let positions = [0, 7, 40, len / 4, len / 2, len * 3 / 4, len - 5, len - 1];
    for pos in positions {
        let mut bad = original.clone();
        bad[pos] ^= 0x20;
        std::fs::write(&archive, &bad).unwrap();
        let out = env.run(&["backup", "verify", archive.to_str().unwrap()]);
        assert_eq!(
            out.code, 1,
            "byte {pos} of {len} flipped, verify passed:\n{}",
            out.stdout
        );
        assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
        assert!(
            out.stdout.contains("SHA-256"),
            "the sidecar mismatch is named: {}",
            out.stdout
        );
        // Entries past the point where the stream broke are not said to be missing.
        assert!(
            !(out.stdout.contains("cannot be read") && out.stdout.contains("not in the archive")),
            "{}",
            out.stdout
        );
    }
    // Sidecar intact, file intact again: ok. Then a sidecar that lies: caught.
    std::fs::write(&archive, &original).unwrap();
    assert_eq!(env.run(&["backup", "verify", archive.to_str().unwrap()]).code, 0);
    let sidecar = format!("{}.sha256", archive.display());
    std::fs::write(&sidecar, format!("{}  x\n", "0".repeat(64))).unwrap();
    let out = env.run(&["backup", "verify", archive.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list[0]["verify_ok"], false, "the failure is recorded");
}

#[test]
fn the_scratch_space_of_a_stopped_verify_or_drill_goes_with_the_next_run() {
    let env = Env::new(CONFIG);
    setup(&env);
    let created = create(&env);
    let archive = created["path"].as_str().unwrap().to_string();
    let dest = env.path("archives");
    // What a verify and a drill killed halfway leave: their scratch directory, a copy of the
    // data in it, and a lock file nobody holds any more.
    for dead in [".runbook-verify-dead", ".drill-main-dead"] {
        std::fs::create_dir_all(dest.join(dead)).unwrap();
        std::fs::write(dest.join(dead).join(".lock"), "").unwrap();
        std::fs::write(dest.join(dead).join("0.db"), vec![0u8; 1 << 20]).unwrap();
    }
    // One still in use by a verify that is running: its lock is held.
    let live = dest.join(".runbook-verify-live");
    std::fs::create_dir_all(&live).unwrap();
    let held = std::fs::File::create(live.join(".lock")).unwrap();
    held.try_lock().unwrap();

    let (code, v) = env.json(&["backup", "verify", &archive]);
    assert_eq!(code, 0, "{v}");
    assert!(
        !dest.join(".runbook-verify-dead").exists(),
        "a stopped verify's copy is gone"
    );
    assert!(live.exists(), "a running verify's copy stays");
    assert!(dest.join(".drill-main-dead").exists(), "verify leaves a drill's alone");
    let (code, d) = env.json(&["backup", "drill", &archive]);
    assert_eq!(code, 0, "{d}");
    assert!(
        !dest.join(".drill-main-dead").exists(),
        "a stopped drill's tree is gone"
    );
    assert!(live.exists());
    drop(held);
    // Nothing of either run stays behind once they end, and the next create sweeps too.
    create(&env);
    let left: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".runbook-verify-") || n.starts_with(".drill-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_scratch_copy_that_cannot_be_written_costs_only_that_databases_check() {
    let env = Env::new(CONFIG);
    setup(&env);
    // A database larger than the file size the verify below may write.
    sqlite(
        &env.path("app.db"),
        "CREATE TABLE big(b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n \
         WHERE i < 500) INSERT INTO big SELECT randomblob(8000) FROM n;",
    );
    let created = create(&env);
    let archive = created["path"].as_str().unwrap().to_string();
    let (code, whole) = env.json(&["backup", "verify", &archive]);
    assert_eq!(code, 0, "{whole}");

    let mut cmd = env.cmd();
    cmd.args(["backup", "verify", &archive, "--json"]);
    // SAFETY: async-signal-safe calls only, between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 2 << 20,
                rlim_max: 2 << 20,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            Ok(())
        });
    }
    let out = Out::from(cmd.output().unwrap());
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = out.json();
    let problems = problems(&v);
    assert_eq!(problems.len(), 1, "only the database's check is lost: {problems:?}");
    assert!(
        problems[0].starts_with("`sqlite/app.db`: not checked with integrity_check: its copy could not be written"),
        "{problems:?}"
    );
    assert_eq!(
        v["files_checked"], whole["files_checked"],
        "every entry after it was still read"
    );
    assert_eq!(v["sha256"], created["sha256"]);
    // The archive was not found wrong: its verification of a moment ago stands.
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list[0]["verify_ok"], true, "{list}");
}

#[test]
fn a_damaged_database_is_named_first_as_it_comes_first() {
    // A database whose pages are damaged is archived as it is, and the backup fails naming
    // it; a later file is changed too, and the manifest and sidecar are made to match the
    // repacked archive.
    let env = Env::new(CONFIG);
    setup(&env);
    damage_sqlite(&env.path("app.db"));
    let out = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(
        out.code, 1,
        "a damaged source is not a successful backup: {}",
        out.stdout
    );
    let created = out.json();
    assert!(
        created["damaged"][0]
            .as_str()
            .unwrap()
            .starts_with("sqlite/app.db: integrity_check of the snapshot:"),
        "{created}"
    );
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    repack(
        &env,
        &archive,
        "printf 'RUNBOOK backup notes\\n' > dir/data/notes.txt",
        "manifest.json sqlite/app.db dir/data command/extra.out",
    );
    let out = env.run(&["backup", "verify", archive.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let v = out.json();
    let problems = problems(&v);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("`sqlite/app.db`: integrity_check"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("`dir/data/notes.txt`: content does not match"),
        "{problems:?}"
    );
}

#[test]
fn a_damaged_entry_is_named_even_when_the_sidecar_is_rewritten_to_match() {
    // Somebody "fixes" the sidecar after tampering: the manifest hashes still catch it.
    let env = Env::new(DATA_ONLY);
    env.write("data/a.txt", &"a".repeat(5000));
    env.write("data/b.txt", "bbbb\n");
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    // Rewrite b.txt's content inside a re-packed archive with the same manifest.
    repack(&env, &archive, "printf 'BBBB\\n' > dir/data/b.txt", "manifest.json dir");
    let said = verify_fails_saying(&env, &archive, "`dir/data/b.txt`: content does not match");
    assert!(!said.contains("a.txt`"), "only the changed file is named: {said}");
}

#[test]
fn a_manifest_whose_root_climbs_out_of_the_archive_is_refused_before_anything_is_touched() {
    // A crafted archive (its sidecar rewritten to match) whose source root points outside:
    // restore would join it to its staging directory and move whatever is there.
    let env = Env::new(DATA_ONLY);
    env.write("data/a.txt", "a\n");
    env.write("victim/secret.txt", "secret\n");
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    repack(
        &env,
        &archive,
        r#"sed -i 's|"root": *"dir/data"|"root":"../../../victim"|' manifest.json && grep -q victim manifest.json"#,
        "manifest.json dir",
    );
    verify_fails_saying(&env, &archive, "not a relative path inside the archive");
    let out = env.run(&["backup", "restore", archive.to_str().unwrap(), "--execute"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_eq!(
        std::fs::read_to_string(env.path("victim/secret.txt")).unwrap(),
        "secret\n"
    );
    assert_eq!(std::fs::read_to_string(env.path("data/a.txt")).unwrap(), "a\n");
}

#[test]
fn a_file_rewritten_in_place_while_it_is_read_is_reported_as_changed() {
    // Same size, new bytes and times: only the file's change time gives it away.
    let env = Env::new(DATA_ONLY);
    let big = env.write_incompressible("data/big.bin", 48 << 20);
    env.write("data/still.txt", "still\n");
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut create = env.spawn(&["backup", "create", "main", "--json"]);
    while create.try_wait().unwrap().is_none() {
        let f = std::fs::File::options().write(true).open(&big).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"rewritten", 1 << 20).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let out = Out::from(create.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let warnings = out.json()["warnings"].to_string();
    assert!(
        warnings.contains("data/big.bin changed while it was read"),
        "{warnings}"
    );
    assert!(!warnings.contains("still.txt"), "{warnings}");
}

#[test]
fn the_tar_headers_carry_the_owners_for_a_plain_tar_extract() {
    let env = Env::new(DATA_ONLY);
    env.write("data/owned.txt", "owned\n");
    if rustix::process::geteuid().is_root() {
        std::os::unix::fs::chown(env.path("data/owned.txt"), Some(1234), Some(5678)).unwrap();
    }
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(env.path("data/owned.txt")).unwrap();
        (m.uid(), m.gid())
    };
    let created = create(&env);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -tvf - --numeric-owner",
            created["path"].as_str().unwrap()
        ))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.ends_with("dir/data/owned.txt"))
        .unwrap_or_default();
    assert!(line.contains(&format!(" {uid}/{gid} ")), "{listing}");
}

#[test]
fn a_file_removed_after_the_listing_is_left_out_and_reported_not_a_failed_backup() {
    let env = Env::new(DATA_ONLY);
    env.write_incompressible("data/big.bin", 48 << 20);
    env.write("data/rotated.log", "gone by the time it is read\n");
    env.write("data/stays.txt", "stays\n");
    let create = env.spawn(&["backup", "create", "main", "--json"]);
    // The archive's temp file exists once the listing is done; big.bin is read first.
    let listed = wait_for(std::time::Duration::from_secs(30), || {
        std::fs::read_dir(env.path("archives"))
            .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".tmp")))
    });
    assert!(listed);
    std::fs::remove_file(env.path("data/rotated.log")).unwrap();
    let out = Out::from(create.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let v = out.json();
    assert!(
        v["warnings"]
            .to_string()
            .contains("data/rotated.log was removed before it could be read"),
        "{v}"
    );
    let archive = v["path"].as_str().unwrap().to_string();
    let (code, verified) = env.json(&["backup", "verify", &archive]);
    assert_eq!(code, 0, "the archive holds what its manifest says: {verified}");
    let listing = tar_list(Path::new(&archive));
    assert!(listing.iter().any(|n| n.ends_with("stays.txt")), "{listing:?}");
    assert!(!listing.iter().any(|n| n.ends_with("rotated.log")), "{listing:?}");
}

#[test]
fn names_that_are_not_utf8_are_left_out_loudly_not_renamed_into_each_other() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new(DATA_ONLY);
    env.write("data/ok.txt", "ok\n");
    for raw in [&b"bad\xff"[..], &b"bad\xfe"[..]] {
        let p = env.path("data").join(std::ffi::OsStr::from_bytes(raw));
        std::fs::write(p, "latin-1\n").unwrap();
    }
    let created = create(&env);
    let warnings = created["warnings"].to_string();
    assert_eq!(warnings.matches("the name is not UTF-8").count(), 2, "{warnings}");
    let archive = created["path"].as_str().unwrap();
    let (code, v) = env.json(&["backup", "verify", archive]);
    assert_eq!(code, 0, "{v}");
    assert!(tar_list(Path::new(archive)).iter().any(|n| n.ends_with("ok.txt")));
}

#[test]
fn a_manifest_root_that_is_not_where_its_entries_are_is_refused() {
    // The database's root pointed through a link among the directory's entries, to a file
    // outside: restore would copy that file over the live database.
    let env = Env::new(CONFIG);
    setup(&env);
    env.write("outside/secret.txt", "secret\n");
    std::os::unix::fs::symlink(env.path("outside"), env.path("data/l")).unwrap();
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    repack(
        &env,
        &archive,
        r#"sed -i 's|"root": *"sqlite/app.db"|"root":"dir/data/l/secret.txt"|' manifest.json && grep -q l/secret manifest.json"#,
        "manifest.json sqlite dir command",
    );
    verify_fails_saying(&env, &archive, "has no entry at its root `dir/data/l/secret.txt`");
    let before = std::fs::read(env.path("app.db")).unwrap();
    let out = env.run(&["backup", "restore", archive.to_str().unwrap(), "--execute"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        std::fs::read(env.path("app.db")).unwrap() == before,
        "the database was not touched"
    );
}

#[test]
fn a_database_written_during_the_backup_restores_consistent() {
    let env = Env::new(CONFIG);
    setup(&env);
    let db = env.path("app.db");
    // Large enough (about 10 MB) that the writer commits while the pages are being read.
    sqlite(
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) \
         INSERT INTO t(v) SELECT printf('%0500d', i) FROM n;",
    );
    let before: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM t", (), |r| r.get(0))
        .unwrap();
    // Another process writes as fast as it can while the backup runs, 50 rows a transaction.
    let writer = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3, time\n\
             c = sqlite3.connect('{}', isolation_level=None)\n\
             c.execute('PRAGMA journal_mode=WAL')\n\
             end = time.time() + 2\n\
             while time.time() < end:\n\
             \x20   c.execute('BEGIN')\n\
             \x20   for i in range(50): c.execute('INSERT INTO t(v) VALUES (?)', ('x' * 500,))\n\
             \x20   c.execute('COMMIT')\n\
             \x20   time.sleep(0.002)\n",
            db.display()
        ))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The writer is writing: its first commits are in the database.
    assert!(wait_for(Duration::from_secs(10), || {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(*) FROM t", (), |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > before)
    }));
    let mut paths = Vec::new();
    for _ in 0..3 {
        paths.push(create(&env)["path"].as_str().unwrap().to_string());
    }
    let mut writer = writer;
    assert!(writer.wait().unwrap().success());
    for p in &paths {
        let (code, v) = env.json(&["backup", "verify", p]);
        assert_eq!(code, 0, "{v}");
        assert_eq!(first_value(&v["sqlite"]), "ok", "{v}");
        let names = tar_list(Path::new(p));
        assert!(names.contains(&"sqlite/app.db".to_string()));
        // The database as of one instant: whole transactions only, and a file that opens on
        // its own (rollback mode, no -wal to go with it).
        let copy = env.path("restored.db");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "zstd -dc '{p}' | tar -xOf - sqlite/app.db > '{}'",
                copy.display()
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let c = rusqlite::Connection::open(&copy).unwrap();
        let rows: i64 = c.query_row("SELECT count(*) FROM t", (), |r| r.get(0)).unwrap();
        assert!(rows > before, "the writer had committed before the backup");
        assert_eq!((rows - before) % 50, 0, "{rows} rows: a transaction cut in half");
        let mode: String = c.query_row("PRAGMA journal_mode", (), |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete");
        drop(c);
        std::fs::remove_file(&copy).unwrap();
    }
}

#[test]
fn a_killed_create_leaves_no_archive_and_the_next_create_cleans_up() {
    let env = Env::new(
        r#"
version: 1
backups:
  main:
    sources: [ { dir: data }, { command: [sh, -c, "echo $$$$; exec sleep 29.123"], name: slow.out } ]
    dest: archives
"#,
    );
    env.write("data/a.txt", "a\n");
    let mut child = env
        .cmd()
        .args(["backup", "create", "main"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The create is midway: the dump runs, its output (its pid: `$$$$` is the shell's `$$` in
    // runbook's configuration) is in the scratch directory.
    let mut dump_pid = 0;
    assert!(
        wait_for(Duration::from_secs(10), || {
            dump_pid = dump_output_in_scratch(&env).trim().parse().unwrap_or(0);
            dump_pid != 0
        }),
        "the dump never started: {:?}",
        env.names("archives")
    );
    signal(child.id(), "KILL");
    let _ = child.wait();
    // The dump command is in its own process group: stop it like the operator would.
    let cmdline = std::fs::read(format!("/proc/{dump_pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains("29.123") {
        let _ = Command::new("kill").args(["-KILL", &dump_pid.to_string()]).status();
    }
    assert!(archives(&env).is_empty(), "a killed create left an archive");
    let (_, list) = env.json(&["backup", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 0);
    // A leftover temp archive from an earlier crash, too, and a sidecar written by a create
    // killed just before its archive took its name.
    env.write("archives/.main-20200101T000000Z.tar.zst.tmp", "partial");
    env.write("archives/main-20200101T000000Z.tar.zst.sha256", "0  x\n");

    env.edit_config("sleep 29.123", "true");
    create(&env);
    let left: Vec<String> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.ends_with(".tmp") || n.ends_with(".work") || n.starts_with("main-2020"))
        .collect();
    assert!(left.is_empty(), "leftovers remain: {left:?}");
    assert_eq!(archives(&env).len(), 1);
}

/// What a `command:` dump has written so far into a create's scratch directory
/// (`archives/.<archive>.work/<n>-command.out`); empty before it starts.
fn dump_output_in_scratch(env: &Env) -> String {
    env.names("archives")
        .iter()
        .filter(|n| n.ends_with(".work"))
        .flat_map(|work| {
            env.names(&format!("archives/{work}"))
                .into_iter()
                .filter(|f| f.ends_with("-command.out"))
                .map(move |f| env.path(&format!("archives/{work}/{f}")))
        })
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}

#[test]
fn an_archive_the_state_file_cannot_record_is_not_left_behind() {
    let env = Env::new(DATA_ONLY);
    env.write("data/a.txt", "a\n");
    create(&env);
    // The state file takes no more archives (full, read-only, damaged: here, a trigger).
    env.db()
        .execute_batch(if env.pg.is_some() {
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER refuse BEFORE INSERT ON backups FOR EACH ROW EXECUTE FUNCTION refuse();"
        } else {
            "CREATE TRIGGER refuse BEFORE INSERT ON backups BEGIN SELECT RAISE(FAIL, 'refused'); END;"
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let out = env.run(&["backup", "create", "main"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert_eq!(archives(&env).len(), 1, "only the recorded archive is there");
    let sidecars = env
        .names("archives")
        .into_iter()
        .filter(|n| n.ends_with(".sha256"))
        .count();
    assert_eq!(sidecars, 1);
}

#[test]
fn a_full_disk_during_create_fails_clearly_and_leaves_older_archives_untouched() {
    let env = Env::new(DATA_ONLY);
    env.write("data/small.txt", "small\n");
    let first = create(&env);
    let first_path = PathBuf::from(first["path"].as_str().unwrap());
    let before = std::fs::read(&first_path).unwrap();
    // 4 MB of incompressible data, and a file size limit of 1 MB: the write fails midway,
    // as on a full disk.
    let mut noise = vec![0u8; 4_000_000];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut noise).unwrap();
    std::fs::write(env.path("data/noise.bin"), noise).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 1024; exec '{}' --config '{}' backup create main",
            BIN,
            env.config.display()
        ))
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "create succeeded past the limit");
    assert!(stderr.contains("error:") && stderr.contains("archives"), "{stderr}");
    assert_eq!(
        archives(&env),
        vec![first_path.clone()],
        "only the older archive remains"
    );
    let tmp: Vec<_> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "the temp file was removed");
    assert_eq!(std::fs::read(&first_path).unwrap(), before);
    assert_eq!(env.run(&["backup", "verify", first_path.to_str().unwrap()]).code, 0);
}

#[test]
fn prune_is_a_dry_run_until_apply_and_keeps_the_newest_verified() {
    let env = Env::new(
        r#"
version: 1
backups:
  main: { sources: [ { dir: data } ], dest: archives, keep: { last: 1 } }
"#,
    );
    env.write("data/a.txt", "a\n");
    let first = create(&env)["path"].as_str().unwrap().to_string();
    assert_eq!(env.run(&["backup", "verify", &first]).code, 0);
    create(&env);
    create(&env);
    assert_eq!(archives(&env).len(), 3);

    let (code, plan) = env.json(&["backup", "prune", "main"]);
    assert_eq!(code, 0);
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["remove"].as_array().unwrap().len(), 1, "{plan}");
    let kept: Vec<&str> = plan["keep"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["path"].as_str().unwrap())
        .collect();
    assert!(
        kept.contains(&first.as_str()),
        "the only verified archive stays: {plan}"
    );
    assert_eq!(archives(&env).len(), 3, "a dry run removes nothing");

    let (code, plan) = env.json(&["backup", "prune", "main", "--apply"]);
    assert_eq!(code, 0);
    assert_eq!(plan["applied"], true);
    let gone = plan["remove"][0]["path"].as_str().unwrap();
    assert!(!Path::new(gone).exists());
    assert!(!Path::new(&format!("{gone}.sha256")).exists());
    assert_eq!(archives(&env).len(), 2);
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'backup.pruned'"),
        1
    );
}

#[test]
fn prune_counts_only_the_archives_on_disk_in_this_dest() {
    let env =
        Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives, keep: { last: 1 } }\n");
    env.write("data/a.txt", "a\n");
    // Archives in an earlier `dest` (or another configuration's, sharing the state file).
    let a1 = create(&env)["path"].as_str().unwrap().to_string();
    let a2 = create(&env)["path"].as_str().unwrap().to_string();
    env.edit_config("dest: archives,", "dest: archives2,");
    let path = |v: serde_json::Value| v["path"].as_str().unwrap().to_string();
    let b1 = path(create(&env));
    let b2 = path(create(&env));
    for b in [&b1, &b2] {
        assert_eq!(env.run(&["backup", "verify", b]).code, 0);
    }
    let b3 = path(create(&env));
    // The newest verified archive is removed by hand: the one before it is now the newest
    // verified archive there is.
    std::fs::remove_file(&b2).unwrap();

    let (code, plan) = env.json(&["backup", "prune", "main", "--apply"]);
    assert_eq!(code, 0, "{plan}");
    for a in [&a1, &a2, &b1, &b3] {
        assert!(Path::new(a).exists(), "{a} stays: {plan}");
    }
    let listed = |key: &str| -> Vec<String> {
        plan[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(listed("remove").is_empty(), "{plan}");
    assert_eq!(listed("gone"), vec![b2.clone()], "its record goes: {plan}");
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert!(!list.to_string().contains(&b2), "{list}");
    // The list says which archives are this dest's, and where the others are.
    for l in list.as_array().unwrap() {
        let p = l["path"].as_str().unwrap();
        assert_eq!(l["in_dest"], p == b1 || p == b3, "{l}");
    }
    let text = env.run(&["backup", "list", "main"]).stdout;
    assert_eq!(text.matches("(elsewhere: ").count(), 2, "{text}");
}

#[test]
fn an_archive_much_smaller_than_the_recent_ones_raises_an_alert() {
    let env = Env::new(
        r#"
version: 1
backups:
  main: { sources: [ { command: [cat, dump.sql], name: dump.sql } ], dest: archives }
"#,
    );
    let rows: String = (0..20_000)
        .map(|i| format!("INSERT INTO t VALUES ({i}, 'row {i}');\n"))
        .collect();
    env.write("dump.sql", &rows);
    for _ in 0..3 {
        let c = create(&env);
        assert!(c.get("too_small").is_none(), "{c}");
    }
    // The classic silent failure: the dump "succeeds" and is empty.
    env.write("dump.sql", "");
    let c = create(&env);
    assert!(c["too_small"].as_str().unwrap().contains("median"), "{c}");
    let (_, alerts) = env.json(&["alerts", "list", "--status", "firing"]);
    let a = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "backup:main")
        .unwrap_or_else(|| panic!("no backup alert: {alerts}"));
    assert_eq!(a["source"], "backup");
    assert_eq!(a["severity"], "critical");
    // A normal archive again resolves it.
    env.write("dump.sql", &rows);
    create(&env);
    let (_, alerts) = env.json(&["alerts", "list", "--status", "firing"]);
    assert!(!alerts.as_array().unwrap().iter().any(|a| a["name"] == "backup:main"));
}

#[test]
fn a_postgres_database_is_dumped_with_pg_dump_and_checked_with_pg_restore() {
    let db = format!("runbook_backup_{}", std::process::id());
    let psql = |sql: &str, dbname: &str| psql(dbname, sql);
    psql(&format!("DROP DATABASE IF EXISTS {db}"), "test");
    psql(&format!("CREATE DATABASE {db}"), "test");
    psql(
        "CREATE TABLE orders(id serial primary key, item text); INSERT INTO orders(item) VALUES ('a'), ('b');",
        &db,
    );
    let env = Env::new(&format!(
        r#"
version: 1
backups:
  pg: {{ sources: [ {{ postgres: "postgres://postgres:unused@127.0.0.1:5432/{db}" }} ], dest: archives }}
"#
    ));
    let out = env.run(&["backup", "create", "pg", "--json"]);
    psql(&format!("DROP DATABASE IF EXISTS {db}"), "test");
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let created = out.json();
    let archive = created["path"].as_str().unwrap();
    assert!(tar_list(Path::new(archive)).contains(&format!("postgres/{db}.dump")));
    // The password never reaches the manifest or the audit log.
    let manifest = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc '{archive}' | tar -xOf - manifest.json"))
        .output()
        .unwrap();
    let manifest = String::from_utf8_lossy(&manifest.stdout);
    assert!(manifest.contains("postgres://postgres@127.0.0.1:5432/"), "{manifest}");
    assert!(!manifest.contains("unused"));
    let (code, v) = env.json(&["backup", "verify", archive]);
    assert_eq!(code, 0, "{v}");
    assert!(first_value(&v["postgres"]).starts_with("ok"), "{v}");
}

#[test]
fn a_failing_dump_fails_the_create_and_writes_nothing() {
    let env = Env::new(
        r#"
version: 1
backups:
  main: { sources: [ { command: [sh, -c, "echo half; echo boom >&2; exit 3"] } ], dest: archives }
"#,
    );
    let out = env.run(&["backup", "create", "main"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("boom"), "{}", out.stderr);
    assert!(archives(&env).is_empty());
}

#[test]
fn bad_backup_config_is_reported_with_its_line() {
    let env = Env::new(
        r#"
version: 1
backups:
  main:
    sources: [ { mysql: db } ]
    dest: archives
    keep: { hourly: 3 }
"#,
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("runbook.yaml:6"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("a backup source is one of sqlite, postgres, dir, command"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("unknown key `hourly`"), "{}", out.stderr);
    let out = env.run(&["backup", "create", "nope"]);
    assert_eq!(out.code, 2);
    // A rule that keeps nothing: `last: 0` alone would remove the archive just made.
    env.edit_config("sources: [ { mysql: db } ]", "sources: [ { dir: data } ]");
    env.edit_config("keep: { hourly: 3 }", "keep: { last: 0, daily: 7 }");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("runbook.yaml:8") && out.stderr.contains("keep.last must be at least 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_api_lists_archives_with_their_verification_and_each_targets_newest_verified() {
    let env = Env::new(
        r#"
version: 1
backups:
  main: { sources: [ { dir: data } ], dest: archives }
  other: { sources: [ { dir: data } ], dest: other }
"#,
    );
    env.write("data/a.txt", "a\n");
    let first = create(&env)["path"].as_str().unwrap().to_string();
    assert_eq!(env.run(&["backup", "verify", &first]).code, 0);
    let second = create(&env)["path"].as_str().unwrap().to_string();
    let token = env.run(&["token", "create", "grafana"]).stdout.trim().to_string();
    let (_server, port) = serve(&env);

    let r = common::http::get(port, "/v1/backups", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v}");
    assert_eq!(items[0]["path"], second.as_str(), "newest first");
    assert_eq!(items[0]["verify_ok"], serde_json::Value::Null);
    assert_eq!(items[1]["verify_ok"], true);
    let main = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "main")
        .unwrap();
    assert_eq!(main["archives"], 2);
    assert_eq!(
        main["newest_verified"],
        first.as_str(),
        "the unverified newer one does not count"
    );
    let other = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "other")
        .unwrap();
    assert_eq!(other["newest_verified"], serde_json::Value::Null);

    let v = common::http::get(port, "/v1/backups?target=other", Some(&token)).json();
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    assert_eq!(v["targets"].as_array().unwrap().len(), 1);
    assert_eq!(
        common::http::get(port, "/v1/backups?target=nope", Some(&token)).status,
        404
    );
}

/// `runbook ARGS` under a real pseudo-terminal (util-linux `script`): what the terminal showed.
fn on_a_terminal(env: &Env, args: &str) -> String {
    let line = format!(
        "{} --config {} {args}",
        env!("CARGO_BIN_EXE_runbook"),
        env.path("runbook.yaml").display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn long_operations_show_a_progress_bar_on_a_terminal_and_nowhere_else() {
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives }\n");
    // Enough incompressible data that the bar is drawn at least once (it redraws at 20 Hz).
    env.write_incompressible("data/blob.bin", 48 << 20);

    let shown = on_a_terminal(&env, "backup create main");
    assert!(shown.contains("] "), "no bar drawn: {shown:?}");
    assert!(shown.contains("MiB"), "no byte counts: {shown:?}");
    let shown = on_a_terminal(&env, "backup verify --latest main");
    assert!(shown.contains("reading every entry"), "{shown:?}");
    assert!(shown.contains("ok: "), "{shown:?}");
    // The bar fits the terminal's 80 columns: it is redrawn in place, never wrapped.
    assert!(!shown.contains("\u{1b}[1A"), "the bar wrapped: {shown:?}");

    // Not on a terminal, and not with --json: no bar, nothing but the result.
    let out = env.run(&["backup", "create", "main"]);
    assert_eq!(out.code, 0);
    assert!(!out.stderr.contains("] "), "{}", out.stderr);
    let shown = on_a_terminal(&env, "backup create main --json");
    assert!(!shown.contains("eta"), "{shown:?}");
    let v: serde_json::Value = serde_json::from_str(shown.trim()).expect("only JSON on the terminal");
    assert!(v["path"].is_string());
}

#[test]
fn keygen_makes_a_key_pair_that_encrypted_archives_are_written_and_read_with() {
    // No configuration is needed to make a key (the config names it afterwards).
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("backup.agekey");
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["backup", "keygen", "--out", key.to_str().unwrap(), "--json"])
        .current_dir(dir.path())
        .env_remove("RUNBOOK_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recipient = v["recipient"].as_str().unwrap().to_string();
    assert!(recipient.starts_with("age1"), "{v}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.contains(&format!("# public key: {recipient}")) && text.contains("AGE-SECRET-KEY-1"));

    let env = Env::new(&format!(
        "version: 1\nbackups:\n  main:\n    sources: [ {{ dir: data }} ]\n    dest: archives\n    encrypt_to: \"{recipient}\"\n    identity_file: {}\n",
        key.display()
    ));
    env.write("data/a.txt", "secret notes\n");
    let created = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let archive = created.json()["path"].as_str().unwrap().to_string();
    assert!(archive.ends_with(".tar.zst.age"), "{archive}");
    let (code, v) = env.json(&["backup", "verify", &archive]);
    assert_eq!(code, 0, "{v}");

    // Verified with another key, or none: it fails, saying so, and the archive's good
    // verification stands (the key says nothing of the archive).
    let (other, _) = age_key();
    env.write("other.agekey", &other);
    let config = std::fs::read_to_string(env.path("runbook.yaml")).unwrap();
    for (with, said) in [
        (
            format!("identity_file: {}", env.path("other.agekey").display()),
            "cannot decrypt",
        ),
        (
            format!("identity_file: {}", env.path("no.agekey").display()),
            "no.agekey",
        ),
    ] {
        std::fs::write(
            env.path("runbook.yaml"),
            config.replace(&format!("identity_file: {}", key.display()), &with),
        )
        .unwrap();
        let (code, v) = env.json(&["backup", "verify", &archive]);
        assert_eq!(code, 1, "{v}");
        assert!(v["problems"][0].as_str().unwrap().contains(said), "{v}");
        let text = env.run(&["backup", "verify", &archive]);
        assert!(text.stdout.contains("could not be checked"), "{}", text.stdout);
        let (_, list) = env.json(&["backup", "list", "main"]);
        assert_eq!(list[0]["verify_ok"], true, "{list}");
    }
    // Damaged, it fails whatever the key, and that is recorded.
    let mut bytes = std::fs::read(&archive).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 1;
    std::fs::write(&archive, bytes).unwrap();
    assert_eq!(env.run(&["backup", "verify", &archive]).code, 1);
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert_eq!(list[0]["verify_ok"], false, "{list}");
    std::fs::write(env.path("runbook.yaml"), &config).unwrap();

    // A second keygen never overwrites the key.
    let again = env.run(&["backup", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
    // A directory that is not there is the host's error (exit 3), not a usage error.
    let missing = env.path("no/such/dir/k");
    let out = env.run(&["backup", "keygen", "--out", missing.to_str().unwrap()]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("No such file or directory"), "{}", out.stderr);
    assert!(!missing.exists());
}

/// A target that keeps its last archive, and `n` archives of it (oldest first).
fn keeping_the_last_of(n: usize) -> (Env, Vec<String>) {
    let env =
        Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives, keep: { last: 1 } }\n");
    env.write("data/a.txt", "a\n");
    let archives = (0..n)
        .map(|_| create(&env)["path"].as_str().unwrap().to_string())
        .collect();
    (env, archives)
}

#[test]
fn prune_of_a_dest_whose_archives_are_all_missing_forgets_nothing() {
    let (env, archives) = keeping_the_last_of(3);
    assert_eq!(env.run(&["backup", "verify", &archives[2]]).code, 0);
    // The backup disk is not mounted: its mount point is there, empty.
    std::fs::rename(env.path("archives"), env.path("archives.real")).unwrap();
    std::fs::create_dir(env.path("archives")).unwrap();
    let dry = env.run(&["backup", "prune", "main"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("gone") && dry.stdout.contains("is its disk mounted"),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.lines().any(|l| l.starts_with("remove")), "{}", dry.stdout);
    let out = env.run(&["backup", "prune", "main", "--apply"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("is its disk mounted"), "{}", out.stderr);
    // Nor does a backup write into the empty mount point (whereupon a prune would find one
    // archive there and forget the others).
    let out = env.run(&["backup", "create", "main"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("is its disk mounted"), "{}", out.stderr);
    assert!(env.names("archives").is_empty(), "nothing written there");
    std::fs::remove_dir(env.path("archives")).unwrap();
    // Nor when the mount point is the dest's parent, and the dest is not there at all: the
    // archives are missing from it, not unknown.
    assert_eq!(env.run(&["backup", "create", "main"]).code, 3);
    assert!(!env.path("archives").exists());
    let dry = env.run(&["backup", "prune", "main"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("is its disk mounted"), "{}", dry.stdout);
    let out = env.run(&["backup", "prune", "main", "--apply"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("is its disk mounted"), "{}", out.stderr);
    let listed = env.run(&["backup", "list", "main"]);
    assert_eq!(listed.stdout.matches("(MISSING)").count(), 3, "{}", listed.stdout);
    assert!(!listed.stdout.contains("elsewhere"), "{}", listed.stdout);
    assert!(listed.stdout.contains("is its disk mounted"), "{}", listed.stdout);
    let out = env.run(&["backup", "verify", "--latest", "main"]);
    assert!(out.stdout.contains("the archive's file is gone"), "{}", out.stdout);
    assert!(out.stdout.contains("is its disk mounted"), "{}", out.stdout);
    assert!(!env.path("archives").exists());
    // The disk not mounted says nothing of the archive: its good verification stands.
    let (_, list) = env.json(&["backup", "list", "main"]);
    let newest = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == archives[2].as_str())
        .unwrap();
    assert_eq!(newest["verify_ok"], true, "{list}");
    std::fs::rename(env.path("archives.real"), env.path("archives")).unwrap();
    let (_, list) = env.json(&["backup", "list", "main"]);
    for a in &archives {
        assert!(list.to_string().contains(a.as_str()), "{a} still recorded: {list}");
    }
    assert_eq!(env.run(&["backup", "verify", "--latest", "main"]).code, 0);
    // Removed on purpose: --forget-missing says so, and backups go on.
    for a in &archives {
        std::fs::remove_file(a).unwrap();
    }
    assert_eq!(env.run(&["backup", "prune", "main", "--apply"]).code, 3);
    let (code, plan) = env.json(&["backup", "prune", "main", "--apply", "--forget-missing"]);
    assert_eq!(code, 0, "{plan}");
    assert_eq!(plan["gone"].as_array().unwrap().len(), 3, "{plan}");
    create(&env);
}

#[test]
fn an_archive_that_cannot_be_removed_keeps_neither_the_others_nor_the_record_of_what_went() {
    let (env, a) = keeping_the_last_of(4);
    // The second cannot be removed at all, the third's sidecar cannot (each a directory with
    // something in it, as a file made immutable or on a read-only mount would be).
    std::fs::remove_file(&a[1]).unwrap();
    std::fs::create_dir_all(format!("{}/x", a[1])).unwrap();
    std::fs::remove_file(format!("{}.sha256", a[2])).unwrap();
    std::fs::create_dir_all(format!("{}.sha256/x", a[2])).unwrap();
    let (code, plan) = env.json(&["backup", "prune", "main", "--apply"]);
    assert_eq!(code, 1, "{plan}");
    let failed = plan["failed"].to_string();
    assert!(failed.contains(&a[1]) && failed.contains(&a[2]), "{plan}");
    assert!(
        !Path::new(&a[0]).exists() && !Path::new(&a[2]).exists(),
        "the others went: {plan}"
    );
    assert!(Path::new(&a[3]).exists());
    // What went is forgotten and audited; what could not go is still recorded.
    let (_, list) = env.json(&["backup", "list", "main"]);
    let listed = list.to_string();
    assert!(
        !listed.contains(&a[0]) && !listed.contains(&a[2]) && listed.contains(&a[1]),
        "{list}"
    );
    let audited: String = env
        .db()
        .query_row("SELECT data FROM audit_events WHERE kind = 'backup.pruned'", (), |r| {
            r.get(0)
        })
        .unwrap();
    assert!(audited.contains(&a[0]) && audited.contains(&a[2]), "{audited}");
}

#[test]
fn verify_and_drill_record_an_archive_however_its_path_is_written() {
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives }\n");
    env.write("data/a.txt", "a\n");
    // The dest is a link to the directory the archives are really in.
    std::fs::create_dir(env.path("real")).unwrap();
    std::os::unix::fs::symlink(env.path("real"), env.path("archives")).unwrap();
    let made = create(&env)["path"].as_str().unwrap().to_string();
    let name = Path::new(&made).file_name().unwrap().to_str().unwrap().to_string();
    let real = env.path("real").join(&name);
    assert_eq!(env.run(&["backup", "verify", real.to_str().unwrap()]).code, 0);
    let relative = format!("archives/../archives/{name}");
    assert_eq!(env.run(&["backup", "drill", &relative]).code, 0);
    let (verified, drilled): (Option<bool>, Option<String>) = env
        .db()
        .query_row("SELECT verify_ok, drilled_at FROM backups", (), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(verified, Some(true), "the verify by the real directory counts");
    assert!(drilled.is_some(), "the drill by a relative path counts");
}

/// How many of the file's pages are in the page cache, and how many it has.
fn cached_pages(path: &Path) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap();
    let len = f.metadata().unwrap().len() as usize;
    let page = 4096;
    let pages = len.div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: a read-only mapping of an open file, never touched, only asked about.
    unsafe {
        let ptr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        );
        assert_ne!(ptr, libc::MAP_FAILED);
        assert_eq!(libc::mincore(ptr, len, vec.as_mut_ptr()), 0);
        libc::munmap(ptr, len);
    }
    (vec.iter().filter(|b| **b & 1 == 1).count(), pages)
}

#[test]
fn a_finished_archive_leaves_the_page_cache_to_the_application() {
    let env = Env::new(DATA_ONLY);
    env.write_incompressible("data/big.bin", 16 << 20);
    let created = create(&env);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    let (cached, pages) = cached_pages(&archive);
    assert!(pages > 4000, "a 16 MiB archive: {pages} pages");
    assert!(cached < pages / 20, "{cached} of {pages} pages still cached");
    // It is still read whole from the disk when asked for.
    assert_eq!(env.run(&["backup", "verify", archive.to_str().unwrap()]).code, 0);
}

/// The first value of a JSON object (verify's `sqlite` and `postgres`: archive path → result).
fn first_value(v: &serde_json::Value) -> String {
    let map = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    map.values()
        .next()
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}
