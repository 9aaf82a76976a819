//! Drift probe: the host against `baseline:`; fails while any difference is not acknowledged.

use serde_json::json;

use super::{Finding, ProbeError};
use crate::config::Config;

pub(super) async fn probe(config: &Config) -> Result<Finding, ProbeError> {
    let c = config.clone();
    let judged = tokio::task::spawn_blocking(move || {
        let store = crate::store::Store::open_state(&c.state).map_err(|e| e.to_string())?;
        crate::drift::judge(&c, &store).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| ProbeError::Failed(e.to_string()))??;
    let failing: Vec<String> = judged
        .items
        .iter()
        .zip(&judged.acked)
        .filter(|(_, a)| a.is_none())
        .take(5)
        .map(|(i, _)| format!("{} {} ({} {})", i.change, i.id(), i.expected, i.actual))
        .collect();
    let detail = if judged.failing == 0 {
        let acked = judged.items.len();
        format!(
            "no drift in {} declared resource(s){}",
            config.baseline.resources.len(),
            if acked == 0 {
                String::new()
            } else {
                format!(" ({acked} acknowledged)")
            }
        )
    } else {
        format!("{} difference(s): {}", judged.failing, failing.join("; "))
    };
    Ok(Finding::new(
        judged.failing == 0,
        detail,
        json!({ "differences": judged.failing }),
    ))
}
