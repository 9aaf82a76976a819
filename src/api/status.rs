//! The status page at `/` and `/status`: server-rendered HTML, no JavaScript, readable on a
//! phone at 3 a.m. Checks with a 24-hour strip, open alerts, profiles with last and next run.
//!
//! A browser cannot send a bearer header: `/?token=…` sets an HttpOnly cookie once and
//! redirects, and the auth layer accepts that cookie on GET requests.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::ApiState;
use super::error::ApiError;
use super::query::Q;
use crate::clock;
use crate::schedule;
use crate::store::{AlertFilter, AlertStatus};

/// Name of the cookie that carries a token for the browser.
pub const COOKIE: &str = "runbook_token";
const REFRESH_SECS: u32 = 30;
const HOURS: i64 = 24;

const CSS: &str = r#"
:root { --bg:#f7f7f5; --fg:#1d1d1f; --muted:#6b6b70; --card:#fff; --line:#e4e4e0; --ok:#1f9d55; --bad:#d93025; --warn:#c77700; --none:#d6d6d2; }
@media (prefers-color-scheme: dark) { :root { --bg:#121214; --fg:#e8e8ea; --muted:#9a9aa2; --card:#1b1b1f; --line:#2c2c31; --ok:#3ecf7a; --bad:#ff6b5f; --warn:#f0a63a; --none:#34343a; } }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background:var(--bg); color:var(--fg); }
main { max-width: 1100px; margin: 0 auto; padding: 20px 16px 40px; }
header { display:flex; align-items:baseline; gap:12px; flex-wrap:wrap; margin-bottom: 18px; }
h1 { font-size: 22px; margin: 0; } h2 { font-size: 16px; margin: 26px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .06em; }
.badge { padding: 2px 10px; border-radius: 999px; font-weight: 600; font-size: 13px; color: #fff; }
.ok { background: var(--ok); } .bad { background: var(--bad); } .warn { background: var(--warn); }
.muted { color: var(--muted); font-size: 13px; }
table { width:100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line); border-radius: 10px; overflow: hidden; }
th, td { text-align:left; padding: 8px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
tr:last-child td { border-bottom: 0; }
.state-ok { color: var(--ok); font-weight: 600; } .state-bad { color: var(--bad); font-weight: 600; } .state-none { color: var(--muted); }
.strip { display:flex; gap:2px; } .strip i { width: 7px; height: 18px; border-radius: 2px; background: var(--none); display:inline-block; }
.strip i.s-ok { background: var(--ok); } .strip i.s-bad { background: var(--bad); }
.detail { max-width: 420px; overflow-wrap: anywhere; }
footer { margin-top: 30px; } a { color: inherit; }
"#;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    token: Option<String>,
}

struct CheckRow {
    name: String,
    kind: &'static str,
    state: Option<bool>,
    latency_ms: Option<i64>,
    detail: String,
    strip: Vec<Option<bool>>,
}

#[utoipa::path(get, path = "/status", tag = "status page", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, description = "The status page", content_type = "text/html"), (status = 303, description = "Token stored in a cookie")))]
pub async fn page(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<PageQuery>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    // `/?token=…` (already checked by the auth layer): keep it in a cookie and drop it from the URL.
    if let Some(token) = q.token {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000");
        let mut resp = (StatusCode::SEE_OTHER, [(header::LOCATION, uri.path().to_string())]).into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        return Ok(resp);
    }
    let html = tokio::task::spawn_blocking(move || render(&state))
        .await
        .map_err(ApiError::internal)??;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html.into_string()).into_response())
}

fn render(state: &ApiState) -> Result<Markup, ApiError> {
    let config = state.config();
    let now = clock::now();
    let latest = state.reader().latest_check_results()?;
    let since_ts = now.checked_sub(jiff::SignedDuration::from_hours(HOURS)).unwrap_or(now);
    let history = state.reader().check_history(&clock::to_text(since_ts))?;
    let alerts = state.reader().list_alerts(&AlertFilter {
        limit: 100,
        ..Default::default()
    })?;
    let open: Vec<_> = alerts.iter().filter(|a| a.status != AlertStatus::Resolved).collect();
    let last_runs = state.reader().last_profile_runs()?;
    let incidents = state.reader().incidents(true, 20)?;
    let deploys = config
        .deploy
        .iter()
        .map(|(name, a)| {
            let last = state.reader().deploys(name, 1)?.into_iter().next();
            Ok((name.clone(), crate::deploy::live(a).ok().flatten(), last))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let gate_runs = config
        .gates
        .keys()
        .map(|g| Ok((g.clone(), state.reader().gate_runs(Some(g), 1)?.into_iter().next())))
        .collect::<Result<Vec<_>, ApiError>>()?;
    // The newest host rebuild drill (`runbook recover`, `recover_drill` tasks): its RTO.
    let rebuild = state
        .reader()
        .audit_list(&crate::store::AuditFilter {
            limit: 1,
            kind: Some("recover.drilled".into()),
            ..Default::default()
        })?
        .into_iter()
        .next()
        .and_then(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.data).ok()?;
            Some((
                e.ts,
                d["ok"].as_bool() == Some(true),
                d["rto_ms"].as_u64()?,
                d["rto_goal_ms"].as_u64(),
            ))
        });
    // Fleet mode: the hosts sharing the state (none on a state file).
    let fleet = if state.store.backend() == crate::store::Backend::Postgres {
        Some(crate::schedule::fleet_view::view(&config, state.reader())?)
    } else {
        None
    };

    let hour_of = |i: i64| {
        since_ts
            .checked_add(jiff::SignedDuration::from_hours(i + 1))
            .map(|t| clock::to_text(t)[..13].to_string())
            .unwrap_or_default()
    };
    let checks: Vec<CheckRow> = config
        .checks
        .iter()
        .map(|(name, c)| {
            let last = latest.iter().find(|r| &r.check == name);
            let strip = (0..HOURS)
                .map(|i| {
                    let hour = hour_of(i);
                    history
                        .iter()
                        .find(|(n, h, _, _)| n == name && *h == hour)
                        .map(|(_, _, _, bad)| *bad == 0)
                })
                .collect();
            CheckRow {
                name: name.clone(),
                kind: c.probe.kind(),
                state: last.map(|r| r.ok),
                latency_ms: last.map(|r| r.latency_ms),
                detail: last.map(|r| r.detail.clone()).unwrap_or_default(),
                strip,
            }
        })
        .collect();
    let failing = checks.iter().filter(|c| c.state == Some(false)).count();
    let firing = open.iter().filter(|a| a.status == AlertStatus::Firing).count();
    let (overall, class) = match (failing, firing) {
        (0, 0) => ("all good".to_string(), "ok"),
        (f, 0) => (format!("{f} check(s) failing"), "warn"),
        (_, a) => (format!("{a} alert(s) firing"), "bad"),
    };

    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECS);
                meta name="color-scheme" content="light dark";
                title { "runbook · " (config.host) " · " (overall) }
                style { (PreEscaped(CSS)) }
            }
            body { main {
                header {
                    h1 { "runbook · " (config.host) }
                    span.badge.(class) id="overall" { (overall) }
                    span.muted { "as of " (clock::human(now)) " · refreshes every " (REFRESH_SECS) "s" }
                }
                @if !incidents.is_empty() {
                    h2 { "Open incidents (" (incidents.len()) ")" }
                    table id="incidents" {
                        thead { tr { th { "Incident" } th { "Severity" } th { "State" } th { "Commander" } th { "Opened" } } }
                        tbody { @for i in &incidents {
                            tr data-incident=(i.slug) {
                                td { (i.title) br; span.muted { (i.slug) } }
                                td.state-bad { (i.severity) }
                                td { (i.state) }
                                td { (i.commander) }
                                td { (clock::from_text(&i.opened_at).map(|t| clock::relative(t, now)).unwrap_or_default()) }
                            }
                        } }
                    }
                }
                h2 { "Open alerts (" (open.len()) ")" }
                @if open.is_empty() {
                    p.muted id="no-alerts" { "No open alerts." }
                } @else {
                    table id="alerts" {
                        thead { tr { th { "Alert" } th { "Severity" } th { "Status" } th { "Since" } th { "Count" } th { "Summary" } } }
                        tbody { @for a in &open {
                            tr {
                                td { (a.key) }
                                td { (a.severity) }
                                td class=(if a.status == AlertStatus::Firing { "state-bad" } else { "state-none" }) {
                                    (a.status.as_str())
                                    @if let Some(dep) = &a.suppressed_by { " (" (dep) " down)" }
                                    @if a.acked_by.is_some() { " · acked" }
                                }
                                td { (clock::from_text(&a.first_seen).map(|t| clock::relative(t, now)).unwrap_or_default()) }
                                td { (a.count) }
                                td.detail { (a.summary) }
                            }
                        } }
                    }
                }
                h2 { "Checks (" (checks.len()) ", " (failing) " failing)" }
                @if checks.is_empty() {
                    p.muted { "No checks are configured." }
                } @else {
                    table id="checks" {
                        thead { tr { th { "Check" } th { "State" } th { "Latency" } th { "Last 24 hours" } th { "Detail" } } }
                        tbody { @for c in &checks {
                            tr data-check=(c.name) {
                                td { (c.name) br; span.muted { (c.kind) } }
                                @match c.state {
                                    Some(true) => td.state-ok { "ok" },
                                    Some(false) => td.state-bad { "FAILING" },
                                    None => td.state-none { "not run yet" },
                                }
                                td { @if let Some(ms) = c.latency_ms { (ms) " ms" } }
                                td { div.strip title="one cell per hour, oldest first" {
                                    @for cell in &c.strip {
                                        @match cell { Some(true) => i.s-ok {}, Some(false) => i.s-bad {}, None => i {} }
                                    }
                                } }
                                td.detail { (c.detail) }
                            }
                        } }
                    }
                }
                h2 { "Profiles" }
                table id="profiles" {
                    thead { tr { th { "Profile" } th { "Cron" } th { "Last run" } th { "Next run" } } }
                    tbody { @for (name, p) in &config.profiles {
                        @let last = last_runs.iter().find(|r| &r.profile == name);
                        tr {
                            td { (name) }
                            td { code { (p.cron) } }
                            td { @if let Some(r) = last {
                                span class=(if r.status.as_str() == "ok" { "state-ok" } else { "state-bad" }) { (r.status.as_str()) }
                                " " (clock::from_text(&r.started_at).map(|t| clock::relative(t, now)).unwrap_or_default())
                                @if let Some(ms) = r.duration_ms { span.muted { " · " (crate::util::duration_ms(ms as u64)) } }
                            } @else { span.muted { "never" } } }
                            td { @if !p.enabled { span.muted { "disabled" } } @else {
                                (p.schedule.as_ref().and_then(|s| schedule::next_after(s, now)).map(|t| clock::relative(t, now)).unwrap_or_else(|| "never".into()))
                            } }
                        }
                    } }
                }
                @if let Some((at, ok, rto, goal)) = &rebuild {
                    h2 { "Host rebuild drill" }
                    p id="rebuild" {
                        span class=(if *ok { "state-ok" } else { "state-bad" }) { (if *ok { "recovered" } else { "failed" }) }
                        " in " (crate::util::duration_ms(*rto))
                        @if let Some(g) = goal { span.muted { " (goal " (crate::util::duration_ms(*g)) ")" } }
                        span.muted { " · " (clock::from_text(at).map(|t| clock::relative(t, now)).unwrap_or_default()) }
                    }
                }
                @if let Some(f) = fleet.as_ref().filter(|f| !f.hosts.is_empty()) {
                    h2 { "Fleet" }
                    p.muted { @match &f.leader {
                        Some(l) => { "leader: " (l.host) " · term " (l.term) },
                        None => { "no host holds the leader lease" },
                    } }
                    table id="fleet" {
                        thead { tr { th { "Host" } th { "State" } th { "Last heartbeat" } th { "Checks" } } }
                        tbody { @for h in &f.hosts {
                            tr data-host=(h.host) {
                                td { (h.host) @if h.leader { span.muted { " · leader" } } }
                                td class=(match h.state { "up" => "state-ok", "down" => "state-bad", _ => "state-none" }) { (h.state) }
                                td { (crate::util::duration_ms(h.heartbeat_age_ms.max(0) as u64)) " ago" }
                                td.detail { (h.checks_ok) " ok" @if !h.checks_failing.is_empty() { " · failing: " (h.checks_failing.join(", ")) } }
                            }
                        } }
                    }
                }
                @if !gate_runs.is_empty() {
                    h2 { "Gates" }
                    table id="gates" {
                        thead { tr { th { "Gate" } th { "Last run" } th { "Verdict" } th { "Release" } th { "Evidence" } } }
                        tbody { @for (name, last) in &gate_runs {
                            tr data-gate=(name) {
                                td { (name) }
                                @if let Some(r) = last {
                                    td { (clock::from_text(&r.finished_at).map(|t| clock::relative(t, now)).unwrap_or_default()) }
                                    td class=(if r.verdict == "pass" { "state-ok" } else { "state-bad" }) { (r.verdict) }
                                    td { (r.release_ref.as_deref().unwrap_or("")) @if let Some(sha) = &r.release_sha { br; span.muted { code { (&sha[..sha.len().min(12)]) } } } }
                                    td.detail { (r.evidence_path) }
                                } @else {
                                    td.muted { "never" } td {} td {} td {}
                                }
                            }
                        } }
                    }
                }
                @if !deploys.is_empty() {
                    h2 { "Deploys" }
                    table id="deploys" {
                        thead { tr { th { "App" } th { "Live release" } th { "Last deploy" } th { "Status" } th { "Detail" } } }
                        tbody { @for (name, live, last) in &deploys {
                            tr data-app=(name) {
                                td { (name) }
                                td { @if let Some(r) = live { code { (r) } } @else { span.muted { "nothing yet" } } }
                                @if let Some(d) = last {
                                    td { (d.reference) " " (clock::from_text(&d.started_at).map(|t| clock::relative(t, now)).unwrap_or_default()) }
                                    td class=(if d.status == "good" { "state-ok" } else if d.status == "running" { "state-none" } else { "state-bad" }) { (d.status) }
                                    td.detail { (d.error.as_deref().unwrap_or(&d.step)) }
                                } @else {
                                    td {} td {} td {}
                                }
                            }
                        } }
                    }
                }
                footer.muted { "runbook " (env!("CARGO_PKG_VERSION")) " · " a href="/v1/health" { "health" } " · " a href="/metrics" { "metrics" } }
            } }
        }
    })
}
