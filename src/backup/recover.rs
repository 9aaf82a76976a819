//! `runbook recover`: the host rebuild drill. From an empty root, as on a new VPS: install,
//! fetch the newest archive of every target (offsite or a directory), verify it, restore it
//! into the root, start the services (`recover.start`), run the validation (`recover.checks`),
//! and report the recovery time (RTO, per phase and in all) and the age of the data restored
//! (RPO, per target). Evidence JSON like the drills', and an audit event.
//!
//! Invariants: nothing outside the root is written but the evidence and the state's records
//! (every path of the configuration is taken under the root; `pre`/`post` hooks and
//! `restore_checks`, which act on the live host, do not run; a PostgreSQL source is left to
//! `backup drill`); without `execute`, nothing is written at all.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::drill::Phase;
use super::{BackupError, Progress};
use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::backups::Source;
use crate::store::Store;

/// Where the archives come from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Each target's `offsite:` store.
    Offsite,
    /// A directory holding `<target>-<UTC>.tar.zst` archives and their sidecars.
    Dir(PathBuf),
}

impl Origin {
    /// `offsite`, or a directory's path.
    pub fn parse(from: &str) -> Origin {
        match from {
            "offsite" => Origin::Offsite,
            dir => Origin::Dir(PathBuf::from(dir)),
        }
    }
}

/// What was (or would be) recovered of one target.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    pub target: String,
    /// The archive's name; `None` when none was found.
    pub archive: Option<String>,
    /// When the archive was made (its manifest).
    pub created: Option<String>,
    /// The age of the data restored, in seconds: now minus the archive's time.
    pub rpo_s: Option<i64>,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    pub root: PathBuf,
    pub from: Origin,
    pub executed: bool,
    pub ok: bool,
    pub host: String,
    pub started_at: String,
    /// Wall time of each phase: install, fetch, verify, restore, start, validate.
    pub phases: Vec<Phase>,
    pub targets: Vec<Recovered>,
    pub checks: Vec<Phase>,
    /// The whole rebuild, start to validated.
    pub rto_ms: u64,
    pub rto_goal_ms: Option<u64>,
    /// The plan, without `execute`: what each phase would do.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    pub evidence: Option<PathBuf>,
}

/// What the caller does to install runbook into the root (the composition layer owns it).
pub type Install<'a> = &'a dyn Fn(&Path) -> Result<String, String>;

/// An installer: into this root, what it did or why it could not.
pub type Installer = fn(&Path) -> Result<String, String>;

/// The installer the composition layer registered at start (`runbook install --root`), for
/// the scheduled drill.
static INSTALLER: std::sync::OnceLock<Installer> = std::sync::OnceLock::new();

pub fn set_installer(f: Installer) {
    let _ = INSTALLER.set(f);
}

/// Installs into `root` with the registered installer.
pub fn installed(root: &Path) -> Result<String, String> {
    match INSTALLER.get() {
        Some(f) => f(root),
        None => Err("no installer in this program".into()),
    }
}

/// `path` of the live host, inside `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The configuration as the new host in `root` has it: every path of the targets under the
/// root, and nothing that acts on the live host.
fn rebased(config: &Config, root: &Path) -> Config {
    let mut c = config.clone();
    for t in c.backups.values_mut() {
        t.dest = under(root, &t.dest);
        t.pre.clear();
        t.post.clear();
        t.restore_checks.clear();
        for s in &mut t.sources {
            match s {
                Source::Sqlite(p) => *p = under(root, p),
                Source::Dir(d) => d.path = under(root, &d.path),
                Source::Postgres(_) | Source::Command(_) => {}
            }
        }
    }
    c
}

/// The newest of `names` that are archives of `target`, by the time in their names.
fn newest<'n>(names: impl Iterator<Item = &'n str>, target: &str) -> Option<String> {
    names
        .filter(|n| super::is_archive_of(n, target) && (n.ends_with(".tar.zst") || n.ends_with(".tar.zst.age")))
        .max_by(|a, b| {
            super::offsite::newest_first(a.trim_end_matches(".age"))
                .cmp(&super::offsite::newest_first(b.trim_end_matches(".age")))
        })
        .map(str::to_string)
}

pub fn recover(
    config: &Config,
    store: &Store,
    root: &Path,
    from: Origin,
    execute: bool,
    install: Install,
    progress: &dyn Fn(Progress),
) -> Result<RecoverReport, BackupError> {
    let started = Instant::now();
    let now = clock::now();
    let mut r = RecoverReport {
        root: root.to_path_buf(),
        from: from.clone(),
        executed: execute,
        ok: true,
        host: config.host.clone(),
        started_at: clock::to_text(now),
        phases: Vec::new(),
        targets: Vec::new(),
        checks: Vec::new(),
        rto_ms: 0,
        rto_goal_ms: config.recover.rto_goal.map(|d| d.0.as_millis() as u64),
        plan: Vec::new(),
        evidence: None,
    };
    let new = rebased(config, root);

    // Which archive of each target: the newest where they come from.
    let mut chosen: Vec<(String, Option<String>)> = Vec::new();
    for name in config.backups.keys() {
        let found = match &from {
            Origin::Offsite => super::offsite::list(config, name)
                .map(|remote| newest(remote.iter().map(|r| r.name.as_str()), name))
                .map_err(|e| e.to_string()),
            Origin::Dir(dir) => std::fs::read_dir(dir)
                .map(|entries| {
                    let names: Vec<String> = entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    newest(names.iter().map(String::as_str), name)
                })
                .map_err(|e| format!("{}: {e}", dir.display())),
        };
        match found {
            Ok(archive) => chosen.push((name.clone(), archive)),
            Err(e) => {
                r.ok = false;
                r.targets.push(Recovered {
                    target: name.clone(),
                    archive: None,
                    created: None,
                    rpo_s: None,
                    ok: false,
                    detail: e,
                });
            }
        }
    }
    if !execute {
        r.plan.push(format!(
            "install runbook into {} (runbook install --root)",
            root.display()
        ));
        for (name, archive) in &chosen {
            let t = &new.backups[name];
            match archive {
                Some(a) => r.plan.push(format!(
                    "fetch {a} into {}, verify every byte, restore {} source(s) under {}",
                    t.dest.display(),
                    t.sources.len(),
                    root.display()
                )),
                None => r.plan.push(format!("{name}: no archive to fetch")),
            }
        }
        for p in &config.recover.start {
            r.plan.push(format!("start: {}", crate::util::display(&p.argv())));
        }
        for c in &config.recover.checks {
            r.plan.push(format!("validate: {}", c.name));
        }
        return Ok(r);
    }

    progress(Progress::Phase("installing"));
    let t = Instant::now();
    // The new host's configuration is this one (the install keeps a configuration it finds).
    let etc = root.join("etc/runbook");
    let placed = std::fs::create_dir_all(&etc)
        .and_then(|()| std::fs::copy(&config.source, etc.join("runbook.yaml")))
        .map_err(|e| format!("{}: {e}", etc.display()));
    r.ok &= r.phase("install", t, placed.and_then(|_| install(root)));

    progress(Progress::Phase("fetching archives"));
    let t = Instant::now();
    let mut fetched: Vec<(String, PathBuf)> = Vec::new();
    let mut problems = Vec::new();
    for (name, archive) in &chosen {
        let Some(archive) = archive else {
            problems.push(format!("{name}: no archive"));
            continue;
        };
        let dest = &new.backups[name].dest;
        let result = std::fs::create_dir_all(dest)
            .map_err(|e| format!("{}: {e}", dest.display()))
            .and_then(|()| match &from {
                Origin::Offsite => super::offsite::pull(config, store, name, Some(archive), Some(dest), progress)
                    .map_err(|e| e.to_string())
                    .and_then(|p| match p.failed.first() {
                        Some((a, why)) => Err(format!("{a}: {why}")),
                        None => Ok(()),
                    }),
                Origin::Dir(dir) => copy_archive(dir, archive, dest),
            });
        match result {
            Ok(()) => fetched.push((name.clone(), dest.join(archive))),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    r.ok &= r.phase(
        "fetch",
        t,
        outcome(&problems, || format!("{} archive(s)", fetched.len())),
    );

    progress(Progress::Phase("verifying"));
    let t = Instant::now();
    let mut verified = Vec::new();
    let mut problems = Vec::new();
    for (name, path) in fetched {
        let identity = new.backups[&name].identity_file.clone();
        match super::verify(&path, identity.as_deref(), progress) {
            Ok(v) if v.ok => {
                let created = v.manifest.as_ref().map(|m| m.created.clone());
                verified.push((name, path, created));
            }
            Ok(v) => problems.push(format!("{name}: {}", v.problems.join("; "))),
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    r.ok &= r.phase(
        "verify",
        t,
        outcome(&problems, || format!("{} archive(s), every byte", verified.len())),
    );

    progress(Progress::Phase("restoring"));
    let t = Instant::now();
    let mut problems = Vec::new();
    for (name, path, created) in verified {
        let target = &new.backups[&name];
        // A database server is the live host's, wherever the root is: its dump is not loaded
        // here (`backup drill` restores it into a scratch database).
        let mut skipped = 0;
        let outcome = super::restore::plan(&new, &name, target, &path).and_then(|mut plan| {
            let before = plan.steps.len();
            plan.steps.retain(|s| s.kind != "postgres");
            skipped = before - plan.steps.len();
            super::restore::execute(&new, store, target, plan, progress, &|_: &[String]| Vec::new())
        });
        let left = if skipped > 0 {
            format!("; {skipped} PostgreSQL dump(s) not loaded (the server is the live host's)")
        } else {
            String::new()
        };
        let (ok, detail) = match outcome {
            Ok(rep) if rep.ok => (true, format!("{} step(s) restored{left}", rep.plan.steps.len())),
            Ok(rep) if !rep.plan.problems.is_empty() => (false, rep.plan.problems.join("; ")),
            Ok(rep) => (false, rep.log.last().cloned().unwrap_or_default()),
            Err(e) => (false, e.to_string()),
        };
        if !ok {
            problems.push(format!("{name}: {detail}"));
        }
        let rpo_s = created
            .as_deref()
            .and_then(clock::from_text)
            .map(|c| now.as_second() - c.as_second());
        r.targets.push(Recovered {
            target: name.clone(),
            archive: path.file_name().map(|f| f.to_string_lossy().into_owned()),
            created,
            rpo_s,
            ok,
            detail,
        });
    }
    r.ok &= r.phase(
        "restore",
        t,
        outcome(&problems, || format!("{} target(s)", r.targets.len())),
    );

    if r.ok {
        progress(Progress::Phase("starting"));
        let t = Instant::now();
        let mut result = Ok(format!("{} command(s)", config.recover.start.len()));
        for p in &config.recover.start {
            if let Err(e) = super::drill::run_in(config, p.argv(), None, root, root_env(root)) {
                result = Err(format!("{}: {e}", crate::util::display(&p.argv())));
                break;
            }
        }
        r.ok &= r.phase("start", t, result);
    }
    if r.ok {
        progress(Progress::Phase("validating"));
        let t = Instant::now();
        for c in &config.recover.checks {
            let tc = Instant::now();
            let result = super::drill::run_in(config, c.program.argv(), c.timeout.map(|d| d.0), root, root_env(root));
            r.ok &= result.is_ok();
            r.checks.push(Phase {
                name: c.name.clone(),
                ms: tc.elapsed().as_millis() as u64,
                ok: result.is_ok(),
                detail: result.unwrap_or_else(|e| e),
            });
        }
        let failed = r.checks.iter().filter(|c| !c.ok).count();
        r.phase(
            "validate",
            t,
            if failed == 0 {
                Ok(format!("{} check(s)", r.checks.len()))
            } else {
                Err(format!("{failed} check(s) failed"))
            },
        );
    }
    r.rto_ms = started.elapsed().as_millis() as u64;
    if r.rto_goal_ms.is_some_and(|g| r.rto_ms > g) {
        r.ok = false;
    }
    r.evidence = Some(write_evidence(config, now, &r)?);
    let draft = Draft::new(
        "recover.drilled",
        &root.display().to_string(),
        json!({ "root": root, "ok": r.ok, "rto_ms": r.rto_ms, "rto_goal_ms": r.rto_goal_ms, "evidence": r.evidence,
                "targets": r.targets.iter().map(|t| json!({ "target": t.target, "archive": t.archive, "rpo_s": t.rpo_s, "ok": t.ok })).collect::<Vec<_>>(),
                "failed": super::drill::failed(r.phases.iter().chain(&r.checks)) }),
        &config.redactor,
    );
    store.audit_append(&draft)?;
    Ok(r)
}

impl RecoverReport {
    fn phase(&mut self, name: &str, started: Instant, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        self.phases.push(Phase {
            name: name.to_string(),
            ms: started.elapsed().as_millis() as u64,
            ok,
            detail: result.unwrap_or_else(|e| e),
        });
        ok
    }
}

/// A phase's outcome: `ok()` when nothing went wrong, else every problem.
fn outcome(problems: &[String], ok: impl FnOnce() -> String) -> Result<String, String> {
    if problems.is_empty() {
        Ok(ok())
    } else {
        Err(problems.join("; "))
    }
}

fn root_env(root: &Path) -> Vec<(String, String)> {
    vec![("RUNBOOK_RECOVER_ROOT".to_string(), root.display().to_string())]
}

/// Copies `archive` and its sidecar from `dir` into `dest`.
fn copy_archive(dir: &Path, archive: &str, dest: &Path) -> Result<(), String> {
    for name in [archive.to_string(), format!("{archive}.sha256")] {
        let from = dir.join(&name);
        if !from.exists() && name.ends_with(".sha256") {
            continue;
        }
        std::fs::copy(&from, dest.join(&name)).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    Ok(())
}

fn write_evidence(config: &Config, at: jiff::Timestamp, r: &RecoverReport) -> Result<PathBuf, BackupError> {
    super::drill::evidence_file(&config.recover.evidence_dir, "recover", at, r.clone(), |r, p| {
        r.evidence = Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_archive_is_found_by_the_time_in_its_name() {
        let names = [
            "main-20261201T030000Z.tar.zst",
            "main-20261203T030000Z.tar.zst.sha256",
            "main-20261202T030000Z.tar.zst",
            "main-20261202T030000Z-2.tar.zst",
            "other-20261209T030000Z.tar.zst",
        ];
        assert_eq!(
            newest(names.iter().copied(), "main").as_deref(),
            Some("main-20261202T030000Z-2.tar.zst")
        );
        assert_eq!(newest(names.iter().copied(), "none"), None);
    }

    #[test]
    fn every_path_of_a_target_is_taken_under_the_root() {
        assert_eq!(under(Path::new("/r"), Path::new("/srv/db")), PathBuf::from("/r/srv/db"));
        assert_eq!(under(Path::new("/r"), Path::new("rel/x")), PathBuf::from("/r/rel/x"));
    }
}
