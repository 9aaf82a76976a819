//! The HTTP API: health, readiness, alerts, runs and checks over the state file.
//!
//! A thin front-end: handlers parse, call the store or a domain function on a blocking thread,
//! and render JSON. `router(state)` builds the app without a socket (tests call it directly);
//! `serve` binds and runs it until shutdown. Invariant: every failure is a JSON error with a
//! 4xx or 5xx status, never a panic, and a 5xx never shows internals to the client.

mod audit;
mod auth;
mod cache;
mod changes;
pub mod error;
mod health;
mod limit;
pub mod listen;
mod lists;
pub mod metrics;
pub mod openapi;
mod ping;
mod query;
mod status;
mod telemetry;
mod version;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use auth::{generate as generate_token, hash as hash_token};

use crate::config::Config;
use crate::store::Store;

/// Requests taking longer are answered 503 and dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many read connections (one per core up to it).
const MAX_READERS: usize = 4;
/// Largest request body accepted.
const BODY_LIMIT: usize = 64 * 1024;

/// What every handler can reach.
pub struct ApiState {
    /// Writes (pings, tokens) and the reads that must see them at once.
    pub store: Arc<Store>,
    /// Connections of the API's own for list and summary reads, taken in turn: in WAL mode
    /// readers never wait for the scheduler's writes (nor for each other), and the scheduler
    /// never waits behind API reads.
    readers: Vec<Arc<Store>>,
    next_reader: AtomicUsize,
    /// The state's version on a connection that never writes (`PRAGMA data_version` sees
    /// other connections' commits only), shared by concurrent requests (see `version`).
    pub(crate) versions: Arc<version::Versions>,
    cache: cache::ReadCache,
    /// Swapped by the daemon on reload.
    pub config: Arc<RwLock<Arc<Config>>>,
    pub started: Instant,
    tokens: auth::TokenCache,
    telemetry: telemetry::Telemetry,
    /// Buckets per client; the rate and burst are read from the configuration each time, so
    /// a reload changes them (`api.rate_limit: off` turns limiting off).
    limiter: limit::Limiter,
}

impl ApiState {
    pub fn new(store: Arc<Store>, config: Arc<RwLock<Arc<Config>>>) -> Self {
        let open = || {
            if store.backend() == crate::store::Backend::Postgres {
                // One pool serves every reader.
                return store.clone();
            }
            Store::open_existing_at(store.location())
                .ok()
                .flatten()
                .map(Arc::new)
                .unwrap_or_else(|| store.clone())
        };
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(MAX_READERS));
        let readers = (0..n).map(|_| open()).collect();
        ApiState {
            readers,
            next_reader: AtomicUsize::new(0),
            versions: Arc::new(version::Versions::new(open())),
            cache: cache::ReadCache::default(),
            store,
            config,
            started: Instant::now(),
            tokens: auth::TokenCache::default(),
            telemetry: telemetry::Telemetry::default(),
            limiter: limit::Limiter::default(),
        }
    }

    /// The scope of a presented token, if it is a known one.
    pub fn token_scope(&self, token: &str) -> Result<Option<String>, error::ApiError> {
        Ok(self.tokens.find(self, token)?.map(|(_, scope)| scope))
    }

    /// A read connection, in turn.
    pub fn reader(&self) -> &Store {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed);
        &self.readers[i % self.readers.len()]
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/status", get(status::page))
        .route("/healthz", get(health::healthz))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/live", get(health::live))
        .route("/v1/ready", get(health::ready))
        .route("/v1/health", get(health::health))
        .route("/v1/migration/state", get(health::migration))
        .route("/v1/alerts", get(lists::alerts))
        .route("/v1/alerts/{id}", get(lists::alert))
        .route("/v1/runs", get(lists::runs))
        .route("/v1/runs/{id}", get(lists::run))
        .route("/v1/checks", get(lists::checks))
        .route("/v1/backups", get(lists::backups))
        .route("/v1/gates", get(lists::gates))
        .route("/v1/deploys", get(lists::deploys))
        .route("/v1/fleet", get(lists::fleet))
        .route("/v1/incidents", get(lists::incidents))
        .route("/v1/incidents/{id}", get(lists::incident))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/metrics", get(metrics::metrics_v1))
        .route("/v1/telemetry", get(telemetry::telemetry))
        .route("/v1/audit", get(audit::events))
        .route("/v1/audit/summary", get(audit::summary))
        .route("/v1/audit/actions", get(audit::actions))
        .route("/v1/audit/decisions", get(audit::decisions))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/archive", axum::routing::post(audit::archive))
        .route("/v1/changes", get(changes::list))
        .route("/v1/changes/{id}/approve", axum::routing::post(changes::approve))
        .route("/ping/{name}", get(ping::success).post(ping::success))
        .route("/ping/{name}/{what}", get(ping::with_status).post(ping::with_status))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), cache::reuse))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))
        .layer(axum::middleware::from_fn_with_state(state.clone(), telemetry::observe))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(error::panicked))
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("refusing to listen on {addr} (not loopback) without any API token")]
    NoToken { addr: SocketAddr },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl crate::util::Explain for ServeError {
    fn class(&self) -> crate::util::ExitClass {
        match self {
            ServeError::Store(s) => s.class(),
            _ => crate::util::ExitClass::Internal,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ServeError::Bind { .. } => Some("another process holds the port: change api.listen, or stop it".into()),
            ServeError::NoToken { .. } => Some("create one first: runbook token create NAME".into()),
            ServeError::Store(e) => e.hint(),
        }
    }
}

/// Binds `addr`; refuses a non-loopback address while no token exists.
pub async fn bind(addr: SocketAddr, store: &Store) -> Result<tokio::net::TcpListener, ServeError> {
    if !addr.ip().is_loopback() && store.tokens()?.is_empty() {
        return Err(ServeError::NoToken { addr });
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves until `shutdown` completes; in-flight requests finish first. Connections are
/// bounded and time out (see `listen`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ApiState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listen::serve(listener, router(state), shutdown).await
}
