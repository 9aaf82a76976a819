//! The email channel against a real SMTP server on 127.0.0.1 (aiosmtpd, from PyPI).

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Smtp {
    child: Child,
    port: u16,
    maildir: std::path::PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python3 -m aiosmtpd` storing mail in a Maildir; `None` if aiosmtpd is missing.
fn smtp(env: &Env) -> Option<Smtp> {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        cannot_run("python3 -m pip install aiosmtpd to run the email test");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = env.path("maildir");
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let up = wait_for(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "aiosmtpd did not start");
    Some(Smtp { child, port, maildir })
}

fn mails(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("new"))
        .map(|rd| {
            rd.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_alert_arrives_as_one_email_and_notify_test_reports_the_smtp_result() {
    let env = Env::new("version: 1\n");
    let Some(server) = smtp(&env) else { return };
    std::fs::write(
        &env.config,
        format!(
            r#"state: {{ url: "sqlite://state/runbook.db" }}
version: 1
checks:
  disk: {{ command: {{ sh: "echo 'only 3% free on /' ; exit 1" }}, severity: critical }}
notify:
  channels:
    mail: {{ email: {{ host: 127.0.0.1, port: {}, tls: none, from: "runbook@vps-1.example", to: [ops@example.org, oncall@example.org] }} }}
"#,
            server.port
        ),
    )
    .unwrap();
    assert_eq!(env.run(&["check", "disk"]).code, 1);
    assert!(wait_for(Duration::from_secs(10), || mails(&server.maildir).len() == 1));
    let mail = &mails(&server.maildir)[0];
    assert!(mail.contains("Subject: [runbook] FIRING [critical] disk@"), "{mail}");
    assert!(mail.contains("To: ops@example.org, oncall@example.org"), "{mail}");
    assert!(mail.contains("only 3% free on /"), "{mail}");
    // Still failing: no second mail.
    // `check` sends what it queued before it exits, and the server has stored a mail before it
    // answers the send: nothing is in flight when it returns.
    assert_eq!(env.run(&["check", "disk"]).code, 1);
    assert_eq!(mails(&server.maildir).len(), 1);

    let out = env.run(&["notify", "test", "mail"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("SMTP 250"), "{}", out.stdout);
    assert!(wait_for(Duration::from_secs(10), || mails(&server.maildir).len() == 2));
}

#[test]
fn an_unreachable_smtp_server_fails_notify_test_with_exit_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new(&format!(
        "version: 1\nnotify:\n  channels:\n    mail: {{ email: {{ host: 127.0.0.1, port: {port}, tls: none, from: a@b.example, to: c@d.example }} }}\n"
    ));
    let out = env.run(&["notify", "test", "mail"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("FAILED to send to `mail` (email)"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_bad_email_address_is_a_config_error() {
    let env = Env::new(
        "version: 1\nnotify:\n  channels:\n    mail: { email: { host: smtp.example.org, from: not-an-address, to: [ops@example.org] } }\n",
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`not-an-address` is not an email address"),
        "{}",
        out.stderr
    );
}

#[test]
fn starttls_to_a_server_with_an_internal_ca_delivers_the_mail() {
    let env = Env::new("version: 1\n");
    if Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
        || certificates(env.dir.path()).is_none()
    {
        cannot_run("needs aiosmtpd and openssl");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let maildir = env.path("maildir");
    // require_starttls is on by default: a plaintext delivery would be refused.
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "--tlscert",
            "srv.pem",
            "--tlskey",
            "srv.key",
        ])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Smtp { child, port, maildir };
    assert!(wait_for(Duration::from_secs(15), || std::net::TcpStream::connect((
        "127.0.0.1",
        port
    ))
    .is_ok()));
    std::fs::write(
        &env.config,
        format!(
            "state: {{ url: \"sqlite://state/runbook.db\" }}\nversion: 1\nnotify:\n  channels:\n    mail: {{ email: {{ host: localhost, port: {port}, tls: starttls, ca_file: ca.pem, from: runbook@vps-1.example, to: ops@example.org }} }}\n"
        ),
    )
    .unwrap();
    let out = env.run(&["notify", "test", "mail"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(wait_for(Duration::from_secs(10), || mails(&server.maildir).len() == 1));
    assert!(mails(&server.maildir)[0].contains("Subject: [runbook] TEST from runbook on"));

    // Without the CA the server's certificate is not trusted: nothing is sent in clear.
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace(", ca_file: ca.pem", "");
    std::fs::write(&env.config, text).unwrap();
    let out = env.run(&["notify", "test", "mail"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(mails(&server.maildir).len(), 1);
}
