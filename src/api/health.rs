//! Liveness, readiness, health summary and migration state.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use crate::clock;
use crate::store::{AlertFilter, AlertStatus, MigrationState};

/// The scheduler is "ticking" if it published a tick this recently (it wakes every minute).
const TICK_FRESH_SECS: i64 = 150;

#[utoipa::path(get, path = "/v1/live", tag = "health", responses((status = 200, description = "The process is up")))]
pub async fn live(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    Json(
        json!({ "status": "ok", "uptime_seconds": state.started.elapsed().as_secs(), "version": env!("CARGO_PKG_VERSION") }),
    )
}

struct Readiness {
    ready: bool,
    reasons: Vec<String>,
    migration: Option<MigrationState>,
    last_tick: Option<String>,
}

fn readiness(state: &ApiState) -> Readiness {
    let mut reasons = Vec::new();
    let migration = match state.store.migration_state() {
        Ok(m) => {
            if m.status() != "head" {
                reasons.push(format!(
                    "state schema is {} (version {} of {})",
                    m.status(),
                    m.current,
                    m.head
                ));
            }
            Some(m)
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: state file unreachable");
            reasons.push("state file unreachable".into());
            None
        }
    };
    let last_tick = state
        .store
        .daemon_status("scheduler_tick")
        .ok()
        .flatten()
        .map(|(_, at)| at);
    let fresh = last_tick
        .as_deref()
        .and_then(clock::from_text)
        .is_some_and(|t| clock::now().as_second() - t.as_second() <= TICK_FRESH_SECS);
    if !fresh {
        reasons.push(match &last_tick {
            Some(t) => format!("scheduler has not ticked since {t}"),
            None => "scheduler has never ticked (is `runbook daemon` running?)".into(),
        });
    }
    Readiness {
        ready: reasons.is_empty(),
        reasons,
        migration,
        last_tick,
    }
}

#[utoipa::path(get, path = "/v1/ready", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready, with reasons")))]
pub async fn ready(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let r = tokio::task::spawn_blocking(move || readiness(&state))
        .await
        .map_err(ApiError::internal)?;
    let body = json!({ "ready": r.ready, "reasons": r.reasons, "scheduler_tick": r.last_tick });
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/health", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Health summary"), (status = 503, description = "Not ready")))]
pub async fn health(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let st = state.clone();
    let (r, checks, firing) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let r = readiness(&st);
        let checks = st.store.latest_check_results()?;
        let firing = st.store.list_alerts(&AlertFilter {
            status: Some(AlertStatus::Firing),
            ..Default::default()
        })?;
        Ok((r, checks, firing))
    })
    .await
    .map_err(ApiError::internal)??;
    let failing: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.check.as_str()).collect();
    let body = json!({
        "status": if r.ready && failing.is_empty() && firing.is_empty() { "ok" } else if r.ready { "degraded" } else { "unready" },
        "ready": r.ready,
        "reasons": r.reasons,
        "host": state.config().host,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "migration": r.migration.map(|m| json!({ "current": m.current, "head": m.head, "status": m.status() })),
        "checks": { "total": checks.len(), "failing": failing },
        "alerts": { "firing": firing.len() },
    });
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v1/migration/state", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Schema version: current, head, status")))]
pub async fn migration(State(state): State<Arc<ApiState>>) -> Json<serde_json::Value> {
    let m = tokio::task::spawn_blocking(move || state.store.migration_state()).await;
    Json(match m {
        Ok(Ok(m)) => json!({ "current": m.current, "head": m.head, "status": m.status() }),
        _ => json!({ "current": null, "head": crate::store::Store::head_version(), "status": "unknown" }),
    })
}

/// `/healthz`: the same as `/v1/live`.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up")))]
pub async fn healthz(state: State<Arc<ApiState>>) -> Json<serde_json::Value> {
    live(state).await
}
