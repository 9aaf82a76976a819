//! Alerts, runs, checks and backups: lists newest first (alerts and runs paged with an opaque cursor).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use super::query::{Q, decode_cursor, encode_cursor, id, limit};
use crate::clock;
use crate::store::{AlertFilter, AlertStatus, RunFilter, RunStatus};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    limit: Option<usize>,
    /// check, task, channel or backup
    source: Option<String>,
    /// `KEY:VALUE`: only alerts with this label (`protocol:smtp`)
    label: Option<String>,
    status: Option<String>,
    since: Option<String>,
    cursor: Option<String>,
}

/// A page of a list: serialized straight from the items, no intermediate JSON tree.
#[derive(serde::Serialize)]
pub struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertsQuery), security(("bearer" = [])),
    responses((status = 200, description = "A page of alerts, newest first"), (status = 400, description = "A bad query parameter")))]
pub async fn alerts(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<AlertsQuery>,
) -> Result<Json<Page<crate::store::Alert>>, ApiError> {
    let limit = limit(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            AlertStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    "bad_status",
                    format!("unknown status `{s}` (firing, silenced, resolved)"),
                )
            })
        })
        .transpose()?;
    let since = q
        .since
        .as_deref()
        .map(|s| {
            clock::from_text(s)
                .map(clock::to_text)
                .ok_or_else(|| ApiError::bad_request("bad_since", format!("`{s}` is not an RFC 3339 time")))
        })
        .transpose()?;
    let source = q
        .source
        .as_deref()
        .map(|s| crate::alert::Source::parse(s).map_err(|e| ApiError::bad_request("bad_source", e)))
        .transpose()?;
    let label = q
        .label
        .as_deref()
        .map(|l| crate::alert::parse_label(l).map_err(|e| ApiError::bad_request("bad_label", e)))
        .transpose()?;
    let filter = AlertFilter {
        status,
        source: source.map(|s| s.as_str().to_string()),
        label,
        limit,
        before: decode_cursor(q.cursor.as_deref())?,
        since,
        by_id: true,
    };
    let items = blocking(move || Ok(state.reader().list_alerts(&filter)?)).await?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|a| encode_cursor(a.id)))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts", params(("id" = String, Path, description = "Alert id")),
    security(("bearer" = [])), responses((status = 200, description = "One alert"), (status = 404, description = "No such alert")))]
pub async fn alert(
    State(state): State<Arc<ApiState>>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id(&raw)?;
    let alert = blocking(move || Ok(state.reader().get_alert(id)?)).await?;
    alert
        .map(|a| Json(json!(a)))
        .ok_or_else(|| ApiError::not_found(format!("no alert {id}")))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    limit: Option<usize>,
    status: Option<String>,
    profile: Option<String>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(RunsQuery), security(("bearer" = [])),
    responses((status = 200, description = "A page of runs, newest first"), (status = 400, description = "A bad query parameter")))]
pub async fn runs(State(state): State<Arc<ApiState>>, Q(q): Q<RunsQuery>) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = limit(q.limit)?;
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<RunStatus>()
                .map_err(|e| ApiError::bad_request("bad_status", e))
        })
        .transpose()?;
    let filter = RunFilter {
        limit,
        status,
        profile: q.profile,
        all_kinds: true,
        before: decode_cursor(q.cursor.as_deref())?,
    };
    let items = blocking(move || Ok(state.reader().list_runs(&filter)?)).await?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|r| encode_cursor(r.id)))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs", params(("id" = String, Path, description = "Run id")),
    security(("bearer" = [])), responses((status = 200, description = "One run and its tasks"), (status = 404, description = "No such run")))]
pub async fn run(
    State(state): State<Arc<ApiState>>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id(&raw)?;
    let found = blocking(move || {
        let run = state.reader().get_run(id)?;
        let tasks = match &run {
            Some(_) => state.reader().child_runs(id)?,
            None => Vec::new(),
        };
        Ok(run.map(|r| (r, tasks)))
    })
    .await?;
    found
        .map(|(run, tasks)| Json(json!({ "run": run, "tasks": tasks })))
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

#[utoipa::path(get, path = "/v1/checks", tag = "checks", security(("bearer" = [])),
    responses((status = 200, description = "Every check with its latest outcome")))]
pub async fn checks(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.config();
    let latest = blocking(move || Ok(state.reader().latest_check_results()?)).await?;
    let items: Vec<_> = config
        .checks
        .iter()
        .map(|(name, c)| {
            let last = latest.iter().find(|r| &r.check == name);
            json!({
                "name": name,
                "kind": c.probe.kind(),
                "severity": c.severity,
                "ok": last.map(|r| r.ok),
                "latency_ms": last.map(|r| r.latency_ms),
                "detail": last.map(|r| r.detail.clone()),
                "at": last.map(|r| r.at.clone()),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupsQuery {
    /// Only this target's archives.
    target: Option<String>,
}

#[utoipa::path(get, path = "/v1/backups", tag = "backups", params(BackupsQuery), security(("bearer" = [])),
    responses((status = 200, description = "Every configured target with its newest verified archive, and the archives (newest first) with their last verify and drill"),
              (status = 404, description = "No such target")))]
pub async fn backups(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<BackupsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.config();
    if let Some(t) = &q.target
        && !config.backups.contains_key(t)
    {
        return Err(ApiError::not_found(format!("no backup target `{t}`")));
    }
    let names: Vec<String> = config
        .backups
        .keys()
        .filter(|n| q.target.as_ref().is_none_or(|t| t == *n))
        .cloned()
        .collect();
    let (items, newest) = blocking(move || {
        let store = state.reader();
        let items = store.list_backups(q.target.as_deref())?;
        let newest = names
            .into_iter()
            .map(|n| {
                let verified = crate::backup::newest_verified(&config, store, &n)
                    .map_err(ApiError::internal)?
                    .map(|r| (r.created_at, r.path));
                Ok((verified, n))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok((items, newest))
    })
    .await?;
    let targets: Vec<_> = newest
        .into_iter()
        .map(|(verified, name)| {
            let archives = items.iter().filter(|b| b.target == name).count();
            json!({
                "name": name,
                "archives": archives,
                "newest_verified": verified.as_ref().map(|(_, path)| path),
                "newest_verified_at": verified.as_ref().map(|(at, _)| at),
            })
        })
        .collect();
    Ok(Json(json!({ "targets": targets, "items": items })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GatesQuery {
    /// Runs of each gate to include, newest first (default 5, at most 100).
    runs: Option<i64>,
}

#[utoipa::path(get, path = "/v1/gates", tag = "gates", params(GatesQuery), security(("bearer" = [])),
    responses((status = 200, description = "Every configured gate with what it measures and its recent runs (verdict, release, evidence file and its SHA-256)")))]
pub async fn gates(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<GatesQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.config();
    let limit = q.runs.unwrap_or(5).clamp(0, 100);
    let items = blocking(move || {
        let store = state.reader();
        config
            .gates
            .iter()
            .map(|(name, g)| {
                let runs = store.gate_runs(Some(name), limit)?;
                Ok(json!({
                    "name": name,
                    "measures": g.measures.iter().map(|m| json!({ "name": m.name, "kind": m.kind, "count": m.count })).collect::<Vec<_>>(),
                    "dry_run": g.dry_run,
                    "no_open_alerts": g.no_open_alerts.map(|s| s.as_str()),
                    "config_valid": g.config_valid,
                    "runs": runs,
                }))
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(get, path = "/v1/fleet", tag = "fleet", security(("bearer" = [])),
    responses((status = 200, description = "The hosts sharing this state (state, last heartbeat, labels, failing checks), the leader lease and its term, and the hosts each profile runs on now; `mode` is `single` on a state file")))]
pub async fn fleet(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.config();
    let view = blocking(move || Ok(crate::schedule::fleet_view::view(&config, state.reader())?)).await?;
    Ok(Json(serde_json::to_value(view).map_err(ApiError::internal)?))
}

#[utoipa::path(get, path = "/v1/deploys", tag = "deploys", security(("bearer" = [])),
    responses((status = 200, description = "Every configured app with its live release and its recent deploys and rollbacks (newest first, with the last step each completed)")))]
pub async fn deploys(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.config();
    let items = blocking(move || {
        let store = state.reader();
        config
            .deploy
            .iter()
            .map(|(name, a)| {
                Ok(json!({
                    "app": name,
                    "live": crate::deploy::live(a).ok().flatten(),
                    "deploys": store.deploys(name, 20)?,
                }))
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncidentsQuery {
    /// Every incident, not only those that have not ended.
    all: Option<bool>,
}

#[utoipa::path(get, path = "/v1/incidents", tag = "incidents", params(IncidentsQuery), security(("bearer" = [])),
    responses((status = 200, description = "Incidents newest first: those not closed or cancelled, or all with ?all=true")))]
pub async fn incidents(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<IncidentsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let all = q.all.unwrap_or(false);
    let items = blocking(move || Ok(state.reader().incidents(!all, 200)?)).await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(get, path = "/v1/incidents/{id}", tag = "incidents", params(("id" = String, Path, description = "The incident's slug or number")),
    security(("bearer" = [])),
    responses((status = 200, description = "The incident and its timeline from the audit chain, each entry with its event's hash"),
              (status = 404, description = "No such incident")))]
pub async fn incident(
    State(state): State<Arc<ApiState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let found = blocking(move || {
        let store = state.reader();
        match store.incident(&id)? {
            Some(i) => {
                let timeline = crate::incident::timeline(store, &i)?;
                Ok(Some(json!({ "incident": i, "timeline": timeline })))
            }
            None => Ok(None),
        }
    })
    .await?;
    found
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such incident".to_string()))
}
