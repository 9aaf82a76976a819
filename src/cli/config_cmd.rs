//! `runbook config check | show | schema`.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Ctx, Outcome};
use crate::config::{self, ConfigError};

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate the configuration; report every error with file:line:col (exit 2)
    Check,
    /// Print the resolved configuration, secrets redacted
    Show,
    /// Print the JSON Schema of runbook.yaml, for editors
    Schema,
}

pub fn run(cx: &Ctx, cmd: ConfigCmd) -> Result<Outcome, CliError> {
    match cmd {
        ConfigCmd::Check => check(cx),
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

fn check(cx: &Ctx) -> Result<Outcome, CliError> {
    let path = config::discover(cx.config_path.as_deref())?;
    match config::load(&path) {
        Ok(config) => {
            let tasks: usize = config.profiles.values().map(|p| p.tasks.len()).sum();
            let value = json!({
                "valid": true,
                "file": config.source,
                "profiles": config.profiles.len(),
                "tasks": tasks,
                "state": config.state.path,
                "errors": [],
            });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "{} is valid: {} profile{}, {} task{}; state in {}",
                    config.source.display(),
                    config.profiles.len(),
                    if config.profiles.len() == 1 { "" } else { "s" },
                    tasks,
                    if tasks == 1 { "" } else { "s" },
                    config.state.path.display()
                ))
            });
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
