//! Answers repeated reads from memory until the state file changes.
//!
//! Owns the last body of each cached `GET` (keyed by path and query), stored with the state
//! file's `PRAGMA data_version` as read before the handler ran (on a connection that never
//! writes, so any process's commit moves it), and the `ETag` / `304` answers.
//! Invariants: a stale body is never served as current; memory stays within `MAX_ENTRIES`
//! bodies and `MAX_BYTES` (past either, the cache starts over).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::ApiState;

const MAX_ENTRIES: usize = 512;
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// Bodies larger than this pass through unkept (a page of 1,000 alerts is about 500 KB).
const MAX_BODY: usize = 2 * 1024 * 1024;

struct Entry {
    version: i64,
    etag: HeaderValue,
    content_type: HeaderValue,
    body: Bytes,
}

#[derive(Default)]
pub struct ReadCache {
    inner: Mutex<Inner>,
    /// Bodies being made now, by (key, version): a request that misses while one is made
    /// for the same page and version waits for it instead of running the handler again
    /// (after a commit, every client asks at once).
    filling: Mutex<HashMap<(String, i64), watch::Receiver<()>>>,
}

/// A request's part in filling the cache: it makes the body, or waits for one being made.
enum Fill<'c> {
    Make(Filling<'c>),
    Wait(watch::Receiver<()>),
}

/// Held by the request that makes a body; when dropped, the waiters look again.
struct Filling<'c> {
    cache: &'c ReadCache,
    key: (String, i64),
    _done: watch::Sender<()>,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        self.cache
            .filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Arc<Entry>>,
    bytes: usize,
}

impl ReadCache {
    fn fill(&self, key: &str, version: i64) -> Fill<'_> {
        let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
        let k = (key.to_string(), version);
        if let Some(rx) = filling.get(&k) {
            return Fill::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        filling.insert(k.clone(), rx);
        Fill::Make(Filling {
            cache: self,
            key: k,
            _done: tx,
        })
    }

    fn get(&self, key: &str, version: i64) -> Option<Arc<Entry>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.entries.get(key).filter(|e| e.version == version).cloned()
    }

    fn put(&self, key: String, entry: Arc<Entry>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.entries.len() >= MAX_ENTRIES || inner.bytes + entry.body.len() > MAX_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += entry.body.len();
        if let Some(old) = inner.entries.insert(key, entry) {
            inner.bytes -= old.body.len();
        }
    }
}

/// Paths whose bodies depend on the state file alone (not on the clock or the config).
fn cacheable(path: &str) -> bool {
    matches!(
        path,
        "/v1/alerts" | "/v1/runs" | "/v1/audit" | "/v1/audit/summary" | "/v1/audit/actions" | "/v1/audit/decisions"
    ) || path.starts_with("/v1/alerts/")
        || path.starts_with("/v1/runs/")
}

fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let mut tag = String::with_capacity(34);
    tag.push('"');
    for b in &digest[..16] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

fn answer(entry: &Entry, req_tag: Option<&HeaderValue>) -> Response {
    if req_tag.is_some_and(|t| t.as_bytes() == entry.etag.as_bytes() || t.as_bytes() == b"*") {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, entry.etag.clone())]).into_response();
    }
    let mut resp = Response::new(Body::from(entry.body.clone()));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, entry.content_type.clone());
    h.insert(header::ETAG, entry.etag.clone());
    resp
}

/// The middleware: serve from the cache, or run the handler and keep a 200's body.
pub async fn reuse(State(state): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET || !cacheable(req.uri().path()) {
        return next.run(req).await;
    }
    // The version authentication read for this request, or read now; without one there is
    // nothing to validate against: pass through.
    let version = match req.extensions().get::<super::auth::DataVersion>() {
        Some(v) => v.0,
        None => match super::auth::state_version(&state).await {
            Some(v) => v,
            None => return next.run(req).await,
        },
    };
    let key = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let req_tag = req.headers().get(header::IF_NONE_MATCH).cloned();
    if let Some(entry) = state.cache.get(&key, version) {
        return answer(&entry, req_tag.as_ref());
    }
    let _making = match state.cache.fill(&key, version) {
        Fill::Make(f) => Some(f),
        Fill::Wait(mut made) => {
            // The maker drops its sender when done (kept or not): then look again.
            let _ = made.changed().await;
            if let Some(entry) = state.cache.get(&key, version) {
                return answer(&entry, req_tag.as_ref());
            }
            None
        }
    };
    let resp = next.run(req).await;
    if resp.status() != StatusCode::OK {
        return resp;
    }
    // Only bodies of a known, modest size are kept (JSON bodies are whole in memory anyway).
    if resp.body().size_hint().exact().is_none_or(|n| n > MAX_BODY as u64) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return super::error::ApiError::internal("reading a response body failed").into_response();
    };
    let entry = Arc::new(Entry {
        version,
        etag: etag_of(&body),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/json")),
        body,
    });
    state.cache.put(key, entry.clone());
    answer(&entry, req_tag.as_ref())
}
