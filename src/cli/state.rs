//! `runbook state get | set | list | import`.

use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome, StateCmd};
use crate::state::{self, Action};

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
