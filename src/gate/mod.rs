//! Gates: measure what a release (or a rollback) needs, judge it, and keep the evidence.
//!
//! A run samples each measure (`count` probes `interval` apart, all measures at once), judges
//! each sample (pass, fail, inconclusive, error) and each measure by its limits, and writes
//! `evidence/releases/<gate>-<UTC>.json` with its SHA-256, which the audit chain records with
//! the run (`evidence`).

pub mod evidence;
mod judge;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

pub use judge::{Judged, Sample};

use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::gates::Gate;
use crate::store::{GateRun, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("no gate named `{0}`")]
    Unknown(String, Option<String>),
    #[error("release `{0}`: {1}")]
    Release(String, String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Session(#[from] crate::session::SessionError),
}

impl crate::util::Explain for GateError {
    fn class(&self) -> crate::util::ExitClass {
        match self {
            GateError::Unknown(..) => crate::util::ExitClass::Usage,
            GateError::Release(..) => crate::util::ExitClass::Failed,
            _ => crate::util::ExitClass::Internal,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            GateError::Unknown(_, Some(s)) => Some(format!("did you mean `{s}`? (`runbook gate list` lists them)")),
            GateError::Unknown(_, None) => Some("`runbook gate list` lists the gates of runbook.yaml".into()),
            GateError::Release(..) => Some("name a tag or commit that the gate's `repo` has".into()),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        "gate"
    }
}

/// The release a gate judges: the ref given and the commit it resolves to in the gate's repo.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Release {
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub sha: Option<String>,
    pub repo: Option<PathBuf>,
}

/// A finished run: the verdict, every measure judged, where the evidence is.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub gate: String,
    pub verdict: String,
    pub release: Release,
    pub started: String,
    pub finished: String,
    pub measures: Vec<Judged>,
    pub evidence: PathBuf,
    pub sha256: String,
    /// The approved waiver in force, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiver: Option<crate::store::ChangeRequest>,
}

impl Report {
    /// Passed, or failed under an approved waiver.
    pub fn passed(&self) -> bool {
        matches!(self.verdict.as_str(), "pass" | "waived")
    }
    /// What kept it from passing, by name.
    pub fn failing(&self) -> Vec<&str> {
        self.measures
            .iter()
            .filter(|m| !matches!(m.verdict.as_str(), "pass" | "dry-run"))
            .map(|m| m.name.as_str())
            .collect()
    }
}

/// Resolves `reference` to a commit in `repo` with git.
fn resolve(repo: &std::path::Path, reference: &str) -> Result<String, String> {
    if reference.starts_with('-') {
        return Err("a ref does not start with `-`".into());
    }
    let argv = [
        "git",
        "-C",
        &repo.display().to_string(),
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{reference}^{{commit}}"),
    ]
    .map(String::from)
    .to_vec();
    let out = crate::exec::run(
        &crate::exec::Spec::new(argv, std::time::Duration::from_secs(30)),
        &Default::default(),
    )
    .map_err(|e| e.to_string())?;
    let sha = out.stdout.trim();
    if out.success() && sha.len() >= 40 {
        Ok(sha.to_string())
    } else {
        Err(format!("no such commit in {}", repo.display()))
    }
}

/// Runs gate `name`: measures, judges, writes the evidence and records the run with its
/// audit event. `progress` hears of each sample as it is judged.
pub fn run(
    config: &Arc<Config>,
    store: &Store,
    name: &str,
    release: Option<&str>,
    progress: &(dyn Fn(&str, &Sample) + Sync),
) -> Result<Report, GateError> {
    let Some(gate) = config.gates.get(name) else {
        let near = crate::config::diagnostic::suggest(name, config.gates.keys().map(String::as_str)).map(String::from);
        return Err(GateError::Unknown(name.to_string(), near));
    };
    let release = Release {
        reference: release.map(String::from),
        sha: match (release, &gate.repo) {
            (Some(r), Some(repo)) => Some(resolve(repo, r).map_err(|e| GateError::Release(r.to_string(), e))?),
            _ => None,
        },
        repo: gate.repo.clone(),
    };
    let baseline = store
        .last_passing_gate_run(name)?
        .map(|r| r.measured)
        .unwrap_or_default();
    let started = clock::now();
    let mut measures = judge::measure_all(config, gate, &baseline, progress);
    measures.extend(extra_conditions(config, store, gate)?);
    let finished = clock::now();
    let measured_verdict = judge::verdict(&measures);
    let waiver = active_waiver(store, name)?;
    let verdict = match (&waiver, measured_verdict) {
        (Some(_), v) if v != "pass" => "waived",
        (_, v) => v,
    };

    let operator = crate::audit::actor::current();
    let mut doc = json!({
        "format": evidence::FORMAT,
        "gate": name,
        "definition": gate,
        "definition_sha256": evidence::seal(&json!(gate)),
        "release": release,
        "host": config.host,
        "operator": operator,
        "started": clock::to_text(started),
        "finished": clock::to_text(finished),
        "duration_ms": (finished.as_millisecond() - started.as_millisecond()).max(0),
        "verdict": verdict,
        "measured_verdict": measured_verdict,
        "waiver": waiver.as_ref().map(|w| json!({
            "change": w.id, "reason": w.objective, "requester": w.requester, "approver": w.approver,
            "approved_at": w.decided_at, "expires_at": w.expires_at,
        })),
        "measures": measures,
    });
    config.redactor.redact_json(&mut doc);
    let dir = config
        .source
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
        .join("evidence/releases");
    let (path, sha256) = evidence::write(&dir, name, &started.strftime("%Y%m%dT%H%M%SZ").to_string(), doc)?;

    let measured: BTreeMap<&str, BTreeMap<String, f64>> =
        measures.iter().map(|m| (m.name.as_str(), m.means())).collect();
    let record = GateRun {
        id: 0,
        gate: name.to_string(),
        started_at: clock::to_text(started),
        finished_at: clock::to_text(finished),
        verdict: verdict.to_string(),
        release_ref: release.reference.clone(),
        release_sha: release.sha.clone(),
        operator,
        evidence_path: path.display().to_string(),
        evidence_sha256: sha256.clone(),
        measured: json!(measured),
    };
    let draft = Draft::new(
        "gate.run",
        name,
        json!({
            "verdict": verdict,
            "release": release.reference,
            "sha": release.sha,
            "evidence": path,
            "evidence_sha256": sha256,
            "waiver": waiver.as_ref().map(|w| w.id),
            "failing": measures.iter().filter(|m| !matches!(m.verdict.as_str(), "pass" | "dry-run")).map(|m| &m.name).collect::<Vec<_>>(),
        }),
        &config.redactor,
    );
    store.record_gate_run(&record, &draft)?;
    if verdict != "pass" && verdict != "waived" {
        tell(config, store, name, gate, verdict, &release, &measures, &path, &sha256)?;
    }
    Ok(Report {
        gate: name.to_string(),
        verdict: verdict.to_string(),
        release,
        started: record.started_at,
        finished: record.finished_at,
        measures,
        evidence: path,
        sha256,
        waiver,
    })
}

/// The approved waiver of `gate` that has not expired, newest first.
pub fn active_waiver(store: &Store, gate: &str) -> Result<Option<crate::store::ChangeRequest>, GateError> {
    let argv = crate::session::waiver_argv(gate);
    let now = clock::to_text(clock::now());
    Ok(store.changes(1000)?.into_iter().find(|c| {
        c.argv == argv && c.status == "approved" && c.expires_at.as_deref().is_some_and(|e| e > now.as_str())
    }))
}

/// Asks for a waiver of `gate` for `expires` from now; another person approves it.
pub fn waive(
    config: &Config,
    store: &Store,
    gate: &str,
    reason: &str,
    expires: std::time::Duration,
) -> Result<(i64, String), GateError> {
    if !config.gates.contains_key(gate) {
        let near = crate::config::diagnostic::suggest(gate, config.gates.keys().map(String::as_str)).map(String::from);
        return Err(GateError::Unknown(gate.to_string(), near));
    }
    let until = clock::now()
        .checked_add(jiff::SignedDuration::try_from(expires).unwrap_or(jiff::SignedDuration::ZERO))
        .map(clock::to_text)
        .unwrap_or_default();
    let id = crate::session::request_waiver(config, store, gate, reason, &until)?;
    Ok((id, until))
}

/// Queues one message per channel of the gate's `notify`, naming what did not pass; the
/// run's seal makes it once only.
#[allow(clippy::too_many_arguments)]
fn tell(
    config: &Config,
    store: &Store,
    name: &str,
    gate: &Gate,
    verdict: &str,
    release: &Release,
    measures: &[Judged],
    evidence: &std::path::Path,
    sha256: &str,
) -> Result<(), GateError> {
    if gate.notify.is_empty() || !config.notify.enabled {
        return Ok(());
    }
    let failing: Vec<String> = measures
        .iter()
        .filter(|m| !matches!(m.verdict.as_str(), "pass" | "dry-run"))
        .map(|m| {
            let last = m
                .samples
                .iter()
                .rev()
                .find(|s| s.verdict != "pass")
                .map(|s| s.detail.as_str())
                .unwrap_or_default();
            format!("{} ({}): {}", m.name, m.verdict, last)
        })
        .collect();
    let summary = format!(
        "verdict {verdict}{}: {}\nevidence: {}",
        release
            .reference
            .as_deref()
            .map(|r| format!(" for release {r}"))
            .unwrap_or_default(),
        failing.join("; "),
        evidence.display()
    );
    let message = crate::notify::Message::event("gate", name, &config.host, "warning", summary);
    crate::notify::queue_event(store, &gate.notify, &message, &format!("gate:{sha256}"))?;
    Ok(())
}

/// The conditions judged from runbook's own state rather than probed: open alerts, and
/// whether runbook.yaml loads without a warning.
fn extra_conditions(config: &Config, store: &Store, gate: &Gate) -> Result<Vec<Judged>, GateError> {
    let mut out = Vec::new();
    if let Some(min) = gate.no_open_alerts {
        let open = store.list_alerts(&crate::store::AlertFilter {
            status: Some(crate::store::AlertStatus::Firing),
            limit: 1000,
            ..Default::default()
        })?;
        let blocking: Vec<String> = open
            .iter()
            .filter(|a| crate::config::Severity::parse(&a.severity).is_some_and(|s| s >= min))
            .map(|a| format!("{} ({})", a.key, a.severity))
            .collect();
        let detail = if blocking.is_empty() {
            format!("no open alert of severity {} or above", min.as_str())
        } else {
            format!("{} open: {}", blocking.len(), blocking.join(", "))
        };
        out.push(Judged::single("no_open_alerts", blocking.is_empty(), detail));
    }
    if gate.drift_clean {
        let judged = crate::drift::judge(config, store)?;
        let detail = if judged.failing == 0 {
            format!(
                "the host matches baseline: ({} acknowledged difference(s))",
                judged.items.len()
            )
        } else {
            let first: Vec<String> = judged
                .items
                .iter()
                .zip(&judged.acked)
                .filter(|(_, a)| a.is_none())
                .take(5)
                .map(|(i, _)| format!("{} {}", i.change, i.id()))
                .collect();
            format!("{} difference(s): {}", judged.failing, first.join("; "))
        };
        out.push(Judged::single("drift_clean", judged.failing == 0, detail));
    }
    if gate.config_valid {
        let (ok, detail) = match crate::config::load(&config.source) {
            Ok(now) => {
                let warnings = crate::config::exposure_warnings(&now);
                (
                    warnings.is_empty(),
                    if warnings.is_empty() {
                        "runbook.yaml is valid".to_string()
                    } else {
                        warnings.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
                    },
                )
            }
            Err(e) => (false, e.to_string()),
        };
        out.push(Judged::single("config_valid", ok, detail));
    }
    Ok(out)
}
