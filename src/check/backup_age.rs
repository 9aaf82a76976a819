//! Backup age probe: the newest *verified* archive of a target must be recent. An archive
//! that was written but never verified does not count: it is not known to restore. Nor does
//! one whose file is gone.

use serde_json::json;

use super::Finding;
use crate::clock;
use crate::config::checks::BackupAgeProbe;
use crate::config::{Config, HumanDuration};
use crate::store::Store;

pub(super) fn probe(config: &Config, p: &BackupAgeProbe) -> Result<Finding, super::ProbeError> {
    let Some(store) = Store::open_existing_state(&config.state).map_err(|e| e.to_string())? else {
        return Ok(Finding::new(
            false,
            format!("no archive of `{}` yet", p.target),
            json!({}),
        ));
    };
    let verified = crate::backup::newest_verified(config, &store, &p.target)
        .map_err(|e| e.to_string())?
        .map(|r| (r.created_at, r.path));
    let now = clock::now();
    let age = |at: &str| {
        clock::from_text(at).map(|t| std::time::Duration::from_secs((now.as_second() - t.as_second()).max(1) as u64))
    };
    let Some((at, path)) = verified else {
        // Read only when nothing counts, to say what there is instead.
        let newest = match crate::backup::latest(config, &store, &p.target) {
            Ok(n) => Some(n),
            Err(crate::backup::BackupError::NoArchive(_)) => None,
            Err(e) => return Err(e.to_string().into()),
        };
        let detail = match &newest {
            Some(n) if !std::path::Path::new(&n.path).is_file() => format!(
                "no verified archive of `{}` on disk: the newest recorded, {} old, is missing ({}; is its disk mounted?)",
                p.target,
                age(&n.created_at)
                    .map(HumanDuration)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                n.path
            ),
            Some(n) => format!(
                "no verified archive of `{}` (newest, {} old, was never verified or failed)",
                p.target,
                age(&n.created_at)
                    .map(HumanDuration)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
            None => format!("no archive of `{}` yet", p.target),
        };
        return Ok(Finding::new(false, detail, json!({ "target": p.target })));
    };
    let a = age(&at).unwrap_or_default();
    let data = json!({ "target": p.target, "archive": path, "created_at": at, "age_seconds": a.as_secs() });
    Ok(if a <= p.max_age.0 {
        Finding::new(
            true,
            format!("newest verified archive is {} old", HumanDuration(a)),
            data,
        )
    } else {
        Finding::new(
            false,
            format!(
                "newest verified archive is {} old (limit {}): {path}",
                HumanDuration(a),
                p.max_age
            ),
            data,
        )
    })
}
