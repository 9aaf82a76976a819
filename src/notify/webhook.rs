//! Webhook channel: a JSON POST, with an Idempotency-Key and an optional HMAC signature.

use super::{Message, client, hmac::hmac_sha256, http_error};
use crate::config::notify::WebhookChannel;
use crate::util::hex;

pub(super) async fn send(c: &WebhookChannel, m: &Message, idempotency_key: &str) -> Result<String, super::SendError> {
    let body = serde_json::json!({
        "version": "1",
        "change": m.change,
        "status": if m.firing() { "firing" } else { "resolved" },
        "text": m.text(),
        "alert": {
            "id": m.alert_id, "key": m.key, "name": m.name, "source": m.source, "host": m.host,
            "severity": m.severity, "summary": m.summary, "labels": m.labels,
            "starts_at": m.starts_at, "ends_at": m.ends_at,
        },
    })
    .to_string();
    let mut req = client()
        .post(&c.url)
        .header("content-type", "application/json")
        .header("idempotency-key", idempotency_key);
    for (k, v) in &c.headers {
        req = req.header(k, v);
    }
    if let Some(secret) = &c.secret {
        req = req.header(
            "x-runbook-signature",
            format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), body.as_bytes()))),
        );
    }
    let resp = req
        .body(body)
        .send()
        .await
        .map_err(|e| super::SendError::Unreachable(format!("POST {}: {}", c.url, super::transport_error(&e))))?;
    if resp.status().is_success() {
        Ok(format!("HTTP {}", resp.status()))
    } else {
        Err(http_error(resp).await)
    }
}
