//! HTTP probe: one request, judged on status, body, JSON, headers and latency.
//!
//! Owns the probe on a connection of its own with its phases (`http_fetch`, the default) and,
//! with `reuse_connection: true`, a pooled client per (redirect policy, TLS verification, CA
//! file). Invariant: the body is read up to `MAX_BODY`; a longer body is cut, not an error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::http_fetch::{Fetched, fetch};
use super::{Finding, ProbeError, ms};
use crate::config::checks::HttpProbe;

/// Bytes of a response body that are read and judged.
pub const MAX_BODY: usize = 1 << 20;

/// Redirect policy, TLS verification, CA file.
type Key = (bool, bool, Option<PathBuf>);
/// A client per key and connection reuse.
type Clients = HashMap<(Key, bool), Arc<Client>>;

enum Client {
    Pooled(reqwest::Client),
    Fresh(Arc<rustls::ClientConfig>),
}

static CLIENTS: Mutex<Option<Clients>> = Mutex::new(None);

fn build(key: &Key, reuse: bool, timeout: Duration) -> Result<Client, String> {
    let (follow_redirects, tls_verify, ca_file) = key;
    if !reuse {
        return crate::util::tls::client_config(*tls_verify, ca_file.as_deref(), b"http/1.1").map(Client::Fresh);
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(timeout)
        .pool_max_idle_per_host(super::MAX_CONCURRENT_PROBES)
        .redirect(if *follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .tls_danger_accept_invalid_certs(!tls_verify);
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        builder = builder.tls_certs_merge([cert]);
    }
    builder
        .build()
        .map(Client::Pooled)
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A cached client; building one loads the system's root certificates, so it happens on a
/// blocking thread and outside the cache lock, never on a probe worker.
async fn client(p: &HttpProbe, timeout: Duration) -> Result<Arc<Client>, String> {
    let key = (
        (p.follow_redirects, p.tls_verify, p.ca_file.clone()),
        p.reuse_connection,
    );
    let cached = |key: &(Key, bool)| {
        CLIENTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|m| m.get(key).cloned())
    };
    if let Some(c) = cached(&key) {
        return Ok(c);
    }
    // One build at a time: a thousand probes starting together wait for the first build
    // instead of each loading the system's certificates.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _building = BUILDING.lock().await;
    if let Some(c) = cached(&key) {
        return Ok(c);
    }
    let k = key.clone();
    let built = tokio::task::spawn_blocking(move || build(&k.0, k.1, timeout))
        .await
        .map_err(|e| e.to_string())??;
    let mut cache = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    Ok(cache
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert(Arc::new(built))
        .clone())
}

/// One request through the pooled client: no phases to tell.
async fn pooled(client: &reqwest::Client, p: &HttpProbe) -> Result<Fetched, ProbeError> {
    let method = reqwest::Method::from_bytes(p.method.as_bytes()).map_err(|_| format!("bad method {}", p.method))?;
    let mut req = client.request(method, &p.url);
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    if let Some(body) = &p.body {
        req = req.body(body.clone());
    }
    let mut resp = req.send().await.map_err(|e| {
        let detail = format!("{} {}: {}", p.method, p.url, crate::util::innermost(&e));
        if e.is_timeout() {
            ProbeError::TimedOut(detail)
        } else if e.is_connect() {
            ProbeError::Unreachable(detail)
        } else {
            ProbeError::Failed(detail)
        }
    })?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {}", crate::util::innermost(&e)))?
    {
        let room = MAX_BODY - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        status,
        headers,
        body,
        truncated,
        phases: None,
    })
}

pub(super) async fn probe(p: &HttpProbe, timeout: Duration) -> Result<Finding, ProbeError> {
    let client = client(p, timeout).await?;
    let start = Instant::now();
    let Fetched {
        status,
        headers,
        body,
        truncated,
        phases,
    } = match &*client {
        Client::Pooled(c) => pooled(c, p).await?,
        Client::Fresh(tls) => fetch(p, tls, MAX_BODY).await?,
    };
    let latency = start.elapsed();
    let text = String::from_utf8_lossy(&body);
    let e = &p.expect;
    let mut problems: Vec<String> = Vec::new();
    if !e.status.contains(status) {
        problems.push(format!("status {status}, expected {}", e.status));
    }
    if let Some(needle) = &e.body_contains
        && !text.contains(needle.as_str())
    {
        problems.push(format!("body does not contain {needle:?}"));
    }
    if let Some(re) = &e.body_regex {
        let re = crate::config::checks::line_regex(re).map_err(|e| e.to_string())?;
        if !re.is_match(&text) {
            problems.push(format!("body does not match /{}/", re.as_str()));
        }
    }
    if !e.json.is_empty() {
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(doc) => {
                for (pointer, want) in &e.json {
                    match doc.pointer(pointer) {
                        Some(got) if got == want => {}
                        Some(got) => problems.push(format!("{pointer} is {got}, expected {want}")),
                        None => problems.push(format!("{pointer} is missing")),
                    }
                }
            }
            Err(err) => problems.push(format!("body is not JSON: {err}")),
        }
    }
    for (name, want) in &e.headers {
        match headers.get(name.as_str()).map(|v| v.to_str().unwrap_or("")) {
            None => problems.push(format!("header {name} is missing")),
            Some(got) if want != "*" && got != want => {
                problems.push(format!("header {name} is {got:?}, expected {want:?}"))
            }
            Some(_) => {}
        }
    }
    if let Some(max) = e.max_latency
        && latency > max.0
    {
        problems.push(format!("took {}, limit {max}", ms(latency)));
    }
    let mut data = json!({ "status": status, "latency_ms": latency.as_millis() as u64, "body_bytes": body.len(), "body_truncated": truncated });
    if let Some(phases) = &phases {
        data["phases_ms"] = phases.to_json();
    }
    let timing = match &phases {
        Some(phases) => format!("in {} ({})", ms(latency), phases.summary()),
        None => format!("in {}", ms(latency)),
    };
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    Ok(if problems.is_empty() {
        Finding::new(true, format!("{status} {reason} {timing}"), data)
    } else {
        Finding::new(false, problems.join("; "), data)
    })
}
