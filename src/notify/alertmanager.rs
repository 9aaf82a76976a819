//! Alertmanager channel: `POST /api/v2/alerts`, resolution by an `endsAt` in the past.
//!
//! Alertmanager deduplicates by label set, so a repeated delivery is harmless.

use super::{Message, client, http_error};
use crate::config::notify::AlertmanagerChannel;

pub(super) async fn send(c: &AlertmanagerChannel, m: &Message) -> Result<String, String> {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), m.name.clone().into());
    labels.insert("severity".into(), m.severity.clone().into());
    labels.insert("host".into(), m.host.clone().into());
    labels.insert("source".into(), m.source.clone().into());
    for (k, v) in &m.labels {
        labels.insert(k.clone(), v.clone().into());
    }
    let mut alert = serde_json::json!({
        "labels": labels,
        "annotations": { "summary": m.summary, "key": m.key },
        "startsAt": m.starts_at,
        "generatorURL": format!("http://{}/runbook/alerts/{}", m.host, m.alert_id.unwrap_or(0)),
    });
    if let Some(end) = &m.ends_at {
        alert["endsAt"] = end.clone().into();
    }
    let url = format!("{}/api/v2/alerts", c.url);
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::Value::Array(vec![alert]).to_string())
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if resp.status().is_success() {
        Ok(format!("HTTP {}", resp.status()))
    } else {
        Err(http_error(resp).await)
    }
}
