//! The audit log over HTTP: events, a summary with chain verification, the decisions people
//! made, and a streamed export.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use super::query::{Q, decode_cursor, encode_cursor, limit};
use crate::store::AuditFilter;

/// Kinds that record a person's decision (not something runbook did by itself).
pub const DECISIONS: &[&str] = &[
    "alert.silenced",
    "alert.acked",
    "token.created",
    "token.revoked",
    "change.approved",
    "change.denied",
];

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    limit: Option<usize>,
    kind: Option<String>,
    cursor: Option<String>,
}

async fn page(state: Arc<ApiState>, q: AuditQuery, kinds: Vec<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = limit(q.limit)?;
    let filter = AuditFilter {
        limit,
        kind: q.kind,
        before: decode_cursor(q.cursor.as_deref())?,
        kinds,
        subject: None,
    };
    let items = tokio::task::spawn_blocking(move || state.reader().audit_list(&filter))
        .await
        .map_err(ApiError::internal)??;
    let next = (items.len() == limit)
        .then(|| items.last().map(|e| encode_cursor(e.seq)))
        .flatten();
    Ok(Json(json!({ "items": items, "next_cursor": next })))
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, description = "A page of audit events, newest first"), (status = 400, description = "A bad query parameter")))]
pub async fn events(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    page(state, q, Vec::new()).await
}

#[utoipa::path(get, path = "/v1/audit/decisions", tag = "audit", params(AuditQuery), security(("bearer" = [])),
    responses((status = 200, description = "Events that record a person's decision"), (status = 400, description = "A bad query parameter")))]
pub async fn decisions(
    State(state): State<Arc<ApiState>>,
    Q(q): Q<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    page(state, q, DECISIONS.iter().map(|s| s.to_string()).collect()).await
}

/// Counts by kind: what runbook and its operators did.
#[utoipa::path(get, path = "/v1/audit/actions", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "Counts by kind")))]
pub async fn actions(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let s = tokio::task::spawn_blocking(move || state.reader().audit_summary())
        .await
        .map_err(ApiError::internal)??;
    let items: Vec<_> = s
        .by_kind
        .iter()
        .map(|(k, n)| json!({ "kind": k, "count": n, "decision": DECISIONS.contains(&k.as_str()) }))
        .collect();
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(get, path = "/v1/audit/summary", tag = "audit", security(("bearer" = [])),
    responses((status = 200, description = "Counts and the chain's verification")))]
pub async fn summary(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let (s, v) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let s = state.reader().audit_summary()?;
        let v = crate::store::chain::scan_chain(state.reader(), &mut |_| {})?;
        Ok((s, v))
    })
    .await
    .map_err(ApiError::internal)??;
    let map = |pairs: &[(String, i64)]| {
        pairs
            .iter()
            .map(|(k, n)| (k.clone(), json!(n)))
            .collect::<serde_json::Map<_, _>>()
    };
    Ok(Json(json!({
        "events": s.events,
        "first": s.first,
        "last": s.last,
        "by_kind": map(&s.by_kind),
        "by_actor": map(&s.by_actor),
        "chain": { "intact": v.first_break.is_none(), "checked": v.checked, "head_seq": v.head().map(|h| h.0), "first_bad": v.first_break },
    })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    format: Option<String>,
}

/// Every event in seq order, streamed as it is read: memory stays flat however long the log.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit", params(ExportQuery), security(("bearer" = [])),
    responses((status = 200, description = "Every event in seq order, streamed"), (status = 400, description = "An unknown format")))]
pub async fn export(State(state): State<Arc<ApiState>>, Q(q): Q<ExportQuery>) -> Result<Response, ApiError> {
    let jsonl = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_format",
                format!("unknown format `{other}` (json or jsonl)"),
            ));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::task::spawn_blocking(move || {
        let mut first = true;
        if !jsonl && tx.blocking_send(Ok("[".into())).is_err() {
            return;
        }
        let scanned = state.reader().audit_scan(&mut |e| {
            let line = serde_json::to_string(e).unwrap_or_default();
            let chunk = match (jsonl, first) {
                (true, _) => format!("{line}\n"),
                (false, true) => line,
                (false, false) => format!(",{line}"),
            };
            first = false;
            tx.blocking_send(Ok(chunk)).is_ok()
        });
        let end = match scanned {
            Ok(()) if jsonl => return,
            Ok(()) => Ok("]\n".to_string()),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        };
        let _ = tx.blocking_send(end);
    });
    // poll_recv keeps answering "ended" once the channel is drained: layers such as
    // compression may poll a finished body again, which `stream::unfold` would panic on.
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let content_type = if jsonl {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    Ok(([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ArchiveBody {
    /// Events before this time move out (RFC 3339, or a date: 2026-01-01).
    before: String,
    /// Do it; without it, say what would move.
    #[serde(default)]
    apply: bool,
}

/// `runbook audit archive` over HTTP: events older than `before` move to compressed files
/// beside the state file (`<state>.audit/`), the chain still verifiable. A dry run unless
/// `apply` is true; the answer is the CLI's `--json` plan either way.
#[utoipa::path(post, path = "/v1/audit/archive", tag = "audit", request_body = ArchiveBody, security(("bearer" = [])),
    responses((status = 200, description = "The plan, applied or not"), (status = 400, description = "A bad `before`"),
              (status = 403, description = "A read token"), (status = 409, description = "The chain is broken: nothing archived")))]
pub async fn archive(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<super::auth::Caller>,
    super::query::OptionalJson(body): super::query::OptionalJson<ArchiveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::store::archive::{self as arch, ArchiveError};
    let body =
        body.ok_or_else(|| ApiError::bad_request("bad_json", "send {\"before\": \"DATE\", \"apply\": false}"))?;
    let before = arch::parse_before(&body.before).ok_or_else(|| {
        ApiError::bad_request(
            "bad_before",
            format!("`{}` is not a date or an RFC 3339 time", body.before),
        )
    })?;
    let plan = tokio::task::spawn_blocking(move || {
        let config = state.config();
        let dir = arch::default_dir(&config.state.path);
        crate::audit::actor::acting_as(&format!("token:{}", caller.0), || {
            arch::archive(&state.store, &before, &dir, body.apply, &config.redactor)
        })
    })
    .await
    .map_err(ApiError::internal)?;
    match plan {
        Ok(plan) => Ok(Json(serde_json::json!(plan))),
        Err(e @ ArchiveError::Broken(_)) => Err(ApiError::new(StatusCode::CONFLICT, "chain_broken", e.to_string())),
        Err(e) => Err(ApiError::internal(e)),
    }
}
