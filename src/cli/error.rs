//! Errors at the CLI edge: one type, one renderer, one exit code per kind of failure.
//!
//! Library errors arrive typed; here they become `error: …` plus a hint, or a JSON error
//! object under `--json`. Exit codes: 1 a check/gate/verify failed · 2 usage or config ·
//! 3 internal (state file, I/O).

use serde::Serialize;

use super::daemon::DaemonError;
use crate::config::{ConfigError, Diagnostic};
use crate::jobs::JobsError;
use crate::schedule::runner::RunError;
use crate::state::StateError;
use crate::store::StoreError;

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_INTERNAL: u8 = 3;

#[derive(Debug, Serialize)]
pub struct CliError {
    #[serde(skip)]
    pub exit: u8,
    pub kind: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

impl CliError {
    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError {
            exit: EXIT_USAGE,
            kind: "usage",
            message: message.into(),
            hint,
            diagnostics: Vec::new(),
        }
    }
    pub fn failed(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError {
            exit: EXIT_FAILED,
            kind: "failed",
            message: message.into(),
            hint,
            diagnostics: Vec::new(),
        }
    }
    pub fn internal(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError {
            exit: EXIT_INTERNAL,
            kind: "internal",
            message: message.into(),
            hint,
            diagnostics: Vec::new(),
        }
    }

    /// Human form for stderr.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render());
            out.push('\n');
        }
        out.push_str(&format!("error: {}\n", self.message));
        if let Some(h) = &self.hint {
            out.push_str(&format!("  hint: {h}\n"));
        }
        out
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        let hint = e.hint();
        let message = e.to_string();
        let diagnostics = match e {
            ConfigError::Invalid { diagnostics, .. } => diagnostics,
            _ => Vec::new(),
        };
        CliError {
            exit: EXIT_USAGE,
            kind: "config",
            message,
            hint,
            diagnostics,
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let mut err = CliError::internal(e.to_string(), e.hint());
        err.kind = "state";
        err
    }
}

impl From<RunError> for CliError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::UnknownProfile { ref known, ref name } => {
                let hint = crate::config::diagnostic::suggest(name, known.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| {
                        Some(format!(
                            "profiles: {}",
                            if known.is_empty() {
                                "(none)".into()
                            } else {
                                known.join(", ")
                            }
                        ))
                    });
                CliError::usage(e.to_string(), hint)
            }
            RunError::UnknownTask { .. } => {
                CliError::usage(e.to_string(), Some("the configuration changed since that run".into()))
            }
            RunError::Lock { .. } => {
                CliError::internal(e.to_string(), Some("the lock directory must be writable".into()))
            }
            RunError::Store(s) => s.into(),
        }
    }
}

impl From<JobsError> for CliError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::NotFound(_) => CliError::usage(e.to_string(), Some("see `runbook jobs list`".into())),
            JobsError::NotRetryable { .. } | JobsError::NotATask { .. } => CliError::usage(e.to_string(), None),
            JobsError::Store(s) => s.into(),
            JobsError::Run(r) => r.into(),
        }
    }
}

impl From<StateError> for CliError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::Store(s) => s.into(),
            StateError::ConflictAcrossFiles { .. } => CliError::usage(
                e.to_string(),
                Some("import the files separately with --namespace".into()),
            ),
            StateError::Conflict { .. } => {
                CliError::usage(e.to_string(), Some("keep one line per key in that file".into()))
            }
            _ => CliError::usage(e.to_string(), None),
        }
    }
}

impl From<DaemonError> for CliError {
    fn from(e: DaemonError) -> Self {
        match e {
            DaemonError::Config(c) => c.into(),
            DaemonError::Store(s) => s.into(),
            DaemonError::AlreadyRunning { .. } => CliError::usage(
                e.to_string(),
                Some("stop it first, or use `runbook reload` to apply a new configuration".into()),
            ),
            DaemonError::Setup(_) => CliError::internal(e.to_string(), None),
        }
    }
}
