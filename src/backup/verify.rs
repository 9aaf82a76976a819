//! `backup verify`: read every byte of an archive once and prove it matches what was written.
//!
//! Owns the checks: the file against its sidecar, the zstd frames, the manifest first and
//! every entry against it (nothing missing or extra), SQLite snapshots with
//! `PRAGMA integrity_check`, PostgreSQL dumps with `pg_restore --list`. Invariant: every
//! problem is reported, the first one first.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::manifest::{EntryKind, FileEntry, MANIFEST_NAME, Manifest};
use super::sha2x::Lane;
use super::stream::{finish_hashing, first_entry, next_entry, open_hashing};
use super::tarwalk::Walk;
use super::{BackupError, Progress, archive};
use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::exec::{self, Cancel, Spec};
use crate::store::Store;
use crate::util::hex;

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub archive: PathBuf,
    pub ok: bool,
    /// What is wrong, first problem first (empty when `ok`).
    pub problems: Vec<String>,
    pub sha256: String,
    pub size: u64,
    pub files_checked: usize,
    pub data_bytes: u64,
    /// Archive path → `PRAGMA integrity_check` of the extracted copy (a JSON object).
    #[serde(serialize_with = "as_object")]
    pub sqlite: Vec<(String, String)>,
    /// Archive path → `pg_restore --list` result (a JSON object).
    #[serde(serialize_with = "as_object")]
    pub postgres: Vec<(String, String)>,
    pub duration_ms: u64,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
    /// How many of the problems are checks that could not be made for a reason outside the
    /// archive (the key to decrypt it, scratch space for a database's copy).
    #[serde(skip)]
    pub unchecked: usize,
    /// Why the outcome is not in the state (it is read-only here: a diagnostic session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_recorded: Option<String>,
}

/// Pairs as a JSON object, in their order.
fn as_object<S: serde::Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(pairs.len()))?;
    for (k, v) in pairs {
        map.serialize_entry(k, v)?;
    }
    map.end()
}

impl VerifyReport {
    /// A report of `path` with nothing checked yet (not ok).
    fn nothing_yet(path: &Path) -> VerifyReport {
        VerifyReport {
            archive: path.to_path_buf(),
            ok: false,
            problems: Vec::new(),
            sha256: String::new(),
            size: 0,
            files_checked: 0,
            data_bytes: 0,
            sqlite: Vec::new(),
            postgres: Vec::new(),
            duration_ms: 0,
            manifest: None,
            unchecked: 0,
            not_recorded: None,
        }
    }
}

/// Verifies the archive at `path`.
pub fn verify(path: &Path, identity: Option<&Path>, progress: &dyn Fn(Progress)) -> Result<VerifyReport, BackupError> {
    let started = Instant::now();
    if !path.is_file() {
        return Err(BackupError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such archive"),
        ));
    }
    let mut report = VerifyReport::nothing_yet(path);
    // Scratch space for the databases: next to the archive (the operator provisioned that
    // disk), or the temp directory when the archive's directory is read-only.
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch = super::scratch::create(parent, ".runbook-verify-")
        .or_else(|_| super::scratch::create(&std::env::temp_dir(), "runbook-verify-"))
        .map_err(|e| BackupError::io(&std::env::temp_dir(), e))?;
    progress(Progress::Phase("reading every entry"));
    // One pass: the file's hash is taken from the bytes the decoder reads.
    let (whole, checks) = read_entries(path, identity, scratch.path(), &mut report, progress);
    let hashed = match whole {
        Some(h) => Ok(h),
        None => crate::util::digest::hash_file(path).map_err(|e| BackupError::io(path, e)),
    };
    let (size, sha) = match hashed {
        Ok(h) => h,
        Err(e) => {
            // The database checks end before their scratch directory goes.
            for (_, _, handle, _) in checks {
                let _ = handle.join();
            }
            return Err(e);
        }
    };
    report.size = size;
    report.sha256 = sha.clone();
    let sidecar_problem = match archive::read_sidecar(path) {
        Ok(expected) if expected == sha => None,
        Ok(expected) => Some(format!(
            "the archive's SHA-256 is {sha}, its sidecar says {expected}: the file changed after it was written"
        )),
        Err(e) => Some(format!("{}: {e}", archive::sidecar_path(path).display())),
    };
    // A database's problem goes where the database is in the archive, so the first problem
    // still names the first bad entry; the checks are taken last to first for that.
    for (entry, kind, handle, at) in checks.into_iter().rev() {
        let (ok, result) = handle.join().unwrap_or_else(|_| (false, "the check crashed".into()));
        let problem = if kind == "sqlite" {
            (!ok).then(|| format!("`{entry}`: integrity_check of the restored database: {result}"))
        } else {
            (!ok).then(|| format!("`{entry}`: pg_restore --list: {result}"))
        };
        if let Some(p) = problem {
            report.problems.insert(at.min(report.problems.len()), p);
        }
        let list = if kind == "sqlite" {
            &mut report.sqlite
        } else {
            &mut report.postgres
        };
        list.insert(0, (entry, result));
    }
    if let Some(p) = sidecar_problem {
        report.problems.insert(0, p);
    }
    report.ok = report.problems.is_empty();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// A database check running in its own thread: (entry, kind, (ok, result), where its
/// problem goes in the list).
type DbCheck = (String, &'static str, std::thread::JoinHandle<(bool, String)>, usize);

/// Streams the tar entries, checking each against the manifest. Each database is copied to
/// `scratch` and checked in a thread of its own while the stream goes on. Returns the whole
/// file's (size, SHA-256) when the stream could be read to its end.
fn read_entries(
    path: &Path,
    identity: Option<&Path>,
    scratch: &Path,
    report: &mut VerifyReport,
    progress: &dyn Fn(Progress),
) -> (Option<(u64, String)>, Vec<DbCheck>) {
    let mut checks: Vec<DbCheck> = Vec::new();
    let mut extracted = 0usize;
    let fail = |report: &mut VerifyReport, after: &str, e: std::io::Error| {
        if super::crypt::is_key_error(&e) {
            report.unchecked += 1;
        }
        report.problems.push(format!("the archive cannot be read {after}: {e}"))
    };
    let mut ar = match open_hashing(path, identity) {
        Ok(a) => a,
        Err(e) => {
            fail(report, "at all", e);
            return (None, checks);
        }
    };
    let mut walk = Walk::new(&mut ar.stream);
    let first = first_entry(&mut walk, &mut || ar.raw.catch_up());
    let manifest = match first {
        Ok(None) => {
            report.problems.push("the archive is empty".into());
            return (None, checks);
        }
        Err(e) => {
            fail(report, "at its first entry", e);
            return (None, checks);
        }
        Ok(Some((name, json))) => match archive::parse_manifest(&name, &json) {
            Ok(m) => m,
            Err(e) => {
                report.problems.push(format!("{MANIFEST_NAME}: {e}"));
                return (None, checks);
            }
        },
    };
    progress(Progress::Total(manifest.data_bytes()));
    let db_roots: Vec<(&str, &'static str)> = manifest
        .sources
        .iter()
        .filter_map(|s| match s.kind.as_str() {
            "sqlite" => Some((s.root.as_str(), "sqlite")),
            "postgres" => Some((s.root.as_str(), "postgres")),
            _ => None,
        })
        .collect();
    let mut broken = false;
    let mut expected: HashMap<&str, &FileEntry> = manifest.files().map(|(_, f)| (f.path.as_str(), f)).collect();
    let mut last = String::from(MANIFEST_NAME);
    let mut places = super::extract::Places::default();
    loop {
        let item = match next_entry(&mut walk, &mut ar.raw) {
            Ok(None) => break,
            Ok(Some(item)) => item,
            Err(e) => {
                fail(report, &format!("after `{last}`"), e);
                broken = true;
                break;
            }
        };
        let name = item.name;
        let Some(want) = expected.remove(name.as_str()) else {
            report
                .problems
                .push(format!("`{name}` is in the archive but not in its manifest"));
            last = name;
            continue;
        };
        let kind = item.kind.unwrap_or(EntryKind::File);
        // What a restore would refuse to write, verify refuses to pass.
        if let Err(why) = places.admit(&name, want.kind) {
            report.problems.push(why);
        }
        if item.kind != Some(want.kind) {
            report.problems.push(format!(
                "`{name}` is a {} in the archive, a {:?} in the manifest",
                item.kind.map_or("special file".to_string(), |k| format!("{k:?}")),
                want.kind
            ));
        }
        if kind == EntryKind::File {
            let db_kind = db_roots.iter().find(|(r, _)| *r == name).map(|(_, k)| *k);
            let mut copy_error = None;
            let mut out = match db_kind {
                Some(_) => {
                    let p = scratch.join(format!("{extracted}.db"));
                    extracted += 1;
                    match std::fs::File::create(&p) {
                        Ok(f) => Some((p, f)),
                        Err(e) => {
                            copy_error = Some(e);
                            None
                        }
                    }
                }
                None => None,
            };
            let mut hasher = Lane::new();
            // The scratch copy failing (a full disk) loses that database's check, not the rest
            // of the archive: the stream goes on.
            let read_result = walk.data(item.size, |b| {
                ar.raw.hash_with(&mut hasher, b);
                progress(Progress::Advance(b.len() as u64));
                if let Some(e) = out.as_mut().and_then(|(_, o)| o.write_all(b).err()) {
                    if let Some((p, _)) = out.take() {
                        let _ = std::fs::remove_file(p);
                    }
                    copy_error = Some(e);
                }
                Ok(())
            });
            if let (Some(e), Some(kind)) = (copy_error.take(), db_kind) {
                let check = if kind == "sqlite" {
                    "integrity_check"
                } else {
                    "pg_restore --list"
                };
                report.unchecked += 1;
                report.problems.push(format!(
                    "`{name}`: not checked with {check}: its copy could not be written to {}: {e}",
                    scratch.display()
                ));
            }
            let n_total = match read_result {
                Ok(n) => n,
                Err(e) => {
                    fail(report, &format!("in `{name}`"), e);
                    broken = true;
                    break;
                }
            };
            if let (Some((file, mut o)), Some(kind)) = (out, db_kind)
                && o.flush().is_ok()
            {
                drop(o);
                let handle = std::thread::spawn(move || {
                    let result = match kind {
                        "sqlite" => {
                            let r = super::sqlite::integrity_check(&file, true);
                            (r == "ok", r)
                        }
                        _ => pg_list(&file),
                    };
                    // The copy goes as soon as it is checked, not with the rest at the end:
                    // freeing a large file's pages takes a while.
                    let _ = std::fs::remove_file(&file);
                    result
                });
                checks.push((name.clone(), kind, handle, report.problems.len()));
            }
            let got = hex(&hasher.finalize());
            if n_total != want.size {
                report.problems.push(format!(
                    "`{name}`: {n_total} bytes in the archive, {} in the manifest",
                    want.size
                ));
            } else if want.sha256.as_deref() != Some(got.as_str()) {
                report.problems.push(format!(
                    "`{name}`: content does not match the manifest (SHA-256 {got}, expected {})",
                    want.sha256.as_deref().unwrap_or("none")
                ));
            }
            report.files_checked += 1;
            report.data_bytes += n_total;
        }
        last = name;
    }
    let mut missing: Vec<&str> = expected.into_keys().collect();
    missing.sort_unstable();
    if broken {
        // Past a point the stream could not be read, nothing says whether they are there.
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(3).map(|m| format!("`{m}`")).collect();
            let more = missing.len().saturating_sub(shown.len());
            report.problems.push(format!(
                "{} {} of the manifest could not be checked: the archive cannot be read past that point ({}{})",
                missing.len(),
                if missing.len() == 1 { "entry" } else { "entries" },
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    } else {
        for m in missing {
            report
                .problems
                .push(format!("`{m}` is in the manifest but not in the archive"));
        }
    }
    report.manifest = Some(manifest);
    let whole = if broken {
        None
    } else {
        match finish_hashing(ar) {
            Ok(h) => Some(h),
            Err(e) => {
                fail(report, "at its end", e);
                None
            }
        }
    };
    (whole, checks)
}

/// Verifies the archive at `path` (decrypted with its target's identity) and records the
/// outcome. A recorded archive whose file is gone fails, and that is recorded too: it is
/// not an archive that can be restored any more.
pub fn verify_and_record(
    config: &Config,
    store: &Store,
    path: &Path,
    progress: &dyn Fn(Progress),
) -> Result<VerifyReport, BackupError> {
    let known = super::record_of(store, path)?;
    let report = if known.is_some() && !path.exists() {
        let mut gone = VerifyReport::nothing_yet(path);
        // Its directory gone with it: the disk is not mounted, which says nothing of this
        // archive. (An empty directory may be an empty mount point or archives removed: the
        // archive is gone as far as anyone can tell, and that is recorded.)
        let dir = path.parent().unwrap_or(Path::new("."));
        if !dir.is_dir() {
            gone.unchecked = 1;
            gone.problems.push(format!(
                "{}: the archive's file is gone, with its directory {} (is its disk mounted?)",
                path.display(),
                dir.display()
            ));
        } else {
            gone.problems
                .push(format!("{}: the archive's file is gone", path.display()));
        }
        gone
    } else {
        verify(path, super::crypt::identity_for(config, path).as_deref(), progress)?
    };
    let mut report = report;
    match record(config, store, &report, known) {
        // The verification stands on its own: what a read-only state (a diagnostic session's
        // sandbox) cannot keep is said, not turned into a failure of the archive.
        Err(BackupError::Store(e)) if e.is_read_only() && crate::exec::sandboxed() => {
            report.not_recorded = Some(format!("the state is read-only here ({e})"));
        }
        r => r?,
    }
    Ok(report)
}

/// Records the outcome with the archive (if the store knows it) and as an audit event.
fn record(
    config: &Config,
    store: &Store,
    report: &VerifyReport,
    known: Option<crate::store::BackupRecord>,
) -> Result<(), BackupError> {
    let path = report.archive.display().to_string();
    let detail = report.problems.first().cloned().unwrap_or_else(|| "ok".into());
    // Checks that could not be made for want of the key or of scratch space, and nothing
    // found wrong: the archive's last verification stands (the attempt is audited).
    let unchecked = !report.ok && report.unchecked == report.problems.len();
    let draft = Draft::new(
        "backup.verified",
        known.as_ref().map_or("-", |r| r.target.as_str()),
        serde_json::json!({ "archive": path, "ok": report.ok, "sha256": report.sha256, "problems": report.problems,
                            "files": report.files_checked, "duration_ms": report.duration_ms, "unchecked": unchecked }),
        &config.redactor,
    );
    match known {
        Some(r) if !unchecked => {
            store.mark_verified(r.id, &clock::to_text(clock::now()), report.ok, &detail, &draft)?
        }
        _ => {
            store.audit_append(&draft)?;
        }
    }
    Ok(())
}

/// `pg_restore --list` reads a custom-format dump's table of contents.
fn pg_list(file: &Path) -> (bool, String) {
    let spec = Spec::new(
        vec!["pg_restore".into(), "--list".into(), file.display().to_string()],
        Duration::from_secs(600),
    );
    match exec::run(&spec, &Cancel::default()) {
        Ok(out) if out.success() => {
            let entries = out
                .stdout
                .lines()
                .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
                .count();
            (true, format!("ok, {entries} entries"))
        }
        Ok(out) => (false, out.stderr.trim().to_string()),
        Err(e) => (false, e.to_string()),
    }
}
