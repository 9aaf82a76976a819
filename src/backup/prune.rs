//! `backup prune`: the keep policy applied to the archives in a target's `dest`, dry-run
//! unless applied; an archive the drill rotation still needs is held.

use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::archive;
use super::catalog::{
    dest_without_its_archives, drill_pick, drilled_ok, drilled_on_schedule, policy_keeps, records_in_dest, target,
};
use super::error::BackupError;
use super::fsutil::lock;
use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::store::{BackupRecord, Store};
use crate::util::file::fsync_dir;

/// What `backup prune` keeps and removes.
#[derive(Debug, Clone, Serialize)]
pub struct PrunePlan {
    pub target: String,
    pub keep: Vec<(BackupRecord, Vec<&'static str>)>,
    pub remove: Vec<BackupRecord>,
    /// Recorded archives whose file is gone already: with `--apply` their records go.
    pub gone: Vec<BackupRecord>,
    /// With `--apply`, archives that could not be removed, and why (their records stay).
    pub failed: Vec<(String, String)>,
    pub applied: bool,
}

/// Applies the target's keep policy: the plan, carried out with `apply`. `forget_missing`
/// forgets the records of missing archives even when none of the target's is there (they
/// were removed on purpose), which is otherwise refused as a disk not mounted.
pub fn prune(
    config: &Config,
    store: &Store,
    name: &str,
    apply: bool,
    forget_missing: bool,
) -> Result<PrunePlan, BackupError> {
    let t = target(config, name)?;
    let records = records_in_dest(store, t, name)?;
    // An archive whose file is gone keeps no slot (and is not the newest verified one): the
    // archives on disk are the ones counted, and its record goes.
    let (present, gone): (Vec<BackupRecord>, Vec<BackupRecord>) =
        records.into_iter().partition(|r| Path::new(&r.path).exists());
    // A `dest` that is not there has no records here: nothing to forget.
    if apply && !forget_missing && present.is_empty() {
        dest_without_its_archives(t, name, gone.len())?;
    }
    let mut kept = policy_keeps(t, &present);
    // The archive the scheduled drill takes next stays until it is drilled.
    if drilled_on_schedule(config, name)
        && let Some(next) = drill_pick(&present, &kept).filter(|r| !drilled_ok(r))
    {
        kept.entry(next.id).or_default().push("next to drill");
    }
    let mut plan = PrunePlan {
        target: name.to_string(),
        keep: Vec::new(),
        remove: Vec::new(),
        gone,
        failed: Vec::new(),
        applied: false,
    };
    for r in present {
        match kept.get(&r.id) {
            Some(why) => plan.keep.push((r, why.clone())),
            None => plan.remove.push(r),
        }
    }
    if apply && !(plan.remove.is_empty() && plan.gone.is_empty()) {
        let _lock = lock(&t.dest, name)?;
        // One file that cannot go (immutable, a read-only mount) keeps neither the others
        // from going nor what went from being recorded.
        let mut removed = Vec::new();
        for r in std::mem::take(&mut plan.remove) {
            let path = Path::new(&r.path);
            let failed = [path.to_path_buf(), archive::sidecar_path(path)]
                .into_iter()
                .find_map(|p| match std::fs::remove_file(&p) {
                    Ok(()) => None,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => Some(format!("{}: {e}", p.display())),
                });
            match failed {
                // The archive went, its sidecar not: the archive is no more, its record goes
                // (the next create removes a sidecar without its archive).
                Some(why) if path.exists() => plan.failed.push((r.path.clone(), why)),
                Some(why) => {
                    plan.failed.push((r.path.clone(), why));
                    removed.push(r);
                }
                None => removed.push(r),
            }
        }
        plan.remove = removed;
        fsync_dir(&t.dest);
        if plan.remove.is_empty() && plan.gone.is_empty() {
            // Nothing went: the failures are the outcome.
            return Ok(plan);
        }
        let ids: Vec<i64> = plan.remove.iter().chain(&plan.gone).map(|r| r.id).collect();
        let paths: Vec<&str> = plan.remove.iter().map(|r| r.path.as_str()).collect();
        let gone: Vec<&str> = plan.gone.iter().map(|r| r.path.as_str()).collect();
        store.mark_pruned(
            &ids,
            &clock::to_text(clock::now()),
            &Draft::new(
                "backup.pruned",
                name,
                json!({ "archives": paths, "gone": gone, "kept": plan.keep.len(), "keep": t.keep,
                        "failed": plan.failed.iter().map(|(path, why)| json!({ "path": path, "why": why })).collect::<Vec<_>>() }),
                &config.redactor,
            ),
        )?;
        plan.applied = true;
    }
    Ok(plan)
}
