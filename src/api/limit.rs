//! Rate limiting per client, decided after authentication: a token bucket per API token (by
//! its name) or, for anything not authenticated, per peer address; over the limit is 429
//! with `Retry-After`.
//!
//! A small map instead of a crate: the need is one bucket per key, refilled by elapsed time.
//! Memory is bounded: idle buckets are dropped when the map grows past `MAX_KEYS`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::error::ApiError;
use crate::config::model::RateLimit;

const MAX_KEYS: usize = 10_000;

#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// `Ok` when the request may go; `Err(seconds)` to wait otherwise.
    fn take(&self, key: &str, rate: RateLimit) -> Result<(), u64> {
        let (per_second, burst) = (f64::from(rate.per_second.max(1)), f64::from(rate.burst.max(1)));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > MAX_KEYS {
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst);
            // Still past the bound (that many clients busy at once): the oldest half goes.
            if buckets.len() > MAX_KEYS {
                let mut ages: Vec<Instant> = buckets.values().map(|(_, at)| *at).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                buckets.retain(|_, (_, at)| *at > cut);
            }
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Who a request is counted against: an authenticated request against its token's name
/// (however many connections or addresses it comes from), anything else against its
/// client's address (an IPv6 client by its /64, which one host usually holds whole). A
/// made-up bearer token is not authenticated: it buys no bucket of its own.
pub enum Client<'a> {
    Token(&'a str),
    Peer(&'a Request),
}

/// `None` when the request may go on; a 429 with `Retry-After` when its client is over the
/// limit (`api.rate_limit`).
pub fn check(state: &ApiState, client: Client<'_>) -> Option<Response> {
    let rate = state.config().api.rate_limit?;
    let key = match client {
        Client::Token(name) => format!("token:{name}"),
        Client::Peer(req) => match req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()) {
            Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(IpAddr::V6(v6)) => format!("ip:{}", v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".into(),
        },
    };
    let wait = state.limiter.take(&key, rate).err()?;
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {wait}s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_rate_applies() {
        let l = Limiter::default();
        let r = RateLimit {
            per_second: 1,
            burst: 3,
        };
        assert!(l.take("a", r).is_ok() && l.take("a", r).is_ok() && l.take("a", r).is_ok());
        assert_eq!(l.take("a", r), Err(1));
        assert!(l.take("b", r).is_ok(), "buckets are per client");
    }
}
