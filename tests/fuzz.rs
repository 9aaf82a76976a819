//! The API fuzzed from its own OpenAPI document by schemathesis (PyPI) against the real
//! daemon: no request may get a 5xx or crash the server.

mod common;

use common::http::get;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn schemathesis_finds_no_server_error_in_the_api() {
    if !Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        cannot_run("python3 -m pip install schemathesis to fuzz the API");
        return;
    }
    let env = Env::new(
        r#"
version: 1
api: { listen: "127.0.0.1:0", rate_limit: off }
checks:
  web: { command: { sh: "exit 1" } }
  beat: { heartbeat: { period: 1h, key: "0123456789abcdef0123" } }
profiles:
  p: { cron: "*/5 * * * * *", tasks: [ web, { run: [true] } ] }
"#,
    );
    let token = env
        .run(&["token", "create", "fuzz", "--scope", "write"])
        .stdout
        .trim()
        .to_string();
    let daemon = Daemon::start(&env);
    let log = daemon.log.clone();
    // The daemon logs the port it bound (the config asks for any free one).
    let port = api_port_in_log(&log);
    assert!(wait_for(Duration::from_secs(30), || get(
        port,
        "/v1/ready",
        Some(&token)
    )
    .status
        == 200));

    let base = format!("http://127.0.0.1:{port}");
    let out = Command::new("schemathesis")
        .args(["run", &format!("{base}/v1/openapi.json"), "--url", &base])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error", "--max-examples", "30", "--seed", "1"])
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(env.dir.path())
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\ndaemon log:\n{daemon_log}"
    );
    assert!(!daemon_log.contains("panicked"), "{daemon_log}");
    assert_eq!(get(port, "/v1/live", None).status, 200, "the daemon is still up");
}
