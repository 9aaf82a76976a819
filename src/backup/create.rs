//! `backup create`: gather the target's sources, write the archive under a temporary name,
//! fsync it, write its sidecar, then rename it into place and record it; the size verdict
//! against the recent archives.
//! Invariant: an archive that is listed was completely written and recorded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::catalog::{check_dest_has_its_archives, is_archive_of, target};
use super::error::BackupError;
use super::fsutil::{Cleanup, lock};
use super::manifest::{FORMAT, Manifest};
use super::{Progress, archive, crypt, drill, offsite, scratch, source};
use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::backups::BackupTarget;
use crate::exec::Cancel;
use crate::store::{NewBackup, Store};
use crate::util::file::fsync_dir;

/// A new archive.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub id: i64,
    pub target: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// Entries archived (files, directories, symlinks); `files` is its earlier name.
    pub entries: usize,
    pub files: usize,
    pub data_bytes: u64,
    pub duration_ms: u64,
    /// Of which: running dumps (pg_dump, commands) before the archive write began (SQLite
    /// snapshots are taken while it goes on).
    pub snapshot_ms: u64,
    /// Files that changed while they were read, entries skipped.
    pub warnings: Vec<String>,
    /// Databases whose snapshot failed its `integrity_check`: archived as they are, and the
    /// backup counts as failed (exit 1, a failed task).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
    /// Set when the archive is much smaller than the recent ones (the caller opens an alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub too_small: Option<String>,
    /// How the size compares with the recent archives' (none before the first): what the
    /// caller gives the target's alert, `backup:NAME`, to open or resolve it.
    #[serde(skip)]
    pub size_verdict: Option<SizeVerdict>,
}

/// An archive's size against the median of the last (up to 7): `ok` unless under
/// `min_size_ratio` of it.
#[derive(Debug, Clone)]
pub struct SizeVerdict {
    pub ok: bool,
    pub detail: String,
}

/// Leftovers of a create that was killed: temp archives and scratch directories; and the
/// scratch space of a verify or drill that was stopped (see [`scratch`]), with a drill's
/// scratch databases.
pub(super) fn remove_leftovers(config: &Config, t: &BackupTarget, target: &str) {
    let dest = &t.dest;
    scratch::sweep(
        dest,
        &[
            ".runbook-verify-",
            ".offsite-drill-",
            offsite::CHECK_PREFIX,
            &format!(".drill-{target}-"),
        ],
        &mut drill::release_abandoned(config, target, t),
    );
    let Ok(entries) = std::fs::read_dir(dest) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // `.<target>-<YYYYmmddT…>`: not the leftovers of a target whose name extends this one.
        // A sidecar whose archive never took its name (killed between the two renames).
        if let Some(archive) = name.strip_suffix(".sha256")
            && is_archive_of(archive, target)
            && !dest.join(archive).exists()
        {
            tracing::info!(path = %e.path().display(), "removing a sidecar without its archive");
            if let Err(err) = std::fs::remove_file(e.path()) {
                // Said at every backup: nothing else will.
                tracing::warn!(path = %e.path().display(), error = %err, "a sidecar without its archive cannot be removed");
            }
            continue;
        }
        // A download a killed pull left (`<archive>.part`, `<archive>.age.part`).
        if let Some(part) = name.strip_suffix(".part")
            && is_archive_of(part.strip_suffix(".age").unwrap_or(part), target)
        {
            tracing::info!(path = %e.path().display(), "removing what an interrupted pull left");
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let ours = name.strip_prefix('.').is_some_and(|n| is_archive_of(n, target));
        if ours && (name.ends_with(".tmp") || name.ends_with(".work")) {
            let p = e.path();
            tracing::info!(path = %p.display(), "removing what an interrupted backup left");
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// A new archive name: `<target>-<YYYYmmddTHHMMSSZ>.tar.zst<suffix>`, never one that exists.
pub(super) fn archive_path(dest: &Path, target: &str, at: jiff::Timestamp, suffix: &str) -> PathBuf {
    let stamp = at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut path = dest.join(format!("{target}-{stamp}.tar.zst{suffix}"));
    let mut n = 2;
    while path.exists() || archive::sidecar_path(&path).exists() {
        path = dest.join(format!("{target}-{stamp}-{n}.tar.zst{suffix}"));
        n += 1;
    }
    path
}

/// Writes a new archive of `name`, records it, and raises an alert if it is suspiciously small.
pub fn create(
    config: &Config,
    store: &Store,
    name: &str,
    cancel: &Cancel,
    progress: &dyn Fn(Progress),
) -> Result<Created, BackupError> {
    let t = target(config, name)?;
    let started = Instant::now();
    check_dest_has_its_archives(store, t, name)?;
    std::fs::create_dir_all(&t.dest).map_err(|e| BackupError::io(&t.dest, e))?;
    let _lock = lock(&t.dest, name)?;
    remove_leftovers(config, t, name);

    let now = clock::now();
    let recipients = crypt::recipients(&t.encrypt_to).map_err(|e| BackupError::io(&t.dest, e))?;
    let suffix = if recipients.is_empty() { "" } else { crypt::SUFFIX };
    let final_path = archive_path(&t.dest, name, now, suffix);
    let file_name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let scratch = t.dest.join(format!(".{file_name}.work"));
    std::fs::create_dir_all(&scratch).map_err(|e| BackupError::io(&scratch, e))?;
    let _scratch = Cleanup(Some(scratch.clone()));

    progress(Progress::Phase("snapshotting sources"));
    let gathered = source::gather(config, t, &scratch, cancel)?;
    let order = gathered.write_order();
    let snapshot_ms = started.elapsed().as_millis() as u64;
    let mut manifest = Manifest {
        format: FORMAT,
        target: name.to_string(),
        host: config.host.clone(),
        runbook_version: env!("CARGO_PKG_VERSION").to_string(),
        created: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        sources: gathered.sources,
    };
    let tmp = t.dest.join(format!(".{file_name}.tmp"));
    let mut tmp_guard = Cleanup(Some(tmp.clone()));
    progress(Progress::Phase("writing the archive"));
    progress(Progress::Total(manifest.data_bytes()));
    let mut pending = gathered.pending;
    let checks = std::cell::RefCell::new(Vec::new());
    let written = archive::write(
        &tmp,
        &mut manifest,
        archive::Plan {
            origins: &gathered.origins,
            order: &order,
            level: t.level,
            progress: &|n| progress(Progress::Advance(n)),
            before: &mut |s, source| {
                let Some(at) = pending.iter().position(|p| p.source == s) else {
                    return Ok(None);
                };
                let p = pending.swap_remove(at);
                let taken = p
                    .ready
                    .recv()
                    .unwrap_or_else(|_| Err("the snapshot thread stopped".into()));
                let taken = taken.map_err(std::io::Error::other)?;
                source.files[0].size = taken.size;
                checks.borrow_mut().push((s, p.check));
                Ok(taken.stream.map(|s| Box::new(s) as archive::Source))
            },
            finish: &mut |m| {
                for (i, handle) in checks.borrow_mut().drain(..) {
                    let mut result = handle.join().unwrap_or_else(|_| "the check crashed".into());
                    if result.len() > 1000 {
                        let cut = (0..=1000).rev().find(|&c| result.is_char_boundary(c)).unwrap_or(0);
                        result.truncate(cut);
                    }
                    m.sources[i].integrity_check = Some(result);
                }
            },
        },
    );
    if written.is_err() {
        // Snapshots still being taken hold a read transaction on their source and write into
        // the scratch directory removed on return: let them finish first.
        for p in pending.drain(..) {
            let _ = p.ready.recv();
        }
    }
    let written = written.map_err(|e| BackupError::io(&tmp, e))?;
    let (tmp, size, sha256) = if recipients.is_empty() {
        let (size, sha256) = crate::util::digest::hash_file(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
        (tmp, size, sha256)
    } else {
        // Encrypted in one more pass over the finished archive (the manifest is written into
        // its head last, so the plaintext cannot stream through the encryptor).
        progress(Progress::Phase("encrypting"));
        let sealed = t.dest.join(format!(".{file_name}.sealed.tmp"));
        let sealed_guard = Cleanup(Some(sealed.clone()));
        let (size, sha256) =
            crypt::encrypt_file(&tmp, &sealed, &recipients).map_err(|e| BackupError::io(&sealed, e))?;
        tmp_guard = sealed_guard; // the plaintext goes now
        (sealed, size, sha256)
    };
    // On disk before it is renamed into place (the hash pass above overlapped the flush).
    written
        .synced
        .join()
        .map_err(|_| std::io::Error::other("the fsync thread crashed"))
        .and_then(|r| r)
        .map_err(|e| BackupError::io(&tmp, e))?;
    archive::write_sidecar(&final_path, &sha256).map_err(|e| BackupError::io(&final_path, e))?;
    std::fs::rename(&tmp, &final_path).map_err(|e| BackupError::io(&final_path, e))?;
    tmp_guard.disarm();
    fsync_dir(&t.dest);
    super::fsutil::leave_cache(&final_path);

    let files = manifest.files().count();
    let data_bytes = manifest.data_bytes();
    let duration_ms = started.elapsed().as_millis() as u64;
    let mut warnings = gathered.warnings;
    // A damaged database is archived as it is (better than nothing to go back to), but the
    // backup is not a success: the source itself needs attention.
    let mut damaged = Vec::new();
    for s in &manifest.sources {
        if let Some(r) = s.integrity_check.as_deref().filter(|r| *r != "ok") {
            let r = if r.is_empty() { "the check did not run" } else { r };
            damaged.push(format!("{}: integrity_check of the snapshot: {r}", s.root));
        }
    }
    warnings.extend(written.changed.iter().map(|p| format!("{p} changed while it was read")));
    warnings.extend(
        written
            .gone
            .iter()
            .map(|p| format!("{p} was removed before it could be read: not in the archive")),
    );
    let path_text = final_path.display().to_string();
    // An archive the state file does not know would never be listed, verified on schedule or
    // pruned: if it cannot be recorded, it goes again, and the backup fails as a whole.
    let unrecorded = |e: crate::store::StoreError| {
        let _ = std::fs::remove_file(&final_path);
        let _ = std::fs::remove_file(archive::sidecar_path(&final_path));
        fsync_dir(&t.dest);
        BackupError::from(e)
    };
    let previous: Vec<i64> = store
        .list_backups(Some(name))
        .map_err(unrecorded)?
        .iter()
        .take(7)
        .map(|b| b.size)
        .collect();
    let id = store
        .record_backup(
            &NewBackup {
                target: name.to_string(),
                path: path_text.clone(),
                created_at: clock::to_text(now),
                host: config.host.clone(),
                size: size as i64,
                sha256: sha256.clone(),
                files: files as i64,
                data_bytes: data_bytes as i64,
                duration_ms: duration_ms as i64,
            },
            &Draft::new(
                "backup.created",
                name,
                json!({ "archive": path_text, "sha256": sha256, "size": size, "files": files,
                    "data_bytes": data_bytes, "duration_ms": duration_ms, "warnings": warnings,
                    "damaged": damaged }),
                &config.redactor,
            ),
        )
        .map_err(unrecorded)?;
    let size_verdict = size_verdict(name, t, size, &previous);
    let too_small = size_verdict.as_ref().filter(|v| !v.ok).map(|v| v.detail.clone());
    Ok(Created {
        id,
        target: name.to_string(),
        path: final_path,
        size,
        sha256,
        entries: files,
        files,
        data_bytes,
        duration_ms,
        snapshot_ms,
        warnings,
        damaged,
        too_small,
        size_verdict,
    })
}

/// The median of the last (up to 7) archives' sizes, and the new one's against it.
pub(super) fn size_verdict(name: &str, t: &BackupTarget, size: u64, previous: &[i64]) -> Option<SizeVerdict> {
    if previous.is_empty() {
        return None;
    }
    let mut sorted = previous.to_vec();
    sorted.sort_unstable();
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2] as f64
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) as f64 / 2.0
    };
    let small = (size as f64) < t.min_size_ratio * median;
    let detail = if small {
        format!(
            "backup `{name}`: the new archive is {size} bytes, {:.0} % of the median of the last {} ({median:.0} bytes)",
            100.0 * size as f64 / median.max(1.0),
            previous.len()
        )
    } else {
        format!("backup `{name}`: the new archive's size is in line with the recent ones")
    };
    Some(SizeVerdict { ok: !small, detail })
}
