//! Change requests over HTTP: list them, and approve one from a phone or a chat bot.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::query::id;
use crate::session::{self, SessionError};

#[utoipa::path(get, path = "/v1/changes", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, description = "Change requests, newest first")))]
pub async fn list(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let items = tokio::task::spawn_blocking(move || state.reader().changes(100))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(post, path = "/v1/changes/{id}/approve", tag = "sessions", params(("id" = String, Path, description = "Change request id")),
    security(("bearer" = [])),
    responses((status = 200, description = "Approved"), (status = 403, description = "The requester's own request, or a read token"),
              (status = 404, description = "No such request"), (status = 409, description = "Not pending")))]
pub async fn approve(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id(&raw)?;
    let actor = format!("token:{}", caller.0);
    let decided = tokio::task::spawn_blocking(move || {
        let config = state.config();
        session::decide(&config, &state.store, id, true, &actor, None)
    })
    .await
    .map_err(ApiError::internal)?;
    match decided {
        Ok(c) => Ok(Json(json!(c))),
        Err(e @ SessionError::NoChange(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ SessionError::NotPending(..)) => Err(ApiError::new(StatusCode::CONFLICT, "not_pending", e.to_string())),
        Err(e @ SessionError::SelfApproval(..)) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "self_approval", e.to_string()))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}
