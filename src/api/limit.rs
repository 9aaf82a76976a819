//! Rate limiting per client, decided after authentication: a GCRA bucket (`governor`) per
//! API token (by its name) or, for anything not authenticated, per peer address; over the
//! limit is 429 with `Retry-After`.
//!
//! Memory is bounded: past `MAX_KEYS` clients the buckets that are full again are dropped
//! (`retain_recent`), and if that is not enough the limiter starts over. The rate and burst
//! come from the configuration at each request: a reload that changes them starts over too.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiState;
use super::error::ApiError;
use crate::config::model::RateLimit;

const MAX_KEYS: usize = 10_000;

/// The keyed limiter of the rate it was built for.
#[derive(Default)]
pub struct Limiter {
    inner: Mutex<Option<(RateLimit, Arc<DefaultKeyedRateLimiter<String>>)>>,
}

impl Limiter {
    fn for_rate(&self, rate: RateLimit) -> Arc<DefaultKeyedRateLimiter<String>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((r, l)) = &*inner
            && *r == rate
        {
            if l.len() > MAX_KEYS {
                l.retain_recent();
            }
            if l.len() <= MAX_KEYS {
                return l.clone();
            }
        }
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(nz(rate.per_second)).allow_burst(nz(rate.burst));
        let l = Arc::new(RateLimiter::keyed(quota));
        *inner = Some((rate, l.clone()));
        l
    }

    /// `Ok` when the request may go; `Err(seconds)` to wait otherwise.
    fn take(&self, key: &str, rate: RateLimit) -> Result<(), u64> {
        self.for_rate(rate).check_key(&key.to_string()).map_err(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        })
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
