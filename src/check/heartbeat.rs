//! Heartbeat probe: judges the pings a job sent to `/ping/NAME` against period and grace.

use serde_json::json;

use super::Finding;
use crate::clock;
use crate::config::checks::HeartbeatProbe;
use crate::config::{Config, HumanDuration};
use crate::store::Store;

pub(super) fn probe(config: &Config, name: &str, p: &HeartbeatProbe) -> Result<Finding, super::ProbeError> {
    let store = Store::open_existing_state(&config.state).map_err(|e| e.to_string())?;
    let beat = match store {
        Some(store) => store.heartbeat(name).map_err(|e| e.to_string())?,
        None => None,
    };
    let limit = p.period.0 + p.grace();
    let every = format!("expected every {} (grace {})", p.period, HumanDuration(p.grace()));
    let Some(b) = beat else {
        return Ok(Finding::new(false, format!("no ping yet; {every}"), json!({})));
    };
    let now = clock::now();
    let age = |t: &Option<String>| {
        t.as_deref()
            .and_then(clock::from_text)
            .map(|t| std::time::Duration::from_secs((now.as_second() - t.as_second()).max(0) as u64))
    };
    let data = json!({ "last_ping": b.last_ping, "last_start": b.last_start, "last_status": b.last_status,
                       "exit_code": b.exit_code, "duration_ms": b.duration_ms });
    let ago = |d: std::time::Duration| {
        format!(
            "{} ago",
            HumanDuration(std::time::Duration::from_secs(d.as_secs().max(1)))
        )
    };
    if b.last_status == "fail" {
        let code = b.exit_code.map(|c| format!(" (exit {c})")).unwrap_or_default();
        let when = age(&b.last_ping).map(ago).unwrap_or_default();
        return Ok(Finding::new(
            false,
            format!("the job reported failure{code} {when}"),
            data,
        ));
    }
    if b.last_status == "start"
        && let Some(started) = age(&b.last_start)
        && started > limit
    {
        return Ok(Finding::new(
            false,
            format!("started {} and never finished; {every}", ago(started)),
            data,
        ));
    }
    match age(&b.last_ping) {
        None => Ok(Finding::new(
            b.last_status == "start",
            format!("started, no finish ping yet; {every}"),
            data,
        )),
        Some(d) if d > limit => Ok(Finding::new(false, format!("last ping {}; {every}", ago(d)), data)),
        Some(d) => {
            let took = b
                .duration_ms
                .map(|ms| format!(", ran {}", crate::util::duration_ms(ms as u64)))
                .unwrap_or_default();
            Ok(Finding::new(true, format!("last ping {}{took}", ago(d)), data))
        }
    }
}
