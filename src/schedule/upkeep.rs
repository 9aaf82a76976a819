//! Upkeep between runs: interrupted notifications recovered, history pruned beyond
//! retention, repeat notifications queued and the queue sent, channel health watched, the
//! outgoing heartbeat, and audit checkpoints. The daemon does a pass every second; a command
//! run without a daemon (cron) does its part after its work. One code path for both.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::notify::{dispatch, repeat, watch};
use crate::store::Store;

/// Channel health is looked at every this many dispatcher passes (seconds).
const WATCH_EVERY_PASSES: u64 = 5;

/// How often the daemon enforces `retention:`.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// How often the daemon signs an audit checkpoint when `audit.signing_key` is set.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(3600);

/// Signs a checkpoint of the audit chain; a failure is logged (a broken chain at error).
fn checkpoint(store: &Store, key: &Path) {
    use crate::audit::checkpoint;
    let signed = std::fs::read_to_string(key)
        .map_err(|e| format!("{}: {e}", key.display()))
        .and_then(|text| checkpoint::load(&text).map_err(|e| format!("{}: {e}", key.display())))
        .and_then(|pair| crate::store::chain::sign_head(store, &pair).map_err(|e| e.to_string()));
    match signed {
        Ok(cp) => tracing::info!(seq = cp.seq, head = %&cp.head_hash[..12], "audit checkpoint signed"),
        Err(e) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
    }
}

/// Claims again the notifications a killed process left half-sent.
pub fn recover(config: &Config, store: &Store) {
    if let Err(e) = dispatch::recover(config, store) {
        tracing::error!(error = %e, "cannot recover interrupted notifications");
    }
}

fn prune(config: &Config, store: &Store) {
    match crate::alert::retention::prune(config, store) {
        Ok(p) if p.check_results + p.resolved_alerts > 0 => tracing::info!(
            check_results = p.check_results,
            resolved_alerts = p.resolved_alerts,
            notifications = p.notifications,
            "pruned history beyond retention"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot prune history"),
    }
}

/// Heartbeat checks in no profile are judged every this many passes (seconds). An ok verdict
/// that was ok before is not recorded again, so the history grows only while one fails.
const HEARTBEATS_EVERY_PASSES: u64 = 5;

/// The heartbeat checks no enabled profile probes: the daemon judges their deadlines itself.
/// One that never pinged counts only once the daemon has been up longer than its period and
/// grace (a job installed with runbook has not had its first chance before that).
fn unprobed_heartbeats(config: &Config, store: &Store, up: Duration) -> Vec<String> {
    use crate::config::{Probe, Task};
    let probed = |name: &str| {
        config
            .profiles
            .values()
            .filter(|p| p.enabled && p.schedule.is_some())
            .any(|p| p.tasks.iter().any(|t| matches!(t, Task::Check(c) if c.check == name)))
    };
    config
        .checks
        .iter()
        .filter_map(|(name, check)| match &check.probe {
            Probe::Heartbeat(p) if !probed(name) => {
                let pinged = store.heartbeat(name).ok().flatten().is_some();
                (pinged || up >= p.period.0 + p.grace()).then(|| name.clone())
            }
            _ => None,
        })
        .collect()
}

/// The daemon's upkeep: what was done when.
#[derive(Debug, Default)]
pub struct Upkeep {
    started: Option<Instant>,
    last_prune: Option<Instant>,
    last_checkpoint: Option<Instant>,
    last_heartbeat: Option<Instant>,
    passes: u64,
}

impl Upkeep {
    /// One pass (the daemon's, every second). `stopping`: the last pass, which sends what is
    /// queued but starts nothing new (no heartbeat, no checkpoint).
    pub fn pass(&mut self, config: &std::sync::Arc<Config>, store: &Store, stopping: bool) {
        self.passes += 1;
        let up = self.started.get_or_insert_with(Instant::now).elapsed();
        if self.passes.is_multiple_of(HEARTBEATS_EVERY_PASSES) && !stopping {
            let names = unprobed_heartbeats(config, store, up);
            if !names.is_empty() {
                let last = store.latest_check_results().unwrap_or_default();
                let was_ok = |name: &str| last.iter().any(|r| r.check == name && r.ok);
                let outcomes: Vec<_> = crate::check::probe_blocking(config, &names)
                    .into_iter()
                    .filter(|o| !(o.ok && was_ok(&o.check)))
                    .collect();
                if !outcomes.is_empty()
                    && let Err(e) = crate::notify::record_and_observe(store, config, &outcomes, &[])
                {
                    tracing::error!(error = %e, "cannot judge the heartbeat checks");
                }
            }
        }
        if let Some(url) = &config.notify.heartbeat_url {
            let every = config
                .notify
                .heartbeat_every
                .map(|d| d.0)
                .unwrap_or(watch::DEFAULT_HEARTBEAT_EVERY);
            if self.last_heartbeat.is_none_or(|t| t.elapsed() >= every) && !stopping {
                watch::heartbeat(url);
                self.last_heartbeat = Some(Instant::now());
            }
        }
        if self.passes.is_multiple_of(WATCH_EVERY_PASSES)
            && let Err(e) = watch::channels(config, store)
        {
            tracing::error!(error = %e, "cannot watch channel health");
        }
        if self.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            prune(config, store);
            self.last_prune = Some(Instant::now());
        }
        if let Some(key) = &config.audit.signing_key {
            let every = config.audit.checkpoint_every.map_or(CHECKPOINT_EVERY, |d| d.0);
            if self.last_checkpoint.is_none_or(|t| t.elapsed() >= every) && !stopping {
                checkpoint(store, key);
                self.last_checkpoint = Some(Instant::now());
            }
        }
        if !config.notify.channels.is_empty()
            && let Err(e) = repeat::queue_due(config, store).and_then(|_| dispatch::dispatch_due(config, store))
        {
            tracing::error!(error = %e, "notification dispatch failed");
        }
    }
}

/// After `run` or `check`, sends the notifications they queued (a daemon, if one runs, may
/// send some of them first; each is claimed once). Failures stay queued for a later pass.
/// Without a daemon (cron, supercronic), the command also does the daemon's recovery and
/// pruning. On a shared state led by a daemon, all of it is the leader's (its next pass, within
/// a second): a command's send, unfenced, could overlap the leader's recovery of the same row.
pub fn after_command(config: &Config, store: &Store) {
    if store.judges_for_fleet() && store.leader_alive().unwrap_or(false) {
        tracing::debug!("the fleet's leader sends what this command queued");
        return;
    }
    if super::lock::running_daemon(&config.state.path).is_none() {
        recover(config, store);
        prune(config, store);
    }
    if let Err(e) = repeat::queue_due(config, store) {
        tracing::error!(error = %e, "cannot queue repeat notifications");
    }
    match dispatch::drain(config, store, Duration::from_secs(20)) {
        Ok(p) if p.retried + p.dead > 0 => {
            tracing::warn!(
                sent = p.sent,
                retrying = p.retried,
                dead = p.dead,
                "some notifications could not be sent"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot send queued notifications"),
    }
}
