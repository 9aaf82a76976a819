//! Bearer tokens: only SHA-256 hashes are stored; a presented token is hashed and compared in
//! constant time against every known hash.
//!
//! Invariant: the known tokens are kept in memory only until the state file changes, so a
//! token created or revoked counts from the next request.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use super::limit::{self, Client};
use crate::util::hex;

/// (name, hash, scope) of each known token.
type Known = Vec<(String, String, String)>;

/// The known tokens, with the state file's version (`PRAGMA data_version`) they were read at.
/// Any commit by any process moves the version, so a token created or revoked is seen by the
/// very next request; between commits, every answer comes from memory.
#[derive(Default)]
pub struct TokenCache {
    inner: Mutex<Option<(i64, Known)>>,
}

/// A new token: `rbk_` and 32 random bytes in hex.
pub fn generate() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(format!("rbk_{}", hex(&bytes)))
}

pub fn hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Equal length strings compared in constant time (`subtle`).
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn lookup(tokens: &[(String, String, String)], presented: &str) -> Option<(String, String)> {
    let want = hash(presented);
    // Every hash is compared, whatever matches first: the time does not depend on the token.
    let mut found = None;
    for (name, h, scope) in tokens {
        if ct_eq(h.as_bytes(), want.as_bytes()) {
            found = Some((name.clone(), scope.clone()));
        }
    }
    found
}

impl TokenCache {
    /// (name, scope) of the token, from memory when nothing committed since the tokens were
    /// read; `None` when the store must be read.
    fn cached(&self, version: Option<i64>, presented: &str) -> Option<Option<(String, String)>> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (at, tokens) = guard.as_ref()?;
        (Some(*at) == version).then(|| lookup(tokens, presented))
    }

    /// (name, scope) of the token whose hash matches, if any, reading the tokens again when
    /// the state file changed since they were read.
    pub(super) fn find(&self, state: &ApiState, presented: &str) -> Result<Option<(String, String)>, ApiError> {
        let version = state.versions.read_now();
        if let Some(found) = self.cached(version, presented) {
            return Ok(found);
        }
        let tokens: Vec<_> = state
            .store
            .tokens()?
            .into_iter()
            .map(|t| (t.name, t.hash, t.scope))
            .collect();
        let found = lookup(&tokens, presented);
        // Read before the tokens: a commit meanwhile leaves an older version with them, and
        // the next request reads again.
        if let Some(v) = version {
            *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some((v, tokens));
        }
        Ok(found)
    }
}

/// Lets public paths through; everything else needs a valid token (a write scope for writes).
/// The state file's version as `require_token` read it for this request, before anything the
/// handler does: the read cache validates against the same value instead of asking again.
#[derive(Debug, Clone, Copy)]
pub struct DataVersion(pub i64);

/// The state's version, read after this request arrived (see `version`).
pub(super) async fn state_version(state: &Arc<ApiState>) -> Option<i64> {
    state.versions.read().await
}

/// Who made a request: the name of the token it carried (set by `require_token`).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

pub async fn require_token(
    State(state): State<Arc<ApiState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = req.uri().path();
    // A path the API does not serve is a 404 whatever the token (routing ran first: a route
    // that matched left its `MatchedPath`). Pings authorise themselves (the check's key, or a
    // token): see `ping.rs`.
    let unknown = req.extensions().get::<axum::extract::MatchedPath>().is_none();
    if unknown || state.config().api.public.iter().any(|p| p == path) || path.starts_with("/ping/") {
        if let Some(over) = limit::check(&state, Client::Peer(&req)) {
            return Ok(over);
        }
        return Ok(next.run(req).await);
    }
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    // A browser: the status page's cookie on reads, or `?token=` on the page itself.
    let browser = || -> Option<&str> {
        if req.method() != Method::GET {
            return None;
        }
        let cookie = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(super::status::COOKIE)
                    .and_then(|r| r.strip_prefix('='))
            });
        let query = (path == "/" || path == "/status")
            .then(|| {
                req.uri()
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
            })
            .flatten();
        query.or(cookie).filter(|t| !t.is_empty())
    };
    let presented = bearer.or_else(browser);
    let Some(token) = presented else {
        if let Some(over) = limit::check(&state, Client::Peer(&req)) {
            return Ok(over);
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer TOKEN (runbook token create NAME)",
        ));
    };
    // A fresh cache answers in place; only a refresh goes to the store, on a blocking thread.
    let version = state_version(&state).await;
    let found = match state.tokens.cached(version, token) {
        Some(found) => found,
        None => {
            let st = state.clone();
            let token = token.to_string();
            tokio::task::spawn_blocking(move || st.tokens.find(&st, &token))
                .await
                .map_err(ApiError::internal)??
        }
    };
    let Some((name, scope)) = found else {
        if let Some(over) = limit::check(&state, Client::Peer(&req)) {
            return Ok(over);
        }
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown or revoked token",
        ));
    };
    if let Some(over) = limit::check(&state, Client::Token(&name)) {
        return Ok(over);
    }
    if scope != "write" && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this token can only read",
        ));
    }
    req.extensions_mut().insert(Caller(name));
    if let Some(v) = version {
        req.extensions_mut().insert(DataVersion(v));
    }
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let (a, b) = (generate().unwrap(), generate().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("rbk_") && a.len() == 68);
        assert_eq!(hash(&a), hash(&a));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }
}
