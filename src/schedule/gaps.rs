//! Scheduled runs that could not start or be recorded, kept in memory until the state file
//! takes a write again, so a gap in the schedule is never silent.
//!
//! Owns the in-memory list and its path to the ledger and to an alert. Invariant: a missed
//! run is logged at once and, once the state file can be written, is a `failed` run of its
//! profile with the reason, a `run.missed` audit event and a firing `missed-run:PROFILE`
//! alert (resolved by the profile's next recorded run); the runs that attempt recorded as
//! started and could not finish are closed as failed (`run.unfinished`).

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::json;

use crate::alert::{Observation, Source};
use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::checks::Severity;
use crate::store::{NewRun, RunFinish, RunStatus, Store};

struct Missed {
    profile: String,
    at: String,
    error: String,
    /// When the failed attempt began: runs it recorded as started (this process's, since
    /// then) whose end could not be recorded are closed as failed too.
    since: Option<String>,
    /// Fleet mode: the lease term and the tick of a leader's run. Recorded under that term,
    /// with that tick, or dropped once the term is over (the next leader accounts for it).
    fence: Option<(i64, String)>,
}

#[derive(Default)]
pub struct Gaps {
    missed: Mutex<Vec<Missed>>,
    /// Profiles whose missed-run alert was opened and not yet resolved by this process.
    alerted: Mutex<BTreeSet<String>>,
}

fn name(profile: &str) -> String {
    format!("missed-run:{profile}")
}

impl Gaps {
    /// A scheduled run of `profile` that did not happen, and why: logged now, recorded later.
    pub fn note(&self, profile: &str, error: &str) {
        self.note_since(profile, None, error)
    }

    /// A scheduled run of `profile` that began at `since` and failed to be recorded.
    pub fn note_since(&self, profile: &str, since: Option<String>, error: &str) {
        self.note_fenced(profile, since, error, None)
    }

    /// `note_since` for a leader's run of a tick under its lease term.
    pub fn note_fenced(&self, profile: &str, since: Option<String>, error: &str, fence: Option<(i64, String)>) {
        tracing::error!(
            profile,
            error,
            "a scheduled run could not start or be recorded; it is recorded as failed once the state file takes writes"
        );
        self.missed.lock().unwrap_or_else(|e| e.into_inner()).push(Missed {
            profile: profile.to_string(),
            at: clock::to_text(clock::now()),
            error: error.to_string(),
            since,
            fence,
        });
    }

    /// Writes what was missed into the ledger, the audit log and an alert; keeps whatever
    /// could not be written for the next call.
    pub fn flush(&self, config: &Config, store: &Store) {
        let pending: Vec<Missed> = std::mem::take(&mut *self.missed.lock().unwrap_or_else(|e| e.into_inner()));
        if pending.is_empty() {
            return;
        }
        let mut left = Vec::new();
        for m in pending {
            if let Some((term, tick)) = &m.fence
                && crate::store::fleet::held_term() != Some(*term)
            {
                tracing::info!(profile = %m.profile, %tick, term, "a missed tick of a lease term that is over: left to the next leader");
                continue;
            }
            let recorded = match &m.fence {
                Some((term, _)) => store.fenced(*term, || record(config, store, &m)),
                None => record(config, store, &m),
            };
            if let Err(e) = recorded {
                tracing::debug!(error = %e, profile = %m.profile, "the missed run is not recorded yet");
                left.push(m);
                continue;
            }
            self.alerted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(m.profile.clone());
        }
        if !left.is_empty() {
            let mut missed = self.missed.lock().unwrap_or_else(|e| e.into_inner());
            left.append(&mut missed);
            *missed = left;
        }
    }

    /// A run of `profile` was recorded: its missed-run alert, if this process opened one,
    /// resolves.
    pub fn recovered(&self, config: &Config, store: &Store, profile: &str) {
        if !self.alerted.lock().unwrap_or_else(|e| e.into_inner()).contains(profile) {
            return;
        }
        let seen = Observation::immediate(
            Source::Task,
            name(profile),
            true,
            "a scheduled run was recorded again",
            Severity::Critical,
        );
        if crate::notify::observe(store, config, &[seen]).is_ok() {
            self.alerted.lock().unwrap_or_else(|e| e.into_inner()).remove(profile);
        }
    }
}

fn record(config: &Config, store: &Store, m: &Missed) -> Result<(), crate::store::StoreError> {
    let run = NewRun::scheduled(&m.profile, &config.host, RunStatus::Running, &m.at);
    let detail = format!(
        "the scheduled run of {} could not start or be recorded: {}",
        m.at, m.error
    );
    let draft = Draft::new(
        "run.missed",
        &m.profile,
        json!({ "scheduled_at": m.at, "error": m.error }),
        &config.redactor,
    );
    if let Some(since) = &m.since {
        let open = store.running_runs_of(&m.profile, &config.host, i64::from(std::process::id()), since, &m.at)?;
        let changes: Vec<_> = open
            .into_iter()
            .map(|id| {
                let draft = Draft::new(
                    "run.unfinished",
                    &m.profile,
                    json!({ "run_id": id, "error": m.error }),
                    &config.redactor,
                );
                (
                    id,
                    RunStatus::Failed,
                    format!("its end could not be recorded: {}", m.error),
                    draft,
                )
            })
            .collect();
        store.mark_runs(&changes)?;
    }
    let id = match &m.fence {
        None => store.insert_run(&run, Some(&draft))?,
        Some((_, tick)) => {
            let run = NewRun {
                tick: Some(tick.clone()),
                ..run
            };
            // Another host recorded the tick meanwhile: nothing is missing.
            let Some(id) = store.claim_tick(&run, Some(&draft))? else {
                return Ok(());
            };
            id
        }
    };
    store.finish_run(
        id,
        &RunFinish {
            status: Some(RunStatus::Failed),
            finished_at: clock::to_text(clock::now()),
            error: Some(detail.clone()),
            ..RunFinish::default()
        },
        None,
    )?;
    let seen = Observation::immediate(Source::Task, name(&m.profile), false, &detail, Severity::Critical);
    crate::notify::observe(store, config, &[seen]).map(|_| ())
}
