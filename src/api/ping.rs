//! Heartbeats in: `/ping/NAME` (success), `/ping/NAME/start`, `/ping/NAME/fail`,
//! `/ping/NAME/EXIT_CODE`, by GET or POST, as a cron job's `curl` sends them.
//!
//! Authorised by the check's `key` in the query (`?key=…`, compared in constant time) or by
//! an API token. A ping is judged at once: a failure opens the alert without waiting for the
//! next scheduled probe, and a success resolves it.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use super::ApiState;
use super::error::ApiError;
use super::query::Q;
use crate::check;
use crate::clock;
use crate::config::Probe;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PingQuery {
    key: Option<String>,
}

#[utoipa::path(post, path = "/ping/{name}", tag = "heartbeats", params(("name" = String, Path, description = "Heartbeat check"), PingQuery),
    responses((status = 200, description = "Ping recorded"), (status = 401, description = "No valid key or write token"), (status = 404, description = "No such heartbeat check")))]
pub async fn success(
    state: State<Arc<ApiState>>,
    Path(name): Path<String>,
    q: Q<PingQuery>,
    h: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    ping(state, name, "ok".into(), q, h).await
}

#[utoipa::path(post, path = "/ping/{name}/{what}", tag = "heartbeats",
    params(("name" = String, Path, description = "Heartbeat check"), ("what" = String, Path, description = "start, fail, or an exit code 0-255"), PingQuery),
    responses((status = 200, description = "Ping recorded"), (status = 401, description = "No valid key or write token"), (status = 404, description = "No such check or ping")))]
pub async fn with_status(
    state: State<Arc<ApiState>>,
    Path((name, what)): Path<(String, String)>,
    q: Q<PingQuery>,
    h: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    ping(state, name, what, q, h).await
}

async fn ping(
    State(state): State<Arc<ApiState>>,
    name: String,
    what: String,
    Q(q): Q<PingQuery>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let config = state.config();
    let Some(check) = config
        .checks
        .get(&name)
        .filter(|c| matches!(c.probe, Probe::Heartbeat(_)))
    else {
        return Err(ApiError::not_found(format!("no heartbeat check named `{name}`")));
    };
    let Probe::Heartbeat(hb) = &check.probe else {
        unreachable!("filtered above")
    };
    let (status, exit_code) = match what.as_str() {
        "ok" => ("ok", None),
        "start" => ("start", None),
        "fail" => ("fail", None),
        code => match code.parse::<i64>() {
            Ok(0) => ("ok", Some(0)),
            Ok(c) if (0..=255).contains(&c) => ("fail", Some(c)),
            _ => return Err(ApiError::not_found("ping with /start, /fail or an exit code 0-255")),
        },
    };
    let key_ok = match (&hb.key, &q.key) {
        (Some(want), Some(got)) => super::auth::ct_eq(want.as_bytes(), got.as_bytes()),
        _ => false,
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let st = state.clone();
    // Only a token that may write can change state through a ping; a read token is no key.
    let token = match bearer {
        Some(t) => tokio::task::spawn_blocking(move || st.tokens.find(&st, &t))
            .await
            .map_err(ApiError::internal)??
            .filter(|(_, scope)| scope == "write"),
        None => None,
    };
    let actor = match (&token, key_ok) {
        (Some((name, _)), _) => format!("token:{name}"),
        (None, true) => format!("ping:{name}"),
        (None, false) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "ping with ?key=THE_CHECK_KEY or an API token that may write",
            ));
        }
    };
    let st = state.clone();
    let name2 = name.clone();
    // The configuration this request was judged against, whole: a reload that removes the
    // check meanwhile must not make the rest of the request look it up again.
    let check = check.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<check::Outcome, ApiError> {
        crate::audit::actor::acting_as(&actor, || {
            let now = clock::now();
            let duration = if status == "start" {
                None
            } else {
                st.store
                    .heartbeat(&name2)?
                    .filter(|b| b.last_status == "start")
                    .and_then(|b| b.last_start.as_deref().and_then(clock::from_text))
                    .map(|s| now.as_millisecond() - s.as_millisecond())
            };
            let draft = crate::audit::Draft::new(
                "heartbeat.pinged",
                &name2,
                json!({ "ping": status, "exit_code": exit_code }),
                &config.redactor,
            );
            st.store
                .record_ping(&name2, status, exit_code, &clock::to_text(now), duration, &draft)?;
            let outcome = crate::util::runtime::runtime().block_on(check::probe(&config, &name2, &check));
            crate::notify::record_and_observe(&st.store, &config, std::slice::from_ref(&outcome), &[])?;
            // Sent at once, by this process when it may send: on a state file always; in a
            // fleet only while this host leads (fenced by its term), else by the leader's next
            // pass within a second.
            let sent = match (st.store.judges_for_fleet(), crate::store::fleet::held_term()) {
                (false, _) => Some(crate::notify::dispatch::dispatch_due(&config, &st.store)),
                (true, Some(term)) => Some(
                    st.store
                        .fenced(term, || crate::notify::dispatch::dispatch_due(&config, &st.store)),
                ),
                (true, None) => None,
            };
            if let Some(Err(e)) = sent {
                tracing::warn!(error = %e, "cannot send notifications after a ping");
            }
            Ok(outcome)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(
        json!({ "check": name, "ping": status, "exit_code": exit_code, "ok": outcome.ok, "detail": outcome.detail }),
    ))
}
