//! Maintenance that silences itself: `silences: [CHECK…]` on a profile or a task.
//!
//! While the work runs, the named checks do not notify (a silence row, bounded in time so a
//! crash cannot silence a check for ever); when it ends the silence is removed and the checks
//! are probed again, so a check that stayed broken fires at once.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::audit::Draft;
use crate::check;
use crate::clock;

use super::runner::{RunError, Runner};

/// An active maintenance silence, to be ended.
pub(super) struct Maintenance {
    ids: Vec<i64>,
    checks: Vec<String>,
    why: String,
}

impl Runner<'_> {
    /// Silences `checks` for at most `bound`; `None` when there is nothing to silence.
    pub(super) fn begin_maintenance(
        &self,
        checks: &[String],
        bound: Duration,
        why: String,
    ) -> Result<Option<Maintenance>, RunError> {
        if checks.is_empty() {
            return Ok(None);
        }
        let now = clock::now();
        let until = now
            .checked_add(jiff::SignedDuration::try_from(bound).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(now);
        let (now_text, until_text) = (clock::to_text(now), clock::to_text(until));
        let mut ids = Vec::new();
        for c in checks {
            let draft = Draft::new(
                "alert.silenced",
                c,
                json!({ "until": until_text, "reason": why, "maintenance": true }),
                &self.config.redactor,
            );
            ids.push(self.store.add_silence(c, &until_text, &why, &now_text, &draft)?.0);
        }
        tracing::info!(checks = ?checks, until = %until_text, "{why}: checks silenced");
        Ok(Some(Maintenance {
            ids,
            checks: checks.to_vec(),
            why,
        }))
    }

    /// Ends a maintenance silence and probes its checks again.
    pub(super) fn end_maintenance(&self, m: Option<Maintenance>) -> Result<(), RunError> {
        let Some(m) = m else { return Ok(()) };
        let draft = Draft::new(
            "silence.ended",
            &m.checks.join(","),
            json!({ "reason": m.why, "silences": m.ids }),
            &self.config.redactor,
        );
        self.store.remove_silences(&m.ids, &draft)?;
        let outcomes = check::probe_blocking(&Arc::new(self.config.clone()), &m.checks);
        crate::notify::record_and_observe(self.store, self.config, &outcomes, &[])?;
        tracing::info!(checks = ?m.checks, "{}: ended; checks probed again", m.why);
        Ok(())
    }
}
