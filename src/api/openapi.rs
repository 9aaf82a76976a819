//! The OpenAPI document, derived from the handlers' annotations: what the router serves is
//! what the document says, for clients and fuzzers.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{audit, changes, health, lists, metrics, ping, status, telemetry};

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "runbook", description = "Executable runbooks for single-host services: health, alerts, runs, checks, audit."),
    modifiers(&Bearer),
    paths(
        health::healthz, health::live, health::ready, health::health, health::migration,
        lists::alerts, lists::alert, lists::runs, lists::run, lists::checks, lists::backups, lists::gates, lists::deploys, lists::fleet, lists::incidents, lists::incident,
        metrics::metrics, metrics::metrics_v1, telemetry::telemetry,
        audit::events, audit::summary, audit::actions, audit::decisions, audit::export, audit::archive,
        ping::success, ping::with_status,
        changes::list, changes::approve,
        status::page, document,
    )
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/v1/openapi.json", tag = "health", responses((status = 200, description = "This document")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Json(doc)
}
