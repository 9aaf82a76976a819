//! `runbook mcp`: serve a guarded session to an assistant over MCP on stdin/stdout.

use std::sync::Arc;

use clap::Args;

use super::{CliError, Ctx, Outcome};
use crate::session::{self, SessionError};

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Serve this open session (one a person started with `runbook session start`); never
    /// taken from RUNBOOK_SESSION, so a shell's session is not handed over by accident
    #[arg(long, value_name = "ID", conflicts_with_all = ["reason", "incident"])]
    pub session: Option<i64>,
    /// Start a new session for the assistant, with this reason
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// The new session's mode: diagnostic (read-only) or maintenance (approved changes)
    #[arg(long, default_value = "diagnostic", requires = "reason")]
    pub mode: String,
    /// The incident the new session belongs to
    #[arg(long, value_name = "ID", requires = "reason")]
    pub incident: Option<String>,
}

pub fn run(cx: &Ctx, args: McpArgs) -> Result<Outcome, CliError> {
    let config = Arc::new(cx.load()?);
    let store = Arc::new(cx.open_store(&config)?);
    let id = match (args.session, args.reason) {
        (Some(id), _) => {
            let s = store.session(id)?.ok_or(SessionError::NotFound(id))?;
            if s.ended_at.is_some() {
                return Err(SessionError::Ended(id).into());
            }
            id
        }
        (None, Some(reason)) => session::start(&config, &store, &args.mode, &reason, args.incident.as_deref())?.0,
        (None, None) => {
            return Err(CliError::usage(
                "runbook mcp serves a session: give --session ID, or --reason TEXT to start one",
                Some("runbook mcp --reason 'diagnose the stalled worker'".into()),
            ));
        }
    };
    let mode = store.session(id)?.map(|s| s.mode).unwrap_or_default();
    // Standard output is the protocol's: one line on standard error says what is served.
    eprintln!("runbook mcp: session {id} ({mode}) on stdio; `runbook session end --session {id}` stops it");
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".into());
    crate::mcp::Server::new(config, store, id, cwd).serve_stdio()?;
    Ok(Outcome::Ok)
}
