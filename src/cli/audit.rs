//! `runbook audit list | verify`.

use serde_json::json;

use super::output::{self, one_line};
use super::{AuditCmd, CliError, Ctx, Outcome};
use crate::audit::Verifier;
use crate::store::AuditFilter;

pub fn run(cx: &Ctx, cmd: AuditCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        AuditCmd::List { limit, kind } => {
            let events = store.audit_list(&AuditFilter {
                limit,
                kind,
                ..Default::default()
            })?;
            cx.out.either(&events, || {
                let mut t = output::table(&["SEQ", "TIME (UTC)", "ACTOR", "KIND", "SUBJECT", "DATA"]);
                for e in &events {
                    t.add_row(vec![
                        e.seq.to_string(),
                        e.ts.clone(),
                        e.actor.clone(),
                        e.kind.clone(),
                        e.subject.clone(),
                        one_line(&e.data, 60),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        AuditCmd::Verify => {
            let mut verifier = Verifier::default();
            store.audit_scan(&mut |e| verifier.feed(e))?;
            let head = verifier.head().cloned();
            let value = json!({
                "intact": verifier.first_break.is_none(),
                "checked": verifier.checked,
                "head_seq": head.as_ref().map(|h| h.0),
                "head_hash": head.as_ref().map(|h| h.1.clone()),
                "first_bad": verifier.first_break,
            });
            match &verifier.first_break {
                None => {
                    cx.out.either(&value, || {
                        let tail = head
                            .map(|(seq, hash)| format!(", head #{seq} {}", &hash[..12]))
                            .unwrap_or_default();
                        cx.out.line(format!(
                            "audit chain intact: {} event{}{tail}",
                            verifier.checked,
                            if verifier.checked == 1 { "" } else { "s" }
                        ));
                    });
                    Ok(Outcome::Ok)
                }
                Some(b) => {
                    cx.out.either(&value, || {
                        cx.out
                            .line(format!("audit chain BROKEN at seq {}: {}", b.seq, b.reason));
                        cx.out.line(format!(
                            "{} event(s) before it verified; everything from seq {} on cannot be trusted",
                            verifier.checked, b.seq
                        ));
                    });
                    Ok(Outcome::Failed)
                }
            }
        }
    }
}
