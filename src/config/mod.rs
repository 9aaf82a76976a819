//! Configuration: finding, reading and validating `runbook.yaml`.
//!
//! Owns discovery (`--config`, `RUNBOOK_CONFIG`, `./runbook.yaml`, `/etc/runbook/runbook.yaml`),
//! the two-stage parse (spanned YAML tree, then validated types), `${VAR}` expansion and secrets.
//! Invariant: `load` returns either a fully valid `Config` or every error it found.

pub mod backups;
pub mod checks;
pub mod diagnostic;
mod interp;
pub mod model;
pub mod notify;
pub mod secrets;
pub mod units;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use checks::{Check, Probe, Severity};
pub use diagnostic::Diagnostic;
pub use model::{
    BackupAction, BackupTask, CheckTask, CommandTask, Config, GitSync, Keep, Limits, Profile, Program, Retention,
    Schedule, Task,
};
pub use secrets::Redactor;
pub use units::{ByteSize, HumanDuration, Percent};
pub use validate::{DEFAULT_STATE_URL, default_host, state_path};

/// Where runbook looks for its configuration when `--config` is not given.
pub const SEARCH_PATH: &[&str] = &["./runbook.yaml", "/etc/runbook/runbook.yaml"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration file found (looked at {looked})")]
    NotFound { looked: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} has {} error{}", path.display(), diagnostics.len(), if diagnostics.len() == 1 { "" } else { "s" })]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::NotFound { .. } => {
                Some("pass --config FILE, set RUNBOOK_CONFIG, or start from examples/quickstart.yaml".into())
            }
            ConfigError::Read { .. } => Some("check the path and its permissions".into()),
            ConfigError::Invalid { .. } => Some("fix the errors above; nothing was run or written".into()),
        }
    }
}

/// Finds the configuration file: explicit path, then `RUNBOOK_CONFIG`, then the search path.
pub fn discover(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("RUNBOOK_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    for candidate in SEARCH_PATH {
        let p = Path::new(candidate);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
    }
    Err(ConfigError::NotFound {
        looked: format!("--config, $RUNBOOK_CONFIG, {}", SEARCH_PATH.join(", ")),
    })
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse(&abs, &src)
}

/// Validates configuration text as if it were the file at `path`.
pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigError> {
    let invalid = |diagnostics| ConfigError::Invalid {
        path: path.to_path_buf(),
        diagnostics,
    };
    let root = match yaml::parse(src) {
        Ok(root) => root,
        Err(e) => {
            let d = Diagnostic::new(path.to_path_buf(), src, e.pos, format!("invalid YAML: {}", e.message))
                .with_hint(Some("check indentation and quoting around this position".into()));
            return Err(invalid(vec![d]));
        }
    };
    let mut cx = validate::Cx::new(path, src);
    match validate::config(&mut cx, &root) {
        Some(config) if cx.diags.is_empty() => Ok(config),
        _ => Err(invalid(cx.into_diagnostics())),
    }
}

/// JSON Schema of runbook.yaml, generated from the configuration types.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(serde_json::Value::Null)
}

/// The resolved configuration as JSON with every secret redacted.
pub fn redacted_json(config: &Config) -> serde_json::Value {
    let mut value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    config.redactor.redact_json(&mut value);
    value
}
