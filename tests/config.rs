//! `runbook.yaml` as a user meets it: `config check | show | schema`, every error at once with
//! file:line:col, nothing written on a bad file, `${VAR}` expansion, secrets redacted from
//! output and the ledger, and where the file is found.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Stdio};

/// 1-based (line, column) of the first occurrence of `needle` in the config file as written
/// (after `Env::new` prepended its `state:` line).
fn pos_of(env: &Env, needle: &str) -> (usize, usize) {
    let text = std::fs::read_to_string(&env.config).unwrap();
    for (i, line) in text.lines().enumerate() {
        if let Some(byte) = line.find(needle) {
            return (i + 1, line[..byte].chars().count() + 1);
        }
    }
    panic!("`{needle}` not in config:\n{text}");
}

/// The binary without `--config` and without runbook's own environment variables.
fn bare(cwd: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd)
        .env_remove("RUNBOOK_CONFIG")
        .env_remove("RUNBOOK_LOG")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null());
    c
}

fn output(c: &mut Command) -> (i32, String, String) {
    let o = c.output().expect("run runbook");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const VALID: &str = r#"
version: 1
profiles:
  hourly:
    cron: "0 * * * *"
    timeout: 10m
    tasks:
      - { run: [true], name: one }
      - { run: "echo two" }
  nightly:
    cron: "30 3 * * *"
    timezone: UTC
    tasks:
      - { sh: "echo three" }
"#;

#[test]
fn check_on_a_valid_file_names_it_and_counts_profiles_and_tasks() {
    let env = Env::new(VALID);
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("{} is valid: 2 profiles, 3 tasks", env.config.display())),
        "{out:?}"
    );
    assert!(!env.state_db().exists(), "config check must not create the state file");

    let (code, v) = env.json(&["config", "check"]);
    assert_eq!(code, 0);
    assert_eq!(v["valid"], true);
    assert_eq!(v["profiles"], 2);
    assert_eq!(v["tasks"], 3);
    assert_eq!(v["errors"], serde_json::json!([]));
}

/// Six independent problems; `Env::new` prepends a `state:` line, so line N here is N+1 in the file.
const MANY_ERRORS: &str = r#"version: 1
profiles:
  hourly:
    crn: "0 * * * *"
    tasks:
      - { run: [true] }
  nightly:
    cron: "61 * * * *"
    timeout: 10
    tasks:
      - public-surface
      - { sh: "echo ${NOPE_NOT_SET}" }
"#;

fn check_many_errors(json: bool) -> (Env, i32, String, String) {
    let env = Env::new(MANY_ERRORS);
    let mut c = env.cmd();
    c.env_remove("NOPE_NOT_SET").args(["config", "check"]);
    if json {
        c.arg("--json");
    }
    let (code, stdout, stderr) = output(&mut c);
    (env, code, stdout, stderr)
}

#[test]
fn every_error_is_reported_at_once_with_line_column_source_and_caret() {
    let (env, code, _stdout, stderr) = check_many_errors(false);
    assert_eq!(code, 2, "{stderr}");
    let file = env.config.display().to_string();

    let expected: &[(&str, &str, &str)] = &[
        ("crn:", "unknown key `crn` in profile `hourly`", "did you mean `cron`?"),
        ("\"61 * * * *\"", "invalid cron `61 * * * *`", "fields: [sec] min hour"),
        (
            "timeout: 10",
            "timeout: `10` needs a unit (ms, s, m, h, d, w)",
            "durations look like 90s",
        ),
        (
            "public-surface",
            "task `public-surface` refers to a check, but no check named `public-surface` is defined",
            "to run a command write `{ run: [public-surface] }`",
        ),
        (
            "\"echo ${NOPE_NOT_SET}\"",
            "environment variable `NOPE_NOT_SET` is not set",
            "give a default: ${NAME:-value}",
        ),
    ];
    let text = std::fs::read_to_string(&env.config).unwrap();
    for (needle, message, hint) in expected {
        let (line, mut col) = pos_of(&env, needle);
        if let Some(value) = needle.strip_prefix("timeout: ") {
            // The error points at the value, not the key.
            col += needle.len() - value.len();
        }
        let source = text.lines().nth(line - 1).unwrap();
        let block = stderr
            .split("\n\n")
            .find(|b| b.starts_with("error: ") && b.lines().next().unwrap().contains(message))
            .unwrap_or_else(|| panic!("no `error: …{message}` in:\n{stderr}"));
        let lines: Vec<&str> = block.lines().collect();
        let gutter = " ".repeat(line.to_string().len());
        assert_eq!(lines[1], format!("  --> {file}:{line}:{col}"), "{block}");
        assert_eq!(lines[2], format!("{gutter} |"), "{block}");
        assert_eq!(lines[3], format!("{line} | {source}"), "{block}");
        assert_eq!(
            lines[4],
            format!("{gutter} | {}^", " ".repeat(col - 1)),
            "caret:\n{block}"
        );
        assert!(lines[5].starts_with("  = hint: ") && lines[5].contains(hint), "{block}");
    }
    assert!(stderr.contains(&format!("error: {file} has ")), "{stderr}");
    assert!(stderr.contains("nothing was run or written"), "{stderr}");
    assert!(!env.state_db().exists());
}

#[test]
fn unknown_key_is_reported_with_line_column_and_suggestion() {
    let (env, code, _stdout, stderr) = check_many_errors(false);
    assert_eq!(code, 2);
    let file = env.config.display();
    let unknown_key = format!(
        "error: unknown key `crn` in profile `hourly`
  --> {file}:5:5
  |
5 |     crn: \"0 * * * *\"
  |     ^
  = hint: did you mean `cron`?
"
    );
    assert!(stderr.contains(&unknown_key), "expected:\n{unknown_key}\nin:\n{stderr}");

    // Two-digit line numbers widen the gutter.
    let bad_duration = format!(
        "error: timeout: `10` needs a unit (ms, s, m, h, d, w)
  --> {file}:10:14
   |
10 |     timeout: 10
   |              ^
  = hint: durations look like 90s, 10m, 1h30m, 26h
"
    );
    assert!(
        stderr.contains(&bad_duration),
        "expected:\n{bad_duration}\nin:\n{stderr}"
    );
}

#[test]
fn check_json_lists_every_error_with_position_and_hint() {
    let (env, code, stdout, _stderr) = check_many_errors(true);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().expect("errors array");
    assert!(errors.len() >= 5, "{v:#}");
    let file = env.config.display().to_string();
    for e in errors {
        assert_eq!(e["file"], file.as_str(), "{e}");
        assert!(e["line"].as_u64().unwrap() >= 1, "{e}");
        assert!(e["column"].as_u64().unwrap() >= 1, "{e}");
        assert!(e["message"].is_string(), "{e}");
        assert!(e["hint"].is_string(), "{e}");
    }
    let find = |needle: &str| {
        errors
            .iter()
            .find(|e| e["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no error mentioning `{needle}`: {v:#}"))
    };
    let crn = find("unknown key `crn`");
    assert_eq!((crn["line"].as_u64(), crn["column"].as_u64()), (Some(5), Some(5)));
    assert_eq!(crn["hint"], "did you mean `cron`?");
    let cron = find("invalid cron `61 * * * *`");
    let (l, c) = pos_of(&env, "\"61 * * * *\"");
    assert_eq!(
        (cron["line"].as_u64(), cron["column"].as_u64()),
        (Some(l as u64), Some(c as u64))
    );
    let dur = find("needs a unit");
    assert_eq!((dur["line"].as_u64(), dur["column"].as_u64()), (Some(10), Some(14)));
    let check = find("no check named `public-surface`");
    let (l, c) = pos_of(&env, "public-surface");
    assert_eq!(
        (check["line"].as_u64(), check["column"].as_u64()),
        (Some(l as u64), Some(c as u64))
    );
    let var = find("`NOPE_NOT_SET` is not set");
    let (l, c) = pos_of(&env, "\"echo ${NOPE_NOT_SET}\"");
    assert_eq!(
        (var["line"].as_u64(), var["column"].as_u64()),
        (Some(l as u64), Some(c as u64))
    );
}

#[test]
fn malformed_yaml_is_reported_with_position_and_nothing_is_written() {
    // An unclosed flow sequence: the parser notices at the next profile's key.
    let unclosed = Env::new(
        r#"version: 1
profiles:
  p:
    cron: "* * * * *"
    tasks: [ { run: [true] }
  q:
    cron: "* * * * *"
"#,
    );
    // A tab used for indentation.
    let tab = Env::new("version: 1\nprofiles:\n  p:\n\tcron: \"* * * * *\"\n    tasks: [ { run: [true] } ]\n");

    for (env, line) in [(&unclosed, 7), (&tab, 5)] {
        let out = env.run(&["config", "check"]);
        assert_eq!(out.code, 2, "{out:?}");
        assert!(out.stderr.contains("error: invalid YAML: "), "{out:?}");
        assert!(
            out.stderr.contains(&format!("  --> {}:{line}:", env.config.display())),
            "{out:?}"
        );
        assert!(out.stderr.contains("check indentation and quoting"), "{out:?}");

        let (code, v) = env.json(&["config", "check"]);
        assert_eq!(code, 2);
        assert_eq!(v["valid"], false);
        assert_eq!(v["errors"][0]["line"], line);

        for args in [&["list"][..], &["run", "p"], &["run", "q"]] {
            let out = env.run(args);
            assert_eq!(out.code, 2, "{args:?}: {out:?}");
            assert!(out.stderr.contains("invalid YAML"), "{args:?}: {out:?}");
        }
        assert!(!env.state_db().exists(), "a bad config must not create the state file");
        assert!(
            !env.path("state").exists(),
            "a bad config must not create the state directory"
        );
    }
}

#[test]
fn invalid_config_refuses_to_run_and_writes_nothing() {
    let env = Env::new(MANY_ERRORS);
    for args in [
        &["config", "check"][..],
        &["list"],
        &["run", "hourly"],
        &["run", "nightly"],
    ] {
        let out = env.run(args);
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.contains("unknown key `crn`"), "{args:?}: {out:?}");
    }
    assert!(!env.state_db().exists());
    assert!(!env.path("state").exists());
}

#[test]
fn variables_expand_from_process_env_with_defaults() {
    let env = Env::new(
        r#"version: 1
profiles:
  p:
    cron: "0 * * * *"
    tasks:
      - { run: [echo, "${RB_TEST_PLAIN}", "${RB_TEST_UNSET:-fallback}", "${RB_TEST_EMPTY:-dflt}", "cost $$5"], name: show }
"#,
    );
    let out = output(
        env.cmd()
            .env("RB_TEST_PLAIN", "visible-plain")
            .env_remove("RB_TEST_UNSET")
            .env("RB_TEST_EMPTY", "")
            .args(["config", "show"]),
    );
    assert_eq!(out.0, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    assert_eq!(
        v["profiles"]["p"]["tasks"][0]["run"],
        serde_json::json!(["echo", "visible-plain", "fallback", "dflt", "cost $5"])
    );

    // Without the variable the same file is invalid, at the value that needs it.
    let out = output(env.cmd().env_remove("RB_TEST_PLAIN").args(["config", "check"]));
    assert_eq!(out.0, 2, "{out:?}");
    assert!(
        out.2.contains("environment variable `RB_TEST_PLAIN` is not set"),
        "{out:?}"
    );
}

const SECRET: &str = "s3cr3t-token-value";

/// A config whose secrets come from `secrets/app.env`, relative to the config's directory.
fn secret_env() -> Env {
    let env = Env::new(
        r#"version: 1
secrets: { env_files: [secrets/app.env] }
profiles:
  p:
    cron: "0 * * * *"
    tasks:
      - { sh: "echo token=$API_TOKEN", name: leak }
      - { run: [echo, "${API_TOKEN}", "${RB_TEST_PLAIN}", "${RB_TEST_UNSET:-fallback}"], name: show, env: { TOK: "${API_TOKEN}" } }
      - { run: ["/nonexistent/${API_TOKEN}"], name: missing }
"#,
    );
    env.write(
        "secrets/app.env",
        &format!("# app secrets\nexport API_TOKEN=\"{SECRET}\"\n"),
    );
    env
}

#[test]
fn config_show_redacts_env_file_values_but_shows_process_env_values() {
    let env = secret_env();
    let elsewhere = tempfile::tempdir().unwrap();
    // Run from another directory: the env file path is relative to runbook.yaml, not the cwd.
    let (code, stdout, stderr) = output(
        env.cmd()
            .current_dir(elsewhere.path())
            .env("RB_TEST_PLAIN", "visible-plain")
            .env_remove("RB_TEST_UNSET")
            .args(["config", "show"]),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(SECRET), "secret leaked into config show:\n{stdout}");
    assert!(!stderr.contains(SECRET), "secret leaked into stderr:\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let show = &v["profiles"]["p"]["tasks"][1];
    assert_eq!(
        show["run"],
        serde_json::json!(["echo", "[redacted]", "visible-plain", "fallback"])
    );
    assert_eq!(show["env"]["TOK"], "[redacted]");
    assert_eq!(
        v["secrets"]["env_files"][0],
        env.path("secrets/app.env").display().to_string()
    );
}

#[test]
fn env_file_values_win_over_the_process_environment() {
    let env = secret_env();
    let (code, stdout, _) = output(
        env.cmd()
            .env("API_TOKEN", "from-the-process")
            .env("RB_TEST_PLAIN", "x")
            .args(["config", "show"]),
    );
    assert_eq!(code, 0);
    assert!(!stdout.contains("from-the-process"), "{stdout}");
    assert!(!stdout.contains(SECRET), "{stdout}");

    let (code, stdout, _) = output(
        env.cmd()
            .env("API_TOKEN", "from-the-process")
            .env("RB_TEST_PLAIN", "x")
            .args(["run", "p", "--json"]),
    );
    assert_eq!(code, 1, "the `missing` task fails: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let leak = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "leak")
        .unwrap();
    assert_eq!(
        leak["output"], "token=[redacted]\n",
        "the task saw the env file's value"
    );
}

#[test]
fn secrets_from_env_files_are_redacted_from_task_output_jobs_and_audit() {
    let env = secret_env();
    let (code, stdout, stderr) = output(env.cmd().env("RB_TEST_PLAIN", "x").args(["run", "p"]));
    assert_eq!(code, 1, "the `missing` task fails: {stdout}{stderr}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET), "{stdout}{stderr}");

    let (code, v) = {
        let out = output(env.cmd().env("RB_TEST_PLAIN", "x").args(["jobs", "list", "--json"]));
        assert!(!out.1.contains(SECRET), "{}", out.1);
        (out.0, serde_json::from_str::<serde_json::Value>(&out.1).unwrap())
    };
    assert_eq!(code, 0);
    let id_of = |task: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == task)
            .unwrap_or_else(|| panic!("no run of {task}: {v:#}"))["id"]
            .as_i64()
            .unwrap()
    };

    for (task, expect) in [("leak", "token=[redacted]\n"), ("show", "[redacted] x fallback\n")] {
        let id = id_of(task).to_string();
        let out = output(
            env.cmd()
                .env("RB_TEST_PLAIN", "x")
                .args(["jobs", "show", &id, "--json"]),
        );
        assert_eq!(out.0, 0, "{out:?}");
        assert!(!out.1.contains(SECRET), "secret in jobs show {id}:\n{}", out.1);
        let shown: serde_json::Value = serde_json::from_str(&out.1).unwrap();
        assert_eq!(shown["run"]["output"], expect, "{shown:#}");
    }

    let out = output(env.cmd().env("RB_TEST_PLAIN", "x").args(["audit", "list", "--json"]));
    assert_eq!(out.0, 0, "{out:?}");
    assert!(!out.1.contains(SECRET), "secret in audit:\n{}", out.1);
    // The failed spawn's summary names the program path, which holds the secret.
    assert!(out.1.contains("/nonexistent/[redacted]"), "{}", out.1);

    // Not even the state's bytes (the file, or the database's dump) hold the value.
    let bytes = env.state_bytes();
    assert!(!bytes.is_empty());
    assert!(
        !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "secret stored in the state"
    );
}

#[test]
fn task_names_built_from_secrets_are_redacted_everywhere() {
    let env = Env::new(
        r#"version: 1
secrets: { env_files: [app.env] }
profiles:
  p:
    cron: "0 * * * *"
    tasks:
      - { run: [true], name: "t-${API_TOKEN}" }
"#,
    );
    env.write("app.env", &format!("API_TOKEN={SECRET}\n"));
    let run = env.run(&["run", "p"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stdout.contains(SECRET), "run output: {}", run.stdout);
    let run_json = env.run(&["run", "p", "--json"]);
    assert!(!run_json.stdout.contains(SECRET), "run --json: {}", run_json.stdout);
    let jobs = env.run(&["jobs", "list", "--json"]);
    assert!(!jobs.stdout.contains(SECRET), "jobs list: {}", jobs.stdout);
    let audit = env.run(&["audit", "list", "--json"]);
    assert!(!audit.stdout.contains(SECRET), "audit list: {}", audit.stdout);
}

#[test]
fn missing_env_file_is_an_error_at_its_list_entry() {
    let env = Env::new(
        r#"version: 1
secrets: { env_files: [missing.env] }
profiles:
  p: { cron: "* * * * *", tasks: [ { run: [true] } ] }
"#,
    );
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    let (line, col) = pos_of(&env, "missing.env");
    assert!(out.stderr.contains("error: env file: cannot read"), "{out:?}");
    assert!(
        out.stderr.contains(&format!("{}:{line}:{col}", env.config.display())),
        "{out:?}"
    );
    assert!(
        out.stderr
            .contains("create the file or remove it from secrets.env_files")
    );
}

#[test]
fn schema_describes_runbook_yaml() {
    // No configuration is needed to print the schema.
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = output(bare(dir.path()).args(["config", "schema"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"title\": \"runbook.yaml\""), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["title"], "runbook.yaml");
    for key in ["profiles", "state", "version"] {
        assert!(
            v["properties"].get(key).is_some(),
            "no `{key}` in {:#}",
            v["properties"]
        );
    }
}

/// A directory holding `runbook.yaml` with one profile named `name`.
fn config_with_profile(dir: &Path, file: &str, name: &str) -> std::path::PathBuf {
    let path = dir.join(file);
    std::fs::write(
        &path,
        format!(
            "version: 1\nstate: {{ url: \"sqlite://state/{name}.db\" }}\nprofiles:\n  {name}: {{ cron: \"@hourly\", tasks: [ {{ run: [true] }} ] }}\n"
        ),
    )
    .unwrap();
    path
}

fn shown_profiles(c: &mut Command) -> Vec<String> {
    let (code, stdout, stderr) = output(c.args(["config", "show"]));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    v["profiles"].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn config_flag_beats_runbook_config_beats_cwd() {
    let cwd = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    config_with_profile(cwd.path(), "runbook.yaml", "from-cwd");
    let via_env = config_with_profile(other.path(), "env.yaml", "from-env");
    let via_flag = config_with_profile(other.path(), "flag.yaml", "from-flag");

    assert_eq!(shown_profiles(&mut bare(cwd.path())), ["from-cwd"]);
    assert_eq!(
        shown_profiles(bare(cwd.path()).env("RUNBOOK_CONFIG", "")),
        ["from-cwd"],
        "an empty RUNBOOK_CONFIG is ignored"
    );
    assert_eq!(
        shown_profiles(bare(cwd.path()).env("RUNBOOK_CONFIG", &via_env)),
        ["from-env"]
    );
    assert_eq!(
        shown_profiles(
            bare(cwd.path())
                .env("RUNBOOK_CONFIG", &via_env)
                .arg("--config")
                .arg(&via_flag)
        ),
        ["from-flag"]
    );

    // `config check` names the file it found.
    let (code, stdout, _) = output(bare(cwd.path()).args(["config", "check"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("runbook.yaml is valid"), "{stdout}");
    let (code, stdout, _) = output(
        bare(cwd.path())
            .env("RUNBOOK_CONFIG", &via_env)
            .args(["config", "check"]),
    );
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("{} is valid", via_env.display())), "{stdout}");
}

#[test]
fn runbook_config_naming_a_missing_file_is_an_error_not_a_fallback() {
    let cwd = tempfile::tempdir().unwrap();
    config_with_profile(cwd.path(), "runbook.yaml", "from-cwd");
    let missing = cwd.path().join("nope.yaml");
    let (code, _, stderr) = output(
        bare(cwd.path())
            .env("RUNBOOK_CONFIG", &missing)
            .args(["config", "check"]),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
}

#[test]
fn no_config_anywhere_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    for args in [&["config", "check"][..], &["list"]] {
        let (code, stdout, stderr) = output(bare(empty.path()).args(args));
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains("no configuration file found"), "{stderr}");
        assert!(stderr.contains("RUNBOOK_CONFIG"), "{stderr}");
        assert!(stderr.contains("--config"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn a_gate_naming_no_check_points_at_the_name() {
    let env = Env::new("version: 1\ngates:\n  release: { checks: [web] }\n");
    let (code, v) = env.json(&["config", "check"]);
    assert_eq!(code, 2);
    let (line, col) = pos_of(&env, "web]");
    assert_eq!(v["errors"][0]["line"], line, "{v:#}");
    assert_eq!(v["errors"][0]["column"], col, "{v:#}");
}

#[test]
fn version_2_is_refused() {
    let env = Env::new("version: 2\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { run: [true] } ] }\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    let file = env.config.display();
    let block = format!(
        "error: unsupported version 2
  --> {file}:2:10
  |
2 | version: 2
  |          ^
  = hint: this runbook reads `version: 1`
"
    );
    assert!(out.stderr.contains(&block), "expected:\n{block}\nin:\n{}", out.stderr);

    let missing = Env::new("profiles:\n  p: { cron: \"@hourly\", tasks: [ { run: [true] } ] }\n");
    let out = missing.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("missing `version`"), "{out:?}");
    assert!(out.stderr.contains("add `version: 1` at the top"), "{out:?}");
}

#[test]
fn error_messages_never_quote_an_env_file_secret() {
    let env = Env::new(
        "version: 1\nsecrets: { env_files: [app.env] }\nprofiles:\n  p: { cron: \"${SCHEDULE_TOKEN}\", tasks: [ { run: [true] } ] }\n",
    );
    env.write("app.env", "SCHEDULE_TOKEN=not-a-cron-but-a-secret\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("cron `[redacted]`"), "{}", out.stderr);
    assert!(!out.stderr.contains("not-a-cron-but-a-secret"), "{}", out.stderr);
}

#[test]
fn a_backup_target_with_an_error_is_reported_once_not_again_by_what_names_it() {
    let env = Env::new(
        r#"version: 1
backups:
  main:
    sources: [ { dir: data }, { command: [], name: dump.sql } ]
    dest: archives
    level: 25
checks:
  fresh: { kind: backup_age, target: main, max_age: 1d }
profiles:
  nightly: { cron: "@daily", tasks: [ { backup: main }, { drill: main } ] }
"#,
    );
    let (code, v) = env.json(&["config", "check"]);
    assert_eq!(code, 2, "{v:#}");
    let messages: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        !messages.iter().any(|m| m.contains("no backup target named")),
        "{messages:#?}"
    );
    assert!(messages.iter().any(|m| m.contains("level")), "{messages:#?}");
    // The command source's argv is its `command`, and is named so.
    assert!(
        messages.iter().any(|m| m.contains("`command` is an empty list")),
        "{messages:#?}"
    );
    assert!(!messages.iter().any(|m| m.contains("`run`")), "{messages:#?}");
}

#[test]
fn config_show_masks_credentials_however_they_were_written() {
    let env = Env::new(
        r#"version: 1
backups:
  main:
    sources: [ { postgres: "postgres://app:pg-pass-123@127.0.0.1:5432/app?sslmode=disable&password=q-pass-456" } ]
    dest: archives
    offsite:
      url: s3://bucket/prefix
      endpoint: http://127.0.0.1:9000
      access_key_id: AKIDVISIBLE
      secret_access_key: ${RB_TEST_S3_SECRET}
"#,
    );
    let (code, stdout, stderr) = output(
        env.cmd()
            .env("RB_TEST_S3_SECRET", "s3-secret-789")
            .args(["config", "show"]),
    );
    assert_eq!(code, 0, "{stderr}");
    for secret in ["pg-pass-123", "q-pass-456", "s3-secret-789"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
    }
    // What says where things are stays readable.
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let shown = v.to_string();
    assert!(
        shown.contains("postgres://app:[redacted]@127.0.0.1:5432/app?sslmode=disable&password=[redacted]"),
        "{shown}"
    );
    assert!(
        shown.contains("AKIDVISIBLE") && shown.contains("s3://bucket/prefix"),
        "{shown}"
    );
}

/// xorshift, seeded from the clock unless CONFIG_PROPERTY_SEED says otherwise (printed).
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        from[(self.0 % from.len() as u64) as usize]
    }
}

#[test]
fn a_duration_past_a_hundred_years_is_refused_where_it_is_written() {
    let env = Env::new(
        "version: 1\nprofiles:\n  p: { cron: \"@hourly\", timeout: 16000000000000w, tasks: [ { run: [true] } ] }\n",
    );
    let (line, col) = pos_of(&env, "16000000000000w");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("`16000000000000w` is too long: durations go up to 36500d (100 years)")
            && out.stderr.contains(&format!("runbook.yaml:{line}:{col}")),
        "{}",
        out.stderr
    );
    // Nothing ran: no state file was made.
    assert!(!env.state_db().exists());
}

/// Random configurations built from the extremes a user can write (the longest durations,
/// zero, one millisecond, odd cron times, huge limits): whatever `config check` accepts must
/// list, render, dry-run and run without a panic (exit 101) or a crash by signal.
#[test]
fn every_config_that_config_check_accepts_runs_without_panic() {
    const DURATIONS: &[&str] = &[
        "0s", "1ms", "1s", "90s", "26h", "36500d", "5214w", "1ms", "36500d", "1s",
    ];
    const CRONS: &[&str] = &[
        "* * * * * *",
        "@yearly",
        "0 0 29 2 *",
        "59 23 31 12 *",
        "0 0 31 2 *",
        "*/1 * * * *",
        "0 0 1 1 * 2099",
    ];
    const TIMEZONES: &[&str] = &["UTC", "Europe/Berlin", "Pacific/Kiritimati", "America/St_Johns"];
    const SIZES: &[&str] = &["1", "64M", "16EiB", "18446744073709551615"];
    let seed = std::env::var("CONFIG_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("CONFIG_PROPERTY_SEED={seed}");
    let mut rng = Rng(seed);
    let (mut accepted, mut tried) = (0, 0);
    while accepted < 12 && tried < 60 {
        tried += 1;
        let yaml = format!(
            r#"version: 1
checks:
  beat: {{ heartbeat: {{ period: {period}, grace: {grace} }} }}
  old: {{ file_age: {{ path: "{{dir}}", max_age: {max_age} }}, timeout: {check_timeout} }}
notify:
  channel_silent_after: {silent}
  heartbeat_every: {hb}
  channels: {{ hook: {{ webhook: {{ url: "http://127.0.0.1:9/" }} }} }}
  routes: [ {{ channels: [hook], repeat_every: {repeat}, group_wait: {wait} }} ]
audit: {{ checkpoint_every: {ckpt} }}
sessions: {{ limits: {{ timeout: {session} }} }}
profiles:
  p:
    cron: "{cron}"
    timezone: {tz}
    timeout: {profile_timeout}
    tasks:
      - {{ run: [true], timeout: {task_timeout}, kill_grace: {grace2}, cpu_time: {cpu}, memory_max: {mem} }}
      - beat
      - old
"#,
            period = rng.pick(DURATIONS),
            grace = rng.pick(DURATIONS),
            max_age = rng.pick(DURATIONS),
            check_timeout = rng.pick(DURATIONS),
            silent = rng.pick(DURATIONS),
            hb = rng.pick(DURATIONS),
            repeat = rng.pick(DURATIONS),
            wait = rng.pick(DURATIONS),
            ckpt = rng.pick(DURATIONS),
            session = rng.pick(DURATIONS),
            cron = rng.pick(CRONS),
            tz = rng.pick(TIMEZONES),
            profile_timeout = rng.pick(DURATIONS),
            task_timeout = rng.pick(&DURATIONS[1..]),
            grace2 = rng.pick(&DURATIONS[1..]),
            cpu = rng.pick(DURATIONS),
            mem = rng.pick(SIZES),
        );
        let env = Env::new(&yaml);
        let check = env.run(&["config", "check"]);
        assert!(
            check.code == 0 || check.code == 2,
            "seed {seed}: config check: {check:?}\n{yaml}"
        );
        if check.code != 0 {
            continue;
        }
        accepted += 1;
        for args in [
            &["list"][..],
            &["render-crontab"],
            &["run", "p", "--dry-run"],
            &["run", "p"],
            &["check"],
            &["alerts", "list"],
        ] {
            let out = env.run(args);
            assert!(
                (0..=3).contains(&out.code) && !out.stderr.contains("panicked"),
                "seed {seed}: `runbook {}` on an accepted config: {out:?}\n{yaml}",
                args.join(" ")
            );
        }
    }
    assert!(
        accepted >= 3,
        "seed {seed}: only {accepted} of {tried} configs were accepted"
    );
}

/// Files that hold secrets and are open to other users are named by `config check`, and are
/// errors under `--strict`. runbook's own state file is made closed to others.
#[test]
fn secrets_open_to_other_users_are_warned_of_and_strict_makes_them_errors() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("version: 1\nsecrets: { env_files: [ app.env ] }\n");
    let secret = env.write("app.env", "API_TOKEN=s3cr3t-value\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The state file runbook makes is not readable by others.
    assert_eq!(env.run(&["state", "list"]).code, 0);
    let mode = std::fs::metadata(env.state_db()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "state file mode {mode:o}");
    let clean = env.run(&["config", "check", "--strict"]);
    assert_eq!(clean.code, 0, "{clean:?}");
    assert!(!clean.stderr.contains("warning"), "{clean:?}");

    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(env.state_db(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 0, "a warning is not an error: {out:?}");
    assert!(out.stderr.contains("warning: env file"), "{out:?}");
    assert!(out.stderr.contains("writable by other users (mode 0666)"), "{out:?}");
    assert!(out.stderr.contains("warning: state file"), "{out:?}");
    let (code, v) = env.json(&["config", "check"]);
    assert_eq!(code, 0);
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2, "{v}");
    let strict = env.run(&["config", "check", "--strict"]);
    assert_eq!(strict.code, 2, "{strict:?}");
    let (code, v) = env.json(&["config", "check", "--strict"]);
    assert_eq!(code, 2);
    assert_eq!(v["valid"], false, "{v}");
}

/// A section of a later version is refused where it stands, and never offered by a hint.
#[test]
fn an_unknown_top_level_key_is_refused_with_the_nearest_known_one() {
    let env = Env::new("version: 1\ngate: {}\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("unknown key `gate`"), "{out:?}");
    assert!(out.stderr.contains("gates"), "{out:?}");
    let env = Env::new("version: 1\nzzz_unknown: {}\n");
    let out = env.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("unknown key `zzz_unknown`"), "{out:?}");
}

/// An env-file value is a secret when its key says so (or it is a URL with a password, or
/// `secrets.redact` names it); others, such as a deploy ref, stay readable in output.
#[test]
fn env_file_values_are_redacted_when_they_are_credentials_not_when_they_are_names() {
    let run = |secrets_extra: &str| -> String {
        let env = Env::new(&format!(
            "version: 1\nsecrets: {{ env_files: [ app.env ]{secrets_extra} }}\nprofiles:\n  p: {{ cron: \"@hourly\", tasks: [ {{ run: [echo, \"${{DEPLOY_REF}}\", \"${{API_TOKEN}}\", \"${{DATABASE_URL}}\"], name: show }} ] }}\n"
        ));
        env.write(
            "app.env",
            "DEPLOY_REF=main-7d3c9a1\nAPI_TOKEN=tok-51e8c0ffee\nDATABASE_URL=postgres://app:pw-9911aa@db/app\n",
        );
        let (code, v) = env.json(&["run", "p"]);
        assert_eq!(code, 0, "{v}");
        let (_, shown) = env.json(&["jobs", "show", &v["tasks"][0]["run_id"].to_string()]);
        shown["run"]["output"].as_str().unwrap().to_string()
    };
    let out = run("");
    assert!(out.contains("main-7d3c9a1"), "a deploy ref is not a secret: {out}");
    assert!(!out.contains("tok-51e8c0ffee") && !out.contains("pw-9911aa"), "{out}");
    let out = run(", plain: [ API_TOKEN ], redact: [ DEPLOY_REF ]");
    assert!(out.contains("tok-51e8c0ffee"), "plain exempts: {out}");
    assert!(!out.contains("main-7d3c9a1"), "redact names one: {out}");
    assert!(!out.contains("pw-9911aa"), "{out}");
}

#[test]
fn a_drill_task_naming_no_target_is_refused() {
    let tasks = Env::new("version: 1\nprofiles:\n  p: { cron: \"@hourly\", tasks: [ { drill: main } ] }\n");
    let out = tasks.run(&["config", "check"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("`drill:` task: no backup target named `main`"),
        "{out:?}"
    );
}

#[test]
fn the_version_names_the_commit_and_the_day_it_was_built() {
    let out = std::process::Command::new(BIN).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.starts_with(&format!("runbook {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    let re = regex::Regex::new(r"\(commit ([0-9a-f]{12}|unknown), built (\d{4}-\d\d-\d\d|unknown)\)").unwrap();
    let caps = re.captures(&text).unwrap_or_else(|| panic!("{text}"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(head) = head {
        assert_eq!(&caps[1], head, "{text}");
    }
}
