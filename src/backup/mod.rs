//! Backups that are known to restore: create, verify, drill, restore, prune and copy offsite.
//!
//! Owns the life of an archive file. `create` gathers the target's sources, writes
//! `<target>-<UTC time>.tar.zst` under a temporary name, fsyncs it, writes its `.sha256`
//! sidecar and only then renames it into place, so a crash at any point leaves nothing that
//! `backup list` shows or `backup verify` accepts. `verify` reads every byte back.
//! Invariant: an archive that is listed was completely written and recorded.

pub mod archive;
pub mod crypt;
pub mod drill;
pub mod extract;
pub mod manifest;
mod mapfault;
pub mod offsite;
mod pg;
pub mod restore;
pub mod retention;
pub mod scratch;
pub mod sha2x;
pub mod source;
pub mod sqlite;
pub mod stream;
pub mod tarwalk;
pub mod verify;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::backups::BackupTarget;
use crate::exec::Cancel;
use crate::store::{BackupRecord, NewBackup, Store, StoreError};
use manifest::{FORMAT, Manifest};

pub use verify::{VerifyReport, verify};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no backup target `{0}` in the configuration")]
    UnknownTarget(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{what} failed: {detail}")]
    Dump { what: String, detail: String },
    #[error("another backup of `{0}` is running")]
    Busy(String),
    #[error("no archive of `{0}` is recorded")]
    NoArchive(String),
    #[error("offsite: {0}")]
    Offsite(String),
    #[error("backup target `{0}` has no `offsite:`")]
    NoOffsite(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BackupError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        BackupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            BackupError::UnknownTarget(_) => Some("list the targets with: runbook config show".into()),
            BackupError::Io { source, .. } if source.raw_os_error() == Some(28) => Some(
                "the destination is full: prune old archives (runbook backup prune TARGET --apply) or free space"
                    .into(),
            ),
            BackupError::Busy(_) => Some("wait for it to finish; a crashed one releases its lock by itself".into()),
            BackupError::NoArchive(t) => Some(format!("create one first: runbook backup create {t}")),
            BackupError::NoOffsite(_) => {
                Some("add `offsite: { url: s3://bucket/prefix }` (or a directory) to the target".into())
            }
            BackupError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

/// What a long operation reports as it goes.
pub enum Progress<'a> {
    Phase(&'a str),
    /// Bytes of data the phase will read.
    Total(u64),
    /// More bytes read.
    Advance(u64),
}

/// A new archive.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub id: i64,
    pub target: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
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

pub fn target<'c>(config: &'c Config, name: &str) -> Result<&'c BackupTarget, BackupError> {
    config
        .backups
        .get(name)
        .ok_or_else(|| BackupError::UnknownTarget(name.to_string()))
}

/// Removes a path when dropped unless disarmed: temp files and scratch directories.
struct Cleanup(Option<PathBuf>);

impl Cleanup {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}

/// Holds the target's lock in its destination directory.
fn lock(dest: &Path, target: &str) -> Result<File, BackupError> {
    let path = dest.join(format!(".{target}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| BackupError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(BackupError::Busy(target.to_string())),
        Err(TryLockError::Error(e)) => Err(BackupError::io(&path, e)),
    }
}

/// Leftovers of a create that was killed: temp archives and scratch directories; and the
/// scratch space of a verify or drill that was stopped (see [`scratch`]), with a drill's
/// scratch databases.
fn remove_leftovers(config: &Config, t: &BackupTarget, target: &str) {
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

/// Removes the tree under `root` (and `root`), unlinking its files from a thread per core:
/// one by one, the 25,000 files of a drill's scratch tree take 2.8 s to go, two at a time
/// 1.7 s. Symlinks are removed, never followed; read-only directories are opened up first.
/// Best effort, like a temporary directory's removal: what cannot be removed stays.
pub(crate) fn remove_tree(root: &Path) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // A restored directory may be read-only (its mode came from the archive): ours to
        // open up, as it is about to go.
        if let Ok(meta) = std::fs::symlink_metadata(&dir) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode | 0o700));
            }
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    _ => files.push(e.path()),
                }
            }
        }
        // Each directory after its parent: the reverse removes children first.
        dirs.push(dir);
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let share = files.len().div_ceil(workers).max(1);
    std::thread::scope(|s| {
        for part in files.chunks(share) {
            s.spawn(move || {
                for f in part {
                    let _ = std::fs::remove_file(f);
                }
            });
        }
    });
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Whether `file` is named like an archive of `target`: `<target>-<YYYYmmddT…>`, not one of a
/// target whose name extends this one (`app-db-2026…` is not `app`'s).
pub(crate) fn is_archive_of(file: &str, target: &str) -> bool {
    file.strip_prefix(target)
        .and_then(|r| r.strip_prefix('-'))
        .map(str::as_bytes)
        .is_some_and(|rest| rest.len() > 9 && rest[..8].iter().all(u8::is_ascii_digit) && rest[8] == b'T')
}

/// A new archive name: `<target>-<YYYYmmddTHHMMSSZ>.tar.zst<suffix>`, never one that exists.
fn archive_path(dest: &Path, target: &str, at: jiff::Timestamp, suffix: &str) -> PathBuf {
    let stamp = at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut path = dest.join(format!("{target}-{stamp}.tar.zst{suffix}"));
    let mut n = 2;
    while path.exists() || archive::sidecar_path(&path).exists() {
        path = dest.join(format!("{target}-{stamp}-{n}.tar.zst{suffix}"));
        n += 1;
    }
    path
}

/// Runs a dump or database tool to completion: its stdout, or a `Dump` error with its stderr
/// (redacted).
pub(crate) fn run_tool(
    spec: &crate::exec::Spec,
    cancel: &Cancel,
    what: &str,
    redactor: &crate::config::Redactor,
) -> Result<String, BackupError> {
    let out = crate::exec::run(spec, cancel).map_err(|e| BackupError::Dump {
        what: redactor.redact(what).into_owned(),
        detail: e.to_string(),
    })?;
    if !out.success() {
        return Err(BackupError::Dump {
            what: redactor.redact(what).into_owned(),
            detail: redactor
                .redact(&out.summary_with(spec.timeout, &out.stderr))
                .into_owned(),
        });
    }
    Ok(out.stdout)
}

/// Writes a file through a temporary name in the same directory, fsynced, then renamed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    if let Some(dir) = path.parent() {
        fsync_dir(dir);
    }
    result
}

pub(crate) fn fsync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
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
        let (size, sha256) = archive::hash_file(&tmp).map_err(|e| BackupError::io(&tmp, e))?;
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
    archive::leave_cache(&final_path);

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
fn size_verdict(name: &str, t: &BackupTarget, size: u64, previous: &[i64]) -> Option<SizeVerdict> {
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

/// An archive as `backup list` shows it: the record, whether its file is still there, and
/// whether it is in its target's `dest` in this configuration (prune, push, the drill
/// rotation and `--latest` only take those; the others are an earlier `dest`'s, or another
/// configuration's sharing the state file).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub record: BackupRecord,
    pub present: bool,
    pub in_dest: bool,
}

pub fn list(config: &Config, store: &Store, target: Option<&str>) -> Result<Vec<Listed>, BackupError> {
    // Each target's dest as configured and resolved (`None` when it is not there).
    type Dest<'c> = Option<(&'c Path, Option<PathBuf>)>;
    let mut dests: std::collections::HashMap<String, Dest> = std::collections::HashMap::new();
    let mut dirs = Dirs::default();
    Ok(store
        .list_backups(target)?
        .into_iter()
        .map(|record| {
            let dest = dests.entry(record.target.clone()).or_insert_with(|| {
                let t = config.backups.get(&record.target)?;
                Some((t.dest.as_path(), std::fs::canonicalize(&t.dest).ok()))
            });
            let path = Path::new(&record.path);
            Listed {
                present: path.is_file(),
                in_dest: dest
                    .as_ref()
                    .is_some_and(|(dest, resolved)| dirs.in_dest(path, dest, resolved.as_deref())),
                record,
            }
        })
        .collect())
}

/// The target an archive belongs to, from its manifest, and its configuration.
pub fn target_of<'c>(config: &'c Config, archive_path: &Path) -> Result<(String, &'c BackupTarget), BackupError> {
    let identity = crypt::identity_for(config, archive_path);
    let m = archive::read_manifest(archive_path, identity.as_deref()).map_err(|e| BackupError::io(archive_path, e))?;
    let t = target(config, &m.target)?;
    Ok((m.target, t))
}

/// The target of an archive that may be damaged (for a drill, which then says what is
/// wrong): from its manifest, or when that cannot be read, from the state file's record of it,
/// or else from its name (`<target>-<time>.tar.zst`). The manifest's error when none says.
pub fn target_of_any<'c>(
    config: &'c Config,
    store: &Store,
    archive_path: &Path,
) -> Result<(String, &'c BackupTarget), BackupError> {
    let unread = match target_of(config, archive_path) {
        Ok(found) => return Ok(found),
        Err(e) => e,
    };
    let name = record_of(store, archive_path)?
        .map(|r| r.target)
        .or_else(|| target_named_in(config, archive_path));
    match name.and_then(|n| config.backups.get_key_value(&n)) {
        Some((name, t)) => Ok((name.clone(), t)),
        None => Err(unread),
    }
}

/// The target whose archives are named like `archive_path` (`<target>-<time>.tar.zst`): the
/// longest configured name that fits.
pub fn target_named_in(config: &Config, archive_path: &Path) -> Option<String> {
    let file = archive_path.file_name()?.to_string_lossy().into_owned();
    config
        .backups
        .keys()
        .filter(|t| file.starts_with(&format!("{t}-")))
        .max_by_key(|t| t.len())
        .cloned()
}

/// The newest recorded archive of a target.
/// The newest archive recorded for `target` in its `dest` (see [`records_in_dest`]), whether
/// or not its file is still there: a verify of it says so.
pub fn latest(config: &Config, store: &Store, target: &str) -> Result<BackupRecord, BackupError> {
    let t = self::target(config, target)?;
    records_in_dest(store, t, target)?
        .into_iter()
        .next()
        .ok_or_else(|| BackupError::NoArchive(target.to_string()))
}

/// The newest archive of `target` in its `dest` that verified and whose file is still there:
/// what `backup_age` and `GET /v1/backups` call its newest verified archive.
pub fn newest_verified(config: &Config, store: &Store, target: &str) -> Result<Option<BackupRecord>, BackupError> {
    let t = self::target(config, target)?;
    Ok(records_in_dest(store, t, target)?
        .into_iter()
        .find(|r| r.verify_ok == Some(true) && Path::new(&r.path).is_file()))
}

/// The archive a scheduled drill takes, of those whose file is there: first the never
/// drilled ones the keep policy lets go at the next prune (oldest first), then the other never
/// drilled ones (oldest first), then the one drilled longest ago. So a drill before a prune
/// takes what that prune would remove, and a prune holds the archive the drill takes next
/// (see [`prune`]): every archive is drilled once before it goes, as long as the schedule
/// drills as often as it backs up.
pub fn next_to_drill(config: &Config, store: &Store, target: &str) -> Result<Option<PathBuf>, BackupError> {
    let t = self::target(config, target)?;
    let present: Vec<BackupRecord> = records_in_dest(store, t, target)?
        .into_iter()
        .filter(|r| Path::new(&r.path).is_file())
        .collect();
    let kept = policy_keeps(t, &present);
    Ok(drill_pick(&present, &kept).map(|r| PathBuf::from(&r.path)))
}

fn drill_pick<'r>(present: &'r [BackupRecord], kept: &BTreeMap<i64, Vec<&'static str>>) -> Option<&'r BackupRecord> {
    present.iter().min_by(|a, b| {
        let rank = |r: &'r BackupRecord| {
            (
                r.drilled_at.is_some(),
                // Among the never drilled: those the next prune removes first. Among the
                // drilled: the one drilled longest ago, whatever the policy.
                r.drilled_at.is_none() && kept.contains_key(&r.id),
                r.drilled_at.as_deref().unwrap_or(&r.created_at),
                r.id,
            )
        };
        rank(a).cmp(&rank(b))
    })
}

/// What the target's keep policy keeps of `present` (archives whose file is there).
fn policy_keeps(t: &BackupTarget, present: &[BackupRecord]) -> BTreeMap<i64, Vec<&'static str>> {
    let candidates: Vec<_> = present
        .iter()
        .filter_map(|r| {
            clock::from_text(&r.created_at).map(|created| retention::Candidate {
                id: r.id,
                created,
                verified: r.verify_ok == Some(true),
            })
        })
        .collect();
    retention::keep(&t.keep, &candidates)
}

/// Whether a profile drills the target (`{ drill: T }`).
fn drilled_on_schedule(config: &Config, target: &str) -> bool {
    config.profiles.values().filter(|p| p.enabled).flat_map(|p| &p.tasks).any(|task| {
        matches!(task, crate::config::Task::Backup(b) if b.action == crate::config::BackupAction::Drill && b.target == target)
    })
}

/// The store's record of the archive at `path`, however it is named here: the store keeps
/// the path it was made at, which this one may name relative to the working directory, or
/// through `..` or a link (to the directory or from it), and the file may be gone. Two names
/// are the same archive when their directories resolve to one and the file names match.
pub(crate) fn record_of(store: &Store, path: &Path) -> Result<Option<BackupRecord>, BackupError> {
    // The name given, and the file it is a link to.
    let mut names = vec![path.to_path_buf()];
    names.extend(std::fs::canonicalize(path).ok().filter(|c| c != path));
    for n in &names {
        if let Some(r) = store.backup_by_path(&n.display().to_string())? {
            return Ok(Some(r));
        }
    }
    let records = store.list_backups(None)?;
    let mut dirs = Dirs::default();
    for n in &names {
        let (Some(name), Some(dir)) = (n.file_name(), dirs.of(n)) else {
            continue;
        };
        let found = records.iter().find(|r| {
            let p = Path::new(&r.path);
            p.file_name() == Some(name) && dirs.of(p).as_ref() == Some(&dir)
        });
        if let Some(r) = found {
            return Ok(Some(r.clone()));
        }
    }
    Ok(None)
}

/// The archives recorded for target `name` that are in its `dest`, newest first. The state
/// file may be shared by several configurations with a target of the same name, or
/// remember an earlier `dest`: those archives are not this target's to prune or push.
/// A `dest` that is not there (its disk not mounted) still has its records, all missing.
pub(crate) fn records_in_dest(store: &Store, t: &BackupTarget, name: &str) -> Result<Vec<BackupRecord>, BackupError> {
    let dest = std::fs::canonicalize(&t.dest).ok();
    let mut dirs = Dirs::default();
    Ok(store
        .list_backups(Some(name))?
        .into_iter()
        .filter(|r| {
            let p = Path::new(&r.path);
            dirs.in_dest(p, &t.dest, dest.as_deref())
                && p.file_name().is_some_and(|f| is_archive_of(&f.to_string_lossy(), name))
        })
        .collect())
}

/// The resolved directories of archive paths (`main-….tar.zst` in `.`), each resolved once:
/// the records are mostly in a few. `None` for a directory that is not there.
#[derive(Default)]
struct Dirs(std::collections::HashMap<PathBuf, Option<PathBuf>>);

impl Dirs {
    /// Whether the archive at `path` is in `dest`, resolved as `resolved` (`None` when `dest`
    /// is not there: then by the path as it was recorded).
    fn in_dest(&mut self, path: &Path, dest: &Path, resolved: Option<&Path>) -> bool {
        match resolved {
            Some(dest) => self.of(path).as_deref() == Some(dest),
            None => path.parent() == Some(dest),
        }
    }

    fn of(&mut self, path: &Path) -> Option<PathBuf> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        self.0
            .entry(dir.to_path_buf())
            .or_insert_with(|| std::fs::canonicalize(dir).ok())
            .clone()
    }
}

/// The refusal when the target has archives recorded in its `dest` and none of them is
/// there: the backup disk not mounted (its mount point empty, or `dest` not there at all).
/// Writing into it would fill the disk under the mount point, and forgetting the records
/// would lose track of the archives when the disk comes back.
fn check_dest_has_its_archives(store: &Store, t: &BackupTarget, name: &str) -> Result<(), BackupError> {
    let records = records_in_dest(store, t, name)?;
    if records.iter().any(|r| Path::new(&r.path).exists()) {
        return Ok(());
    }
    dest_without_its_archives(t, name, records.len())
}

/// The error of [`check_dest_has_its_archives`] when `missing` (any) archives are recorded.
fn dest_without_its_archives(t: &BackupTarget, name: &str, missing: usize) -> Result<(), BackupError> {
    if missing == 0 {
        return Ok(());
    }
    Err(BackupError::io(
        &t.dest,
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "none of the {missing} archives recorded there is present (is its disk mounted?): nothing written, removed or forgotten; \
                 if they were removed on purpose, `runbook backup prune {name} --apply --forget-missing` forgets them"
            ),
        ),
    ))
}

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
        && let Some(next) = drill_pick(&present, &kept).filter(|r| r.drilled_at.is_none())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_removed_whole_without_following_its_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        let root = d.path().join("scratch");
        for i in 0..40 {
            let sub = root.join(format!("d{}/e{}", i % 5, i % 3));
            std::fs::create_dir_all(&sub).unwrap();
            std::fs::write(sub.join(format!("f{i}")), "x").unwrap();
        }
        std::os::unix::fs::symlink(&outside, root.join("d0/link")).unwrap();
        std::os::unix::fs::symlink(outside.join("keep"), root.join("d1/file-link")).unwrap();
        // Read-only and unreadable directories, as an archive can restore them.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("d2/e0"), std::fs::Permissions::from_mode(0o555)).unwrap();
        std::fs::set_permissions(root.join("d3"), std::fs::Permissions::from_mode(0o111)).unwrap();
        remove_tree(&root);
        assert!(!root.exists());
        assert_eq!(std::fs::read_to_string(outside.join("keep")).unwrap(), "keep");
    }
}
