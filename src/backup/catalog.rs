//! The catalogue: which recorded archives belong to a target (those in its `dest`), the
//! newest, the newest verified, the next to drill, and the target an archive path belongs to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::BackupError;
use super::{archive, crypt, retention};
use crate::clock;
use crate::config::Config;
use crate::config::backups::BackupTarget;
use crate::store::{BackupRecord, Store};

pub fn target<'c>(config: &'c Config, name: &str) -> Result<&'c BackupTarget, BackupError> {
    config
        .backups
        .get(name)
        .ok_or_else(|| BackupError::UnknownTarget(name.to_string()))
}

/// Whether `file` is named like an archive of `target`: `<target>-<YYYYmmddT…>`, not one of a
/// target whose name extends this one (`app-db-2026…` is not `app`'s).
pub(crate) fn is_archive_of(file: &str, target: &str) -> bool {
    file.strip_prefix(target)
        .and_then(|r| r.strip_prefix('-'))
        .map(str::as_bytes)
        .is_some_and(|rest| rest.len() > 9 && rest[..8].iter().all(u8::is_ascii_digit) && rest[8] == b'T')
}

/// An archive as `backup list` shows it: the record, whether its file is still there, and
/// whether it is in its target's `dest` in this configuration (prune, push, the drill
/// rotation and `--latest` only take those; the others are an earlier `dest`'s, or another
/// configuration's sharing the state file).
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub record: BackupRecord,
    /// Entries archived (the record's `files`, its earlier name).
    pub entries: i64,
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
                entries: record.files,
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

/// Whether the archive's last drill passed: only that counts as drilled.
pub(super) fn drilled_ok(r: &BackupRecord) -> bool {
    r.drilled_at.is_some() && r.drill_ok == Some(true)
}

pub(super) fn drill_pick<'r>(
    present: &'r [BackupRecord],
    kept: &BTreeMap<i64, Vec<&'static str>>,
) -> Option<&'r BackupRecord> {
    present.iter().min_by(|a, b| {
        let rank = |r: &'r BackupRecord| {
            // A drill that failed does not count: the archive is not known to restore.
            let drilled = drilled_ok(r);
            (
                drilled,
                // Among the not drilled: those the next prune removes first. Among the
                // drilled: the one drilled longest ago, whatever the policy.
                !drilled && kept.contains_key(&r.id),
                if drilled {
                    r.drilled_at.as_deref().unwrap_or(&r.created_at)
                } else {
                    r.created_at.as_str()
                },
                r.id,
            )
        };
        rank(a).cmp(&rank(b))
    })
}

/// What the target's keep policy keeps of `present` (archives whose file is there).
pub(super) fn policy_keeps(t: &BackupTarget, present: &[BackupRecord]) -> BTreeMap<i64, Vec<&'static str>> {
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
pub(super) fn drilled_on_schedule(config: &Config, target: &str) -> bool {
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
pub(super) struct Dirs(std::collections::HashMap<PathBuf, Option<PathBuf>>);

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
pub(super) fn check_dest_has_its_archives(store: &Store, t: &BackupTarget, name: &str) -> Result<(), BackupError> {
    let records = records_in_dest(store, t, name)?;
    if records.iter().any(|r| Path::new(&r.path).exists()) {
        return Ok(());
    }
    dest_without_its_archives(t, name, records.len())
}

/// The error of [`check_dest_has_its_archives`] when `missing` (any) archives are recorded.
pub(super) fn dest_without_its_archives(t: &BackupTarget, name: &str, missing: usize) -> Result<(), BackupError> {
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
