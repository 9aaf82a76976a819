//! `runbook db status | migrate`.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Ctx, Outcome};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Schema version of the state file: current and head
    Status,
    /// Apply pending migrations (dry run unless --apply)
    Migrate {
        #[arg(long)]
        apply: bool,
    },
}

pub fn run(cx: &Ctx, cmd: DbCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let path = &config.state.path;
    let state = match Store::open_existing(path)? {
        Some(store) => store.migration_state()?,
        None => crate::store::MigrationState {
            current: 0,
            head: Store::head_version(),
        },
    };
    match cmd {
        DbCmd::Status => {
            let value = json!({
                "path": path,
                "exists": path.exists(),
                "current": state.current,
                "head": state.head,
                "status": state.status(),
            });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "state file: {}{}",
                    path.display(),
                    if path.exists() { "" } else { " (not created yet)" }
                ));
                cx.out.line(format!(
                    "schema:     version {} of {} ({})",
                    state.current,
                    state.head,
                    state.status()
                ));
            });
            Ok(Outcome::Ok)
        }
        DbCmd::Migrate { apply } => {
            let pending: Vec<u32> = (state.current + 1..=state.head).collect();
            if !apply {
                let value = json!({ "apply": false, "current": state.current, "head": state.head, "pending": pending });
                cx.out.either(&value, || {
                    if pending.is_empty() {
                        cx.out.line(format!(
                            "schema is at head (version {}); nothing to migrate",
                            state.head
                        ));
                    } else {
                        cx.out.line(format!(
                            "dry run: would apply migrations {pending:?} to {}; re-run with --apply",
                            path.display()
                        ));
                    }
                });
                return Ok(Outcome::Ok);
            }
            let after = Store::open(path)?.migration_state()?;
            let value = json!({ "apply": true, "from": state.current, "current": after.current, "head": after.head, "applied": pending });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "schema migrated from version {} to {}",
                    state.current, after.current
                ))
            });
            Ok(Outcome::Ok)
        }
    }
}
