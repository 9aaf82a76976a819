//! `/metrics`: Prometheus exposition, computed from the state file at scrape time.
//!
//! The API may run in its own process (`runbook serve`), so nothing here is kept in memory:
//! every value comes from the store. Counters are only those whose rows are never pruned
//! (runs); everything else is a gauge. Prometheus text 0.0.4 by default, OpenMetrics 1.0 when
//! the scraper asks for it (`Accept: application/openmetrics-text`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::ApiError;
use crate::clock;
use crate::store::{BackupMetrics, LATENCY_BOUNDS_MS};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Writer {
    out: String,
    openmetrics: bool,
}

impl Writer {
    /// `# HELP` and `# TYPE` of a family; counters are named without `_total` in OpenMetrics.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let (family, kind) = match (kind, self.openmetrics) {
            ("counter", true) => (name.trim_end_matches("_total"), "counter"),
            ("info", false) => (name, "gauge"),
            ("info", true) => (name.trim_end_matches("_info"), "info"),
            (k, _) => (name, k),
        };
        let _ = writeln!(self.out, "# HELP {family} {help}");
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    /// Writes one sample straight into the output; values are escaped only when they need it.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        for (i, (k, v)) in labels.iter().enumerate() {
            self.out.push(if i == 0 { '{' } else { ',' });
            self.out.push_str(k);
            self.out.push_str("=\"");
            if v.contains(['\\', '"', '\n']) {
                self.out.push_str(&escape(v));
            } else {
                self.out.push_str(v);
            }
            self.out.push('"');
        }
        if !labels.is_empty() {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Renders the exposition text (used by the handler and by the benchmark).
pub fn render(state: &ApiState, openmetrics: bool) -> Result<String, ApiError> {
    let config = state.config();
    let snap = state.reader().metrics_snapshot()?;
    let latest = state.reader().latest_check_results()?;
    let latency = state.reader().check_latency()?;
    // One lookup table, not a search per check: 1,000 checks must render in milliseconds.
    let latest: std::collections::HashMap<&str, &crate::store::CheckResult> =
        latest.iter().map(|r| (r.check.as_str(), r)).collect();
    let mut w = Writer {
        out: String::with_capacity(4096 + 200 * config.checks.len()),
        openmetrics,
    };

    w.family("runbook_build_info", "info", "runbook's version and host.");
    w.sample(
        "runbook_build_info",
        &[("version", env!("CARGO_PKG_VERSION")), ("host", &config.host)],
        1.0,
    );

    w.family(
        "runbook_check_up",
        "gauge",
        "1 if the check's latest outcome was ok, 0 if failing.",
    );
    for (name, check) in &config.checks {
        if let Some(r) = latest.get(name.as_str()) {
            w.sample(
                "runbook_check_up",
                &[("check", name), ("kind", check.probe.kind())],
                if r.ok { 1.0 } else { 0.0 },
            );
        }
    }
    w.family(
        "runbook_check_latency_seconds",
        "gauge",
        "How long the check's latest probe took.",
    );
    for name in config.checks.keys() {
        if let Some(r) = latest.get(name.as_str()) {
            w.sample(
                "runbook_check_latency_seconds",
                &[("check", name)],
                r.latency_ms as f64 / 1000.0,
            );
        }
    }
    w.family(
        "runbook_http_duration_seconds",
        "gauge",
        "Phases of the latest probe of each HTTP check on a connection of its own: resolve, connect, tls, processing (to the first byte), transfer.",
    );
    for name in config.checks.keys() {
        let Some(r) = latest.get(name.as_str()).filter(|r| r.kind == "http") else {
            continue;
        };
        let Ok(serde_json::Value::Object(data)) = serde_json::from_str(&r.data) else {
            continue;
        };
        let Some(serde_json::Value::Object(phases)) = data.get("phases_ms") else {
            continue;
        };
        for (phase, ms) in phases {
            if let Some(ms) = ms.as_f64() {
                w.sample(
                    "runbook_http_duration_seconds",
                    &[("check", name), ("phase", phase)],
                    ms / 1000.0,
                );
            }
        }
    }
    w.family(
        "runbook_deploy_last_success_timestamp_seconds",
        "gauge",
        "When each app's last good deploy (or rollback) finished.",
    );
    let mut live = Vec::new();
    for (name, a) in &config.deploy {
        let history = state.reader().deploys(name, 100)?;
        if let Some(at) = history
            .iter()
            .find(|d| d.status == "good")
            .and_then(|d| d.finished_at.as_deref())
            .and_then(crate::clock::from_text)
        {
            w.sample(
                "runbook_deploy_last_success_timestamp_seconds",
                &[("app", name)],
                at.as_second() as f64,
            );
        }
        if let Some(release) = crate::deploy::live(a).ok().flatten() {
            let sha = history
                .iter()
                .find(|d| d.release == release)
                .map(|d| d.sha.clone())
                .unwrap_or_default();
            live.push((name.clone(), release, sha));
        }
    }
    w.family(
        "runbook_deploy_release_info",
        "gauge",
        "The release live for each app, and its commit.",
    );
    for (app, release, sha) in &live {
        w.sample(
            "runbook_deploy_release_info",
            &[("app", app), ("release", release), ("sha", sha)],
            1.0,
        );
    }
    w.family(
        "runbook_check_duration_seconds",
        "histogram",
        "How long probes of each check took, all time.",
    );
    for h in &latency {
        let (name, count) = (&h.check, h.count);
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BOUNDS_MS.iter().zip(&h.counts) {
            cumulative += n;
            let le = format!("{}", *bound as f64 / 1000.0);
            w.sample(
                "runbook_check_duration_seconds_bucket",
                &[("check", name), ("le", &le)],
                cumulative as f64,
            );
        }
        w.sample(
            "runbook_check_duration_seconds_bucket",
            &[("check", name), ("le", "+Inf")],
            count as f64,
        );
        w.sample(
            "runbook_check_duration_seconds_sum",
            &[("check", name)],
            h.sum_ms as f64 / 1000.0,
        );
        w.sample("runbook_check_duration_seconds_count", &[("check", name)], count as f64);
    }
    w.family("runbook_runs_total", "counter", "Profile runs by profile and status.");
    for (profile, status, n) in &snap.runs {
        w.sample(
            "runbook_runs_total",
            &[("profile", profile), ("status", status)],
            *n as f64,
        );
    }
    w.family(
        "runbook_run_duration_seconds",
        "gauge",
        "Duration of the profile's latest finished run.",
    );
    for (profile, ms, _) in &snap.profiles {
        if let Some(ms) = ms {
            w.sample(
                "runbook_run_duration_seconds",
                &[("profile", profile)],
                *ms as f64 / 1000.0,
            );
        }
    }
    w.family(
        "runbook_last_success_timestamp_seconds",
        "gauge",
        "When the profile last finished ok (Unix time).",
    );
    for (profile, _, at) in &snap.profiles {
        if let Some(t) = at.as_deref().and_then(clock::from_text) {
            w.sample(
                "runbook_last_success_timestamp_seconds",
                &[("profile", profile)],
                t.as_millisecond() as f64 / 1000.0,
            );
        }
    }
    w.family(
        "runbook_alerts_open",
        "gauge",
        "Open alerts by severity and status (firing, silenced).",
    );
    for (severity, status, n) in &snap.alerts {
        w.sample(
            "runbook_alerts_open",
            &[("severity", severity), ("status", status)],
            *n as f64,
        );
    }
    w.family(
        "runbook_notifications",
        "gauge",
        "Notifications in the outbox by channel and status.",
    );
    for (channel, status, n) in &snap.notifications {
        w.sample(
            "runbook_notifications",
            &[("channel", channel), ("status", status)],
            *n as f64,
        );
    }
    let backups = state.reader().backup_metrics()?;
    // One gauge per target for each backup figure (absent where the target has none yet).
    fn seconds(t: Option<&str>) -> Option<f64> {
        t.and_then(clock::from_text).map(|t| t.as_second() as f64)
    }
    type Figure = fn(&BackupMetrics) -> Option<f64>;
    let families: [(&str, &str, Figure); 4] = [
        (
            "runbook_backup_last_success_timestamp_seconds",
            "When the newest archive of each backup target was written.",
            |b| seconds(Some(&b.created_at)),
        ),
        (
            "runbook_backup_size_bytes",
            "Size of the newest archive of each backup target.",
            |b| Some(b.size as f64),
        ),
        (
            "runbook_backup_last_verified_timestamp_seconds",
            "When the newest archive that passed `backup verify` was written.",
            |b| seconds(b.verified_created_at.as_deref()),
        ),
        (
            "runbook_backup_drill_recovery_seconds",
            "Recovery time measured by the latest successful restore drill of each target.",
            |b| b.drill_ms.map(|ms| ms as f64 / 1000.0),
        ),
    ];
    for (name, help, value) in families {
        w.family(name, "gauge", help);
        for b in &backups {
            if let Some(v) = value(b) {
                w.sample(name, &[("target", &b.target)], v);
            }
        }
    }
    if openmetrics {
        w.out.push_str("# EOF\n");
    }
    Ok(w.out)
}

#[utoipa::path(get, path = "/metrics", tag = "metrics", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text, or OpenMetrics on request", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let text = tokio::task::spawn_blocking(move || render(&state, openmetrics))
        .await
        .map_err(ApiError::internal)??;
    let content_type = if openmetrics { OPENMETRICS } else { TEXT };
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

/// `/metrics` under the API's own prefix, for scrapers and proxies that route only `/v1/`.
#[utoipa::path(get, path = "/v1/metrics", tag = "metrics", security(("bearer" = [])),
    responses((status = 200, description = "The same exposition as /metrics", content_type = "text/plain")))]
pub async fn metrics_v1(state: State<Arc<ApiState>>, headers: HeaderMap) -> Result<Response, ApiError> {
    metrics(state, headers).await
}
