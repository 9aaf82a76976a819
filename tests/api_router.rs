//! The API's error shapes, in process: the router itself (`api::router`) over a real state
//! file, one request at a time through `tower::ServiceExt::oneshot`, no socket. Every error is
//! `{"error": {"code", "message"}}` as JSON with the status it names.

mod common;

use axum::http::StatusCode;
use common::in_process::Api;
use serde_json::Value;

/// Asserts the one error shape and returns the code.
fn error_code(status: StatusCode, want: StatusCode, body: &Value, kind: &str) -> String {
    assert_eq!(status, want, "{body}");
    assert!(kind.starts_with("application/json"), "content type {kind:?}");
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message in {body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    err["code"].as_str().expect("a code").to_string()
}

#[test]
fn every_error_is_one_json_shape_with_its_status() {
    let api = Api::new();
    // (method, path, token, body, status, code)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", "/v1/alerts", None, "", StatusCode::UNAUTHORIZED, "unauthorized"),
        (
            "GET",
            "/v1/alerts",
            Some("rbk_not-a-token"),
            "",
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "POST",
            "/v1/changes/1/approve",
            Some(&api.read),
            "{}",
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "GET",
            "/v1/no-such-path",
            Some(&api.read),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/runs/999999",
            Some(&api.read),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/alerts/999999",
            Some(&api.read),
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "DELETE",
            "/v1/alerts",
            Some(&api.write),
            "",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "POST",
            "/v1/changes/999999/approve",
            Some(&api.write),
            "{not json",
            StatusCode::BAD_REQUEST,
            "bad_json",
        ),
    ];
    for (method, path, token, body, want, code) in cases {
        let (status, json, kind) = api.send(method, path, token, body);
        let got = error_code(status, want, &json, &kind);
        assert_eq!(got, code, "{method} {path}: {json}");
    }
}

#[test]
fn a_bad_query_value_is_a_400_naming_the_parameter() {
    let api = Api::new();
    let (status, json, kind) = api.send("GET", "/v1/runs?limit=lots", Some(&api.read), "");
    let code = error_code(status, StatusCode::BAD_REQUEST, &json, &kind);
    assert!(!code.is_empty());
    assert!(json["error"]["message"].as_str().unwrap().contains("limit"), "{json}");
}

#[test]
fn a_good_request_through_the_same_router_is_answered() {
    let api = Api::new();
    let (status, json, _) = api.send("GET", "/v1/alerts", Some(&api.read), "");
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json.is_array() || json.is_object(), "{json}");
}

#[test]
fn metrics_answer_under_the_api_prefix_too() {
    let api = Api::new();
    let (status, plain) = api.text("/metrics");
    assert_eq!(status, StatusCode::OK);
    let (status, prefixed) = api.text("/v1/metrics");
    assert_eq!(status, StatusCode::OK, "{prefixed}");
    assert!(prefixed.contains("runbook_build_info"), "{prefixed}");
    let families = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| l.starts_with("# TYPE"))
            .map(String::from)
            .collect()
    };
    assert_eq!(families(&plain), families(&prefixed));
}

#[test]
fn alerts_filter_by_source_and_label_and_name_a_bad_value() {
    let api = Api::with(
        r#"
version: 1
api: { rate_limit: off }
checks:
  smtp-in: { command: { sh: "exit 1" }, labels: { protocol: smtp } }
  imap-in: { command: { sh: "exit 1" }, labels: { protocol: imap } }
"#,
        &[&["check"]],
    );
    let names = |path: &str| -> Vec<String> {
        let (status, json, _) = api.send("GET", path, Some(&api.read), "");
        assert_eq!(status, StatusCode::OK, "{path}: {json}");
        let mut n: Vec<String> = json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names("/v1/alerts"), ["imap-in", "smtp-in"]);
    assert_eq!(names("/v1/alerts?label=protocol:smtp"), ["smtp-in"]);
    assert_eq!(names("/v1/alerts?source=check&label=protocol:imap"), ["imap-in"]);
    assert!(names("/v1/alerts?source=task").is_empty());
    assert!(names("/v1/alerts?label=protocol:pop3").is_empty());
    for (path, code, names_the) in [
        (
            "/v1/alerts?source=protocol",
            "bad_source",
            "check, task, channel, backup",
        ),
        ("/v1/alerts?label=protocol", "bad_label", "KEY:VALUE"),
    ] {
        let (status, json, kind) = api.send("GET", path, Some(&api.read), "");
        assert_eq!(error_code(status, StatusCode::BAD_REQUEST, &json, &kind), code);
        assert!(json["error"]["message"].as_str().unwrap().contains(names_the), "{json}");
    }
}

#[test]
fn a_path_the_api_does_not_serve_is_a_404_whatever_the_token() {
    let api = Api::new();
    for (method, token) in [
        ("GET", None),
        ("POST", None),
        ("GET", Some(api.read.as_str())),
        ("POST", Some(api.read.as_str())),
        ("POST", Some(api.write.as_str())),
        ("GET", Some("rbk_not-a-token")),
    ] {
        let (status, json, kind) = api.send(method, "/v1/no/such/thing", token, "");
        assert_eq!(
            error_code(status, StatusCode::NOT_FOUND, &json, &kind),
            "not_found",
            "{method} with {token:?}"
        );
    }
}

#[test]
fn audit_archive_over_the_api_is_a_dry_run_unless_applied_and_needs_a_write_token() {
    // Events to archive: a state change of yesterday's date at the latest is before tomorrow.
    let api = Api::with(
        "version: 1\napi: { rate_limit: off }\n",
        &[&["state", "set", "ns", "k", "v", "--apply"]],
    );
    let body = r#"{"before": "2999-01-01"}"#;
    let (status, json, kind) = api.send("POST", "/v1/audit/archive", Some(&api.read), body);
    assert_eq!(error_code(status, StatusCode::FORBIDDEN, &json, &kind), "forbidden");
    let (status, plan, _) = api.send("POST", "/v1/audit/archive", Some(&api.write), body);
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["applied"], false, "{plan}");
    let events = plan["events"].as_u64().unwrap();
    assert!(events >= 3, "{plan}");
    let files = |d: &std::path::Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    let default_dir = runbook::store::archive::default_dir(&api.state.config().state.path);
    assert_eq!(files(&default_dir), 0, "a dry run writes nothing");
    let (status, json, kind) = api.send("POST", "/v1/audit/archive", Some(&api.write), r#"{"before": "soon"}"#);
    assert_eq!(error_code(status, StatusCode::BAD_REQUEST, &json, &kind), "bad_before");
    let (status, done, _) = api.send(
        "POST",
        "/v1/audit/archive",
        Some(&api.write),
        r#"{"before": "2999-01-01", "apply": true}"#,
    );
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["applied"], true, "{done}");
    assert!(files(&default_dir) >= 1, "the archive file is written");
    // The chain still verifies across the boundary, and the API's own archiving is audited
    // as the token's.
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["--config"])
        .arg(&api.state.config().source)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
}
