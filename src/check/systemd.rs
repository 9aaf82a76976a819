//! systemd probe: a unit's ActiveState (and optionally SubState) via `systemctl show`.

use std::time::Duration;

use serde_json::json;

use super::Finding;
use crate::config::checks::SystemdProbe;
use crate::exec::{self, Cancel, Spec};

pub(super) async fn probe(p: &SystemdProbe, timeout: Duration) -> Result<Finding, super::ProbeError> {
    let argv = [
        "systemctl",
        "show",
        p.unit.as_str(),
        "--property=LoadState,ActiveState,SubState",
        "--no-pager",
    ]
    .map(String::from)
    .to_vec();
    let spec = Spec::new(argv, timeout);
    let out = tokio::task::spawn_blocking(move || exec::run(&spec, &Cancel::default()))
        .await
        .map_err(|e| format!("the systemd probe crashed: {e}"))?
        .map_err(|e| e.to_string())?;
    if !out.success() {
        let why = out.stderr.lines().next().unwrap_or("").trim().to_string();
        return Err(super::ProbeError::Failed(format!(
            "systemctl show {} failed ({}): {why}",
            p.unit,
            out.summary(timeout)
        )));
    }
    let prop = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let (load, active, sub) = (prop("LoadState"), prop("ActiveState"), prop("SubState"));
    let data = json!({ "load_state": load, "active_state": active, "sub_state": sub });
    if load == "not-found" {
        return Ok(Finding::new(false, format!("unit {} not found", p.unit), data));
    }
    let (want_active, want_sub) = match p.expect.split_once('/') {
        Some((a, s)) => (a, Some(s)),
        None => (p.expect.as_str(), None),
    };
    let ok = active == want_active && want_sub.is_none_or(|s| s == sub);
    let state = format!("{active}/{sub}");
    Ok(if ok {
        Finding::new(true, format!("{} is {state}", p.unit), data)
    } else {
        Finding::new(false, format!("{} is {state}, expected {}", p.unit, p.expect), data)
    })
}
