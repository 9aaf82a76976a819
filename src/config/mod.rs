//! Configuration: finding, reading and validating `runbook.yaml`.
//!
//! Owns discovery (`--config`, `RUNBOOK_CONFIG`, `./runbook.yaml`, `/etc/runbook/runbook.yaml`),
//! the two-stage parse (spanned YAML tree, then validated types), `${VAR}` expansion and secrets.
//! Invariant: `load` returns either a fully valid `Config` or every error it found.

pub mod backups;
pub mod baseline;
pub mod checks;
pub mod deploy;
pub mod diagnostic;
pub mod gates;
mod interp;
pub mod mcp;
pub mod model;
pub mod notify;
pub mod program;
pub mod run_on;
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
pub use secrets::{Redactor, exposure_warnings};
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

impl crate::util::Explain for ConfigError {
    fn class(&self) -> crate::util::ExitClass {
        crate::util::ExitClass::Usage
    }

    fn kind(&self) -> &'static str {
        "config"
    }

    fn hint(&self) -> Option<String> {
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
    mask_credentials(&mut value);
    value
}

/// Settings that hold a credential whatever their value came from (written in runbook.yaml,
/// or `${VAR}` from the process environment): shown as `[redacted]`.
const CREDENTIAL_KEYS: &[&str] = &["secret_access_key", "bot_token", "secret", "password"];

/// Masks [`CREDENTIAL_KEYS`], header values that carry one (`Authorization`, `X-Api-Key`, …)
/// and the password of any `scheme://user:password@host` URL.
fn mask_credentials(value: &mut serde_json::Value) {
    use serde_json::Value;
    const MASK: &str = "[redacted]";
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if CREDENTIAL_KEYS.contains(&k.as_str()) && v.is_string() {
                    *v = Value::String(MASK.into());
                } else if k == "headers"
                    && let Value::Object(headers) = v
                {
                    for (name, h) in headers.iter_mut() {
                        let name = name.to_ascii_lowercase();
                        if ["auth", "token", "key", "secret", "cookie"]
                            .iter()
                            .any(|w| name.contains(w))
                        {
                            *h = Value::String(MASK.into());
                        }
                    }
                } else {
                    mask_credentials(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_credentials),
        Value::String(text) => {
            if let Some(masked) = url_without_password(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

/// A URL with its password masked: `scheme://user:[redacted]@rest`, and `password=[redacted]`
/// in its query; `None` for text that is no such URL or has no password.
fn url_without_password(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let mut out = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:[redacted]{}", &rest[at..]),
            None => text.to_string(),
        },
        None => text.to_string(),
    };
    if let Some(q) = out.find('?') {
        let masked: Vec<String> = out[q + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{}?{}", &out[..q], masked.join("&"));
    }
    (out != text).then_some(out)
}
