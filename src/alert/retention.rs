//! Retention: the daemon keeps check history and resolved alerts bounded.
//!
//! Owns turning `retention:` into cutoffs; the store deletes. Open alerts are never pruned.

use serde_json::json;

use crate::audit::Draft;
use crate::clock;
use crate::config::{Config, Keep};
use crate::store::{Cutoff, Pruned, Store, StoreError};

fn cutoff(keep: Keep) -> Cutoff {
    match keep {
        Keep::Count(n) => Cutoff::Count(n),
        Keep::Age(age) => {
            let since = clock::now()
                .checked_sub(jiff::SignedDuration::try_from(age.0).unwrap_or(jiff::SignedDuration::MAX))
                .unwrap_or(jiff::Timestamp::MIN);
            Cutoff::Before(clock::to_text(since))
        }
    }
}

pub fn prune(config: &Config, store: &Store) -> Result<Pruned, StoreError> {
    let r = &config.retention;
    store.prune(&cutoff(r.check_results), &cutoff(r.resolved_alerts), |p| {
        Draft::new(
            "retention.pruned",
            "history",
            json!({ "check_results": p.check_results, "resolved_alerts": p.resolved_alerts, "notifications": p.notifications,
                    "keep": { "check_results": r.check_results.to_string(), "resolved_alerts": r.resolved_alerts.to_string() } }),
            &config.redactor,
        )
    })
}
