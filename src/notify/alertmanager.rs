//! Alertmanager channel: `POST /api/v2/alerts`, resolution by an `endsAt` in the past.
//!
//! Alertmanager deduplicates by label set, so a repeated delivery is harmless.

use super::{Message, client, http_error};
use crate::config::notify::AlertmanagerChannel;

pub(super) async fn send(c: &AlertmanagerChannel, m: &Message) -> Result<String, super::SendError> {
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
    // A firing alert is kept alive for an hour past each send (refreshed well before that);
    // a resolved one ends at its resolution time.
    let ends_at = match &m.ends_at {
        Some(end) => end.clone(),
        None => crate::clock::to_text(
            crate::clock::now()
                .checked_add(jiff::SignedDuration::from_hours(1))
                .unwrap_or_else(|_| crate::clock::now()),
        ),
    };
    alert["endsAt"] = ends_at.into();
    let url = format!("{}/api/v2/alerts", c.url);
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(serde_json::Value::Array(vec![alert]).to_string())
        .send()
        .await
        .map_err(|e| super::SendError::Unreachable(format!("POST {url}: {}", super::transport_error(&e))))?;
    if resp.status().is_success() {
        Ok(format!("HTTP {}", resp.status()))
    } else {
        Err(http_error(resp).await)
    }
}
