//! `runbook config check | show | schema`.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Ctx, Outcome};
use crate::config::{self, ConfigError};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration; report every error with file:line:col (exit 2)
    ///
    /// Also warns about files that hold secrets and are open to other users: an env file
    /// readable or writable by others, a state file readable by others.
    Check {
        /// Warnings are errors (exit 2)
        #[arg(long)]
        strict: bool,
    },
    /// Print the resolved configuration, secrets redacted
    Show,
    /// Print the JSON Schema of runbook.yaml, for editors
    Schema,
}

pub fn run(cx: &Ctx, cmd: ConfigCmd) -> Result<Outcome, CliError> {
    match cmd {
        ConfigCmd::Check { strict } => check(cx, strict),
        ConfigCmd::Show => {
            let config = cx.load()?;
            let value = config::redacted_json(&config);
            cx.out.json(&value);
            Ok(Outcome::Ok)
        }
        ConfigCmd::Schema => {
            cx.out.json(&config::schema());
            Ok(Outcome::Ok)
        }
    }
}

fn check(cx: &Ctx, strict: bool) -> Result<Outcome, CliError> {
    let path = config::discover(cx.config_path.as_deref())?;
    match config::load(&path) {
        Ok(config) => {
            let tasks: usize = config.profiles.values().map(|p| p.tasks.len()).sum();
            let warnings: Vec<String> = config::exposure_warnings(&config)
                .iter()
                .map(ToString::to_string)
                .collect();
            let failed = strict && !warnings.is_empty();
            let value = json!({
                "valid": !failed,
                "file": config.source,
                "profiles": config.profiles.len(),
                "tasks": tasks,
                "state": config.state.display(),
                "errors": [],
                "warnings": warnings,
            });
            cx.out.either(&value, || {
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
                cx.out.line(format!(
                    "{} is valid: {} profile{}, {} task{}; state in {}",
                    config.source.display(),
                    config.profiles.len(),
                    if config.profiles.len() == 1 { "" } else { "s" },
                    tasks,
                    if tasks == 1 { "" } else { "s" },
                    config.state.display()
                ))
            });
            if failed {
                if !cx.out.json {
                    eprintln!("error: {} warning(s), errors under --strict", warnings.len());
                }
                return Ok(Outcome::Code(super::error::EXIT_USAGE));
            }
            Ok(Outcome::Ok)
        }
        Err(ConfigError::Invalid { path, diagnostics }) if cx.out.json => {
            cx.out
                .json(&json!({ "valid": false, "file": path, "errors": diagnostics }));
            // The JSON above is the whole answer: exit 2 with nothing more on stderr.
            Ok(Outcome::Code(super::error::EXIT_USAGE))
        }
        Err(e) => Err(e.into()),
    }
}
