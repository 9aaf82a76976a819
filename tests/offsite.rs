//! Offsite copies through the real binary: to another directory, and to a local
//! S3-compatible server (moto, from PyPI) through the real S3 client code.

mod common;

use common::http::request;
use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One target whose offsite copy is another directory.
const TO_A_DIRECTORY: &str =
    "version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives, offsite: { url: offsite/main } }\n";

/// One target `main` of the directory `data`, copied offsite to the directory `offsite`;
/// `target` adds lines to the target, `offsite` keys to its `offsite:`.
fn dir_target(target: &str, offsite: &str) -> String {
    format!(
        "version: 1\nbackups:\n  main:\n    sources: [ {{ dir: data }} ]\n    dest: archives\n{target}    offsite: {{ url: offsite{offsite} }}\n"
    )
}

fn create(env: &Env) -> PathBuf {
    let out = env.run(&["backup", "create", "main", "--json"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    PathBuf::from(out.json()["path"].as_str().unwrap())
}

fn names(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn setup(env: &Env) -> Vec<PathBuf> {
    env.write("data/a.txt", "alpha\n");
    let first = create(env);
    env.write("data/b.txt", "beta\n");
    // Archive names carry the second: make sure the second one differs.
    std::thread::sleep(Duration::from_millis(1100));
    let second = create(env);
    vec![first, second]
}

#[test]
fn push_copies_what_is_missing_by_hash_and_pull_brings_it_back_checked() {
    let env = Env::new(TO_A_DIRECTORY);
    let local = setup(&env);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed").len(), 2);
    for p in &local {
        let file = p.file_name().unwrap();
        assert_eq!(
            std::fs::read(env.path("offsite/main").join(file)).unwrap(),
            std::fs::read(p).unwrap()
        );
        assert!(
            env.path("offsite/main")
                .join(format!("{}.sha256", file.to_string_lossy()))
                .is_file()
        );
    }
    let (_, again) = env.json(&["backup", "push", "main"]);
    assert_eq!(names(&again, "pushed").len(), 0, "{again}");
    assert_eq!(names(&again, "skipped").len(), 2);

    // The local copies are lost; pull brings them back and they verify.
    for p in &local {
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(format!("{}.sha256", p.display())).unwrap();
    }
    let (code, pulled) = env.json(&["backup", "pull", "main"]);
    assert_eq!(code, 0, "{pulled}");
    assert_eq!(pulled["pulled"].as_array().unwrap().len(), 2);
    for p in &local {
        assert_eq!(env.run(&["backup", "verify", p.to_str().unwrap()]).code, 0);
    }

    // A damaged offsite copy is refused on the way back, and leaves nothing behind.
    let victim = &local[1];
    let remote = env.path("offsite/main").join(victim.file_name().unwrap());
    let mut bytes = std::fs::read(&remote).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&remote, bytes).unwrap();
    // Both local copies lost: the damaged newest one does not keep the older one from
    // coming back.
    for p in &local {
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(format!("{}.sha256", p.display())).unwrap();
    }
    let out = env.run(&["backup", "pull", "main"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("FAILED") && out.stdout.contains("does not match the offsite sidecar"),
        "{}",
        out.stdout
    );
    assert!(!victim.exists());
    assert!(local[0].is_file(), "the older archive came back: {}", out.stdout);
    assert_eq!(env.run(&["backup", "verify", local[0].to_str().unwrap()]).code, 0);
    let leftovers: Vec<_> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty());
}

/// A moto S3 server on 127.0.0.1 with the bucket `runbook-backups`.
#[test]
fn pull_and_push_take_only_what_is_directly_under_the_offsite_prefix() {
    let env = Env::new(TO_A_DIRECTORY);
    let local = setup(&env);
    assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
    // One copy moved into a folder under the prefix (another host's, or kept aside).
    let name = local[0].file_name().unwrap().to_string_lossy().into_owned();
    let offsite = env.path("offsite/main");
    std::fs::create_dir_all(offsite.join("old")).unwrap();
    for f in [name.clone(), format!("{name}.sha256")] {
        std::fs::rename(offsite.join(&f), offsite.join("old").join(&f)).unwrap();
    }
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name.clone()], "not taken for a copy: {r}");

    // An archive pulled but no longer recorded (the state file was lost) is recorded again.
    env.db().execute("DELETE FROM backups", ()).unwrap();
    let (code, r) = env.json(&["backup", "pull", "main"]);
    assert_eq!(code, 0, "{r}");
    let (_, list) = env.json(&["backup", "list", "main"]);
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // A drill from offsite of a copy without its sidecar says so.
    let newest = local[1].file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(offsite.join(format!("{newest}.sha256"))).unwrap();
    let out = env.run(&["backup", "drill", &newest, "--from-offsite"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("could not be fetched from offsite") && out.stderr.contains("no sidecar"),
        "{}",
        out.stderr
    );
}

fn moto() -> (Server, u16) {
    let (server, port) = spawn_listening(
        "moto_server",
        |port| {
            Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server (pip install 'moto[server]')")
        },
        |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    // A bucket, through the S3 API itself.
    let made = request(port, "PUT", "/runbook-backups", None);
    assert_eq!(made.status, 200, "{}", made.body);
    (server, port)
}

fn s3_env(port: u16) -> Env {
    Env::new(&format!(
        r#"
version: 1
backups:
  main:
    sources: [ {{ dir: data }} ]
    dest: archives
    drill: {{ checks: [ "test -f dir/data/b.txt" ] }}
    offsite:
      url: s3://runbook-backups/hosts/vps-1
      endpoint: http://127.0.0.1:{port}
      access_key_id: test
      secret_access_key: test
"#
    ))
}

fn s3_objects(port: u16) -> String {
    request(port, "GET", "/runbook-backups?list-type=2", None).body
}

#[test]
fn an_s3_compatible_store_takes_the_archives_resumes_an_interrupted_push_and_serves_a_drill() {
    let (_moto, port) = moto();
    let env = s3_env(port);
    let local = setup(&env);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed").len(), 2);
    let listing = s3_objects(port);
    for p in &local {
        let key = format!("hosts/vps-1/{}", p.file_name().unwrap().to_string_lossy());
        assert!(listing.contains(&format!("<Key>{key}</Key>")), "{key} in {listing}");
        assert!(listing.contains(&format!("<Key>{key}.sha256</Key>")), "{listing}");
    }

    // An interrupted push: the newest archive went up, its sidecar did not. (boto3, which
    // comes with moto, removes it with a signed request.)
    let newest = local[1].file_name().unwrap().to_string_lossy().into_owned();
    let removed = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import boto3; boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='test', \
             aws_secret_access_key='test', region_name='us-east-1').delete_object(Bucket='runbook-backups', \
             Key='hosts/vps-1/{newest}.sha256')"
        ))
        .output()
        .unwrap();
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));
    assert!(!s3_objects(port).contains(&format!("{newest}.sha256")));
    let (_, again) = env.json(&["backup", "push", "main"]);
    assert_eq!(names(&again, "pushed"), vec![newest.clone()], "{again}");
    assert_eq!(names(&again, "skipped").len(), 1);

    // A drill straight from the offsite copy: the newest archive, fetched and restored.
    let (code, d) = env.json(&["backup", "drill", "--latest", "main", "--from-offsite"]);
    assert_eq!(code, 0, "{d:#}");
    assert!(d["archive"].as_str().unwrap().ends_with(&newest), "{d}");
    assert_eq!(d["checks"][0]["ok"], true);
    let scratch: Vec<_> = env
        .names("archives")
        .into_iter()
        .filter(|n| n.starts_with(".offsite-drill-"))
        .collect();
    assert!(scratch.is_empty(), "the fetched copy is removed");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind = 'backup.pushed'"),
        2
    );
}

#[test]
fn a_missing_bucket_is_a_clear_failure() {
    let (_moto, port) = moto();
    let env = s3_env(port);
    setup(&env);
    // moto accepts any key; a missing bucket is the failure it can show.
    env.edit_config("runbook-backups", "no-such-bucket");
    let out = env.run(&["backup", "push", "main"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("offsite:"), "{}", out.stderr);
}

#[test]
fn offsite_copies_can_be_encrypted_to_an_age_recipient_and_need_the_identity_to_come_back() {
    let (secret, recipient) = age_key();
    let env = Env::new(&dir_target("", &format!(", encrypt_to: \"{recipient}\"")));
    let local = setup(&env);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    for p in &local {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!env.path("offsite").join(&name).exists(), "no plaintext copy offsite");
        let sealed = std::fs::read(env.path("offsite").join(format!("{name}.age"))).unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"), "an age file");
        assert!(!sealed.windows(5).any(|w| w == b"alpha"), "the content is not readable");
    }
    // Without the identity a pull says what is missing; with it the archives come back whole.
    for p in &local {
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(format!("{}.sha256", p.display())).unwrap();
    }
    let out = env.run(&["backup", "pull", "main"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("identity_file"), "{}", out.stdout);
    env.write("age.key", &secret);
    env.edit_config("encrypt_to:", "identity_file: age.key, encrypt_to:");
    let (code, pulled) = env.json(&["backup", "pull", "main"]);
    assert_eq!(code, 0, "{pulled}");
    for p in &local {
        assert_eq!(env.run(&["backup", "verify", p.to_str().unwrap()]).code, 0);
    }
    // A second push finds them there, encrypted, with the same hashes.
    let (_, again) = env.json(&["backup", "push", "main"]);
    assert_eq!(names(&again, "pushed").len(), 0, "{again}");
}

#[test]
fn a_bad_recipient_is_a_config_error() {
    let env = Env::new(
        r#"
version: 1
backups:
  main: { sources: [ { dir: data } ], dest: archives, offsite: { url: offsite, encrypt_to: "age1nope" } }
"#,
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("is not an age recipient"), "{}", out.stderr);
}

#[test]
fn pull_can_bring_back_one_named_archive() {
    let env = Env::new(TO_A_DIRECTORY);
    let local = setup(&env);
    assert_eq!(env.run(&["backup", "push", "main"]).code, 0);
    for p in &local {
        std::fs::remove_file(p).unwrap();
        std::fs::remove_file(format!("{}.sha256", p.display())).unwrap();
    }
    let older = local[0].file_name().unwrap().to_string_lossy().into_owned();
    let (code, pulled) = env.json(&["backup", "pull", "main", "--archive", &older]);
    assert_eq!(code, 0, "{pulled}");
    assert_eq!(pulled["pulled"].as_array().unwrap().len(), 1);
    assert!(local[0].exists() && !local[1].exists());
    assert_eq!(env.run(&["backup", "verify", local[0].to_str().unwrap()]).code, 0);
    let out = env.run(&["backup", "pull", "main", "--archive", "main-19990101T000000Z.tar.zst"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("no archive `main-19990101T000000Z.tar.zst` offsite"),
        "{}",
        out.stderr
    );
}

#[test]
fn encrypted_local_archives_verify_drill_restore_and_travel_offsite_as_they_are() {
    let (secret, recipient) = age_key();
    let env = Env::new(&dir_target(
        &format!("    encrypt_to: \"{recipient}\"\n    identity_file: age.key\n"),
        "",
    ));
    env.write("age.key", &secret);
    env.write("data/a.txt", &"alpha secret line\n".repeat(100));
    let archive = create(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.ends_with(".tar.zst.age"), "{name}");
    let bytes = std::fs::read(&archive).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "an age file");
    assert!(!bytes.windows(5).any(|w| w == b"alpha"), "the content is not readable");
    // Only the archive, its sidecar (over the ciphertext) and the lock: no plaintext left.
    let mut left = env.names("archives");
    left.sort();
    assert_eq!(
        left,
        vec![".main.lock".to_string(), name.clone(), format!("{name}.sha256")]
    );
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.sha256")])
        .current_dir(env.path("archives"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));

    let (code, v) = env.json(&["backup", "verify", "--latest", "main"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["files_checked"], 1);
    let (code, d) = env.json(&["backup", "drill", "--latest", "main"]);
    assert_eq!(code, 0, "{d}");
    std::fs::remove_file(env.path("data/a.txt")).unwrap();
    let (code, r) = env.json(&["backup", "restore", archive.to_str().unwrap(), "--execute"]);
    assert_eq!(code, 0, "{r}");
    assert!(
        std::fs::read_to_string(env.path("data/a.txt"))
            .unwrap()
            .starts_with("alpha")
    );

    // Offsite it goes as it is (already encrypted), once; and comes back checked.
    let (code, p) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{p}");
    assert_eq!(names(&p, "pushed"), vec![name.clone()]);
    assert_eq!(std::fs::read(env.path("offsite").join(&name)).unwrap(), bytes);
    let (_, again) = env.json(&["backup", "push", "main"]);
    assert_eq!(names(&again, "skipped"), vec![name.clone()], "{again}");
    std::fs::remove_file(&archive).unwrap();
    std::fs::remove_file(format!("{}.sha256", archive.display())).unwrap();
    let (code, pulled) = env.json(&["backup", "pull", "main"]);
    assert_eq!(code, 0, "{pulled}");
    assert_eq!(std::fs::read(&archive).unwrap(), bytes);

    // Without the identity nothing can be read, and the error says what is missing.
    env.edit_config("    identity_file: age.key\n", "");
    let out = env.run(&["backup", "verify", archive.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("identity_file"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    // One flipped byte: refused.
    env.write("age.key", &secret);
    env.edit_config("    offsite:", "    identity_file: age.key\n    offsite:");
    let mut damaged = bytes.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x20;
    std::fs::write(&archive, &damaged).unwrap();
    let (code, v) = env.json(&["backup", "verify", archive.to_str().unwrap()]);
    assert_eq!(code, 1, "{v}");
    assert!(v["problems"][0].as_str().unwrap().contains("sidecar"), "{v}");
}

/// The S3 target, pushing at 8 MiB/s: slow enough to be stopped between parts.
/// [`s3_env`] with one more `offsite:` setting (`key: value`).
fn s3_env_with(port: u16, setting: &str) -> Env {
    let env = s3_env(port);
    env.edit_config(
        "secret_access_key: test\n",
        &format!("secret_access_key: test\n      {setting}\n"),
    );
    env
}

fn slow_s3_env(port: u16) -> Env {
    s3_env_with(port, "max_rate: 8MiB")
}

/// An archive of ~40 MiB that does not compress: three upload parts of 16 MiB.
fn big_archive(env: &Env) -> PathBuf {
    env.write_incompressible("data/blob.bin", 40 << 20);
    create(env)
}

/// Starts a push and kills it (-9) once the state file says a part of the archive is stored.
fn push_killed_after_a_part(env: &Env) {
    push_killed_after_parts(env, 1);
}

/// Starts a push and kills it (-9) once the state file says `n` parts are stored.
fn push_killed_after_parts(env: &Env, n: usize) {
    let mut push = env.spawn(&["backup", "push", "main"]);
    let stored = wait_for(Duration::from_secs(60), || {
        env.db()
            .query_row(
                &format!(
                    "SELECT count(*) FROM offsite_uploads WHERE {} >= {n}",
                    env.json_len("parts")
                ),
                (),
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    });
    signal(push.id(), "KILL");
    let _ = push.wait();
    assert!(stored, "no part was recorded as stored");
}

/// The second push continues the interrupted upload: what it sends is the rest, and what
/// arrives is the archive, byte for byte.
fn resumed_push_sends_only_the_rest(env: &Env, archive: &std::path::Path) {
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let size = std::fs::metadata(archive).unwrap().len();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "resumed"), vec![name.clone()], "{r}");
    let sent = r["bytes"].as_u64().unwrap();
    assert!(sent <= size - (16 << 20), "sent {sent} of {size}: not resumed");
    assert_eq!(env.count("SELECT count(*) FROM offsite_uploads"), 0);
    pulled_back_unchanged(env, archive);
}

/// Brought back from offsite (the local copy removed first), `archive` is the same file.
fn pulled_back_unchanged(env: &Env, archive: &std::path::Path) {
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let local = std::fs::read(archive).unwrap();
    std::fs::remove_file(archive).unwrap();
    std::fs::remove_file(format!("{}.sha256", archive.display())).unwrap();
    let (code, p) = env.json(&["backup", "pull", "main", "--archive", &name]);
    assert_eq!(code, 0, "{p}");
    assert!(std::fs::read(archive).unwrap() == local, "the offsite copy differs");
}

#[test]
fn an_interrupted_push_to_a_directory_continues_from_its_last_stored_part() {
    let env = Env::new(
        "version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives, offsite: { url: offsite, max_rate: 8MiB } }\n",
    );
    let archive = big_archive(&env);
    push_killed_after_a_part(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !env.path("offsite").join(&name).exists(),
        "nothing half-written under the real name"
    );
    resumed_push_sends_only_the_rest(&env, &archive);
    assert!(!env.path("offsite").join(format!(".{name}.partial")).exists());
}

#[test]
fn a_push_to_a_directory_killed_after_its_last_part_or_missing_its_partial_file_still_copies_exactly() {
    let env = Env::new(
        "version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives, offsite: { url: offsite, max_rate: 8MiB } }\n",
    );
    let archive = big_archive(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let bytes = std::fs::read(&archive).unwrap();
    // Every part stored (the last one short), killed while the rate limit waits.
    push_killed_after_parts(&env, 3);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert!(
        std::fs::read(env.path("offsite").join(&name)).unwrap() == bytes,
        "the copy is the archive, not padded to whole parts"
    );
    // Killed after a part, then the partial file is lost: the parts are sent again.
    std::fs::remove_file(env.path("offsite").join(&name)).unwrap();
    std::fs::remove_file(env.path("offsite").join(format!("{name}.sha256"))).unwrap();
    push_killed_after_a_part(&env);
    std::fs::remove_file(env.path("offsite").join(format!(".{name}.partial"))).unwrap();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert!(
        std::fs::read(env.path("offsite").join(&name)).unwrap() == bytes,
        "the copy is the archive, not zeros where the lost parts were"
    );
}

#[test]
fn a_multipart_upload_gone_from_the_store_is_started_over_not_retried_forever() {
    let (_moto, port) = moto();
    let env = slow_s3_env(port);
    let archive = big_archive(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    push_killed_after_a_part(&env);
    // The store drops the unfinished upload, as a lifecycle rule would.
    let upload: String = env
        .db()
        .query_row("SELECT upload_id FROM offsite_uploads", (), |r| r.get(0))
        .unwrap();
    request(
        port,
        "DELETE",
        &format!("/runbook-backups/hosts/vps-1/{name}?uploadId={upload}"),
        None,
    );
    // moto answers a request to the vanished upload with a 500 (S3 says NoSuchUpload, for
    // which see the test above): its state goes once three pushes in a row have failed on it,
    // not sooner (the store may be erring for a while) and not never.
    for n in 1..=3 {
        let (code, r) = env.json(&["backup", "push", "main"]);
        assert_eq!(code, 1, "the upload it continued is gone: {r}");
        if n < 3 {
            assert_eq!(upload_state(&env).map(|(_, failed)| failed), Some(n), "{r}");
        } else {
            assert_eq!(upload_state(&env), None, "{r}");
            assert!(r.to_string().contains("starts this archive over"), "{r}");
        }
    }
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name.clone()], "{r}");
    pulled_back_unchanged(&env, &archive);
}

#[test]
fn a_damaged_archive_or_one_without_its_sidecar_is_refused_by_name_and_the_rest_pushed() {
    let env = Env::new(TO_A_DIRECTORY);
    let mut archives = setup(&env);
    std::thread::sleep(Duration::from_millis(1100));
    env.write("data/c.txt", "gamma\n");
    archives.push(create(&env));
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    // The oldest is damaged on disk after its sidecar was written; the second lost its sidecar.
    let mut bytes = std::fs::read(&archives[0]).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    std::fs::write(&archives[0], bytes).unwrap();
    std::fs::remove_file(format!("{}.sha256", archives[1].display())).unwrap();

    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 1, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name(&archives[2])], "{r}");
    let refused = r["refused"].to_string();
    assert!(
        refused.contains(&name(&archives[0])) && refused.contains("sidecar says"),
        "{refused}"
    );
    assert!(
        refused.contains(&name(&archives[1])) && refused.contains("no readable sidecar"),
        "{refused}"
    );
    assert!(
        !env.path("offsite/main").join(name(&archives[0])).exists(),
        "no damaged copy offsite"
    );
    assert!(env.path("offsite/main").join(name(&archives[2])).exists());
}

#[test]
fn a_damaged_archive_is_not_encrypted_on_the_way_and_pushed_under_its_good_hash() {
    let (_, recipient) = age_key();
    let env = Env::new(&dir_target("", &format!(", encrypt_to: \"{recipient}\"")));
    let local = setup(&env);
    let mut bytes = std::fs::read(&local[0]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&local[0], bytes).unwrap();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 1, "{r}");
    let damaged = local[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(r["refused"].to_string().contains(&damaged), "{r}");
    assert!(!env.path("offsite").join(format!("{damaged}.age")).exists());
    assert_eq!(names(&r, "pushed").len(), 1, "the good one still goes: {r}");
}

#[test]
fn an_interrupted_push_to_s3_continues_its_multipart_upload() {
    let (_moto, port) = moto();
    let env = slow_s3_env(port);
    let archive = big_archive(&env);
    push_killed_after_a_part(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        !s3_objects(port).contains(&format!("{name}<")),
        "not visible before it completes"
    );
    resumed_push_sends_only_the_rest(&env, &archive);
}

#[test]
fn a_target_without_offsite_is_a_usage_error_for_push_and_pull() {
    let env = Env::new("version: 1\nbackups:\n  main: { sources: [ { dir: data } ], dest: archives }\n");
    for cmd in ["push", "pull"] {
        let out = env.run(&["backup", cmd, "main"]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(out.stderr.contains("has no `offsite:`"), "{}", out.stderr);
    }
}

#[test]
fn what_a_killed_pull_left_goes_with_the_next_create() {
    let env = Env::new(TO_A_DIRECTORY);
    env.write("data/a.txt", "alpha\n");
    for f in [
        "archives/main-20260101T000000Z.tar.zst.part",
        "archives/main-20260101T000000Z.tar.zst.age.part",
        "archives/main-db-20260101T000000Z.tar.zst.part",
    ] {
        env.write(f, "half a download");
    }
    create(&env);
    let names = env.names("archives");
    assert!(
        !names.iter().any(|n| n.starts_with("main-2026") && n.ends_with(".part")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "main-db-20260101T000000Z.tar.zst.part"),
        "another target's stays: {names:?}"
    );
}

#[test]
fn a_pull_that_cannot_record_an_archive_already_here_leaves_it_in_place() {
    // Archives encrypted where they are made, on a host without the identity to read them.
    let (_, recipient) = age_key();
    let env = Env::new(&dir_target(&format!("    encrypt_to: \"{recipient}\"\n"), ""));
    env.write("data/a.txt", "alpha\n");
    let archive = create(&env);
    assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
    let bytes = std::fs::read(&archive).unwrap();
    // Its sidecar is lost here: pull fetches the same bytes again, and cannot read the
    // manifest to record it.
    std::fs::remove_file(format!("{}.sha256", archive.display())).unwrap();
    let out = env.run(&["backup", "pull", "main"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("FAILED"), "{}", out.stdout);
    assert_eq!(
        std::fs::read(&archive).unwrap(),
        bytes,
        "the archive that was here stays"
    );
}

/// A proxy on 127.0.0.1 in front of the S3 server that passes every request on, one a
/// connection, except part uploads while `mode` says otherwise: [`REFUSE`] answers them 403
/// (a store refusing for a while, as with credentials mid-rotation), [`GONE`] 404 with S3's
/// `NoSuchUpload` (the upload aborted by a lifecycle rule); and sidecars with [`NO_SIDECAR`].
struct Gate {
    port: u16,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

const PASS: u8 = 0;
const REFUSE: u8 = 1;
const GONE: u8 = 2;
/// The store takes everything but sidecars (`*.sha256`), which it answers 403.
const NO_SIDECAR: u8 = 3;

impl Gate {
    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
}

fn gate(upstream: u16) -> Gate {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PASS));
    let flag = mode.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let flag = flag.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if !line.to_ascii_lowercase().starts_with("connection:") {
                        head.push_str(&line);
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                let mut client = client;
                let request_line = head.lines().next().unwrap();
                let part = head.starts_with("PUT ") && request_line.contains("partNumber=");
                let sidecar = head.starts_with("PUT ")
                    && request_line
                        .split_whitespace()
                        .nth(1)
                        .is_some_and(|p| p.ends_with(".sha256"));
                let answer = match flag.load(Ordering::SeqCst) {
                    NO_SIDECAR if sidecar => Some((
                        "403 Forbidden",
                        "<Error><Code>AccessDenied</Code><Message>no sidecars today</Message></Error>",
                    )),
                    REFUSE if part => Some((
                        "403 Forbidden",
                        "<Error><Code>AccessDenied</Code><Message>refused for a while</Message></Error>",
                    )),
                    GONE if part => Some((
                        "404 Not Found",
                        "<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>",
                    )),
                    _ => None,
                };
                if let Some((status, xml)) = answer {
                    let _ = write!(
                        client,
                        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                        xml.len()
                    );
                    return;
                }
                let mut up = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                up.write_all(head.as_bytes()).unwrap();
                up.write_all(b"Connection: close\r\n\r\n").unwrap();
                up.write_all(&body).unwrap();
                let mut answer = Vec::new();
                up.read_to_end(&mut answer).unwrap();
                // The answer keeps its own framing; `Connection: close` keeps the client from
                // sending a second request on this connection.
                let split = answer.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
                let _ = client.write_all(&answer[..split]);
                let _ = client.write_all(b"Connection: close\r\n");
                let _ = client.write_all(&answer[split..]);
            });
        }
    });
    Gate { port, mode }
}

/// The number of parts recorded as stored of the one upload in progress, and how many pushes
/// in a row failed on their first request to it (none: no upload in progress).
fn upload_state(env: &Env) -> Option<(i64, i64)> {
    env.db()
        .query_row(
            &format!("SELECT {}, failed_starts FROM offsite_uploads", env.json_len("parts")),
            (),
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
}

/// An S3 target behind a [`Gate`], with a push of its ~40 MiB archive killed after a part.
fn interrupted_behind_a_gate() -> (Server, Gate, Env, PathBuf) {
    let (moto, moto_port) = moto();
    let gate = gate(moto_port);
    let env = slow_s3_env(gate.port);
    let archive = big_archive(&env);
    push_killed_after_a_part(&env);
    (moto, gate, env, archive)
}

#[test]
fn a_continued_s3_upload_keeps_its_stored_parts_when_the_store_refuses_for_a_while() {
    let (_moto, gate, env, archive) = interrupted_behind_a_gate();
    let (stored, _) = upload_state(&env).expect("an upload in progress");
    gate.set(REFUSE);
    // However often: a refusal says nothing of the upload, and costs none of its parts.
    for _ in 0..4 {
        let out = env.run(&["backup", "push", "main"]);
        assert_eq!(out.code, 1, "the store refused the part: {}", out.stdout);
        assert!(
            out.stdout.contains("refused for a while") && out.stdout.contains("kept for the next push"),
            "{}",
            out.stdout
        );
        assert_eq!(
            upload_state(&env),
            Some((stored, 0)),
            "the parts stored before are still counted on"
        );
    }
    gate.set(PASS);
    resumed_push_sends_only_the_rest(&env, &archive);
}

#[test]
fn an_s3_upload_the_store_says_it_no_longer_has_is_started_over_at_once() {
    let (_moto, gate, env, archive) = interrupted_behind_a_gate();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    gate.set(GONE);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 1, "{r}");
    assert!(r.to_string().contains("starts this archive over"), "{r}");
    assert_eq!(upload_state(&env), None, "dropped with the first push that hears it");
    gate.set(PASS);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name], "{r}");
    assert!(names(&r, "resumed").is_empty(), "started over: {r}");
    pulled_back_unchanged(&env, &archive);
}

#[test]
fn an_offsite_copy_cut_short_is_pushed_again_as_it_is_or_encrypted() {
    let (_, recipient) = age_key();
    for (config, suffix) in [
        (TO_A_DIRECTORY.to_string(), ""),
        (dir_target("", &format!("/main, encrypt_to: \"{recipient}\"")), ".age"),
    ] {
        let env = Env::new(&config);
        let local = setup(&env);
        assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
        let name = local[1].file_name().unwrap().to_string_lossy().into_owned();
        let copy = env.path("offsite/main").join(format!("{name}{suffix}"));
        let whole = std::fs::read(&copy).unwrap();
        // Cut short where it is kept; its sidecar still names the right hash.
        std::fs::write(&copy, &whole[..whole.len() / 2]).unwrap();
        let (code, r) = env.json(&["backup", "push", "main"]);
        assert_eq!(code, 0, "{r}");
        assert_eq!(names(&r, "pushed"), vec![name.clone()], "{suffix}: {r}");
        assert_eq!(names(&r, "skipped").len(), 1, "the whole copy stays: {r}");
        assert!(r["replaced"][0][0] == name.as_str(), "{r}");
        assert!(r["replaced"][0][1].as_str().unwrap().contains("bytes"), "{r}");
        let text = env.run(&["backup", "push", "main"]);
        assert!(text.stdout.contains("0 pushed"), "whole again: {}", text.stdout);
        // And it comes back as the archive.
        std::fs::remove_file(&local[1]).unwrap();
        std::fs::remove_file(format!("{}.sha256", local[1].display())).unwrap();
        if !suffix.is_empty() {
            continue; // coming back encrypted needs the identity: covered above
        }
        let (code, p) = env.json(&["backup", "pull", "main", "--archive", &name]);
        assert_eq!(code, 0, "{p}");
        assert_eq!(env.run(&["backup", "verify", local[1].to_str().unwrap()]).code, 0);
    }
}

#[test]
fn a_copy_cut_short_in_the_form_encryption_no_longer_uses_is_replaced_once() {
    let (_, recipient) = age_key();
    let env = Env::new(&dir_target("", &format!("/main, encrypt_to: \"{recipient}\"")));
    let local = setup(&env);
    assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
    let name = local[1].file_name().unwrap().to_string_lossy().into_owned();
    let sealed = env.path("offsite/main").join(format!("{name}.age"));
    std::fs::write(&sealed, b"age-encryption.org/v1\n").unwrap();
    // Encryption is turned off since: the archive goes as it is, and the short copy goes.
    env.edit_config(&format!(", encrypt_to: \"{recipient}\""), "");
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name.clone()], "{r}");
    assert!(!sealed.exists(), "the short copy is gone");
    assert!(std::fs::read(env.path("offsite/main").join(&name)).unwrap() == std::fs::read(&local[1]).unwrap());
    let (_, again) = env.json(&["backup", "push", "main"]);
    assert!(names(&again, "pushed").is_empty(), "not sent again and again: {again}");
    assert_eq!(names(&again, "skipped").len(), 2, "{again}");
}

#[test]
fn a_copy_cut_short_is_not_called_replaced_when_the_archive_cannot_go() {
    let env = Env::new(TO_A_DIRECTORY);
    let local = setup(&env);
    assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
    let name = local[1].file_name().unwrap().to_string_lossy().into_owned();
    let copy = env.path("offsite/main").join(&name);
    std::fs::write(&copy, b"short").unwrap();
    // The local archive is damaged too: nothing can replace the copy.
    let mut bytes = std::fs::read(&local[1]).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    std::fs::write(&local[1], bytes).unwrap();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 1, "{r}");
    assert!(r["replaced"].as_array().unwrap().is_empty(), "{r}");
    assert!(r["refused"][0][0] == name.as_str(), "{r}");
}

#[test]
fn push_check_reads_copies_back_and_replaces_one_damaged_where_it_is_kept() {
    let (secret, recipient) = age_key();
    for (config, suffix) in [
        (TO_A_DIRECTORY.to_string(), ""),
        (
            dir_target(
                "",
                &format!("/main, identity_file: age.key, encrypt_to: \"{recipient}\""),
            ),
            ".age",
        ),
    ] {
        let env = Env::new(&config);
        env.write("age.key", &secret);
        let local = setup(&env);
        assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
        let name = local[1].file_name().unwrap().to_string_lossy().into_owned();
        let copy = env.path("offsite/main").join(format!("{name}{suffix}"));
        // One byte flipped where it is kept: same size, same sidecar.
        let mut bytes = std::fs::read(&copy).unwrap();
        let n = bytes.len();
        bytes[n - 100] ^= 1;
        std::fs::write(&copy, bytes).unwrap();
        let (_, plain) = env.json(&["backup", "push", "main"]);
        assert_eq!(
            names(&plain, "skipped").len(),
            2,
            "by hash and size it looks whole: {plain}"
        );
        let (code, r) = env.json(&["backup", "push", "main", "--check"]);
        assert_eq!(code, 0, "{suffix}: {r}");
        assert_eq!(names(&r, "pushed"), vec![name.clone()], "{suffix}: {r}");
        assert!(r["replaced"][0][1].as_str().unwrap().contains("damaged"), "{r}");
        assert_eq!(names(&r, "checked").len(), 1, "{r}");
        let (code, again) = env.json(&["backup", "push", "main", "--check"]);
        assert_eq!(code, 0, "{again}");
        assert_eq!(names(&again, "checked").len(), 2, "whole again: {again}");
        assert!(
            env.names("archives").iter().all(|n| !n.starts_with(".offsite-check-")),
            "no scratch left"
        );
        let flip = |at: usize| {
            let mut bytes = std::fs::read(&copy).unwrap();
            bytes[at] ^= 1;
            std::fs::write(&copy, bytes).unwrap();
        };
        if suffix.is_empty() {
            // Damaged offsite and here: nothing can replace it, and the report says both.
            flip(n - 100);
            let mut here = std::fs::read(&local[1]).unwrap();
            here[n - 100] ^= 1;
            std::fs::write(&local[1], here).unwrap();
            let (code, r) = env.json(&["backup", "push", "main", "--check"]);
            assert_eq!(code, 1, "{r}");
            let refused = r["refused"][0][1].as_str().unwrap();
            assert!(
                refused.contains("offsite copy is not whole") && refused.contains("sidecar"),
                "{r}"
            );
            continue;
        }
        // A damaged header (the identity is right) is damage too, not a key question.
        flip(3);
        let (code, r) = env.json(&["backup", "push", "main", "--check"]);
        assert_eq!(code, 0, "{r}");
        assert_eq!(names(&r, "pushed"), vec![name.clone()], "{r}");
        // The wrong identity says nothing of the copies: unchecked, nothing pushed, nothing left.
        env.write("other.key", &age_key().0);
        env.edit_config("identity_file: age.key", "identity_file: other.key");
        let (code, r) = env.json(&["backup", "push", "main", "--check"]);
        assert_eq!(code, 1, "{r}");
        assert_eq!(r["unchecked"].as_array().unwrap().len(), 2, "{r}");
        assert!(names(&r, "pushed").is_empty(), "{r}");
        // Without the identity a copy encrypted on the way cannot be read back: said, exit 1.
        env.edit_config("identity_file: other.key, ", "");
        let out = env.run(&["backup", "push", "main", "--check"]);
        assert_eq!(out.code, 1, "{}", out.stdout);
        assert!(
            out.stdout.contains("could not be checked") && out.stdout.contains("identity_file"),
            "{}",
            out.stdout
        );
        assert!(
            env.names("archives").iter().all(|n| !n.starts_with(".offsite-check-")),
            "no scratch left"
        );
    }
}

#[test]
fn push_check_reads_back_copies_of_archives_pruned_here_too() {
    let env = Env::new(TO_A_DIRECTORY);
    let local = setup(&env);
    assert_eq!(env.json(&["backup", "push", "main"]).0, 0);
    // The older one is pruned here, kept offsite; its copy there is damaged.
    let name = local[0].file_name().unwrap().to_string_lossy().into_owned();
    std::fs::remove_file(&local[0]).unwrap();
    std::fs::remove_file(format!("{}.sha256", local[0].display())).unwrap();
    let copy = env.path("offsite/main").join(&name);
    let mut bytes = std::fs::read(&copy).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&copy, bytes).unwrap();
    let (code, r) = env.json(&["backup", "push", "main", "--check"]);
    assert_eq!(code, 1, "{r}");
    assert!(r["damaged"][0][0] == name.as_str(), "{r}");
    assert_eq!(names(&r, "checked").len(), 1, "the other copy is sound: {r}");
    let out = env.run(&["backup", "push", "main", "--check"]);
    assert!(out.stdout.contains("not here to push again"), "{}", out.stdout);
}

#[test]
fn an_encrypted_upload_the_store_refuses_leaves_no_parts_behind() {
    let (_moto, moto_port) = moto();
    let gate = gate(moto_port);
    let (_, recipient) = age_key();
    let env = s3_env_with(gate.port, &format!("encrypt_to: \"{recipient}\""));
    // Five parts of 16 MiB and more: the refusals come back while the archive is still being
    // encrypted and sent, not only when the upload is completed.
    env.write_incompressible("data/blob.bin", 70 << 20);
    let archive = create(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    gate.set(REFUSE);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 1, "{r}");
    assert!(r["refused"][0][0] == name.as_str(), "{r}");
    // Nothing continues an encrypted upload (each encryption differs): it is aborted, and no
    // part of it is left on the store to be paid for.
    let uploads = request(moto_port, "GET", "/runbook-backups?uploads", None);
    assert_eq!(uploads.status, 200, "{}", uploads.body);
    assert!(!uploads.body.contains("<UploadId>"), "{}", uploads.body);
    assert_eq!(upload_state(&env), None, "nothing recorded to continue");
    gate.set(PASS);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name.clone()], "{r}");
    assert!(s3_objects(moto_port).contains(&format!("{name}.age")));
}

#[test]
fn an_s3_copy_whole_but_missing_its_sidecar_is_finished_without_sending_it_again() {
    let (_moto, moto_port) = moto();
    let gate = gate(moto_port);
    let env = s3_env(gate.port);
    let archive = big_archive(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    // The store takes the archive's three parts and completes the upload, then refuses its
    // sidecar: the push fails with the copy whole and nothing saying so.
    gate.set(NO_SIDECAR);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 1, "{r}");
    let listing = s3_objects(moto_port);
    assert!(listing.contains(&format!("{name}</Key>")), "{listing}");
    assert!(!listing.contains(".sha256"), "{listing}");
    gate.set(PASS);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed"), vec![name.clone()], "{r}");
    assert_eq!(names(&r, "resumed"), vec![name.clone()], "{r}");
    assert_eq!(r["bytes"], 0, "the whole copy is not sent again: {r}");
    assert!(s3_objects(moto_port).contains(&format!("{name}.sha256</Key>")));
    pulled_back_unchanged(&env, &archive);
}

#[test]
fn a_directory_copy_missing_its_sidecar_is_kept_when_whole_and_sent_again_when_not() {
    let env = Env::new(TO_A_DIRECTORY);
    env.write_incompressible("data/blob.bin", 3 << 20);
    let archive = create(&env);
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let size = std::fs::metadata(&archive).unwrap().len();
    let copy = env.path("offsite/main").join(&name);
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    // The same size, one byte different, no sidecar: sent again over it.
    let mut bytes = std::fs::read(&archive).unwrap();
    bytes[size as usize / 2] ^= 0x01;
    std::fs::write(&copy, &bytes).unwrap();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["bytes"], size, "{r}");
    assert!(std::fs::read(&copy).unwrap() == std::fs::read(&archive).unwrap());
    // The archive itself, its sidecar lost: only the sidecar is written.
    std::fs::remove_file(env.path("offsite/main").join(format!("{name}.sha256"))).unwrap();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "resumed"), vec![name.clone()], "{r}");
    assert_eq!(r["bytes"], 0, "{r}");
    let sidecar = std::fs::read_to_string(env.path("offsite/main").join(format!("{name}.sha256"))).unwrap();
    assert!(sidecar.starts_with(&std::fs::read_to_string(format!("{}.sha256", archive.display())).unwrap()[..64]));
    // The text says it too.
    std::fs::remove_file(env.path("offsite/main").join(format!("{name}.sha256"))).unwrap();
    let out = env.run(&["backup", "push", "main"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("pushed   {name} (continued from an earlier push)")),
        "{}",
        out.stdout
    );
}

#[test]
fn a_push_to_a_directory_pushed_to_before_and_gone_since_is_refused_as_a_disk_not_mounted() {
    let env = Env::new(TO_A_DIRECTORY);
    env.write("data/a.txt", "alpha\n");
    create(&env);
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    // The share is not mounted: its directory is not there.
    std::fs::rename(env.path("offsite"), env.path("offsite.away")).unwrap();
    let out = env.run(&["backup", "push", "main"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("is its disk mounted"), "{}", out.stderr);
    assert!(!env.path("offsite").exists(), "nothing made where the share should be");
    // Nor when its mount point is there, empty; the error says how to go on if it is the
    // right place after all.
    std::fs::create_dir_all(env.path("offsite/main")).unwrap();
    let out = env.run(&["backup", "push", "main"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("is its disk mounted") && out.stderr.contains("touch"),
        "{}",
        out.stderr
    );
    assert!(
        env.names("offsite/main").is_empty(),
        "nothing written under the mount point"
    );
    std::fs::remove_dir_all(env.path("offsite")).unwrap();
    // Back again: the next push finds its copies there.
    std::fs::rename(env.path("offsite.away"), env.path("offsite")).unwrap();
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "skipped").len(), 1, "{r}");
    // Copies removed from it on purpose are simply pushed again: the directory is marked.
    for f in env.names("offsite/main") {
        if f.contains(".tar.zst") {
            std::fs::remove_file(env.path("offsite/main").join(f)).unwrap();
        }
    }
    let (code, r) = env.json(&["backup", "push", "main"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(names(&r, "pushed").len(), 1, "{r}");
}
