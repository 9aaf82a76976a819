//! The command policy of guarded sessions: is this argv read-only, state-changing, or never
//! allowed?
//!
//! Owns the built-in read-only list, the `sessions.read_only` patterns and the rules that
//! override both (persistent privileged shells refused; shell scripts and shell syntax
//! state-changing; a `secrets.deny_read` path needs approval). Pure: no process, no store.
//! Invariant: when in doubt, a command is state-changing.

use serde::Serialize;

use crate::util::wildcard;

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

impl Class {
    /// The class with its reason redacted: a reason quotes the argument it is about, and
    /// an argument may hold a secret.
    pub fn redacted(&self, redactor: &crate::config::Redactor) -> Class {
        let r = |why: &String| redactor.redact(why).into_owned();
        match self {
            Class::ReadOnly => Class::ReadOnly,
            Class::StateChanging(why) => Class::StateChanging(r(why)),
            Class::SecretRead(why) => Class::SecretRead(r(why)),
            Class::Refused(why) => Class::Refused(r(why)),
        }
    }
}

/// The built-in table, `read_only.txt`: read-only commands of the playbook as `program [first
/// args…]` prefixes (a prefix matches when argv starts with exactly these words), and
/// `program writes: OPTION…` lines naming the options that make a read-only program write.
const READ_ONLY_TXT: &str = include_str!("read_only.txt");

struct Table {
    read_only: Vec<Vec<&'static str>>,
    writes: Vec<(&'static str, Vec<&'static str>)>,
}

fn table() -> &'static Table {
    static PARSED: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        let mut t = Table {
            read_only: Vec::new(),
            writes: Vec::new(),
        };
        for line in READ_ONLY_TXT
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            match line.split_once(" writes:") {
                Some((prog, options)) => t.writes.push((prog.trim(), options.split_whitespace().collect())),
                None => t.read_only.push(line.split_whitespace().collect()),
            }
        }
        t
    })
}

/// The version of the policy a session runs under: the SHA-256 (first 12 hex digits) of the
/// built-in table, the operator's `read_only` patterns and the `deny_read` paths.
pub fn version(read_only: &[String], deny_read: &[String]) -> String {
    use sha2::Digest;
    let text = serde_json::json!([include_str!("read_only.txt"), read_only, deny_read]).to_string();
    crate::util::hex(&sha2::Sha256::digest(text.as_bytes()))[..12].to_string()
}

fn built_in() -> &'static [Vec<&'static str>] {
    &table().read_only
}

/// The writing options of `prog` in the table.
fn writing_options(prog: &str) -> &'static [&'static str] {
    table()
        .writes
        .iter()
        .find(|(p, _)| *p == prog)
        .map_or(&[], |(_, o)| o.as_slice())
}

/// Characters that mean the caller expected a shell: pipes, lists, redirections,
/// substitutions. `session exec` runs argv without a shell, so these are either a mistake or
/// an attempt; both are treated as state-changing.
const SHELL_SYNTAX: &[&str] = &["|", "||", "&&", ";", ">", ">>", "<", "&", "`", "$(", "2>", "&>"];

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"];

/// Programs that run another program with more privileges.
const ELEVATORS: &[&str] = &["sudo", "runuser", "doas", "pkexec"];

/// Where a program given by a path is trusted by its name.
const TRUSTED_DIRS: &[&str] = &[
    "/usr/bin/",
    "/bin/",
    "/usr/sbin/",
    "/sbin/",
    "/usr/local/bin/",
    "/usr/local/sbin/",
];

/// Options of the elevators that take a value (`sudo -u root`, `runuser -u app`).
fn takes_value(wrapper: &str, flag: &str) -> bool {
    match wrapper {
        "sudo" => matches!(
            flag,
            "-u" | "-g" | "-C" | "-D" | "-h" | "-p" | "-r" | "-t" | "-U" | "-T" | "-R"
        ),
        "runuser" => matches!(flag, "-u" | "-g" | "-G" | "-c" | "-w"),
        "doas" => matches!(flag, "-u" | "-C"),
        _ => false,
    }
}

/// The elevator's own options, and the command it runs.
fn split_wrapper<'a>(wrapper: &str, args: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let mut i = 0;
    let mut flags = Vec::new();
    while i < args.len() {
        let a = args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        flags.push(a);
        // A value in the next word: `-u root`, or a short cluster ending in one (`-iu root`).
        let last = a.chars().last().map(|c| format!("-{c}")).unwrap_or_default();
        if !a.contains('=') && (takes_value(wrapper, a) || (!a.starts_with("--") && takes_value(wrapper, &last))) {
            i += 1;
        }
        i += 1;
    }
    (flags, args[i.min(args.len())..].to_vec())
}

/// A shell with no script: interactive or a login shell (`bash`, `bash -i`, `bash -l`).
fn interactive_shell(args: &[&str]) -> bool {
    args.first().is_some_and(|a| SHELLS.contains(&program(a)))
        && !args[1..]
            .iter()
            .any(|a| *a == "-c" || (a.starts_with('-') && !a.starts_with("--") && a.contains('c')))
}

/// Short options of a cluster (`-fsSo` → f, s, S, o); long options as given.
fn short_cluster(arg: &str) -> Option<&str> {
    arg.strip_prefix('-').filter(|r| !r.starts_with('-') && !r.is_empty())
}

/// Whether `arg` is the writing option `option`: a long option or an unambiguous prefix of it
/// (getopt_long takes `--vacuum-s` for `--vacuum-size`), a letter in a short cluster, or a
/// one-dash word option at the start of the argument (`-fprint0`).
fn is_option(option: &str, arg: &str) -> bool {
    if let Some(long) = option.strip_prefix("--") {
        let name = arg.split_once('=').map_or(arg, |(n, _)| n);
        return name.len() >= 4 && name.strip_prefix("--").is_some_and(|n| long.starts_with(n));
    }
    let word = &option[1..];
    if word.chars().count() == 1 {
        return short_cluster(arg).is_some_and(|cluster| cluster.contains(word));
    }
    arg.starts_with(option)
}

/// Why `prog args` writes although `prog` is read-only by its name; `None` when it does not.
fn writes(prog: &str, args: &[&str]) -> Option<String> {
    for a in args {
        if let Some(option) = writing_options(prog).iter().find(|o| is_option(o, a)) {
            return Some(format!("`{prog} {a}` writes ({option})"));
        }
    }
    let positional: Vec<&&str> = args.iter().filter(|a| !a.starts_with('-')).collect();
    match prog {
        "hostname" if !positional.is_empty() => Some("`hostname NAME` sets the host name".into()),
        "date" if positional.iter().any(|a| !a.starts_with('+')) => Some("`date TIME` sets the clock".into()),
        "ip" if args
            .get(1)
            .is_some_and(|verb| !matches!(*verb, "show" | "list" | "lst" | "get" | "ls"))
            && args.len() > 1 =>
        {
            Some(format!("`ip {} {}` changes the network", args[0], args[1]))
        }
        _ => None,
    }
}

/// `git` with its location options (`-C DIR`, `--git-dir=…`, `--work-tree=…`,
/// `--no-pager`) taken out from before the subcommand.
fn without_git_location<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut i = 1;
    while i < args.len() {
        match args[i] {
            "-C" if i + 1 < args.len() => i += 2,
            "--no-pager" => i += 1,
            a if a.starts_with("--git-dir=") || a.starts_with("--work-tree=") => i += 1,
            _ => break,
        }
    }
    std::iter::once(args[0]).chain(args[i..].iter().copied()).collect()
}

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
    /// `classify_as`, trusting a program given by a path only in the system's directories.
    pub fn classify(&self, argv: &[String]) -> Class {
        let trusted = argv
            .first()
            .is_some_and(|a| !a.contains('/') || TRUSTED_DIRS.iter().any(|d| a.starts_with(d)));
        self.classify_as(argv, trusted)
    }

    /// Classifies `argv`; `trusted` says whether its program (a path, once resolved) may be
    /// judged by its name: a file in a directory only root can write, found through an
    /// absolute PATH entry.
    pub fn classify_as(&self, argv: &[String], trusted: bool) -> Class {
        if argv.is_empty() {
            return Class::Refused("an empty command".into());
        }
        // sudo and its kin: judge what they run; a shell through them is a persistent
        // privileged shell.
        let mut args: Vec<&str> = argv.iter().map(String::as_str).collect();
        while let Some(wrapper) = args.first().map(|a| program(a)).filter(|p| ELEVATORS.contains(p)) {
            let (flags, rest) = split_wrapper(wrapper, &args[1..]);
            let shell_flag = flags.iter().any(|f| {
                matches!(*f, "--shell" | "--login" | "-l" | "--preserve-env")
                    || (f.starts_with('-') && !f.starts_with("--") && f.contains(['s', 'i']))
            });
            if shell_flag || rest.is_empty() || matches!(program(rest[0]), "su" | "-su") || interactive_shell(&rest) {
                return Class::Refused(format!(
                    "persistent privileged shells are never allowed (`{wrapper}` with a login or interactive shell, sudo -s, sudo -i, sudo su); run one-shot commands instead"
                ));
            }
            args = rest;
        }
        let prog = program(args[0]);
        if prog == "su" || interactive_shell(&args) {
            return Class::Refused(
                "persistent privileged shells are never allowed (su, an interactive or login shell)".into(),
            );
        }
        // runbook with another configuration runs that configuration's commands.
        if prog == "runbook"
            && args[1..]
                .iter()
                .any(|a| *a == "-c" || a.starts_with("--config") || (a.starts_with("-c") && !a.starts_with("--")))
        {
            return Class::StateChanging("`runbook -c/--config` runs another configuration's commands".into());
        }
        // A program given by a path outside the system's directories is not the program its
        // name suggests (`./ls`, `/tmp/x/cat`).
        // The elevator's command (`sudo ./x`) is judged by where it is, like any other.
        let trusted = trusted
            && (args.len() == argv.len()
                || !args[0].contains('/')
                || TRUSTED_DIRS.iter().any(|d| args[0].starts_with(d)));
        if !trusted {
            let configured = self.read_only.iter().any(|p| wildcard::matches(p, &args.join(" ")));
            if !configured {
                return Class::StateChanging(format!(
                    "`{}` is not a system program: it is not in a directory only root can write (a pattern in sessions.read_only may name it by this path)",
                    args[0]
                ));
            }
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
        // git's own options before its subcommand that only say where the repository is
        // (`git -C DIR rev-parse HEAD`); `-c` sets configuration, which can run commands.
        let args = if prog == "git" {
            without_git_location(&args)
        } else {
            args
        };
        let line = args.join(" ");
        // `runbook run P --dry-run` prints what would run and writes nothing; so does a deploy
        // (or a rollback) without --apply, which only prints its plan.
        let dry_run = prog == "runbook"
            && match args.get(1) {
                Some(&"run") => args.contains(&"--dry-run"),
                Some(&"deploy") => !args.iter().any(|a| *a == "--apply" || *a == "--resume"),
                _ => false,
            };
        let built_in = dry_run
            || built_in().iter().any(|prefix| {
                prefix.len() <= args.len()
                    && prefix
                        .iter()
                        .zip(&args)
                        .enumerate()
                        .all(|(i, (want, got))| if i == 0 { program(got) == *want } else { got == want })
            });
        // An operator's pattern names a program by its name (`docker compose ps*`) or by its
        // path; a system program found through PATH answers to both.
        let by_name = std::iter::once(prog)
            .chain(args[1..].iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        let configured = self
            .read_only
            .iter()
            .any(|p| wildcard::matches(p, &line) || wildcard::matches(p, &by_name));
        if built_in || configured {
            if let Some(why) = writes(prog, &args[1..]) {
                return Class::StateChanging(why);
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
            "git -C /srv/app rev-parse HEAD",
            "git --no-pager -C /srv/app log -1",
            "runbook run nightly --dry-run",
            "runbook deploy site v1.2.0",
            "runbook deploy rollback site",
            "runbook deploy status site",
            "runbook gate verify evidence/releases/release-20261206T140518Z.json",
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
            // Probes, records, opens and resolves alerts, sends notifications.
            "runbook check",
            "runbook run nightly",
            "runbook deploy site v1.2.0 --apply",
            "runbook deploy site --resume",
            "runbook deploy rollback site --apply",
            // Writes an evidence file and an audit event.
            "runbook gate run release",
            "git -C /srv/app -c core.fsmonitor=/tmp/x status",
            "git -C /srv/app pull",
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

    #[test]
    fn every_built_in_entry_is_read_only_as_written() {
        let p = Policy::default();
        assert!(built_in().len() >= 50, "{} entries", built_in().len());
        for entry in built_in() {
            let argv: Vec<String> = entry.iter().map(|w| w.to_string()).collect();
            assert_eq!(p.classify(&argv), Class::ReadOnly, "{entry:?}");
            let mut with_sudo = vec!["sudo".to_string()];
            with_sudo.extend(argv.iter().cloned());
            assert_eq!(p.classify(&with_sudo), Class::ReadOnly, "sudo {entry:?}");
            let mut piped = argv.clone();
            piped.extend(["|".to_string(), "sh".to_string()]);
            assert!(matches!(p.classify(&piped), Class::StateChanging(_)), "{entry:?} | sh");
        }
    }

    #[test]
    fn every_writing_option_is_state_changing() {
        let p = Policy {
            read_only: vec!["wget*".into()],
            deny_read: vec![],
        };
        assert!(table().writes.len() >= 8, "{} programs", table().writes.len());
        for (prog, options) in &table().writes {
            // The program as the read-only list (or the operator's pattern) lets it run.
            let prefix: Vec<&str> = built_in()
                .iter()
                .find(|e| e[0] == *prog)
                .map_or(vec![*prog], |e| e.clone());
            assert_eq!(p.classify(&argv(&prefix, &[])), Class::ReadOnly, "{prog}");
            for option in options {
                // No value after the option: a positional argument would be refused on its own
                // by the `hostname NAME` and `date TIME` forms.
                let mut forms = vec![vec![option.to_string()]];
                if let Some(long) = option.strip_prefix("--") {
                    forms.push(vec![format!("{option}=VALUE")]);
                    // A two-letter prefix: getopt takes any unambiguous one, the policy any at all.
                    forms.push(vec![format!("--{}", &long[..2.min(long.len())])]);
                } else if option.len() == 2 {
                    forms.push(vec![format!("-v{}", &option[1..])]);
                }
                for form in forms {
                    let words: Vec<&str> = form.iter().map(String::as_str).collect();
                    let cmd = argv(&prefix, &words);
                    assert!(
                        matches!(p.classify(&cmd), Class::StateChanging(_)),
                        "{cmd:?}: {:?}",
                        p.classify(&cmd)
                    );
                }
            }
        }
    }

    fn argv(prefix: &[&str], rest: &[&str]) -> Vec<String> {
        prefix.iter().chain(rest).map(|w| w.to_string()).collect()
    }

    #[test]
    fn the_hostile_forms_seen_are_not_read_only() {
        let p = policy();
        for line in [
            "./ls",
            "/tmp/x/cat /etc/hosts",
            "runbook check -c /tmp/evil.yaml",
            "runbook --config=/tmp/evil.yaml list",
            "find /x -fprint0 /tmp/out",
            "ss -t -D /tmp/out",
            "ss -K dst 127.0.0.1",
            "ip addr add 10.0.0.1/24 dev lo",
            "ip route add default via 127.0.0.1",
            "hostname evil",
            "journalctl --vacuum-s=1K",
            "date -s 2001-01-01",
            "curl -fsS -o /tmp/f http://127.0.0.1/",
            "curl -fsS -sSo /tmp/f http://127.0.0.1/",
            "curl -fsS -XPOST http://127.0.0.1/",
            "curl -fsS --json {} http://127.0.0.1/",
            "curl -fsS -F a=b http://127.0.0.1/",
            "curl -fsS --data-binary @x http://127.0.0.1/",
            "curl -fsS -D /tmp/h http://127.0.0.1/",
            "curl -fsS -c /tmp/jar http://127.0.0.1/",
            "curl -fsS --trace /tmp/t http://127.0.0.1/",
            "curl -fsS --stderr /tmp/e http://127.0.0.1/",
            "curl -fsS -K /tmp/cfg http://127.0.0.1/",
        ] {
            assert!(
                matches!(class(&p, line), Class::StateChanging(_)),
                "{line}: {:?}",
                class(&p, line)
            );
        }
        for line in [
            "sudo -iu root",
            "sudo -u root bash -i",
            "sudo bash -l",
            "runuser -u root -- bash",
            "sudo -u root -- su -",
            "bash -i",
            "doas sh",
        ] {
            assert!(
                matches!(class(&p, line), Class::Refused(_)),
                "{line}: {:?}",
                class(&p, line)
            );
        }
        for line in [
            "sudo -u app journalctl -n 5",
            "date +%s",
            "hostname -f",
            "ip addr",
            "ip route show",
            "curl -fsS http://127.0.0.1/healthz",
        ] {
            assert_eq!(class(&p, line), Class::ReadOnly, "{line}");
        }
    }
}
