//! Errors at the CLI edge: one type, one renderer, one exit code per kind of failure.
//!
//! Library errors arrive typed; here they become `error: …` plus a hint, or a JSON error
//! object under `--json`. Exit codes: 1 a check/gate/verify failed · 2 usage or config ·
//! 3 internal (state file, I/O).

use serde::Serialize;

use super::daemon::DaemonError;
use crate::api::ServeError;
use crate::backup::BackupError;
use crate::config::{ConfigError, Diagnostic};
use crate::deploy::DeployError;
use crate::gate::GateError;
use crate::incident::IncidentError;
use crate::jobs::JobsError;
use crate::mcp::McpError;
use crate::schedule::runner::RunError;
use crate::session::SessionError;
use crate::state::StateError;
use crate::store::StoreError;
use crate::util::{ExitClass, Explain};

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

impl CliError {
    /// The message, hint, exit status and kind a library error explains of itself.
    pub fn explained(e: &dyn Explain) -> Self {
        let exit = match e.class() {
            ExitClass::Failed => EXIT_FAILED,
            ExitClass::Usage => EXIT_USAGE,
            ExitClass::Internal => EXIT_INTERNAL,
        };
        CliError {
            exit,
            kind: e.kind(),
            message: e.to_string(),
            hint: e.hint(),
            diagnostics: Vec::new(),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        let mut err = CliError::explained(&e);
        if let ConfigError::Invalid { diagnostics, .. } = e {
            err.diagnostics = diagnostics;
        }
        err
    }
}

/// The library errors that reach a command, each explained by its own `Explain`.
macro_rules! explained {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError::explained(&e)
            }
        })*
    };
}

explained!(
    StoreError,
    RunError,
    JobsError,
    StateError,
    DaemonError,
    BackupError,
    SessionError,
    ServeError,
    GateError,
    DeployError,
    IncidentError,
    McpError
);
