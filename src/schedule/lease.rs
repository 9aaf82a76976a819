//! Fleet mode in the daemon: this host's heartbeat, the leader lease, and the leader's duties
//! that are not profile runs (telling of hosts that went silent, closing the runs a former
//! leader left open).
//!
//! One lease, `leader`, decides who runs `run_on: any` work and who sends the outbox: one
//! term number fences all of it (see `store::fleet`). The holder renews every `RENEW_EVERY`;
//! the others try every `FOLLOW_EVERY`, and at once when a resigning leader wakes them.
//! Invariant: `Leadership::term` is `Some` only before the local deadline of the last renewal
//! (its start on this host's monotonic clock plus the TTL, less a margin), so a holder that
//! could not renew, or was paused, stops starting work before the database lets another
//! host take the lease.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::alert::{Observation, Source};
use crate::audit::Draft;
use crate::config::{Config, Severity};
use crate::store::fleet::{self, HostBeat, LEADER};
use crate::store::{RunStatus, Store};

/// How long a lease lasts without renewal (the database's clock).
pub const TTL: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often a host without the lease tries to take it.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// A host whose last heartbeat is older than this (and that did not stop) is down.
pub const HOST_DOWN_AFTER: Duration = Duration::from_secs(20);
/// Kept off the local deadline for clock rate differences and the renewal's own latency.
const MARGIN: Duration = Duration::from_millis(500);

/// This daemon's view of the leader lease.
pub struct Leadership {
    pub host: String,
    /// This process among all that ever ran on the host (`host/pid/start`).
    pub instance: String,
    takeovers: AtomicU64,
}

impl Leadership {
    pub fn new(host: &str) -> Leadership {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Leadership {
            host: host.to_string(),
            instance: format!("{host}/{}/{started:x}", std::process::id()),
            takeovers: AtomicU64::new(0),
        }
    }

    /// The term held, while it is surely this host's (one lease holder per process: the
    /// process-wide record `store::fleet` keeps for the fence).
    pub fn term(&self) -> Option<i64> {
        fleet::held_term()
    }

    /// How many times this daemon took the lease (a new term each time).
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::SeqCst)
    }

    fn set(&self, held: Option<(i64, Instant)>) -> Option<i64> {
        fleet::set_lease(held)
    }
}

/// The lease loop's handle: `stop` resigns the lease and joins the thread.
pub struct LeaseLoop {
    stop: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl LeaseLoop {
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send(());
        let _ = self.handle.join();
    }
}

/// Starts the heartbeat and lease loop of this daemon.
pub fn spawn(config: Arc<RwLock<Arc<Config>>>, store: Arc<Store>, lead: Arc<Leadership>) -> std::io::Result<LeaseLoop> {
    let stop = Arc::new(AtomicBool::new(false));
    let (wake, woken) = mpsc::channel::<()>();
    let (flag, waker) = (stop.clone(), wake.clone());
    let handle = std::thread::Builder::new().name("lease".into()).spawn(move || {
        let current = || config.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut listener: Option<crate::store::postgres::Listener> = None;
        let mut seen: HashMap<String, bool> = HashMap::new();
        while !flag.load(Ordering::SeqCst) {
            if listener.as_ref().is_none_or(|l| !l.alive()) {
                listener = store.listen_for_resignations(waker.clone()).ok().flatten();
            }
            let config = current();
            let beat = HostBeat {
                host: &lead.host,
                instance: &lead.instance,
                labels: &config.host_labels,
                pid: i64::from(std::process::id()),
                version: env!("CARGO_PKG_VERSION"),
            };
            let started = Instant::now();
            match store.beat_and_lease(&beat, LEADER, TTL.as_millis() as i64) {
                Ok(Some(term)) => {
                    let before = lead.set(Some((term, started + TTL - MARGIN)));
                    if before != Some(term) {
                        lead.takeovers.fetch_add(1, Ordering::SeqCst);
                        seen.clear();
                        tracing::info!(host = %lead.host, term, "this host leads the fleet");
                        close_former_runs(&config, &store, &lead.host, term);
                    }
                    watch_hosts(&config, &store, &lead, term, &mut seen);
                }
                Ok(None) => {
                    if let Some(term) = lead.set(None) {
                        tracing::warn!(term, "the fleet lease is another host's now");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew the fleet lease"),
            }
            let wait = if lead.term().is_some() {
                RENEW_EVERY
            } else {
                FOLLOW_EVERY
            };
            match woken.recv_timeout(wait) {
                Ok(()) | Err(RecvTimeoutError::Timeout) => while woken.try_recv().is_ok() {},
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        lead.set(None);
        match store.resign(LEADER, &lead.host, &lead.instance) {
            Ok(()) => tracing::info!("resigned the fleet lease"),
            Err(e) => tracing::warn!(error = %e, "cannot resign the fleet lease; it expires on its own"),
        }
    })?;
    Ok(LeaseLoop { stop, wake, handle })
}

/// At a takeover: runs a former leader left `running` are closed as failed (the former
/// leader cannot record their end any more: its term is fenced).
fn close_former_runs(config: &Config, store: &Store, host: &str, term: i64) {
    let result = store.fenced(term, || {
        let open = store.running_before_term(term, host)?;
        let changes: Vec<_> = open
            .into_iter()
            .map(|(id, profile)| {
                let error = "its host lost the fleet lease before the run ended".to_string();
                let draft = Draft::new(
                    "run.unfinished",
                    &profile,
                    json!({ "run": id, "reason": error, "term": term }),
                    &config.redactor,
                );
                (id, RunStatus::Failed, error, draft)
            })
            .collect();
        if !changes.is_empty() {
            tracing::warn!(runs = changes.len(), "closing runs a former leader left open");
        }
        store.mark_runs(&changes)
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "cannot close the runs of a former leader");
    }
}

/// The leader tells of hosts that stopped heartbeating: one `host_down:HOST` alert each,
/// resolved when the host beats again or stops cleanly. Only changes are judged (and, after
/// a takeover, every host once).
fn watch_hosts(config: &Config, store: &Store, lead: &Leadership, term: i64, seen: &mut HashMap<String, bool>) {
    let fleet = match store.fleet() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the fleet's hosts");
            return;
        }
    };
    let mut observations = Vec::new();
    for h in fleet.hosts.iter().filter(|h| h.host != lead.host) {
        let silent_ms = fleet.now_ms - h.heartbeat_ms;
        let down = h.stopped_ms.is_none() && silent_ms > HOST_DOWN_AFTER.as_millis() as i64;
        if seen.get(&h.host) == Some(&down) {
            continue;
        }
        let detail = if down {
            format!("no heartbeat from {} for {} s", h.host, silent_ms / 1000)
        } else {
            format!("{} heartbeats again", h.host)
        };
        observations.push((
            h.host.clone(),
            down,
            Observation::immediate(
                Source::Check,
                format!("host_down:{}", h.host),
                !down,
                &detail,
                Severity::Critical,
            ),
        ));
    }
    if observations.is_empty() {
        return;
    }
    let obs: Vec<Observation> = observations.iter().map(|(_, _, o)| o.clone()).collect();
    match store.fenced(term, || crate::notify::observe(store, config, &obs)) {
        Ok(_) => {
            for (host, down, _) in observations {
                if down {
                    tracing::warn!(%host, "a host of the fleet stopped heartbeating");
                }
                seen.insert(host, down);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot judge the fleet's hosts"),
    }
}

/// After a takeover: the ticks of each `run_on: any` profile that no host recorded since the
/// last one in the ledger, up to `now`. The newest is returned to be run (unless older than
/// the profile's `catch_up`); the others are recorded as missed. Profiles that never ran
/// under a lease have nothing to catch up.
pub fn catch_up(config: &Config, store: &Store, term: i64, now: jiff::Timestamp) -> Vec<(String, String)> {
    const MAX_TICKS: usize = 1000;
    let mut run = Vec::new();
    for (name, profile) in config
        .profiles
        .iter()
        .filter(|(_, p)| p.enabled && p.run_on == crate::config::model::RunOn::Any)
    {
        let Some(schedule) = &profile.schedule else { continue };
        let last = match store.last_tick(name) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(profile = %name, error = %e, "cannot read the last tick");
                continue;
            }
        };
        let Some(mut at) = crate::clock::from_text(&last) else {
            continue;
        };
        let mut ticks = Vec::new();
        while let Some(t) = super::next_after(schedule, at) {
            if t > now || ticks.len() >= MAX_TICKS {
                break;
            }
            ticks.push(t);
            at = t;
        }
        let Some(newest) = ticks.pop() else { continue };
        let age = now.duration_since(newest).unsigned_abs();
        if profile.catch_up.is_none_or(|d| age <= d.0 && !d.0.is_zero()) {
            run.push((name.clone(), crate::clock::to_text(newest)));
        } else {
            ticks.push(newest);
        }
        let missed: Vec<_> = ticks
            .iter()
            .map(|t| {
                let tick = crate::clock::to_text(*t);
                let error = "missed: no host led the fleet at this tick".to_string();
                let draft = Draft::new(
                    "run.missed",
                    name,
                    json!({ "tick": tick, "reason": error, "term": term }),
                    &config.redactor,
                );
                let run = crate::store::NewRun {
                    tick: Some(tick.clone()),
                    ..crate::store::NewRun::scheduled(name, &config.host, RunStatus::Skipped, &tick)
                };
                (run, error, draft)
            })
            .collect();
        if missed.is_empty() {
            continue;
        }
        match store.fenced(term, || store.record_missed_ticks(&missed)) {
            Ok(n) if n > 0 => tracing::warn!(profile = %name, ticks = n, "ticks missed during the failover recorded"),
            Ok(_) => {}
            Err(e) => tracing::warn!(profile = %name, error = %e, "cannot record missed ticks"),
        }
    }
    run
}
