//! A program a task, probe or hook runs: an argv (given as a list or a line split like a
//! shell would, without a shell), or a script for `/bin/sh -c`.

use schemars::JsonSchema;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub enum Program {
    /// A program and its arguments, run without a shell. A string is split like a shell would
    /// split it (quotes, backslashes), with no shell features (no pipes, globs or variables).
    #[serde(rename = "run")]
    Run(RunArgs),
    /// A script for `/bin/sh -c`.
    #[serde(rename = "sh")]
    Sh(String),
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RunArgs {
    Argv(Vec<String>),
    Line(String),
}

impl Program {
    /// The argv to execute. Validation guarantees a `Line` splits and is not empty.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Program::Run(RunArgs::Argv(argv)) => argv.clone(),
            Program::Run(RunArgs::Line(line)) => shlex::split(line).unwrap_or_default(),
            Program::Sh(script) => vec!["/bin/sh".into(), "-c".into(), script.clone()],
        }
    }
}
