//! Checks: probing a target and judging the answer.
//!
//! Owns one probe per file (`http`, `tcp`, `command`, `systemd`, `disk`, `cert`, `file_age`,
//! `git_ref`, `sql`), the common `Outcome`, and running many checks concurrently on a shared
//! async runtime. It does not record outcomes or open alerts (callers do). Invariant: every
//! probe is bounded by its check's timeout; a probe that cannot run is a failing outcome,
//! never an error that escapes.

mod backup_age;
mod cert;
mod command;
mod disk;
mod drift;
mod file_age;
mod git_ref;
mod heartbeat;
mod http;
mod http_fetch;
mod sql;
mod systemd;
mod tcp;

use serde::Serialize;
use std::time::{Duration, Instant};

use crate::clock;
use crate::config::{Check, Config, HumanDuration, Probe};

/// The result of one probe.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub check: String,
    pub kind: &'static str,
    pub ok: bool,
    pub latency_ms: u64,
    /// One line a person reads first: `200 OK in 12ms`, `12% free (need 10%)`.
    pub detail: String,
    /// Structured facts (status code, days left, bytes free…).
    pub data: serde_json::Value,
    pub at: String,
}

/// What a probe found when it could run.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub ok: bool,
    pub detail: String,
    pub data: serde_json::Value,
}

impl Finding {
    pub fn new(ok: bool, detail: impl Into<String>, data: serde_json::Value) -> Self {
        Finding {
            ok,
            detail: detail.into(),
            data,
        }
    }
}

/// Probes in flight at once: more only costs memory (connections, buffers), not speed.
pub const MAX_CONCURRENT_PROBES: usize = crate::util::runtime::MAX_BLOCKING;

/// Why a probe could not judge its target: what a retry or an operator does next differs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    /// No answer in time.
    #[error("{0}")]
    TimedOut(String),
    /// Nothing answered: the connection refused, no route, a name that does not resolve.
    #[error("{0}")]
    Unreachable(String),
    /// The probe ran into an error of its target or its own settings (a query error, a
    /// missing program, an unreadable CA file).
    #[error("{0}")]
    Failed(String),
}

impl ProbeError {
    /// `timeout`, `unreachable` or `error`: the `error` field of the check's data.
    pub fn reason(&self) -> &'static str {
        match self {
            ProbeError::TimedOut(_) => "timeout",
            ProbeError::Unreachable(_) => "unreachable",
            ProbeError::Failed(_) => "error",
        }
    }

    /// The same error, its detail prefixed with `what: `.
    pub fn within(self, what: &str) -> Self {
        match self {
            ProbeError::TimedOut(d) => ProbeError::TimedOut(format!("{what}: {d}")),
            ProbeError::Unreachable(d) => ProbeError::Unreachable(format!("{what}: {d}")),
            ProbeError::Failed(d) => ProbeError::Failed(format!("{what}: {d}")),
        }
    }

    /// An I/O error of connecting, by its kind.
    pub fn connecting(e: &std::io::Error, detail: String) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::TimedOut => ProbeError::TimedOut(detail),
            K::ConnectionRefused | K::ConnectionReset | K::HostUnreachable | K::NetworkUnreachable | K::NotFound => {
                ProbeError::Unreachable(detail)
            }
            _ if e.raw_os_error().is_none() => ProbeError::Unreachable(detail), // name resolution
            _ => ProbeError::Failed(detail),
        }
    }
}

impl From<String> for ProbeError {
    fn from(detail: String) -> Self {
        ProbeError::Failed(detail)
    }
}

/// Probes one check, bounded by its timeout.
pub async fn probe(config: &Config, name: &str, check: &Check) -> Outcome {
    let start = Instant::now();
    let timeout = check.timeout();
    let work = async {
        match &check.probe {
            Probe::Http(p) => http::probe(p, timeout).await,
            Probe::Tcp(p) => tcp::probe(p).await,
            Probe::Command(p) => command::probe(config, p, timeout).await,
            Probe::Systemd(p) => systemd::probe(p, timeout).await,
            Probe::Disk(p) => disk::probe(p),
            Probe::Cert(p) => cert::probe(p, timeout).await,
            Probe::FileAge(p) => file_age::probe(p),
            Probe::GitRef(p) => git_ref::probe(p, timeout).await,
            Probe::Sql(p) => sql::probe(p).await,
            // One indexed read of the state file: quick enough to run in place.
            Probe::Heartbeat(p) => heartbeat::probe(config, name, p),
            Probe::BackupAge(p) => backup_age::probe(config, p),
            Probe::Drift(_) => drift::probe(config).await,
        }
    };
    let finding = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(f)) => f,
        Ok(Err(e)) => Finding::new(false, e.to_string(), serde_json::json!({ "error": e.reason() })),
        Err(_) => Finding::new(
            false,
            format!("timed out after {}", HumanDuration(timeout)),
            serde_json::json!({ "error": "timeout" }),
        ),
    };
    let redactor = &config.redactor;
    let mut data = finding.data;
    redactor.redact_json(&mut data);
    Outcome {
        check: name.to_string(),
        kind: check.probe.kind(),
        ok: finding.ok,
        latency_ms: start.elapsed().as_millis() as u64,
        detail: redactor.redact(&finding.detail).into_owned(),
        data,
        at: clock::to_text(clock::now()),
    }
}

/// Probes the named checks concurrently; outcomes come back in the order asked.
pub async fn probe_all(config: &std::sync::Arc<Config>, names: &[String]) -> Vec<Outcome> {
    let mut set = tokio::task::JoinSet::new();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PROBES));
    for (i, name) in names.iter().enumerate() {
        let config = config.clone();
        let name = name.clone();
        let slots = slots.clone();
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let check = &config.checks[&name];
            (i, probe(&config, &name, check).await)
        });
    }
    let mut out: Vec<Option<Outcome>> = vec![None; names.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, o)) = joined {
            out[i] = Some(o);
        }
    }
    out.into_iter()
        .zip(names)
        .map(|(o, name)| {
            o.unwrap_or_else(|| Outcome {
                check: name.clone(),
                kind: "unknown",
                ok: false,
                latency_ms: 0,
                detail: "the probe crashed".into(),
                data: serde_json::Value::Null,
                at: clock::to_text(clock::now()),
            })
        })
        .collect()
}

/// Blocking entry point for synchronous callers (the CLI, the profile runner).
pub fn probe_blocking(config: &std::sync::Arc<Config>, names: &[String]) -> Vec<Outcome> {
    crate::util::runtime::runtime().block_on(probe_all(config, names))
}

/// A one-line description of what a check probes, for plans and the ledger.
pub fn describe(check: &Check) -> String {
    match &check.probe {
        Probe::Http(p) => format!("{} {} expect {}", p.method, p.url, p.expect.status),
        Probe::Tcp(p) => format!("tcp connect {}", p.address),
        Probe::Command(p) => crate::util::display(&p.program.argv()),
        Probe::Systemd(p) => format!("systemd unit {} is {}", p.unit, p.expect),
        Probe::Disk(p) => format!("disk {} free space", p.path.display()),
        Probe::Cert(p) => format!("certificate of {} valid for {} days", p.host, p.min_days),
        Probe::FileAge(p) => format!("newest {} younger than {}", p.path, p.max_age),
        Probe::GitRef(p) => format!("git {} at {}", p.repo.display(), p.expect),
        Probe::Sql(p) => format!("sql {}: {}", p.url, p.query),
        Probe::Heartbeat(p) => format!("a ping every {} (grace {})", p.period, HumanDuration(p.grace())),
        Probe::BackupAge(p) => format!("newest verified archive of {} younger than {}", p.target, p.max_age),
        Probe::Drift(_) => "the host as baseline: declares".to_string(),
    }
}

/// Milliseconds, for details.
pub(crate) fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// The store's form of an outcome.
pub fn to_result(o: &Outcome, run_id: Option<i64>) -> crate::store::CheckResult {
    crate::store::CheckResult {
        check: o.check.clone(),
        kind: o.kind.to_string(),
        ok: o.ok,
        latency_ms: o.latency_ms as i64,
        detail: o.detail.clone(),
        data: o.data.to_string(),
        at: o.at.clone(),
        run_id,
    }
}
