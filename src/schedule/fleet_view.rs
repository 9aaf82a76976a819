//! The fleet as `runbook fleet status`, `GET /v1/fleet` and the status page show it: hosts
//! and their heartbeats, the leases and their terms, what runs where, and each host's checks.

use serde::Serialize;

use super::lease::HOST_DOWN_AFTER;
use crate::config::Config;
use crate::config::model::RunOn;
use crate::store::fleet::LEADER;
use crate::store::{Backend, Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    /// `fleet` on a PostgreSQL state, `single` on a state file (one host, no lease).
    pub mode: &'static str,
    /// The database's clock when read.
    pub now: String,
    pub leader: Option<LeaderView>,
    pub hosts: Vec<HostView>,
    pub leases: Vec<LeaseView>,
    pub profiles: Vec<ProfileView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaderView {
    pub host: String,
    pub term: i64,
    pub expires_in_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub host: String,
    /// `up`, `down` (no heartbeat for 20 s) or `stopped` (it resigned cleanly).
    pub state: &'static str,
    pub leader: bool,
    pub labels: Vec<String>,
    pub pid: Option<i64>,
    pub version: String,
    pub started: String,
    pub last_heartbeat: String,
    pub heartbeat_age_ms: i64,
    pub checks_ok: usize,
    pub checks_failing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeaseView {
    pub name: String,
    pub holder: Option<String>,
    pub term: i64,
    pub acquired: String,
    pub expires_in_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfileView {
    pub name: String,
    pub run_on: String,
    /// The hosts that run it now (for `any`: the leader).
    pub hosts: Vec<String>,
}

fn text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(crate::clock::to_text)
        .unwrap_or_default()
}

/// Reads the fleet from the state.
pub fn view(config: &Config, store: &Store) -> Result<FleetView, StoreError> {
    let fleet = store.fleet()?;
    let now = fleet.now_ms;
    let leader = fleet
        .leases
        .iter()
        .find(|l| l.name == LEADER && l.expires_ms > now && l.instance.is_some())
        .and_then(|l| {
            l.holder.clone().map(|host| LeaderView {
                host,
                term: l.term,
                expires_in_ms: l.expires_ms - now,
            })
        });
    let since = text(now - 3_600_000);
    let checks = store.latest_checks_by_host(&since)?;
    let hosts: Vec<HostView> = fleet
        .hosts
        .iter()
        .map(|h| {
            let age = now - h.heartbeat_ms;
            let state = if h.stopped_ms.is_some() {
                "stopped"
            } else if age > HOST_DOWN_AFTER.as_millis() as i64 {
                "down"
            } else {
                "up"
            };
            let mine = checks.iter().filter(|c| c.0 == h.host);
            HostView {
                host: h.host.clone(),
                state,
                leader: leader.as_ref().is_some_and(|l| l.host == h.host),
                labels: h.labels.clone(),
                pid: h.pid,
                version: h.version.clone(),
                started: text(h.started_ms),
                last_heartbeat: text(h.heartbeat_ms),
                heartbeat_age_ms: age,
                checks_ok: mine.clone().filter(|c| c.2).count(),
                checks_failing: mine.filter(|c| !c.2).map(|c| c.1.clone()).collect(),
            }
        })
        .collect();
    let up: Vec<&HostView> = hosts.iter().filter(|h| h.state == "up").collect();
    let fleet_mode = store.backend() == Backend::Postgres;
    let profiles = config
        .profiles
        .iter()
        .filter(|(_, p)| p.enabled)
        .map(|(name, p)| {
            let hosts = match &p.run_on {
                RunOn::Any if fleet_mode => leader.iter().map(|l| l.host.clone()).collect(),
                // One host: whatever includes it runs here.
                on if !fleet_mode => on
                    .includes(&config.host, &config.host_labels)
                    .then(|| config.host.clone())
                    .into_iter()
                    .collect(),
                RunOn::All => up.iter().map(|h| h.host.clone()).collect(),
                on => up
                    .iter()
                    .filter(|h| on.includes(&h.host, &h.labels))
                    .map(|h| h.host.clone())
                    .collect(),
            };
            ProfileView {
                name: name.clone(),
                run_on: p.run_on.display(),
                hosts,
            }
        })
        .collect();
    Ok(FleetView {
        mode: if fleet_mode { "fleet" } else { "single" },
        now: text(now),
        leader,
        hosts,
        leases: fleet
            .leases
            .iter()
            .map(|l| LeaseView {
                name: l.name.clone(),
                holder: l.holder.clone().filter(|_| l.instance.is_some()),
                term: l.term,
                acquired: text(l.acquired_ms),
                expires_in_ms: (l.expires_ms - now).max(0),
            })
            .collect(),
        profiles,
    })
}
