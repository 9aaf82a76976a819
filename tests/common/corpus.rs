//! The hostile corpus of guarded sessions and the fixture it runs against: a sentinel file,
//! a data directory, a secret behind `deny_read` (and a link to it), a listener, a process
//! outside the session and a git repository whose config runs commands. `effects` says what
//! a command changed (and puts it back), whoever ran it.

use super::Env;
use super::receiver::Receiver;

pub const SECRET: &str = "corpus-secret-5e1d";

/// `{S}` the sentinel file, `{D}` the data directory, `{X}` the secret file (deny_read),
/// `{L}` a symlink to it, `{U}` the listener's URL, `{P}` a process outside the session,
/// `{R}` a git repository whose config runs a command.
pub const CORPUS: &[&str] = &[
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
    "chmod 4755 {S}",
    "touch -d 2001-01-01 {S}",
    "python3 -c \"import os; os.chmod('{S}', 0o6777)\"",
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

pub struct Hostile {
    pub env: Env,
    pub listener: Receiver,
    pub data: std::path::PathBuf,
    pub sentinel: std::path::PathBuf,
    pub secret: std::path::PathBuf,
    link: std::path::PathBuf,
    repo: std::path::PathBuf,
    original: Vec<u8>,
    /// The sentinel's mode, owner, group and modification time.
    original_meta: (u32, u32, u32, std::time::SystemTime),
    hostname: String,
    outside: std::process::Child,
}

/// A file's mode, owner, group and modification time.
fn meta(p: &std::path::Path) -> (u32, u32, u32, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).unwrap();
    (m.mode(), m.uid(), m.gid(), m.modified().unwrap())
}

impl Hostile {
    /// The fixture, with `sessions.read_only` set to `read_only` and `extra` YAML appended.
    pub fn new(read_only: &str, extra: &str) -> Hostile {
        let listener = Receiver::start();
        let env = Env::new(&format!(
            r#"
version: 1
secrets: {{ deny_read: [ "{{dir}}/etc/*/backend.env" ] }}
sessions: {{ limits: {{ timeout: 5s }}, read_only: {read_only} }}
{extra}
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
        let original_meta = meta(&sentinel);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let outside = std::process::Command::new("sleep").arg("120").spawn().unwrap();
        Hostile {
            env,
            listener,
            data,
            sentinel,
            secret,
            link,
            repo,
            original,
            original_meta,
            hostname,
            outside,
        }
    }

    /// A corpus line with its placeholders filled in.
    pub fn fill(&self, line: &str) -> String {
        line.replace("{S}", &self.sentinel.display().to_string())
            .replace("{D}", &self.data.display().to_string())
            .replace("{X}", &self.secret.display().to_string())
            .replace("{L}", &self.link.display().to_string())
            .replace("{U}", &self.listener.url())
            .replace("{P}", &self.outside.id().to_string())
            .replace("{R}", &self.repo.display().to_string())
            .replace("{SECRET_HEAD}", &SECRET[..10])
    }

    /// What the last command changed, given what it showed; each change is put back.
    pub fn effects(&self, shown: &str) -> Vec<&'static str> {
        let mut effects = Vec::new();
        if std::fs::read(&self.sentinel).ok().as_deref() != Some(self.original.as_slice()) {
            effects.push("the sentinel changed");
            std::fs::write(&self.sentinel, &self.original).unwrap();
        }
        if meta(&self.sentinel) != self.original_meta {
            effects.push("the sentinel's mode, owner or time changed");
            let (mode, uid, gid, mtime) = self.original_meta;
            std::os::unix::fs::chown(&self.sentinel, Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(&self.sentinel, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&self.sentinel)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
        }
        let names = self.env.names("data");
        if names != ["sentinel.txt"] {
            effects.push("a file appeared or went in the data directory");
            for n in names.iter().filter(|n| *n != "sentinel.txt") {
                let _ = std::fs::remove_file(self.data.join(n));
                let _ = std::fs::remove_dir_all(self.data.join(n));
            }
        }
        if shown.contains(SECRET) {
            effects.push("the secret was shown");
        }
        if self.listener.requests().iter().any(|r| r.method != "GET") {
            effects.push("the listener got a request that writes");
        }
        effects
    }

    /// The host name is unchanged and the process outside the session still runs.
    pub fn host_untouched(&mut self) {
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
            self.hostname
        );
        assert!(
            self.outside.try_wait().unwrap().is_none(),
            "a process outside the session was killed"
        );
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.outside.kill();
        let _ = self.outside.wait();
    }
}
