//! The status page: server-rendered HTML read by real headless Chromium (Debian's), with a
//! screenshot saved under target/ for people to look at.

mod common;

use common::http::get;
use common::*;
use std::process::{Command, Stdio};

const CONFIG: &str = r#"
version: 1
checks:
  public-surface: { command: { sh: "echo '200 OK'" } }
  api-unit: { command: { sh: "echo 'inactive (dead)'; exit 3" }, severity: critical }
profiles:
  hourly: { cron: "0 * * * *", tasks: [ public-surface, api-unit ] }
"#;

#[test]
fn the_page_needs_a_token_and_shows_checks_alerts_and_profiles() {
    let env = Env::new(CONFIG);
    env.run(&["run", "hourly"]);
    let token = env.run(&["token", "create", "browser"]).stdout.trim().to_string();
    let (_server, port) = serve(&env);

    assert_eq!(get(port, "/", None).status, 401);
    let login = get(port, &format!("/?token={token}"), None);
    assert_eq!(login.status, 303, "the token goes into a cookie and out of the URL");
    assert_eq!(login.header("location"), Some("/"));
    let cookie = login.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let page = get(port, "/status", Some(&token));
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let html = page.body;
    assert!(html.contains("public-surface") && html.contains("api-unit"), "{html}");
    assert!(html.contains("FAILING") && html.contains("inactive (dead)"), "{html}");
    assert!(html.contains("api-unit@"), "the open alert is listed");
    assert!(html.contains("<code>0 * * * *</code>"), "{html}");
    assert!(
        html.contains("http-equiv=\"refresh\""),
        "auto-refresh without JavaScript"
    );
    assert!(!html.contains("<script"), "no JavaScript");
    assert!(html.contains("prefers-color-scheme: dark"), "a dark theme");
    assert!(!html.contains(&token), "the token never appears in the page");
}

#[test]
fn headless_chromium_renders_the_page_and_a_screenshot_is_saved() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        cannot_run("chromium is not installed for the browser test");
        return;
    };
    let env = Env::new(CONFIG);
    env.run(&["run", "hourly"]);
    let token = env.run(&["token", "create", "browser"]).stdout.trim().to_string();
    let (_server, port) = serve(&env);
    let profile = env.path("chromium-profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1200,900",
    ];
    let url = format!("http://127.0.0.1:{port}/?token={token}");
    let dom = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("id=\"checks\"") && dom.contains("public-surface"),
        "the browser followed the login redirect: {dom}"
    );
    assert!(dom.contains("1 alert(s) firing"), "{dom}");

    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("status-page.png");
    // target/ is not there when the build goes to another CARGO_TARGET_DIR.
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let status = Command::new(chromium)
        .args(flags)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture, {} bytes",
        png.len()
    );
}
