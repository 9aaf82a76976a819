//! Change requests over HTTP: list them, and approve one from a phone or a chat bot.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::json;

use super::ApiState;
use super::auth::Caller;
use super::error::ApiError;
use super::query::{OptionalJson, id};
use crate::session::{self, SessionError};

#[utoipa::path(get, path = "/v1/changes", tag = "sessions", security(("bearer" = [])),
    responses((status = 200, description = "Change requests, newest first")))]
pub async fn list(State(state): State<Arc<ApiState>>) -> Result<Json<serde_json::Value>, ApiError> {
    let items = tokio::task::spawn_blocking(move || state.reader().changes(100))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ "items": items })))
}

/// The optional body of an approval: an `ssh-keygen -Y sign` signature (armored) of the
/// request's payload, required when `sessions.approvers` is set.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ApproveBody {
    pub signature: Option<String>,
}

#[utoipa::path(post, path = "/v1/changes/{id}/approve", tag = "sessions", params(("id" = String, Path, description = "Change request id")),
    security(("bearer" = [])), request_body(content = Option<ApproveBody>, description = "An SSH signature of the payload, when sessions.approvers is set"),
    responses((status = 200, description = "Approved"), (status = 403, description = "The requester's own request, a read token, or a missing or bad signature"),
              (status = 404, description = "No such request"), (status = 409, description = "Not pending")))]
pub async fn approve(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    OptionalJson(body): OptionalJson<ApproveBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = id(&raw)?;
    let actor = format!("token:{}", caller.0);
    let signature = body.and_then(|b| b.signature);
    let decided = tokio::task::spawn_blocking(move || {
        let config = state.config();
        // The person behind the token: who created it. A requester's own token is the
        // requester.
        let creator = state
            .store
            .tokens()?
            .into_iter()
            .find(|t| t.name == caller.0)
            .map(|t| t.created_by);
        session::decide(
            &config,
            &state.store,
            id,
            true,
            &actor,
            creator.as_deref(),
            None,
            signature.as_deref(),
        )
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
        Err(e @ (SessionError::SignatureRequired(_) | SessionError::Signature(_) | SessionError::NoApprovers)) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "signature", e.to_string()))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}
