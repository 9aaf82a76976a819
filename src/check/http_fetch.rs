//! One HTTP/1.1 exchange on a connection of its own, timed by phase as blackbox_exporter
//! reports them: `resolve` (DNS), `connect` (TCP), `tls` (handshake), `processing` (request
//! sent to the response's first byte) and `transfer` (the body). Redirects are followed on
//! new connections, up to 10, and their phases add up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use super::ProbeError;
use crate::config::checks::HttpProbe;

/// What came back: the last response of the redirects followed.
pub(super) struct Fetched {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub truncated: bool,
    /// Timed on a connection of its own; none on a reused one.
    pub phases: Option<Phases>,
}

#[derive(Default)]
pub(super) struct Phases {
    pub resolve: Duration,
    pub connect: Duration,
    pub tls: Duration,
    pub processing: Duration,
    pub transfer: Duration,
}

impl Phases {
    pub const NAMES: [&str; 5] = ["resolve", "connect", "tls", "processing", "transfer"];

    fn all(&self) -> [Duration; 5] {
        [self.resolve, self.connect, self.tls, self.processing, self.transfer]
    }

    /// `{"resolve": 0.041, …}` in milliseconds, to the microsecond.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Duration| (d.as_micros() as f64) / 1000.0;
        let map = Self::NAMES
            .iter()
            .zip(self.all())
            .map(|(n, d)| (n.to_string(), json!(ms(d))));
        serde_json::Value::Object(map.collect())
    }

    /// `dns 0.04 ms, connect 0.1 ms, tls 2.3 ms, first byte 0.8 ms`, without the phases that
    /// did not happen (no TLS on plain HTTP, no lookup of an address).
    pub fn summary(&self) -> String {
        let parts = [
            ("dns", self.resolve),
            ("connect", self.connect),
            ("tls", self.tls),
            ("first byte", self.processing),
        ];
        let said: Vec<String> = parts
            .iter()
            .filter(|(n, d)| !d.is_zero() || *n == "first byte")
            .map(|(n, d)| format!("{n} {:.2} ms", d.as_secs_f64() * 1000.0))
            .collect();
        said.join(", ")
    }
}

pub(super) async fn fetch(
    p: &HttpProbe,
    tls: &Arc<rustls::ClientConfig>,
    max_body: usize,
) -> Result<Fetched, ProbeError> {
    let mut url = url::Url::parse(&p.url).map_err(|e| format!("bad url {}: {e}", p.url))?;
    let mut method = hyper::Method::from_bytes(p.method.as_bytes()).map_err(|_| format!("bad method {}", p.method))?;
    let mut body = p.body.clone().unwrap_or_default();
    let mut phases = Phases::default();
    for hop in 0..=10 {
        let resp = exchange(&url, &method, &p.headers, &body, tls, &mut phases)
            .await
            .map_err(|e| e.within(&format!("{method} {url}")))?;
        let status = resp.status();
        let location = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok());
        if let (true, true, Some(location)) = (p.follow_redirects, status.is_redirection(), location) {
            if hop == 10 {
                return Err(format!("{} {}: more than 10 redirects", p.method, p.url).into());
            }
            url = url
                .join(location)
                .map_err(|e| format!("redirect to {location:?}: {e}"))?;
            // As browsers (and reqwest) do: 301, 302 and 303 turn into a GET without a body.
            if matches!(status.as_u16(), 301..=303) && method != hyper::Method::HEAD {
                method = hyper::Method::GET;
                body.clear();
            }
            continue;
        }
        let headers = resp.headers().clone();
        let start = Instant::now();
        let mut incoming = resp.into_body();
        let (mut read, mut truncated) = (Vec::new(), false);
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            let Ok(chunk) = frame.into_data() else { continue };
            let room = max_body - read.len();
            if chunk.len() > room {
                read.extend_from_slice(&chunk[..room]);
                truncated = true;
                break;
            }
            read.extend_from_slice(&chunk);
        }
        phases.transfer += start.elapsed();
        return Ok(Fetched {
            status: status.as_u16(),
            headers,
            body: read,
            truncated,
            phases: Some(phases),
        });
    }
    unreachable!("the loop returns by its 11th response")
}

/// One request on a new connection; adds each phase's time to `phases`.
async fn exchange(
    url: &url::Url,
    method: &hyper::Method,
    extra: &std::collections::BTreeMap<String, String>,
    body: &str,
    tls: &Arc<rustls::ClientConfig>,
    phases: &mut Phases,
) -> Result<hyper::Response<hyper::body::Incoming>, ProbeError> {
    let https = match url.scheme() {
        "https" => true,
        "http" => false,
        other => return Err(format!("unsupported scheme {other}").into()),
    };
    let host = url.host().ok_or_else(|| "no host".to_string())?;
    let port = url.port_or_known_default().unwrap_or(80);
    let start = Instant::now();
    let addrs: Vec<SocketAddr> = match &host {
        url::Host::Domain(d) => tokio::net::lookup_host((*d, port))
            .await
            .map_err(|e| ProbeError::Unreachable(format!("cannot resolve {d}: {e}")))?
            .collect(),
        url::Host::Ipv4(a) => vec![SocketAddr::from((*a, port))],
        url::Host::Ipv6(a) => vec![SocketAddr::from((*a, port))],
    };
    phases.resolve += start.elapsed();

    let start = Instant::now();
    let mut failed = None;
    let mut tcp = None;
    for a in &addrs {
        match tokio::net::TcpStream::connect(a).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => failed = Some(format!("connecting to {a}: {e}")),
        }
    }
    let tcp = tcp.ok_or_else(|| ProbeError::Unreachable(failed.unwrap_or_else(|| "no address".into())))?;
    let _ = tcp.set_nodelay(true);
    phases.connect += start.elapsed();

    let request = request(url, method, extra, body)?;
    if !https {
        return send(tcp, request, phases).await;
    }
    let start = Instant::now();
    let name = match host {
        url::Host::Domain(d) => {
            rustls::pki_types::ServerName::try_from(d.to_string()).map_err(|e| format!("bad server name {d}: {e}"))?
        }
        url::Host::Ipv4(a) => rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V4(a).into()),
        url::Host::Ipv6(a) => rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::V6(a).into()),
    };
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::Unreachable(format!("TLS handshake: {e}")))?;
    phases.tls += start.elapsed();
    send(stream, request, phases).await
}

fn request(
    url: &url::Url,
    method: &hyper::Method,
    extra: &std::collections::BTreeMap<String, String>,
    body: &str,
) -> Result<hyper::Request<Full<bytes::Bytes>>, ProbeError> {
    let mut req = hyper::Request::new(Full::new(bytes::Bytes::from(body.to_string())));
    *req.method_mut() = method.clone();
    *req.uri_mut() = url[url::Position::BeforePath..].parse().map_err(|e| format!("{e}"))?;
    let headers = req.headers_mut();
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let fixed = [
        (header::HOST, host.as_str()),
        (header::USER_AGENT, concat!("runbook/", env!("CARGO_PKG_VERSION"))),
        (header::ACCEPT, "*/*"),
        // One request a connection, as blackbox_exporter's probes say too.
        (header::CONNECTION, "close"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_str(value).map_err(|e| e.to_string())?);
    }
    for (k, v) in extra {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
        headers.insert(name, HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?);
    }
    Ok(req)
}

async fn send<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: T,
    request: hyper::Request<Full<bytes::Bytes>>,
    phases: &mut Phases,
) -> Result<hyper::Response<hyper::body::Incoming>, ProbeError> {
    let failed = |e: hyper::Error| ProbeError::Failed(crate::util::innermost(&e));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    // The connection is driven beside the exchange, and ends with it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let start = Instant::now();
    let response = sender.send_request(request).await.map_err(failed)?;
    phases.processing += start.elapsed();
    Ok(response)
}
