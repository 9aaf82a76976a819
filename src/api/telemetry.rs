//! Request counters per second for the last five minutes, the access log, and
//! `/v1/telemetry`, which adds failures read from the state file over the same windows.
//!
//! Memory is fixed: one bucket per second, 300 buckets.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use crate::clock;

const WINDOW_SECS: i64 = 300;

#[derive(Default)]
pub struct Telemetry {
    /// (unix second, requests, 5xx responses), oldest first.
    buckets: Mutex<VecDeque<(i64, u64, u64)>>,
}

impl Telemetry {
    fn record(&self, second: i64, server_error: bool) {
        let mut b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match b.back_mut() {
            Some(last) if last.0 == second => {
                last.1 += 1;
                last.2 += u64::from(server_error);
            }
            _ => b.push_back((second, 1, u64::from(server_error))),
        }
        while b.front().is_some_and(|f| f.0 <= second - WINDOW_SECS) {
            b.pop_front();
        }
    }

    /// (requests, 5xx) within the last `secs` seconds.
    fn window(&self, now: i64, secs: i64) -> (u64, u64) {
        let b = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        b.iter()
            .filter(|(s, _, _)| *s > now - secs)
            .fold((0, 0), |acc, (_, r, e)| (acc.0 + r, acc.1 + e))
    }
}

/// Counts every request and logs it (debug; 5xx at warn), with method, path, status, latency.
pub async fn observe(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    state
        .telemetry
        .record(clock::now().as_second(), status.is_server_error());
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(%method, path, status = status.as_u16(), latency_ms = ms, "request");
    } else {
        tracing::debug!(%method, path, status = status.as_u16(), latency_ms = ms, "request");
    }
    resp
}

#[utoipa::path(get, path = "/v1/telemetry", tag = "metrics", security(("bearer" = [])),
    responses((status = 200, description = "Counters over the last 60 and 300 seconds")))]
pub async fn telemetry(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = clock::now();
    let mut windows = serde_json::Map::new();
    for (name, secs) in [("last_60s", 60i64), ("last_300s", WINDOW_SECS)] {
        let (requests, errors) = state.telemetry.window(now.as_second(), secs);
        let since = clock::to_text(now.checked_sub(jiff::SignedDuration::from_secs(secs)).unwrap_or(now));
        let st = state.clone();
        let (checks, runs, notes) = tokio::task::spawn_blocking(move || st.store.failures_since(&since))
            .await
            .map_err(ApiError::internal)??;
        windows.insert(
            name.into(),
            json!({
                "seconds": secs,
                "requests": requests,
                "requests_per_second": requests as f64 / secs as f64,
                "errors_5xx": errors,
                "check_failures": checks,
                "run_failures": runs,
                "notifications_failed": notes,
            }),
        );
    }
    Ok(Json(
        json!({ "at": clock::to_text(now), "uptime_seconds": state.started.elapsed().as_secs(), "history": { "windows": windows } }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_count_recent_seconds_only() {
        let t = Telemetry::default();
        for s in [100, 100, 150, 390, 399] {
            t.record(s, s == 150);
        }
        assert_eq!(t.window(400, 60), (2, 0));
        assert_eq!(
            t.window(400, 300),
            (3, 1),
            "second 100 is outside the five-minute window"
        );
        t.record(401, false);
        assert_eq!(
            t.window(401, 300),
            (4, 1),
            "buckets older than the window are dropped as time moves"
        );
        assert_eq!(t.buckets.lock().unwrap().front().map(|b| b.0), Some(150));
    }
}
