//! File age probe: the newest file matching a pattern must be recent (backup freshness).

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use super::Finding;
use crate::config::HumanDuration;
use crate::config::checks::FileAgeProbe;
use crate::util::wildcard;

pub(super) fn probe(p: &FileAgeProbe) -> Result<Finding, super::ProbeError> {
    let path = Path::new(&p.path);
    let dir = path.parent().unwrap_or(Path::new("/"));
    let pattern = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let newest = entries
        .filter_map(Result::ok)
        .filter(|e| wildcard::matches(&pattern, &e.file_name().to_string_lossy()))
        .filter_map(|e| Some((e.path(), e.metadata().ok().filter(|m| m.is_file())?.modified().ok()?)))
        .max_by_key(|(_, mtime)| *mtime);
    let Some((file, mtime)) = newest else {
        return Ok(Finding::new(
            false,
            format!("no file matches {}", p.path),
            json!({ "pattern": p.path }),
        ));
    };
    let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
    let age_text = HumanDuration(std::time::Duration::from_secs(age.as_secs().max(1))).to_string();
    let data = json!({ "file": file, "age_seconds": age.as_secs() });
    Ok(if age <= p.max_age.0 {
        Finding::new(true, format!("{} is {age_text} old", file.display()), data)
    } else {
        Finding::new(
            false,
            format!("newest is {}, {age_text} old (limit {})", file.display(), p.max_age),
            data,
        )
    })
}
