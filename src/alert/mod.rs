//! Alerts: turning a stream of outcomes into alert episodes that open once and resolve once.
//!
//! Owns the rules: `fail_after` consecutive failures open an alert, `recover_after` successes
//! resolve it; a failure while a dependency is failing is recorded as suppressed; an alert
//! opened under a silence is `silenced`. The store persists; this module decides.
//! Invariant: one open alert per key, and every transition is audited in the same transaction.

pub mod retention;

use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

use crate::audit::Draft;
use crate::check::Outcome;
use crate::clock;
use crate::config::{Check, Config, Severity};
use crate::store::{AlertStatus, AlertTx, CheckState, NewAlert, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Check,
    Task,
    /// A notification channel that stopped delivering.
    Channel,
    /// A backup target whose newest archive looks wrong (much smaller than the ones before).
    Backup,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::Check, Source::Task, Source::Channel, Source::Backup];

    /// The source named `s`; the error lists the names there are.
    pub fn parse(s: &str) -> Result<Source, String> {
        Source::ALL.into_iter().find(|x| x.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Source::ALL.iter().map(|x| x.as_str()).collect();
            format!("unknown source `{s}` ({})", names.join(", "))
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Check => "check",
            Source::Task => "task",
            Source::Channel => "channel",
            Source::Backup => "backup",
        }
    }
}

/// A label filter, `KEY:VALUE` (`protocol:smtp`).
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once(':')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label `{s}` is not KEY:VALUE"))
}

/// One outcome to judge.
#[derive(Debug, Clone)]
pub struct Observation {
    pub source: Source,
    /// A check name, or `profile/task`.
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub fail_after: u32,
    pub recover_after: u32,
    pub depends_on: Vec<String>,
    /// Record the transition but let the caller notify (a profile run's digest).
    pub defer_notify: bool,
}

impl Observation {
    pub fn from_check(check: &Check, outcome: &Outcome) -> Self {
        Observation {
            source: Source::Check,
            name: outcome.check.clone(),
            ok: outcome.ok,
            detail: outcome.detail.clone(),
            severity: check.severity,
            labels: check.labels.clone(),
            fail_after: check.fail_after,
            recover_after: check.recover_after,
            depends_on: check.depends_on.clone(),
            defer_notify: false,
        }
    }

    /// A command task of a profile: alerts on its first failure, resolves on its next success.
    pub fn from_task(profile: &str, task: &str, ok: bool, detail: &str) -> Self {
        Observation {
            source: Source::Task,
            name: format!("{profile}/{task}"),
            ok,
            detail: detail.to_string(),
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            fail_after: 1,
            recover_after: 1,
            depends_on: Vec::new(),
            defer_notify: true,
        }
    }

    /// An outcome that opens its alert at once and resolves at the next good one, notified
    /// on its own (a channel gone silent, a suspiciously small backup).
    pub fn immediate(source: Source, name: String, ok: bool, detail: &str, severity: Severity) -> Self {
        Observation {
            source,
            name,
            ok,
            detail: detail.to_string(),
            severity,
            labels: BTreeMap::new(),
            fail_after: 1,
            recover_after: 1,
            depends_on: Vec::new(),
            defer_notify: false,
        }
    }

    /// A backup target's archive size against the recent ones (`backup:NAME`).
    pub fn backup_size(target: &str, ok: bool, detail: &str) -> Self {
        Self::immediate(
            Source::Backup,
            format!("backup:{target}"),
            ok,
            detail,
            Severity::Critical,
        )
    }

    /// Where consecutive counts are kept: checks by name, tasks with a prefix.
    fn state_name(&self) -> String {
        match self.source {
            Source::Check | Source::Channel | Source::Backup => self.name.clone(),
            Source::Task => format!("task:{}", self.name),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Opened,
    Resolved,
}

/// An alert that opened or resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub alert_id: i64,
    pub key: String,
    pub source: Source,
    pub name: String,
    pub change: Change,
    pub status: AlertStatus,
    pub severity: Severity,
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
    /// When the alert's episode began.
    pub started_at: String,
    /// Tells apart two notifications of one alert and change (a re-fire after a silence).
    #[serde(skip)]
    pub episode: String,
}

/// Records check outcomes (with the task run each belongs to, if any) and judges them: the
/// one path from a probe's result to history and alerts.
pub fn record_and_observe(
    store: &Store,
    config: &Config,
    outcomes: &[Outcome],
    run_ids: &[Option<i64>],
    deliver: Deliver,
) -> Result<Vec<Transition>, StoreError> {
    let results: Vec<_> = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| crate::check::to_result(o, run_ids.get(i).copied().flatten()))
        .collect();
    store.record_check_results(&config.host, &results)?;
    let seen: Vec<Observation> = outcomes
        .iter()
        .filter_map(|o| config.checks.get(&o.check).map(|c| Observation::from_check(c, o)))
        .collect();
    observe(store, config, &seen, deliver)
}

/// The host name of what the fleet's leader judges (`run_on: any` work, `host_down`), whichever
/// host leads.
pub const FLEET_HOST: &str = "fleet";

/// The alert key: one open alert per (source, name, host, labels).
pub fn key(source: Source, name: &str, host: &str, labels: &BTreeMap<String, String>) -> String {
    let prefix = match source {
        Source::Check | Source::Channel | Source::Backup => String::new(),
        Source::Task => "task:".to_string(),
    };
    if labels.is_empty() {
        format!("{prefix}{name}@{host}")
    } else {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{prefix}{name}@{host}{{{}}}", l.join(","))
    }
}

/// How many checks `name` depends on, transitively: dependencies are judged first.
fn depth(config: &Config, name: &str, seen: &mut Vec<String>) -> usize {
    if seen.iter().any(|s| s == name) {
        return 0;
    }
    seen.push(name.to_string());
    config
        .checks
        .get(name)
        .map(|c| {
            c.depends_on
                .iter()
                .map(|d| 1 + depth(config, d, seen))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// What the caller does with each transition inside the transaction that records it (the
/// notification outbox queues it there, so a transition and its notification commit together).
pub type Deliver<'a> =
    &'a dyn Fn(&AlertTx, &Transition, &BTreeMap<String, String>, &str) -> crate::store::db::Result<()>;

/// Judges observations (dependencies first) and records the resulting transitions; `deliver`
/// sees each one that is not deferred, in the same transaction.
pub fn observe(
    store: &Store,
    config: &Config,
    observations: &[Observation],
    deliver: Deliver,
) -> Result<Vec<Transition>, StoreError> {
    let mut ordered: Vec<&Observation> = observations.iter().collect();
    ordered.sort_by_key(|o| {
        if o.source == Source::Check {
            depth(config, &o.name, &mut Vec::new())
        } else {
            0
        }
    });
    // On a shared state outcomes are judged for the fleet (but in a host's own profiles):
    // the check states and alert keys are the fleet's, whichever host judged, and carry on
    // from one leader to the next. The alert still names the host that saw it.
    let scope = if store.judges_for_fleet() {
        FLEET_HOST
    } else {
        config.host.as_str()
    };
    let host = &config.host;
    let now = clock::to_text(clock::now());
    store.alerts_tx(|tx| {
        let mut transitions: Vec<Transition> = Vec::new();
        for o in ordered {
            let before = transitions.len();
            let state_name = o.state_name();
            let prev = tx.check_state(&state_name, scope)?;
            let state = if o.ok {
                CheckState {
                    ok: Some(true),
                    fails: 0,
                    oks: prev.oks.saturating_add(1),
                }
            } else {
                CheckState {
                    ok: Some(false),
                    fails: prev.fails.saturating_add(1),
                    oks: 0,
                }
            };
            tx.put_check_state(&state_name, scope, state, &now)?;
            let key = key(o.source, &o.name, scope, &o.labels);
            let open = tx.open_alert(&key)?;
            let redact = |s: &str| config.redactor.redact(s).into_owned();
            match (o.ok, open) {
                (false, None) if state.fails >= o.fail_after => {
                    let mut suppressed_by = None;
                    for dep in &o.depends_on {
                        if tx.check_state(dep, scope)?.ok == Some(false) {
                            suppressed_by = Some(dep.clone());
                            break;
                        }
                    }
                    let silence = tx.active_silence(&key, &o.name, &now)?;
                    let status = if silence.is_some() {
                        AlertStatus::Silenced
                    } else {
                        AlertStatus::Firing
                    };
                    let summary = redact(&o.detail);
                    let id = tx.insert_alert(&NewAlert {
                        key: key.clone(),
                        source: o.source.as_str().into(),
                        name: o.name.clone(),
                        host: host.clone(),
                        severity: o.severity.as_str().into(),
                        status,
                        labels: json!(o.labels),
                        summary: summary.clone(),
                        at: now.clone(),
                        suppressed_by: suppressed_by.clone(),
                    })?;
                    tx.audit(&Draft::new(
                        "alert.opened",
                        &key,
                        json!({ "alert_id": id, "severity": o.severity, "status": status, "summary": summary,
                                "suppressed_by": suppressed_by, "silenced_until": silence.map(|s| s.until) }),
                        &config.redactor,
                    ))?;
                    transitions.push(Transition {
                        alert_id: id,
                        key,
                        source: o.source,
                        name: o.name.clone(),
                        change: Change::Opened,
                        status,
                        severity: o.severity,
                        summary,
                        suppressed_by,
                        started_at: now.clone(),
                        episode: "first".into(),
                    });
                }
                (false, Some(alert)) => {
                    tx.touch_alert(alert.id, &redact(&o.detail), &now)?;
                    // A silence that ran out while the failure goes on: the alert fires now.
                    let silence_over =
                        alert.status == AlertStatus::Silenced && tx.active_silence(&key, &o.name, &now)?.is_none();
                    // The dependency recovered but this check still fails: its own problem now.
                    let dependency_back = match &alert.suppressed_by {
                        Some(dep) => tx.check_state(dep, scope)?.ok != Some(false),
                        None => false,
                    };
                    if silence_over {
                        tx.set_alert_status(alert.id, AlertStatus::Firing)?;
                        tx.audit(&Draft::new(
                            "alert.unsilenced",
                            &key,
                            json!({ "alert_id": alert.id }),
                            &config.redactor,
                        ))?;
                    }
                    if dependency_back {
                        tx.clear_suppression(alert.id)?;
                        tx.audit(&Draft::new(
                            "alert.unsuppressed",
                            &key,
                            json!({ "alert_id": alert.id, "was_suppressed_by": alert.suppressed_by }),
                            &config.redactor,
                        ))?;
                    }
                    let firing_now = silence_over || alert.status == AlertStatus::Firing;
                    if (silence_over || dependency_back) && firing_now {
                        let why = if silence_over { "unsilenced" } else { "unsuppressed" };
                        transitions.push(Transition {
                            alert_id: alert.id,
                            key,
                            source: o.source,
                            name: o.name.clone(),
                            change: Change::Opened,
                            status: AlertStatus::Firing,
                            severity: o.severity,
                            summary: redact(&o.detail),
                            suppressed_by: if dependency_back { None } else { alert.suppressed_by },
                            started_at: alert.first_seen,
                            episode: format!("{why}-{}", alert.count + 1),
                        });
                    }
                }
                (true, Some(alert)) if state.oks >= o.recover_after => {
                    let quiet = alert.status == AlertStatus::Silenced && !tx.was_notified(alert.id)?;
                    tx.resolve_alert(alert.id, &now)?;
                    tx.audit(&Draft::new(
                        "alert.resolved",
                        &key,
                        json!({ "alert_id": alert.id, "first_seen": alert.first_seen, "count": alert.count }),
                        &config.redactor,
                    ))?;
                    transitions.push(Transition {
                        alert_id: alert.id,
                        key,
                        source: o.source,
                        name: o.name.clone(),
                        change: Change::Resolved,
                        // Resolving an alert nobody was ever told about (it opened silenced)
                        // notifies nobody; one that was announced is always resolved aloud.
                        status: if quiet {
                            AlertStatus::Silenced
                        } else {
                            AlertStatus::Resolved
                        },
                        severity: o.severity,
                        summary: redact(&o.detail),
                        suppressed_by: alert.suppressed_by,
                        started_at: alert.first_seen,
                        episode: "last".into(),
                    });
                }
                _ => {}
            }
            if !o.defer_notify {
                for t in &transitions[before..] {
                    deliver(tx, t, &o.labels, &now)?;
                }
            }
        }
        Ok(transitions)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_source_host_and_labels() {
        let mut labels = BTreeMap::new();
        assert_eq!(key(Source::Check, "web", "vps-1", &labels), "web@vps-1");
        assert_eq!(
            key(Source::Task, "hourly/cleanup", "vps-1", &labels),
            "task:hourly/cleanup@vps-1"
        );
        labels.insert("team".into(), "ops".into());
        labels.insert("az".into(), "a".into());
        assert_eq!(key(Source::Check, "web", "h", &labels), "web@h{az=a,team=ops}");
    }
}
