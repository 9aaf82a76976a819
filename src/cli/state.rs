//! `runbook state get | set | list | import`.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::state::{self, Action};

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Print a key's value (exit 1 if it is not set)
    Get { namespace: String, key: String },
    /// Set a key (dry run unless --apply)
    Set {
        namespace: String,
        key: String,
        value: String,
        #[arg(long)]
        apply: bool,
    },
    /// List keys, optionally of one namespace
    List { namespace: Option<String> },
    /// Import legacy text cache files from a directory; existing keys are kept unless --overwrite
    ///
    /// Each regular file is one key (its name without extension; the value is its content
    /// without the final newline), or, when every line is `key=value`, one key per line.
    /// Hidden files are ignored; files over 1 MiB or not UTF-8 are reported and skipped.
    /// Idempotent: a second identical import writes nothing. Dry run unless --apply.
    Import {
        dir: PathBuf,
        /// Namespace of the imported keys [default: the directory's name]
        #[arg(long)]
        namespace: Option<String>,
        /// Replace keys that already hold a different value
        #[arg(long)]
        overwrite: bool,
        /// Write (default: print the plan)
        #[arg(long)]
        apply: bool,
    },
}

pub fn run(cx: &Ctx, cmd: StateCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        StateCmd::Get { namespace, key } => match store.state_get(&namespace, &key)? {
            Some(entry) => {
                let value = json!({
                    "namespace": entry.namespace, "key": entry.key, "value": entry.value,
                    "updated_at": entry.updated_at, "found": true,
                });
                cx.out.either(&value, || output::emit(&format!("{}\n", entry.value)));
                Ok(Outcome::Ok)
            }
            None => {
                if cx.out.json {
                    cx.out
                        .json(&json!({ "namespace": namespace, "key": key, "found": false }));
                } else {
                    eprintln!("{namespace}/{key} is not set");
                }
                Ok(Outcome::Failed)
            }
        },
        StateCmd::Set {
            namespace,
            key,
            value,
            apply,
        } => {
            let previous = store.state_get(&namespace, &key)?;
            if !apply {
                let value_json = json!({ "apply": false, "namespace": namespace, "key": key, "value": value, "previous": previous.as_ref().map(|p| &p.value) });
                cx.out.either(&value_json, || {
                    let was = previous
                        .as_ref()
                        .map(|p| format!("was {:?}", p.value))
                        .unwrap_or_else(|| "new key".into());
                    cx.out.line(format!(
                        "dry run: would set {namespace}/{key} = {value:?} ({was}); re-run with --apply"
                    ));
                });
                return Ok(Outcome::Ok);
            }
            let previous = state::set(&store, &namespace, &key, &value, &config.redactor)?;
            let value_json = json!({ "apply": true, "namespace": namespace, "key": key, "value": value, "previous": previous.as_ref().map(|p| &p.value) });
            cx.out
                .either(&value_json, || cx.out.line(format!("set {namespace}/{key}")));
            Ok(Outcome::Ok)
        }
        StateCmd::List { namespace } => {
            let entries = store.state_list(namespace.as_deref())?;
            cx.out.either(&entries, || {
                let mut t = output::table(&["NAMESPACE", "KEY", "VALUE", "UPDATED (UTC)"]);
                for e in &entries {
                    t.add_row(vec![
                        e.namespace.clone(),
                        e.key.clone(),
                        one_line(&e.value, 50),
                        e.updated_at.clone(),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        StateCmd::Import {
            dir,
            namespace,
            overwrite,
            apply,
        } => {
            let plan = state::plan_import(&store, &dir, namespace.as_deref(), overwrite)?;
            let written = if apply {
                state::apply_import(&store, &plan, &config.redactor)?
            } else {
                0
            };
            let summary = json!({
                "apply": apply,
                "namespace": plan.namespace,
                "added": plan.count(Action::Add),
                "overwritten": plan.count(Action::Overwrite),
                "kept": plan.count(Action::Keep),
                "unchanged": plan.count(Action::Unchanged),
                "written": written,
                "items": plan.items,
                "skipped": plan.skipped,
            });
            cx.out.either(&summary, || {
                let mut t = output::table(&["NAMESPACE", "KEY", "FROM", "ACTION"]);
                for i in &plan.items {
                    let action = match i.action {
                        Action::Add => "add",
                        Action::Unchanged => "unchanged",
                        Action::Keep => "keep existing (use --overwrite to replace)",
                        Action::Overwrite => "overwrite",
                    };
                    t.add_row(vec![
                        i.namespace.clone(),
                        i.key.clone(),
                        i.source.clone(),
                        action.to_string(),
                    ]);
                }
                output::print_table(&t);
                for s in &plan.skipped {
                    cx.out.line(format!("skipped {}: {}", s.path, s.reason));
                }
                let counts = format!(
                    "{} to add, {} to overwrite, {} kept, {} unchanged",
                    plan.count(Action::Add),
                    plan.count(Action::Overwrite),
                    plan.count(Action::Keep),
                    plan.count(Action::Unchanged)
                );
                if apply {
                    cx.out.line(format!(
                        "imported into namespace `{}`: {written} key(s) written ({counts})",
                        plan.namespace
                    ));
                } else {
                    cx.out
                        .line(format!("dry run: {counts}; nothing written. Re-run with --apply"));
                }
            });
            Ok(Outcome::Ok)
        }
    }
}
