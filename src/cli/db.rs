//! `runbook db status | migrate | copy`.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Ctx, Outcome};
use crate::store::{Backend, Location, Store};

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Where the state is and its schema version: backend, server, latency, pool use
    ///
    /// For SQLite: the file and whether it exists. For PostgreSQL: the server's version, the
    /// round trip of one query, and the pool's connections in use and open.
    Status,
    /// Apply pending migrations (dry run unless --apply)
    Migrate {
        #[arg(long)]
        apply: bool,
    },
    /// Copy the whole state to another backend: SQLite to PostgreSQL or back (dry run unless --apply)
    ///
    /// Reads the state of runbook.yaml in one snapshot and writes every row to the state at
    /// --to in one transaction, then checks the row count of each table on both sides and
    /// that the audit chain verifies on the target. A target that already holds rows is
    /// refused unless --force, which empties it first. Stop the daemon first: what it writes
    /// after the snapshot is not copied. Then point `state.url` at the target.
    Copy {
        /// Target state: postgres://user@host/db?sslmode=…, sqlite:///path.db or a path
        #[arg(long, value_name = "URL")]
        to: String,
        #[arg(long)]
        apply: bool,
        /// Empty a target that holds rows before copying
        #[arg(long)]
        force: bool,
    },
}

pub fn run(cx: &Ctx, cmd: DbCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    if let DbCmd::Copy { to, apply, force } = cmd {
        return copy(cx, &config, &to, apply, force);
    }
    let started = Instant::now();
    let existing = Store::open_existing_state(&config.state)?;
    let state = match &existing {
        Some(store) => store.migration_state()?,
        None => crate::store::MigrationState {
            current: 0,
            head: Store::head_version(),
        },
    };
    let path = &config.state.path;
    let postgres = config.state.is_postgres();
    match cmd {
        DbCmd::Status => {
            let server = match &existing {
                Some(store) if postgres => Some(store.server_version()?),
                _ => None,
            };
            let latency_ms = match &existing {
                Some(store) => {
                    let t = Instant::now();
                    store.data_version()?;
                    Some(t.elapsed().as_secs_f64() * 1000.0)
                }
                None => None,
            };
            let pool = existing.as_ref().and_then(|s| s.pool_use());
            let value = json!({
                "backend": if postgres { "postgres" } else { "sqlite" },
                "url": config.state.display(),
                "path": if postgres { None } else { Some(path) },
                "exists": existing.is_some(),
                "server": server,
                "latency_ms": latency_ms,
                "open_ms": started.elapsed().as_secs_f64() * 1000.0,
                "pool": pool.map(|(in_use, open)| json!({ "in_use": in_use, "open": open })),
                "current": state.current,
                "head": state.head,
                "status": state.status(),
            });
            cx.out.either(&value, || {
                if postgres {
                    cx.out
                        .line(format!("backend:    PostgreSQL {}", server.as_deref().unwrap_or("")));
                    cx.out.line(format!(
                        "state:      {}{}",
                        config.state.display(),
                        if existing.is_some() {
                            ""
                        } else {
                            " (no runbook tables yet)"
                        }
                    ));
                } else {
                    cx.out.line("backend:    SQLite");
                    cx.out.line(format!(
                        "state file: {}{}",
                        path.display(),
                        if existing.is_some() { "" } else { " (not created yet)" }
                    ));
                }
                if let Some(ms) = latency_ms {
                    cx.out.line(format!("latency:    {ms:.2} ms per query"));
                }
                if let Some((in_use, open)) = pool {
                    cx.out.line(format!("pool:       {in_use} in use of {open} open"));
                }
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
                            config.state.display()
                        ));
                    }
                });
                return Ok(Outcome::Ok);
            }
            let after = Store::open_state(&config.state)?.migration_state()?;
            let value = json!({ "apply": true, "from": state.current, "current": after.current, "head": after.head, "applied": pending });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "schema migrated from version {} to {}",
                    state.current, after.current
                ))
            });
            Ok(Outcome::Ok)
        }
        DbCmd::Copy { .. } => unreachable!("handled above"),
    }
}

/// The state `--to` names: PostgreSQL, or an SQLite file (relative to runbook.yaml's directory).
fn target(config: &crate::config::Config, to: &str) -> Result<Location, CliError> {
    if crate::config::model::is_postgres_url(to) {
        return Ok(Location::Postgres {
            url: to.to_string(),
            local: config.state.path.clone(),
        });
    }
    let base = config.source.parent().unwrap_or(Path::new("."));
    crate::config::state_path(to, base).map(Location::Sqlite).map_err(|e| {
        CliError::usage(
            format!("--to: {e}"),
            Some("e.g. --to postgres://runbook@127.0.0.1/runbook or --to sqlite:///var/lib/runbook/runbook.db".into()),
        )
    })
}

fn copy(cx: &Ctx, config: &crate::config::Config, to: &str, apply: bool, force: bool) -> Result<Outcome, CliError> {
    let from = Location::of(&config.state);
    let target = target(config, to)?;
    if target == from {
        return Err(CliError::usage("--to names the state runbook.yaml already uses", None));
    }
    let to_shown = match &target {
        Location::Sqlite(p) => p.display().to_string(),
        Location::Postgres { url, .. } => crate::store::postgres::redact(url),
    };
    let source = Store::open_existing_state(&config.state)?
        .ok_or_else(|| CliError::usage(format!("there is no state at {} to copy", config.state.display()), None))?;
    source.migrate()?;
    let counts = source.table_counts()?;
    let rows: i64 = counts.iter().map(|(_, n)| n).sum();
    if !apply {
        let existing = Store::open_existing_at(&target)?;
        let target_rows = match &existing {
            Some(t) if t.migration_state()?.current == Store::head_version() => {
                Some(t.table_counts()?.iter().map(|(_, n)| n).sum::<i64>())
            }
            _ => None,
        };
        let refused = target_rows.is_some_and(|n| n > 0) && !force;
        let value = json!({
            "apply": false,
            "from": config.state.display(),
            "to": to_shown,
            "rows": rows,
            "tables": counts.iter().map(|(t, n)| json!({ "table": t, "rows": n })).collect::<Vec<_>>(),
            "target_exists": existing.is_some(),
            "target_rows": target_rows,
            "refused": refused,
        });
        cx.out.either(&value, || {
            cx.out
                .line(format!("dry run: would copy {rows} rows in {} tables", counts.len()));
            cx.out.line(format!("  from {}", config.state.display()));
            cx.out.line(format!("  to   {to_shown}"));
            if refused {
                cx.out
                    .line("the target already holds rows: --force would empty it first");
            } else {
                cx.out.line("re-run with --apply");
            }
        });
        return Ok(if refused { Outcome::Failed } else { Outcome::Ok });
    }
    let dest = Store::open_at(&target)?;
    if !force && !dest.is_empty()? {
        return Err(CliError::failed(
            format!("{to_shown} already holds a state; nothing was copied"),
            Some("check that it is the database you meant; --force empties it first".into()),
        ));
    }
    let bar = (!cx.out.json && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(rows.max(0) as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{wide_bar}] {pos}/{len} rows eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb
    });
    let mut done_before = 0i64;
    let mut last: (String, i64) = (String::new(), 0);
    let started = Instant::now();
    let tables = source.copy_to(&dest, force, &mut |table, n| {
        if last.0 != table {
            done_before += last.1;
            last = (table.to_string(), 0);
        }
        last.1 = n;
        if let Some(pb) = &bar {
            pb.set_message(table.to_string());
            pb.set_position((done_before + n) as u64);
        }
    })?;
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    let mismatched: Vec<&str> = tables
        .iter()
        .filter(|t| t.source != t.target)
        .map(|t| t.table.as_str())
        .collect();
    let mut events = 0i64;
    let verifier = crate::store::chain::scan_chain(&dest, &mut |_| events += 1)?;
    let chain_ok = verifier.first_break.is_none();
    let head = verifier.head().cloned();
    let source_head = crate::store::chain::scan_chain(&source, &mut |_| {})?.head().cloned();
    let same_head = head == source_head;
    let ok = mismatched.is_empty() && chain_ok && same_head;
    let value = json!({
        "apply": true,
        "from": config.state.display(),
        "to": to_shown,
        "backend": match dest.backend() { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" },
        "rows": tables.iter().map(|t| t.target).sum::<i64>(),
        "tables": tables,
        "mismatched": mismatched,
        "audit": { "events": events, "verified": chain_ok, "head_seq": head.as_ref().map(|h| h.0), "same_head": same_head },
        "duration_ms": started.elapsed().as_millis() as u64,
        "ok": ok,
    });
    cx.out.either(&value, || {
        cx.out.line(format!(
            "copied {} rows in {} tables to {to_shown} in {:.1}s",
            tables.iter().map(|t| t.target).sum::<i64>(),
            tables.len(),
            started.elapsed().as_secs_f64()
        ));
        if mismatched.is_empty() {
            cx.out.line("row counts: every table matches");
        } else {
            cx.out.line(format!("row counts DIFFER in: {}", mismatched.join(", ")));
        }
        cx.out.line(format!(
            "audit chain on the target: {} ({events} events{})",
            if chain_ok { "verified" } else { "BROKEN" },
            if same_head {
                ", same head as the source"
            } else {
                ", head differs from the source"
            }
        ));
        if ok {
            cx.out.line(format!(
                "next: set state.url to {to_shown} in runbook.yaml and restart the daemon"
            ));
        }
    });
    Ok(if ok { Outcome::Ok } else { Outcome::Failed })
}
