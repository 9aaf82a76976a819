//! `backup drill`: restore an archive into scratch space, prove the data works, and measure
//! how long getting it back took (the recovery-time figure).
//!
//! Owns the timed phases (`sidecar`, `extract`, `sqlite`, `postgres`, `checks`) and the
//! evidence, written as JSON under `drill.evidence_dir` and kept in the store. Invariant: a
//! scratch PostgreSQL database is dropped after the drill.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::manifest::Manifest;
use super::{BackupError, Progress, archive, extract, pg};
use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::backups::{BackupTarget, Source};
use crate::exec::{self, Cancel, Spec};
use crate::store::Store;

const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub ms: u64,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub archive: PathBuf,
    pub target: String,
    pub host: String,
    pub started_at: String,
    pub sha256: String,
    pub ok: bool,
    /// Time to get the data back: sidecar + extract + database phases (each SQLite check
    /// runs while the rest is unpacked, so the phases can add up to more).
    pub recovery_ms: u64,
    /// Everything, checks included.
    pub total_ms: u64,
    pub files: usize,
    pub data_bytes: u64,
    pub phases: Vec<Phase>,
    pub checks: Vec<Phase>,
    pub evidence: Option<PathBuf>,
}

impl DrillReport {
    fn phase(&mut self, name: &str, started: Instant, result: Result<String, String>) -> bool {
        self.phase_ms(name, started.elapsed().as_millis() as u64, result)
    }

    fn phase_ms(&mut self, name: &str, ms: u64, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        self.phases.push(Phase {
            name: name.into(),
            ms,
            ok,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    }
}

/// Drops the scratch database when the drill ends, however it ends.
struct ScratchDb<'a> {
    admin: pg::Conn,
    name: String,
    env: &'a [(String, String)],
    dropped: bool,
}

impl ScratchDb<'_> {
    /// Drops the database now; false if it could not be.
    fn release(mut self) -> bool {
        self.dropped = true;
        match pg::dropdb(&self.admin, &self.name, self.env) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(db = self.name, error = %e, "could not drop the drill's scratch database; the next drill or create of the target tries again");
                false
            }
        }
    }
}

impl Drop for ScratchDb<'_> {
    fn drop(&mut self) {
        if !self.dropped
            && let Err(e) = pg::dropdb(&self.admin, &self.name, self.env)
        {
            tracing::warn!(db = self.name, error = %e, "could not drop the drill's scratch database");
        }
    }
}

/// Where a drill's scratch directory names the scratch databases it made, each written
/// before the database is created. A drill killed before it could drop them (`kill -9`, the
/// OOM killer, a reboot) leaves them to the next drill or create of the target, which drops
/// them when it sweeps the abandoned directory (see [`release_abandoned`]).
const SCRATCH_DATABASES: &str = ".databases.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct ScratchDatabases {
    target: String,
    databases: Vec<ScratchDatabase>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ScratchDatabase {
    /// The maintenance database's URL, without a password.
    server: String,
    name: String,
}

impl ScratchDatabases {
    /// What `dir` names, if anything.
    fn read(dir: &Path) -> Option<ScratchDatabases> {
        let bytes = std::fs::read(dir.join(SCRATCH_DATABASES)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let path = dir.join(SCRATCH_DATABASES);
        let text = serde_json::to_vec(self).map_err(|e| BackupError::io(&path, std::io::Error::other(e)))?;
        crate::util::file::write_atomic(&path, &text).map_err(|e| BackupError::io(&path, e))
    }
}

/// Names a scratch database in `dir` before it is created.
fn note_scratch_database(dir: &Path, target: &str, server: &str, name: &str) -> Result<(), BackupError> {
    let mut noted = ScratchDatabases::read(dir).unwrap_or_default();
    noted.target = target.to_string();
    noted.databases.push(ScratchDatabase {
        server: server.to_string(),
        name: name.to_string(),
    });
    noted.write(dir)
}

/// Takes back the name of a scratch database that could not be created: one of that name
/// that exists is someone else's, and no sweep may drop it.
fn unnote_scratch_database(dir: &Path, name: &str) {
    if let Some(mut noted) = ScratchDatabases::read(dir) {
        noted.databases.retain(|d| d.name != name);
        let _ = noted.write(dir);
    }
}

/// For [`super::scratch::sweep`]: drops the scratch databases an abandoned drill of
/// `target_name` made. The password comes from the target's source on the same server (the
/// record holds none). A directory whose databases could not all be dropped is emptied but
/// kept, holding what is left to drop, for the next sweep; one of another target (whose
/// name starts like this one's) is left to that target's sweeps.
pub(super) fn release_abandoned<'a>(
    config: &'a Config,
    target_name: &'a str,
    target: &'a BackupTarget,
) -> impl FnMut(&Path) -> bool + 'a {
    move |dir: &Path| {
        let Some(noted) = ScratchDatabases::read(dir) else {
            return true;
        };
        if noted.target != target_name {
            return false;
        }
        let servers: Vec<pg::Conn> = target
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Postgres(url) => Some(pg::Conn::parse(url).with_database("postgres")),
                _ => None,
            })
            .collect();
        let mut left = Vec::new();
        for db in noted.databases {
            let admin = servers
                .iter()
                .find(|c| c.url == db.server)
                .cloned()
                .unwrap_or_else(|| pg::Conn::parse(&db.server));
            match pg::dropdb(&admin, &db.name, &config.env) {
                Ok(()) => tracing::info!(db = db.name, "dropped the scratch database of a drill that was stopped"),
                Err(e) => {
                    tracing::warn!(db = db.name, error = %e, "could not drop the scratch database of a drill that was stopped; trying again next time");
                    left.push(db);
                }
            }
        }
        if left.is_empty() {
            return true;
        }
        let keep = ScratchDatabases {
            target: noted.target,
            databases: left,
        };
        if keep.write(dir).is_ok() {
            super::scratch::empty_but(dir, &[SCRATCH_DATABASES]);
        }
        false
    }
}

pub fn drill(
    config: &Config,
    store: &Store,
    target_name: &str,
    target: &BackupTarget,
    archive_path: &Path,
    progress: &dyn Fn(Progress),
) -> Result<DrillReport, BackupError> {
    let started = Instant::now();
    let now = clock::now();
    let mut r = DrillReport {
        archive: archive_path.to_path_buf(),
        target: target_name.to_string(),
        host: config.host.clone(),
        started_at: clock::to_text(now),
        sha256: String::new(),
        ok: false,
        recovery_ms: 0,
        total_ms: 0,
        files: 0,
        data_bytes: 0,
        phases: Vec::new(),
        checks: Vec::new(),
        evidence: None,
    };
    std::fs::create_dir_all(&target.dest).map_err(|e| BackupError::io(&target.dest, e))?;
    let scratch = super::scratch::create_with(
        &target.dest,
        &format!(".drill-{target_name}-"),
        &mut release_abandoned(config, target_name, target),
    )
    .map_err(|e| BackupError::io(&target.dest, e))?;

    progress(Progress::Phase("checking the archive's hash"));
    let t = Instant::now();
    let sidecar = crate::util::digest::hash_file(archive_path)
        .map_err(|e| e.to_string())
        .and_then(|(_, sha)| {
            r.sha256 = sha.clone();
            match archive::read_sidecar(archive_path) {
                Ok(expected) if expected == sha => Ok(format!("sha256 {sha}")),
                Ok(expected) => Err(format!("sha256 {sha}, the sidecar says {expected}")),
                Err(e) => Err(format!("sidecar: {e}")),
            }
        });
    let mut ok = r.phase("sidecar", t, sidecar);

    let mut extracted = None;
    // Each SQLite database is checked in a thread of its own as soon as it is unpacked (they
    // come first in the archive), while the rest is still being written.
    let mut db_checks: Vec<(String, std::thread::JoinHandle<(u64, String)>)> = Vec::new();
    if ok {
        progress(Progress::Phase("restoring into scratch"));
        let t = Instant::now();
        let mut check_when_written = |m: &Manifest, name: &str, file: &Path| {
            if m.sources.iter().any(|s| s.kind == "sqlite" && s.root == name) {
                let file = file.to_path_buf();
                let handle = std::thread::spawn(move || {
                    let t = Instant::now();
                    let result = super::sqlite::integrity_check(&file, true);
                    (t.elapsed().as_millis() as u64, result)
                });
                db_checks.push((name.to_string(), handle));
            }
        };
        let result = extract::extract_with(
            archive_path,
            target.identity_file.as_deref(),
            scratch.path(),
            extract::Modes::of(target.keep_special_modes),
            progress,
            &mut check_when_written,
        );
        ok = r.phase(
            "extract",
            t,
            match &result {
                // The bytes unpacked are the bytes whose hash was checked.
                Ok(x) if x.sha256 != r.sha256 => Err(format!(
                    "the archive changed while the drill read it: unpacked with SHA-256 {}",
                    x.sha256
                )),
                Ok(x) => Ok(format!("{} files, {} bytes", x.files, x.bytes)),
                Err(e) => Err(e.to_string()),
            },
        );
        extracted = result.ok();
    }
    // Every check ends before the scratch directory can go.
    let mut db_results: Vec<(String, (u64, String))> = db_checks
        .into_iter()
        .map(|(name, h)| (name, h.join().unwrap_or_else(|_| (0, "the check crashed".into()))))
        .collect();

    // Every scratch database stays until the checks have run, then each is dropped.
    let mut scratch_dbs: Vec<ScratchDb> = Vec::new();
    if let Some(x) = &extracted {
        r.files = x.files;
        r.data_bytes = x.bytes;
        for s in x.manifest.sources.iter().filter(|s| s.kind == "sqlite") {
            // A complete unpack wrote every database, and each was checked once written.
            let (ms, v) = match db_results.iter().position(|(n, _)| *n == s.root) {
                Some(i) => db_results.swap_remove(i).1,
                None => (0, "not unpacked".to_string()),
            };
            let result = match v {
                v if v == "ok" => Ok(format!("{}: integrity_check ok", s.root)),
                v => Err(format!("{}: integrity_check: {v}", s.root)),
            };
            ok &= r.phase_ms("sqlite", ms, result);
        }
        // Dumps go into a scratch database on the server they came from (the configured
        // URL carries the credentials; the manifest does not).
        let pg_sources: Vec<_> = target
            .sources
            .iter()
            .filter_map(|s| match s {
                Source::Postgres(url) => Some(url),
                _ => None,
            })
            .zip(x.manifest.sources.iter().filter(|s| s.kind == "postgres"))
            .collect();
        for (n, (url, s)) in pg_sources.into_iter().enumerate() {
            progress(Progress::Phase("restoring the database"));
            let t = Instant::now();
            let admin = pg::Conn::parse(url).with_database("postgres");
            let name = format!("runbook_drill_{}_{}_{n}", std::process::id(), now.as_second());
            let result = note_scratch_database(scratch.path(), target_name, &admin.url, &name)
                .and_then(|()| {
                    pg::createdb(&admin, &name, &config.env)
                        .inspect_err(|_| unnote_scratch_database(scratch.path(), &name))
                })
                .and_then(|()| {
                    let db = ScratchDb {
                        admin: admin.clone(),
                        name: name.clone(),
                        env: &config.env,
                        dropped: false,
                    };
                    let conn = admin.with_database(&name);
                    let restored = pg::restore(&conn, &scratch.path().join(&s.root), false, &config.env)
                        .and_then(|()| pg::table_count(&conn, &config.env));
                    scratch_dbs.push(db);
                    restored
                });
            let result = result
                .map(|tables| format!("{}: restored into {name}, {tables} tables", s.root))
                .map_err(|e| config.redactor.redact(&e.to_string()).into_owned());
            ok &= r.phase("postgres", t, result);
        }
    }
    r.recovery_ms = started.elapsed().as_millis() as u64;

    if ok {
        progress(Progress::Phase("running drill checks"));
        // The scratch databases' passwords are the checks' to use, not to print: what a check
        // says goes into the evidence.
        let passwords = crate::config::Redactor::new(scratch_dbs.iter().flat_map(|db| db.admin.env()).map(|(_, p)| p));
        for c in &target.drill.checks {
            let t = Instant::now();
            let mut env = vec![("RUNBOOK_DRILL_DIR".to_string(), scratch.path().display().to_string())];
            // The first dump's database as RUNBOOK_DRILL_DATABASE_URL (with its password in
            // PGPASSWORD), and each as RUNBOOK_DRILL_DATABASE_URL_<n> in source order.
            for (n, db) in scratch_dbs.iter().enumerate() {
                let conn = db.admin.with_database(&db.name);
                if n == 0 {
                    env.push(("RUNBOOK_DRILL_DATABASE_URL".into(), conn.url.clone()));
                    env.extend(conn.env());
                }
                env.push((format!("RUNBOOK_DRILL_DATABASE_URL_{}", n + 1), conn.url.clone()));
                // Each server's password, for a check that reaches one with another user.
                for (_, password) in conn.env() {
                    env.push((format!("RUNBOOK_DRILL_PGPASSWORD_{}", n + 1), password));
                }
            }
            let hide = |s: String| passwords.redact(&s).into_owned();
            let result = run_in(config, c.program.argv(), c.timeout.map(|d| d.0), scratch.path(), env)
                .map(hide)
                .map_err(hide);
            let ms = t.elapsed().as_millis() as u64;
            ok &= result.is_ok();
            r.checks.push(Phase {
                name: c.name.clone(),
                ms,
                ok: result.is_ok(),
                detail: result.unwrap_or_else(|e| e),
            });
        }
    }
    // A database that could not be dropped stays named in the scratch directory, which is
    // left for the next sweep to try again.
    let undropped: Vec<String> = scratch_dbs
        .into_iter()
        .filter_map(|db| {
            let name = db.name.clone();
            (!db.release()).then_some(name)
        })
        .collect();
    if !undropped.is_empty() {
        // Only those left to drop stay named.
        if let Some(mut noted) = ScratchDatabases::read(scratch.path()) {
            noted.databases.retain(|d| undropped.contains(&d.name));
            let _ = noted.write(scratch.path());
        }
        scratch.abandon(&[SCRATCH_DATABASES]);
    } else {
        super::remove_tree(scratch.path());
        drop(scratch);
    }
    r.ok = ok;
    r.total_ms = started.elapsed().as_millis() as u64;
    r.evidence = Some(write_evidence(target, target_name, now, &r)?);
    record(config, store, &r)?;
    Ok(r)
}

/// Runs `argv` in `cwd` with the configuration's environment and `env`, bounded by `timeout`
/// (default 10 minutes): the last lines of its output, redacted, or why it failed.
pub(super) fn run_in(
    config: &Config,
    argv: Vec<String>,
    timeout: Option<Duration>,
    cwd: &Path,
    env: Vec<(String, String)>,
) -> Result<String, String> {
    let mut spec = Spec::new(argv, timeout.unwrap_or(CHECK_TIMEOUT));
    spec.cwd = Some(cwd.to_path_buf());
    spec.env = config.env.clone();
    spec.env.extend(env);
    match exec::run(&spec, &Cancel::default()) {
        Ok(out) => {
            let text = config.redactor.redact(out.combined_output().trim()).into_owned();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            if out.success() {
                Ok(tail)
            } else {
                Err(out.summary_with(spec.timeout, &tail))
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

fn write_evidence(
    target: &BackupTarget,
    name: &str,
    at: jiff::Timestamp,
    r: &DrillReport,
) -> Result<PathBuf, BackupError> {
    evidence_file(&target.drill.evidence_dir, name, at, r.clone(), |r, p| {
        r.evidence = Some(p)
    })
}

/// Writes `report` as JSON into a new file `<name>-<UTC>[-n].json` of `dir`, after `mark`
/// put the file's own path into it.
pub(super) fn evidence_file<T: Serialize>(
    dir: &Path,
    name: &str,
    at: jiff::Timestamp,
    mut report: T,
    mark: impl FnOnce(&mut T, PathBuf),
) -> Result<PathBuf, BackupError> {
    std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    let stamp = at.strftime("%Y%m%dT%H%M%SZ").to_string();
    let mut path = dir.join(format!("{name}-{stamp}.json"));
    let mut n = 2;
    while path.exists() {
        path = dir.join(format!("{name}-{stamp}-{n}.json"));
        n += 1;
    }
    mark(&mut report, path.clone());
    let text = serde_json::to_string_pretty(&report).map_err(|e| BackupError::io(&path, std::io::Error::other(e)))?;
    crate::util::file::write_atomic(&path, text.as_bytes()).map_err(|e| BackupError::io(&path, e))?;
    Ok(path)
}

/// The names of the phases that failed.
pub fn failed<'a>(phases: impl IntoIterator<Item = &'a Phase>) -> Vec<&'a str> {
    phases.into_iter().filter(|p| !p.ok).map(|p| p.name.as_str()).collect()
}

fn record(config: &Config, store: &Store, r: &DrillReport) -> Result<(), BackupError> {
    let path = r.archive.display().to_string();
    let draft = Draft::new(
        "backup.drilled",
        &r.target,
        json!({ "archive": path, "ok": r.ok, "sha256": r.sha256, "recovery_ms": r.recovery_ms, "total_ms": r.total_ms,
                "evidence": r.evidence, "failed": failed(r.phases.iter().chain(&r.checks)) }),
        &config.redactor,
    );
    let at = r.started_at.clone();
    match super::record_of(store, &r.archive)? {
        Some(b) => {
            store.mark_drilled(b.id, &at, r.ok, r.recovery_ms as i64, &draft)?;
            if let Some((ok, detail)) = verified(r) {
                let draft = Draft::new(
                    "backup.verified",
                    &r.target,
                    json!({ "archive": path, "ok": ok, "sha256": r.sha256, "by": "drill", "detail": detail }),
                    &config.redactor,
                );
                store.mark_verified(b.id, &clock::to_text(clock::now()), ok, &detail, &draft)?;
            }
        }
        None => {
            store.audit_append(&draft)?;
        }
    }
    Ok(())
}

/// What a drill proves of the archive itself, as a verification: every phase passed (it
/// read every byte against the sidecar and the manifest, and checked each database more
/// deeply than verify does), or the data is bad (the file does not match its sidecar, or a
/// restored SQLite database fails `integrity_check`). Anything else (a scratch disk full, a
/// server away, a drill check) says nothing of the archive, and leaves its last
/// verification as it was.
fn verified(r: &DrillReport) -> Option<(bool, String)> {
    if let Some(p) = r
        .phases
        .iter()
        .find(|p| (p.name == "sidecar" || p.name == "sqlite") && !p.ok)
    {
        return Some((false, format!("drill: {}", p.detail)));
    }
    let read = ["sidecar", "extract"]
        .iter()
        .all(|n| r.phases.iter().any(|p| p.name == *n));
    (read && r.phases.iter().all(|p| p.ok)).then(|| (true, "ok (drill)".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_that_could_not_be_created_is_not_left_named_for_a_sweep_to_drop() {
        let dir = tempfile::tempdir().unwrap();
        let server = "postgres://postgres@127.0.0.1:5432/postgres";
        note_scratch_database(dir.path(), "main", server, "runbook_drill_1_2_0").unwrap();
        note_scratch_database(dir.path(), "main", server, "runbook_drill_1_2_1").unwrap();
        // The second name was taken already: someone else's database, not to be dropped.
        unnote_scratch_database(dir.path(), "runbook_drill_1_2_1");
        let noted = ScratchDatabases::read(dir.path()).unwrap();
        assert_eq!(noted.target, "main");
        let names: Vec<&str> = noted.databases.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["runbook_drill_1_2_0"]);
    }
}
