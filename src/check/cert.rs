//! Certificate probe: days until the server's leaf certificate expires.
//!
//! The handshake does not verify the chain on purpose: an expired or self-signed certificate
//! must still be read so the probe can say how long ago it expired. Trust is the http probe's
//! job; this one only reads `not_after`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde_json::json;

use super::Finding;
use crate::config::checks::CertProbe;

fn leaf_not_after(host: &str, server_name: &str, timeout: Duration) -> Result<i64, String> {
    let config = crate::util::tls::client_config(false, None, b"")?;
    let name =
        ServerName::try_from(server_name.to_string()).map_err(|e| format!("bad server name {server_name}: {e}"))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {host}: {e}"))?;
    sock.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("TLS handshake with {host} failed: {e}"))?;
    }
    let _ = conn.writer().flush();
    let _ = sock.read(&mut [0u8; 0]);
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("the server sent no certificate")?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| format!("cannot parse the certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

pub(super) async fn probe(p: &CertProbe, timeout: Duration) -> Result<Finding, super::ProbeError> {
    let host = p.host.clone();
    let server_name = p
        .server_name
        .clone()
        .unwrap_or_else(|| host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host).to_string());
    let not_after = tokio::task::spawn_blocking(move || leaf_not_after(&host, &server_name, timeout))
        .await
        .map_err(|e| format!("the cert probe crashed: {e}"))??;
    let now = jiff::Timestamp::now().as_second();
    let days = (not_after - now).div_euclid(86_400);
    let expires = jiff::Timestamp::from_second(not_after)
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let data = json!({ "not_after": expires, "days_left": days });
    let detail = if not_after < now {
        format!("certificate of {} expired {} day(s) ago ({expires})", p.host, -days)
    } else {
        format!(
            "certificate of {} expires in {days} day(s) ({expires}), need {}",
            p.host, p.min_days
        )
    };
    Ok(Finding::new(
        not_after >= now && days >= p.min_days as i64,
        detail,
        data,
    ))
}
