//! The command policy of guarded sessions: is this argv read-only, state-changing, or never
//! allowed?
//!
//! Owns the built-in read-only list of the production-session playbook (host state, repo
//! state, service state, runbook's own read verbs), the operator's `sessions.read_only`
//! patterns, and the rules that override both: persistent privileged shells are refused,
//! shells with a script and anything that looks like shell syntax are state-changing, and
//! reading a `secrets.deny_read` path needs explicit approval. Pure: no process, no store.
//! Invariant: when in doubt, a command is state-changing.

use serde::Serialize;

use crate::check::wildcard;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "snake_case")]
pub enum Class {
    /// Runs in a diagnostic session.
    ReadOnly,
    /// Needs an approved change request naming exactly this command.
    StateChanging(String),
    /// Reads a secret-bearing file: needs a change request that approves the exposure.
    SecretRead(String),
    /// Never runs, approved or not.
    Refused(String),
}

/// Read-only commands of the playbook, as `program [first args…]` prefixes. A prefix
/// matches when argv starts with exactly these words; the rest of argv is free unless the
/// entry lists forbidden flags.
const READ_ONLY: &[&[&str]] = &[
    &["hostname"],
    &["whoami"],
    &["id"],
    &["date"],
    &["uptime"],
    &["df"],
    &["free"],
    &["findmnt"],
    &["lsblk"],
    &["ps"],
    &["pgrep"],
    &["uname"],
    &["ls"],
    &["stat"],
    &["du"],
    &["wc"],
    &["cat"],
    &["head"],
    &["tail"],
    &["grep"],
    &["find"],
    &["cat", "/proc/loadavg"],
    &["cat", "/proc/meminfo"],
    &["git", "rev-parse"],
    &["git", "status"],
    &["git", "log"],
    &["git", "show"],
    &["git", "diff"],
    &["git", "describe"],
    &["systemctl", "status"],
    &["systemctl", "is-active"],
    &["systemctl", "is-enabled"],
    &["systemctl", "list-units"],
    &["systemctl", "list-timers"],
    &["systemctl", "show"],
    &["journalctl"],
    &["docker", "ps"],
    &["docker", "logs"],
    &["docker", "inspect"],
    &["docker", "stats", "--no-stream"],
    &["ss"],
    &["ip", "addr"],
    &["ip", "route"],
    &["curl", "-fsS"],
    &["runbook", "list"],
    &["runbook", "check"],
    &["runbook", "jobs", "list"],
    &["runbook", "jobs", "show"],
    &["runbook", "alerts", "list"],
    &["runbook", "audit", "list"],
    &["runbook", "audit", "verify"],
    &["runbook", "audit", "summary"],
    &["runbook", "backup", "list"],
    &["runbook", "backup", "verify"],
    &["runbook", "config", "check"],
    &["runbook", "config", "show"],
    &["runbook", "state", "get"],
    &["runbook", "db", "status"],
    &["runbook", "session", "status"],
];

/// Flags that make an otherwise read-only command change something.
const WRITING_FLAGS: &[(&str, &[&str])] = &[
    (
        "journalctl",
        &[
            "--vacuum-size",
            "--vacuum-time",
            "--vacuum-files",
            "--rotate",
            "--flush",
        ],
    ),
    ("git", &["--output", "-o"]),
    ("date", &["-s", "--set"]),
    ("hostname", &["-b", "--boot", "-F", "--file"]),
    (
        "find",
        &[
            "-delete", "-exec", "-execdir", "-ok", "-okdir", "-fprint", "-fprintf", "-fls",
        ],
    ),
    (
        "curl",
        &[
            "-o",
            "--output",
            "-O",
            "-X",
            "--request",
            "-d",
            "--data",
            "-T",
            "--upload-file",
        ],
    ),
];

/// Characters that mean the caller expected a shell: pipes, lists, redirections,
/// substitutions. `session exec` runs argv without a shell, so these are either a mistake or
/// an attempt; both are treated as state-changing.
const SHELL_SYNTAX: &[&str] = &["|", "||", "&&", ";", ">", ">>", "<", "&", "`", "$(", "2>", "&>"];

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"];

fn program(argv0: &str) -> &str {
    argv0.rsplit('/').next().unwrap_or(argv0)
}

/// The policy: built-in rules plus the operator's patterns and secret paths.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `sessions.read_only`: wildcard patterns over the command line (`df *`, `git status*`).
    pub read_only: Vec<String>,
    /// `secrets.deny_read`: wildcard patterns of paths (`/etc/*/backend.env`).
    pub deny_read: Vec<String>,
}

impl Policy {
    pub fn classify(&self, argv: &[String]) -> Class {
        let Some(first) = argv.first() else {
            return Class::Refused("an empty command".into());
        };
        // sudo: judge what it runs; a shell through sudo is a persistent privileged shell.
        let mut args: Vec<&str> = argv.iter().map(String::as_str).collect();
        if program(first) == "sudo" {
            let rest: Vec<&str> = args[1..].iter().copied().skip_while(|a| a.starts_with('-')).collect();
            let flags: Vec<&str> = args[1..].iter().copied().take_while(|a| a.starts_with('-')).collect();
            if flags
                .iter()
                .any(|f| matches!(*f, "-s" | "-i" | "--shell" | "--login" | "-su"))
                || rest.is_empty()
                || matches!(program(rest[0]), "su" | "-su")
                || (SHELLS.contains(&program(rest[0])) && rest.len() == 1)
            {
                return Class::Refused(
                    "persistent privileged shells are never allowed (sudo -s, sudo -i, sudo su, a bare sudo shell); run one-shot commands instead"
                        .into(),
                );
            }
            args = rest;
        }
        let prog = program(args[0]);
        if prog == "su" {
            return Class::Refused("persistent privileged shells are never allowed (su)".into());
        }
        if SHELLS.contains(&prog) {
            return Class::StateChanging(format!(
                "`{prog}` runs a script whose effects cannot be known in advance"
            ));
        }
        if let Some(s) = args.iter().find(|a| SHELL_SYNTAX.iter().any(|m| a.contains(m))) {
            return Class::StateChanging(format!(
                "`{s}` is shell syntax (pipes, redirections, lists); commands run without a shell"
            ));
        }
        // Secret-bearing files: any argument naming one (after `=` too: `--env-file=…`).
        for a in &args {
            let path = a.rsplit_once('=').map_or(*a, |(_, v)| v);
            if self.deny_read.iter().any(|p| wildcard::matches(p, path)) {
                return Class::SecretRead(format!("`{path}` is listed in secrets.deny_read"));
            }
        }
        let line = args.join(" ");
        let built_in = READ_ONLY.iter().any(|prefix| {
            prefix.len() <= args.len()
                && prefix
                    .iter()
                    .zip(&args)
                    .enumerate()
                    .all(|(i, (want, got))| if i == 0 { program(got) == *want } else { got == want })
        });
        let configured = self.read_only.iter().any(|p| wildcard::matches(p, &line));
        if built_in || configured {
            if let Some((_, flags)) = WRITING_FLAGS.iter().find(|(p, _)| *p == prog)
                && let Some(f) = args[1..]
                    .iter()
                    .find(|a| flags.iter().any(|f| *a == f || a.starts_with(&format!("{f}="))))
            {
                return Class::StateChanging(format!("`{prog} {f}` writes"));
            }
            return Class::ReadOnly;
        }
        Class::StateChanging(format!("`{prog}` is not on the read-only list"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(p: &Policy, line: &str) -> Class {
        p.classify(&shlex::split(line).unwrap())
    }

    fn policy() -> Policy {
        Policy {
            read_only: vec!["/opt/app/.venv/bin/app list-jobs*".into()],
            deny_read: vec!["/etc/*/backend.env".into()],
        }
    }

    #[test]
    fn the_playbooks_diagnostics_are_read_only() {
        let p = policy();
        for line in [
            "hostname",
            "whoami",
            "df -h",
            "free -h",
            "findmnt",
            "ps aux",
            "git rev-parse HEAD",
            "git status --porcelain",
            "git log -1",
            "systemctl status app-api app-worker --no-pager -l",
            "docker ps",
            "sudo journalctl -u app-worker --no-pager -n 200",
            "/usr/bin/uptime",
            "/opt/app/.venv/bin/app list-jobs --limit 50",
            "runbook jobs list",
        ] {
            assert_eq!(class(&p, line), Class::ReadOnly, "{line}");
        }
    }

    #[test]
    fn changes_shells_and_secrets_are_not() {
        let p = policy();
        for line in [
            "systemctl restart app-api",
            "rm -rf /tmp/x",
            "bash -c 'echo hi'",
            "git pull",
            "journalctl --vacuum-time=1d",
            "docker rm -f web",
            "df -h > /tmp/out",
            "ps aux | grep app",
            "runbook jobs retry 4 --apply",
            "date -s 2020-01-01",
            "find /tmp -name x -delete",
        ] {
            assert!(
                matches!(class(&p, line), Class::StateChanging(_)),
                "{line}: {:?}",
                class(&p, line)
            );
        }
        for line in ["sudo -s", "sudo su -", "sudo -i", "su", "sudo bash", "sudo"] {
            assert!(
                matches!(class(&p, line), Class::Refused(_)),
                "{line}: {:?}",
                class(&p, line)
            );
        }
        for line in [
            "cat /etc/app/backend.env",
            "sudo cat /etc/app/backend.env",
            "docker run --env-file=/etc/app/backend.env x",
        ] {
            assert!(
                matches!(class(&p, line), Class::SecretRead(_)),
                "{line}: {:?}",
                class(&p, line)
            );
        }
        assert!(matches!(p.classify(&[]), Class::Refused(_)));
    }
}
