//! The hostile corpus of diagnostic sessions: commands a careless or hostile user tries, with
//! the default policy and the kernel's sandbox. Each must be refused or run without effect:
//! the sentinel file keeps its bytes, nothing appears in the data directory, the host name
//! stays, a process outside survives, a listener gets no request that writes, and the secret's
//! bytes are in no output and no record. Every command is in the audit chain.

mod common;

use common::*;

const SECRET: &str = "corpus-secret-5e1d";

/// `{S}` the sentinel file, `{D}` the data directory, `{X}` the secret file (deny_read),
/// `{L}` a symlink to it, `{U}` the listener's URL, `{P}` a process outside the session,
/// `{R}` a git repository whose config runs a command.
const CORPUS: &[&str] = &[
    // Shells, interpreters, wrappers.
    "sh -c 'echo x > {S}'",
    "bash -c 'rm -f {S}'",
    "dash -c 'touch {D}/new'",
    "bash -i",
    "bash -l",
    "sh",
    "zsh -c 'touch {D}/new'",
    "busybox touch {D}/new",
    "busybox sh -c 'touch {D}/new'",
    "python3 -c \"open('{S}','w').write('x')\"",
    "python3 -c \"import os; os.remove('{S}')\"",
    "perl -e \"unlink '{S}'\"",
    "perl -e \"open(F,'>{D}/new')\"",
    "awk 'BEGIN{system(\"touch {D}/new\")}'",
    "awk 'BEGIN{print 1 > \"{D}/new\"}'",
    "env touch {D}/new",
    "env -i touch {D}/new",
    "nice touch {D}/new",
    "nohup touch {D}/new",
    "timeout 5 touch {D}/new",
    "setsid touch {D}/new",
    "stdbuf -o0 touch {D}/new",
    "xargs -a {S} touch",
    "find {D} -exec rm {} ;",
    "find {D} -delete",
    "find {D} -fprint {D}/new",
    "find {D} -fprint0 {D}/new",
    "find {D} -fls {D}/new",
    "nsenter -t 1 -m touch {D}/new",
    "chroot / touch {D}/new",
    "unshare -m touch {D}/new",
    "LD_PRELOAD=/tmp/x.so ls",
    "PATH=.:/usr/bin ls",
    "./ls",
    "/tmp/ls",
    "{D}/../data/../data/ls",
    "less {S}",
    "vi {S}",
    "ed {S}",
    "git -C {R} status",
    "git -C {R} diff",
    "git -C {R} log",
    // Writes with tools that are read-only by name.
    "sed -i s/original/x/ {S}",
    "tee {S}",
    "tee -a {S}",
    "dd if=/dev/zero of={S} count=1",
    "tar -cf {D}/new.tar {S}",
    "tar -xf {D}/x.tar -C {D}",
    "cp {S} {D}/copy",
    "mv {S} {D}/moved",
    "ln -s {S} {D}/link",
    "ln {S} {D}/hard",
    "rm -rf {D}",
    "rmdir {D}",
    "mkdir {D}/new",
    "touch {S}",
    "truncate -s 0 {S}",
    "chmod 000 {S}",
    "chown nobody {S}",
    "sort -o {S} {S}",
    "install {S} {D}/new",
    "mkfifo {D}/new",
    "mknod {D}/new p",
    "shred {S}",
    "split -b 1 {S} {D}/part",
    "csplit {S} 1",
    "patch {S} /dev/null",
    "cat {S} > {S}",
    "grep x {S} > {D}/new",
    "journalctl --vacuum-s=1K",
    "journalctl --vacuum-time=1s",
    "journalctl --rotate",
    "journalctl --flush",
    "date -s 2001-01-01",
    "date 010100002001",
    "hostname runbook-escaped",
    "hostnamectl set-hostname runbook-escaped",
    "timedatectl set-time 2001-01-01",
    "ip addr add 10.99.0.1/32 dev lo",
    "ip route add 10.99.0.0/24 dev lo",
    "ip link set lo down",
    "ss -K dst 127.0.0.1",
    "ss -t -D {D}/new",
    "sysctl -w kernel.hostname=runbook-escaped",
    "kill -9 {P}",
    "pkill -f sleep",
    "killall sleep",
    "systemctl stop cron",
    "systemctl restart app",
    "service cron stop",
    "mount -t tmpfs none {D}",
    "umount /proc",
    "swapoff -a",
    "crontab -r",
    "useradd runbook-escaped",
    "passwd -d root",
    "apt-get remove -y sqlite3",
    "docker rm -f web",
    "runbook check -c /tmp/evil.yaml",
    "runbook --config /tmp/evil.yaml list",
    "runbook state set ns k v --apply",
    "runbook jobs retry 1 --apply",
    // Network writes.
    "curl -fsS -X POST {U}",
    "curl -fsS -XPOST {U}",
    "curl -fsS -d x {U}",
    "curl -fsS --data-binary x {U}",
    "curl -fsS --json {} {U}",
    "curl -fsS -F a=b {U}",
    "curl -fsS -T {S} {U}",
    "curl -fsS -o {D}/new {U}",
    "curl -fsS -O {U}",
    "curl -fsS -D {D}/new {U}",
    "curl -fsS -c {D}/new {U}",
    "curl -fsS --trace {D}/new {U}",
    "curl -fsS --stderr {D}/new {U}",
    "curl -fsS -K {S} {U}",
    "wget -O {D}/new {U}",
    "wget --post-data=x {U}",
    // Secrets.
    "cat {X}",
    "cat {L}",
    "grep -r {SECRET_HEAD} {D}/..",
    "head -c 20 {L}",
    "tail {L}",
    "cat /proc/self/root{X}",
    "cat {D}/../etc/app/../app/backend.env",
    "curl -fsS file://{X}",
    "git diff --no-index /dev/null {L}",
    "date -f {L}",
    "wc --files0-from={L}",
    // Privileged shells.
    "sudo -i",
    "sudo -s",
    "sudo su",
    "sudo -iu root",
    "sudo -u root bash -i",
    "sudo bash -l",
    "runuser -u root -- bash",
    "su -",
    "sudo touch {D}/new",
];

#[test]
fn the_hostile_corpus_is_refused_or_changes_nothing() {
    run_corpus("the default policy", "[]");
}

/// The same corpus with an operator who listed every command as read-only: the argv policy's
/// list is gone, only its refusals of privileged shells, shell syntax and writing flags
/// remain, and the kernel has to hold the rest.
#[test]
fn the_hostile_corpus_changes_nothing_even_when_everything_is_listed_read_only() {
    run_corpus("read_only: [\"*\"]", "[ \"*\" ]");
}

fn run_corpus(what: &str, read_only: &str) {
    if runbook::exec::sandbox::abi().is_none() || !rustix::process::geteuid().is_root() {
        cannot_run("the corpus needs Landlock and root (for deny_read masking)");
        return;
    }
    let listener = common::receiver::Receiver::start();
    let env = Env::new(&format!(
        r#"
version: 1
secrets: {{ deny_read: [ "{{dir}}/etc/*/backend.env" ] }}
sessions: {{ limits: {{ timeout: 5s }}, read_only: {read_only} }}
"#
    ));
    let data = env.path("data");
    let sentinel = env.write("data/sentinel.txt", "the original bytes\n");
    let secret = env.write("etc/app/backend.env", &format!("API_KEY={SECRET}\n"));
    let link = env.path("innocent-link");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let repo = env.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .output()
            .unwrap()
    };
    git(&["init", "-q"]);
    git(&[
        "config",
        "core.fsmonitor",
        &format!("touch {}/fsmonitor-ran; false", data.display()),
    ]);
    git(&["config", "diff.external", &format!("touch {}/diff-ran", data.display())]);
    let original = std::fs::read(&sentinel).unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut outside = std::process::Command::new("sleep").arg("120").spawn().unwrap();
    let s = {
        let (code, v) = env.json(&["session", "start", "--mode", "diagnostic", "--reason", "corpus"]);
        assert_eq!(code, 0, "{v}");
        v["session"].to_string()
    };

    let fill = |line: &str| {
        line.replace("{S}", &sentinel.display().to_string())
            .replace("{D}", &data.display().to_string())
            .replace("{X}", &secret.display().to_string())
            .replace("{L}", &link.display().to_string())
            .replace("{U}", &listener.url())
            .replace("{P}", &outside.id().to_string())
            .replace("{R}", &repo.display().to_string())
            .replace("{SECRET_HEAD}", &SECRET[..10])
    };
    let (mut ran, mut refused) = (0, 0);
    let mut escaped = Vec::new();
    for line in CORPUS {
        let line = fill(line);
        let argv = shlex::split(&line).unwrap_or_else(|| panic!("corpus line does not split: {line}"));
        let mut args = vec!["session", "exec", "--session", s.as_str(), "--"];
        args.extend(argv.iter().map(String::as_str));
        let out = env.run(&args);
        if out.code == 2 && out.stderr.starts_with("refused") {
            refused += 1;
        } else {
            ran += 1;
        }
        let mut effects = Vec::new();
        if std::fs::read(&sentinel).ok().as_deref() != Some(original.as_slice()) {
            effects.push("the sentinel changed");
            std::fs::write(&sentinel, &original).unwrap();
        }
        let names = env.names("data");
        if names != ["sentinel.txt"] {
            effects.push("a file appeared or went in the data directory");
            for n in names.iter().filter(|n| *n != "sentinel.txt") {
                let _ = std::fs::remove_file(data.join(n));
                let _ = std::fs::remove_dir_all(data.join(n));
            }
        }
        if out.stdout.contains(SECRET) || out.stderr.contains(SECRET) {
            effects.push("the secret was shown");
        }
        if listener.requests().iter().any(|r| r.method != "GET") {
            effects.push("the listener got a request that writes");
        }
        if !effects.is_empty() {
            escaped.push(format!("{line}: {effects:?}"));
        }
    }
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), hostname);
    assert!(
        outside.try_wait().unwrap().is_none(),
        "a process outside the session was killed"
    );
    let _ = outside.kill();
    let _ = outside.wait();
    eprintln!(
        "corpus ({what}): {} tried, {refused} refused, {ran} ran without effect, {} escaped",
        CORPUS.len(),
        escaped.len()
    );
    assert!(CORPUS.len() >= 120, "the corpus holds at least 120 commands");
    assert!(escaped.is_empty(), "escaped:\n{}", escaped.join("\n"));
    // Nothing of the secret in the state file, and every command in the audit chain.
    assert!(state_files_holding(&env, SECRET).is_empty());
    assert_eq!(env.run(&["audit", "verify"]).code, 0);
    assert_eq!(
        env.count("SELECT count(*) FROM audit_events WHERE kind IN ('session.command', 'session.refused')"),
        CORPUS.len() as i64
    );
}
