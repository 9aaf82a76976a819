//! `backup restore`: put an archive's data back where it came from, safely.
//!
//! Owns the plan (without `--execute`) and carrying it out: preflight, `pre` commands, the
//! safety copy, the archive unpacked to staging and checked, each source moved into place,
//! `post` commands, `restore_checks`. Invariant: nothing is touched if the preflight fails.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;

use super::{BackupError, Progress, archive, extract, pg};
use crate::audit::Draft;
use crate::clock;
use crate::config::backups::{BackupTarget, Source};
use crate::config::{Config, Program};
use crate::exec::{self, Cancel, Spec};
use crate::store::{CheckResult, Store};

const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// sqlite, dir, postgres or command.
    pub kind: String,
    /// Path inside the archive.
    pub from: String,
    /// What is replaced: a path, or a database URL without its password.
    pub to: String,
    /// What happens, in words.
    pub action: String,
    /// Where the current data is copied first.
    pub safety: Option<String>,
    /// runbook's own files and directories inside a replaced tree (its state file, evidence,
    /// archives, audit archive, incident notes): they stay as they are, live.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keeps: Vec<String>,
    /// The configured source the data goes back to (its index under `sources:`).
    #[serde(skip)]
    pub source: Option<usize>,
    /// The bytes of data it puts back.
    #[serde(skip)]
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub archive: PathBuf,
    pub target: String,
    pub steps: Vec<Step>,
    pub safety_dir: PathBuf,
    pub pre: Vec<String>,
    pub post: Vec<String>,
    pub checks: Vec<String>,
    /// Found by the preflight; a plan with problems is not executed.
    pub problems: Vec<String>,
    /// The archive's SHA-256 as the preflight read it (matching its sidecar).
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub plan: RestorePlan,
    pub executed: bool,
    pub ok: bool,
    /// What happened, in order.
    pub log: Vec<String>,
    pub duration_ms: u64,
}

fn argv_text(p: &Program) -> String {
    crate::util::display(&p.argv())
}

/// Whether files can be created in directory `dir`: tried, with a probe file removed at
/// once (permission bits say nothing for root, nor for a read-only mount).
fn writable(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let probe = dir.join(format!(".runbook-restore-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
    }
}

/// Whether the filesystems the restore writes to have room for it (`plan.problems` says which
/// has not): the staging copy of everything next to the archives, with each database's safety
/// copy; and, on a filesystem other than that, each database or tree moved into place (a copy
/// there, not a rename). Checked before anything is replaced, as a disk that fills halfway
/// would leave the data partly restored.
fn room(plan: &mut RestorePlan) {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| existing_ancestor(p).and_then(|a| std::fs::metadata(&a).ok().map(|m| (m.dev(), a)));
    let Some((staging_dev, staging_at)) = dev(&plan.safety_dir) else {
        return;
    };
    // (device, a directory on it, bytes needed, for what)
    let mut needs: Vec<(u64, PathBuf, u64, Vec<String>)> = vec![(
        staging_dev,
        staging_at,
        plan.steps.iter().map(|s| s.bytes).sum(),
        vec!["the staging copy".into()],
    )];
    let mut add = |dev: u64, at: PathBuf, bytes: u64, what: String| match needs.iter_mut().find(|n| n.0 == dev) {
        Some(n) => {
            n.2 += bytes;
            n.3.push(what);
        }
        None => needs.push((dev, at, bytes, vec![what])),
    };
    for s in plan.steps.iter().filter(|s| s.kind == "sqlite" || s.kind == "dir") {
        let to = PathBuf::from(&s.to);
        if s.kind == "sqlite"
            && let Ok(m) = std::fs::metadata(&to)
        {
            add(
                staging_dev,
                PathBuf::new(),
                m.len(),
                format!("the safety copy of {}", to.display()),
            );
        }
        if let Some((d, at)) = dev(&to).filter(|(d, _)| *d != staging_dev) {
            add(d, at, s.bytes, to.display().to_string());
        }
    }
    for (_, at, bytes, whats) in needs {
        let Ok(fs) = rustix::fs::statvfs(&at) else {
            continue;
        };
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if bytes > free {
            let mib = |b: u64| b as f64 / 1048576.0;
            plan.problems.push(format!(
                "not enough room on the filesystem of {}: {:.1} MiB needed, {:.1} MiB free (for {})",
                at.display(),
                mib(bytes),
                mib(free),
                whats.join(", ")
            ));
        }
    }
}

/// The nearest existing ancestor of `path` (itself if it exists).
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let mut p = Some(path);
    while let Some(at) = p {
        if at.exists() {
            return Some(at.to_path_buf());
        }
        p = at.parent();
    }
    None
}

/// Plans a restore of `archive_path` (a target's archive) and runs the preflight.
pub fn plan(
    config: &Config,
    name: &str,
    target: &BackupTarget,
    archive_path: &Path,
) -> Result<RestorePlan, BackupError> {
    let manifest = archive::read_manifest(archive_path, target.identity_file.as_deref())
        .map_err(|e| BackupError::io(archive_path, e))?;
    let stamp = clock::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let safety_dir = target.dest.join("safety").join(format!("{name}-{stamp}"));
    let mut plan = RestorePlan {
        archive: archive_path.to_path_buf(),
        target: name.to_string(),
        steps: Vec::new(),
        safety_dir: safety_dir.clone(),
        pre: target.pre.iter().map(argv_text).collect(),
        post: target.post.iter().map(argv_text).collect(),
        checks: target.restore_checks.clone(),
        problems: Vec::new(),
        sha256: None,
    };
    if manifest.target != name {
        plan.problems.push(format!(
            "the archive belongs to target `{}`, not `{name}`",
            manifest.target
        ));
    }
    let found = match_sources(config, &manifest.sources, &target.sources);
    for (i, s) in manifest.sources.iter().enumerate() {
        let index = found[i].map(|(j, _)| j);
        let configured = index.and_then(|j| target.sources.get(j));
        // Matched by position and name, not by origin: the plan says where it came from.
        let moved = if found[i].is_some_and(|(_, by_origin)| !by_origin) {
            format!(" (archived from {})", s.origin)
        } else {
            String::new()
        };
        let bytes = s.files.iter().map(|f| f.size).sum();
        let step = match (s.kind.as_str(), configured) {
            ("sqlite", Some(Source::Sqlite(path))) => Step {
                kind: s.kind.clone(),
                from: s.root.clone(),
                to: path.display().to_string(),
                action: format!("replace the database file (its -wal and -shm are removed){moved}"),
                safety: Some(
                    safety_dir
                        .join(format!("{i}-{}", file_name(path)))
                        .display()
                        .to_string(),
                ),
                keeps: Vec::new(),
                source: index,
                bytes,
            },
            ("dir", Some(Source::Dir(d))) => Step {
                kind: s.kind.clone(),
                from: s.root.clone(),
                to: d.path.display().to_string(),
                action: format!("replace the directory tree{moved}"),
                safety: Some(sibling(&d.path, &format!(".pre-restore-{stamp}")).display().to_string()),
                keeps: own_paths_inside(config, &d.path),
                source: index,
                bytes,
            },
            ("postgres", Some(Source::Postgres(url))) => Step {
                kind: s.kind.clone(),
                from: s.root.clone(),
                to: config.redactor.redact(&pg::Conn::parse(url).url).into_owned(),
                action: format!("pg_restore --clean --if-exists into the database{moved}"),
                safety: Some(safety_dir.join(format!("{i}-postgres.dump")).display().to_string()),
                keeps: Vec::new(),
                source: index,
                bytes,
            },
            ("command", _) => Step {
                kind: s.kind.clone(),
                from: s.root.clone(),
                to: safety_dir.join("command").display().to_string(),
                action: "not restored automatically: the dump is left there to load by hand".into(),
                safety: None,
                keeps: Vec::new(),
                source: None,
                bytes,
            },
            (kind, _) => {
                plan.problems.push(format!(
                    "source {} of the archive ({kind} {}) matches no source of target `{name}` as configured now (by origin, or by position and name)",
                    i + 1,
                    s.origin,
                ));
                continue;
            }
        };
        plan.steps.push(step);
    }
    preflight(&mut plan);
    Ok(plan)
}

/// Which configured source each of the archive's sources goes back to. First by origin
/// (the path, or the URL without its password, recorded when the archive was made), so
/// sources reordered in the config still go home; then, for a source whose origin is no
/// longer configured (the data moved), the configured source at the same position if it is
/// of the same kind and its name is the same (`sqlite/app.db` and `/new/place/app.db`).
/// Anything else matches nothing. Each match is (configured index, whether by origin).
fn match_sources(
    config: &Config,
    archived: &[super::manifest::SourceEntry],
    configured: &[Source],
) -> Vec<Option<(usize, bool)>> {
    use super::source::{kind, origin, root};
    let origins: Vec<String> = configured.iter().map(|c| origin(config, c)).collect();
    let mut claimed = vec![false; configured.len()];
    let mut matched = vec![None; archived.len()];
    for (i, s) in archived.iter().enumerate() {
        if let Some(j) =
            (0..configured.len()).find(|&j| !claimed[j] && kind(&configured[j]) == s.kind && origins[j] == s.origin)
        {
            claimed[j] = true;
            matched[i] = Some((j, true));
        }
    }
    for (i, s) in archived.iter().enumerate() {
        if matched[i].is_some() || s.kind == "command" || i >= configured.len() || claimed[i] {
            continue;
        }
        let c = &configured[i];
        if kind(c) == s.kind && root(c) == s.root {
            claimed[i] = true;
            matched[i] = Some((i, false));
        }
    }
    matched
}

/// runbook's own files and directories: the state file with its journal files and audit
/// archive, each target's archives and drill evidence, `evidence/` beside runbook.yaml, the
/// incident notes. A restore never replaces them as part of a larger tree; a source that
/// names one (or lies inside one) restores it.
fn own_paths(config: &Config) -> Vec<PathBuf> {
    let state = &config.state.path;
    let mut own = vec![state.clone(), crate::store::archive::default_dir(state)];
    for ext in ["-wal", "-shm", "-journal"] {
        let mut p = state.as_os_str().to_owned();
        p.push(ext);
        own.push(PathBuf::from(p));
    }
    if let Some(base) = config.source.parent() {
        own.push(base.join("evidence"));
    }
    own.extend(config.incidents.dir.clone());
    for t in config.backups.values() {
        own.push(t.dest.clone());
        own.push(t.drill.evidence_dir.clone());
    }
    own
}

/// The own paths inside `tree`, relative to it, outermost only, in order.
fn own_paths_inside(config: &Config, tree: &Path) -> Vec<String> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let tree = real(tree);
    let own: Vec<PathBuf> = own_paths(config)
        .iter()
        .map(|p| match (p.parent(), p.file_name()) {
            (Some(dir), Some(name)) => real(dir).join(name),
            _ => real(p),
        })
        .collect();
    // A tree that is runbook's own (or inside it) is named: all of it is restored.
    if own.iter().any(|p| tree.starts_with(p)) {
        return Vec::new();
    }
    let mut inside: Vec<PathBuf> = own
        .iter()
        .filter_map(|p| p.strip_prefix(&tree).ok().map(Path::to_path_buf))
        .collect();
    inside.sort();
    inside.dedup();
    let outer: Vec<&PathBuf> = inside
        .iter()
        .filter(|p| !inside.iter().any(|q| q != *p && p.starts_with(q)))
        .collect();
    outer.iter().map(|p| p.display().to_string()).collect()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Everything that can be known before touching anything.
fn preflight(plan: &mut RestorePlan) {
    match archive::against_sidecar(&plan.archive) {
        Ok(sha) => plan.sha256 = Some(sha),
        Err(why) => plan.problems.push(why),
    }
    // Each directory that must be writable, with what needs it, once each.
    let mut must_write: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut need = |dir: PathBuf, what: String| match must_write.iter_mut().find(|(d, _)| *d == dir) {
        Some((_, whats)) => whats.push(what),
        None => must_write.push((dir, vec![what])),
    };
    need(plan.safety_dir.clone(), "the safety copies".into());
    for s in &plan.steps {
        match s.kind.as_str() {
            "sqlite" | "dir" => {
                let to = PathBuf::from(&s.to);
                // Replacing needs the parent directory (rename, new files) writable.
                need(
                    to.parent().map(Path::to_path_buf).unwrap_or(to.clone()),
                    to.display().to_string(),
                );
                if s.kind == "dir" && to.exists() {
                    need(to.clone(), format!("what is in {}", to.display()));
                }
            }
            _ => {}
        }
    }
    for (dir, whats) in must_write {
        let whats = whats.join(", ");
        match existing_ancestor(&dir) {
            Some(a) => {
                if let Err(e) = writable(&a) {
                    plan.problems.push(format!("{e} (needed for {whats})"));
                }
            }
            None => plan.problems.push(format!(
                "{}: no existing parent directory (needed for {whats})",
                dir.display()
            )),
        }
    }
    room(plan);
}

fn run_hook(config: &Config, p: &Program, what: &str, log: &mut Vec<String>) -> Result<(), String> {
    let mut spec = Spec::new(p.argv(), HOOK_TIMEOUT);
    spec.env = config.env.clone();
    spec.cwd = Some(config.base_dir());
    let shown = config.redactor.redact(&argv_text(p)).into_owned();
    match exec::run(&spec, &Cancel::default()) {
        Ok(out) if out.success() => {
            log.push(format!("{what}: {shown}: ok"));
            Ok(())
        }
        Ok(out) => Err(format!(
            "{what} `{shown}` failed: {}",
            out.summary_with(spec.timeout, &config.redactor.redact(&out.stderr))
        )),
        Err(e) => Err(format!("{what} `{shown}`: {e}")),
    }
}

/// Probes the named checks (`restore_checks`) once the data is back; the caller owns probing.
pub type Probe<'a> = &'a dyn Fn(&[String]) -> Vec<CheckResult>;

/// Executes a plan whose preflight found nothing. Stops at the first failure, saying what
/// was already done (the safety copies stay where the plan says).
pub fn execute(
    config: &Config,
    store: &Store,
    target: &BackupTarget,
    plan: RestorePlan,
    progress: &dyn Fn(Progress),
    probe: Probe,
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    let mut report = RestoreReport {
        plan,
        executed: false,
        ok: false,
        log: Vec::new(),
        duration_ms: 0,
    };
    if !report.plan.problems.is_empty() {
        return Ok(report);
    }
    report.executed = true;
    let result = run_steps(config, target, &mut report, progress, probe);
    if let Err(e) = &result {
        report.log.push(format!("FAILED: {e}"));
    }
    report.ok = result.is_ok();
    report.duration_ms = started.elapsed().as_millis() as u64;
    // The data has been put back (or partly) by now: a state file that cannot take the
    // audit event must not hide what was done, so the report still comes back, saying so.
    if let Err(e) = store.audit_append(&Draft::new(
        "backup.restored",
        &report.plan.target,
        json!({ "archive": report.plan.archive, "ok": report.ok, "steps": report.plan.steps, "log": report.log,
                "safety_dir": report.plan.safety_dir, "duration_ms": report.duration_ms }),
        &config.redactor,
    )) {
        report
            .log
            .push(format!("the restore could not be recorded in the audit log: {e}"));
        report.ok = false;
    }
    Ok(report)
}

fn run_steps(
    config: &Config,
    target: &BackupTarget,
    report: &mut RestoreReport,
    progress: &dyn Fn(Progress),
    probe: Probe,
) -> Result<(), String> {
    let plan = report.plan.clone();
    let log = &mut report.log;
    std::fs::create_dir_all(&plan.safety_dir).map_err(|e| format!("{}: {e}", plan.safety_dir.display()))?;
    let staging = plan.safety_dir.join("staging");
    let mut replaced = false;
    let result = target
        .pre
        .iter()
        .try_for_each(|p| run_hook(config, p, "pre", log))
        .and_then(|()| put_back(config, target, &plan, &staging, log, progress, &mut replaced));
    // The staging copy is as large as the data: it goes whatever happened.
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = result {
        if replaced {
            return Err(format!(
                "{e}; the data is partly replaced (the safety copies are in {} and beside each directory), so the post hooks were not run",
                plan.safety_dir.display()
            ));
        }
        // Nothing was replaced: what `pre` stopped is started again, and a safety directory
        // that holds nothing goes (one with a copy made before the failure stays).
        let _ = std::fs::remove_dir(&plan.safety_dir);
        for p in &target.post {
            if let Err(post) = run_hook(config, p, "post", log) {
                log.push(post);
            }
        }
        return Err(format!("{e}; nothing was replaced, and the post hooks ran"));
    }
    // Every post hook runs, even after one fails: `start db` failing must not leave the
    // application stopped as well.
    let failed_posts: Vec<String> = target
        .post
        .iter()
        .filter_map(|p| run_hook(config, p, "post", log).err())
        .collect();
    if !failed_posts.is_empty() {
        return Err(format!("the data is back, but {}", failed_posts.join("; ")));
    }
    if !target.restore_checks.is_empty() {
        let outcomes = probe(&target.restore_checks);
        let mut failed = Vec::new();
        for o in outcomes {
            log.push(format!(
                "check {}: {} ({})",
                o.check,
                if o.ok { "ok" } else { "FAILED" },
                o.detail
            ));
            if !o.ok {
                failed.push(o.check);
            }
        }
        if !failed.is_empty() {
            return Err(format!("checks failed after the restore: {}", failed.join(", ")));
        }
    }
    Ok(())
}

/// Unpacks the archive into `staging`, checks what it holds, then replaces the live data
/// step by step. `replaced` turns true just before the first live data is touched.
fn put_back(
    config: &Config,
    target: &BackupTarget,
    plan: &RestorePlan,
    staging: &Path,
    log: &mut Vec<String>,
    progress: &dyn Fn(Progress),
    replaced: &mut bool,
) -> Result<(), String> {
    // Unpack next to the archives first: a bad archive fails here, before any data is replaced.
    progress(Progress::Phase("unpacking into staging"));
    std::fs::create_dir_all(staging).map_err(|e| format!("{}: {e}", staging.display()))?;
    let x = extract::extract(
        &plan.archive,
        target.identity_file.as_deref(),
        staging,
        extract::Modes::of(target.keep_special_modes),
        progress,
    )
    .map_err(|e| e.to_string())?;
    // The bytes unpacked are the bytes the preflight checked, not a file swapped since.
    if plan.sha256.as_deref() != Some(x.sha256.as_str()) {
        return Err(format!(
            "the archive changed after the preflight: it was unpacked with SHA-256 {}, the preflight read {}",
            x.sha256,
            plan.sha256.as_deref().unwrap_or("none")
        ));
    }
    log.push(format!(
        "unpacked {} files ({} bytes) into {}",
        x.files,
        x.bytes,
        staging.display()
    ));
    // Each source is what its kind says, a real file or directory in the staging tree (not a
    // link to somewhere else on the host), before anything is replaced.
    for step in &plan.steps {
        // Every name on the way, not only the last: a root through a link entry (`dir/l/x`
        // with `dir/l` a symlink to elsewhere) would reach outside the staging tree.
        let mut at = staging.to_path_buf();
        for c in Path::new(&step.from).components() {
            at.push(c);
            let m = std::fs::symlink_metadata(&at).map_err(|e| format!("`{}` in the archive: {e}", step.from))?;
            if m.file_type().is_symlink() {
                return Err(format!(
                    "`{}` in the archive goes through a link (`{}`)",
                    step.from,
                    at.strip_prefix(staging).unwrap_or(&at).display()
                ));
            }
        }
        let staged = staging.join(&step.from);
        let meta = std::fs::symlink_metadata(&staged).map_err(|e| format!("`{}` in the archive: {e}", step.from))?;
        let (fits, what) = match step.kind.as_str() {
            "dir" => (meta.is_dir(), "directory"),
            _ => (meta.file_type().is_file(), "regular file"),
        };
        if !fits {
            return Err(format!("`{}` in the archive is not a {what}", step.from));
        }
    }

    for (i, step) in plan.steps.iter().enumerate() {
        progress(Progress::Phase("putting the data back"));
        let staged = staging.join(&step.from);
        match step.kind.as_str() {
            "sqlite" => {
                let live = PathBuf::from(&step.to);
                if live.exists() {
                    let safety = PathBuf::from(step.safety.as_deref().unwrap_or_default());
                    // A database a running application holds locked waits here (up to 30 s):
                    // the phase says what for.
                    progress(Progress::Phase(
                        "copying the current database aside (waiting while another process holds it locked)",
                    ));
                    match super::sqlite::backup_copy(&live, &safety) {
                        Ok(_) => log.push(format!("safety copy of {} in {}", live.display(), safety.display())),
                        // A damaged database, the usual reason to restore, or one a crash
                        // left with a hot journal, cannot be read through SQLite: its files
                        // are kept as they are instead. One that a running application holds
                        // locked stops the restore here, before anything is replaced.
                        Err(e) if !super::sqlite::is_locked(&e) => {
                            let _ = std::fs::remove_file(&safety);
                            let copied = copy_database_files(&live, &safety)
                                .map_err(|c| format!("{e}; and copying its files as they are: {c}"))?;
                            log.push(format!(
                                "{} could not be read through SQLite ({e}): its files ({}) were copied as they are to {}",
                                live.display(),
                                copied.join(", "),
                                safety.display()
                            ));
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                } else if let Some(parent) = live.parent().filter(|p| !p.as_os_str().is_empty()) {
                    // A new host: the database's directory may not be there yet.
                    std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
                }
                let tmp = live.with_extension("restore-tmp");
                std::fs::copy(&staged, &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
                // The owner it was archived with (unpacked as such by root), not the
                // restoring user's: the application must still be able to write to it.
                own_like(&staged, &tmp);
                std::fs::File::open(&tmp)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| format!("{}: {e}", tmp.display()))?;
                *replaced = true;
                std::fs::rename(&tmp, &live).map_err(|e| format!("{}: {e}", live.display()))?;
                for ext in ["-wal", "-shm", "-journal"] {
                    let mut p = live.as_os_str().to_owned();
                    p.push(ext);
                    let _ = std::fs::remove_file(PathBuf::from(p));
                }
                log.push(format!("restored {} from {}", live.display(), step.from));
            }
            "dir" => {
                let live = PathBuf::from(&step.to);
                // The new tree is put next to the live one first (copied, when the archives
                // are on another filesystem), so the live one is only moved aside once the
                // whole new one is there.
                let next = sibling(&live, ".restore-tmp");
                clear(&next);
                if let Err(e) = move_tree(&staged, &next) {
                    clear(&next);
                    return Err(format!("{}: {e}", next.display()));
                }
                let safety = PathBuf::from(step.safety.as_deref().unwrap_or_default());
                let linked = match keep_own(&live, &next, &step.keeps) {
                    Ok(linked) => linked,
                    Err(e) => {
                        give_back_own(&next, &live, &step.keeps);
                        clear(&next);
                        return Err(e);
                    }
                };
                if live.exists() {
                    if let Err(e) = std::fs::rename(&live, &safety) {
                        // Nothing moved but runbook's own directories: they go back.
                        give_back_own(&next, &live, &step.keeps);
                        clear(&next);
                        return Err(format!("moving {} aside: {e}", live.display()));
                    }
                    log.push(format!("moved the current {} to {}", live.display(), safety.display()));
                }
                *replaced = true;
                std::fs::rename(&next, &live).map_err(|e| format!("{}: {e}", live.display()))?;
                // The old tree keeps no second name of a live file.
                for rel in &linked {
                    let _ = std::fs::remove_file(safety.join(rel));
                }
                log.push(format!("restored {} from {}", live.display(), step.from));
                if !step.keeps.is_empty() {
                    log.push(format!("kept runbook's own {} as they were", step.keeps.join(", ")));
                }
            }
            "postgres" => {
                let Some(Source::Postgres(url)) = step.source.and_then(|j| target.sources.get(j)) else {
                    return Err(format!("source {} is no longer a postgres source", i + 1));
                };
                let conn = pg::Conn::parse(url);
                let safety = PathBuf::from(step.safety.as_deref().unwrap_or_default());
                pg::dump(&conn, &safety, &config.env, HOOK_TIMEOUT * 12, &Cancel::default())
                    .map_err(|e| e.to_string())?;
                log.push(format!("safety dump of {} in {}", conn.url, safety.display()));
                *replaced = true;
                pg::restore(&conn, &staged, true, &config.env).map_err(|e| e.to_string())?;
                log.push(format!("restored {} from {}", conn.url, step.from));
            }
            _ => {
                let keep = PathBuf::from(&step.to);
                if let Some(parent) = keep.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::fs::create_dir_all(&keep);
                let dest = keep.join(Path::new(&step.from).file_name().unwrap_or_default());
                std::fs::rename(&staged, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
                log.push(format!("{} left in {} to load by hand", step.from, dest.display()));
            }
        }
    }
    Ok(())
}

/// Puts runbook's own paths (`keeps`, relative) of the live tree into the new tree `next`
/// in place of what the archive holds there: a file as a second name of the same inode (the
/// state file never leaves its path, and a process writing it writes the one file), a
/// directory moved. Returns the files linked, whose old names go once the trees are swapped.
fn keep_own(live: &Path, next: &Path, keeps: &[String]) -> Result<Vec<String>, String> {
    let mut linked = Vec::new();
    for rel in keeps {
        let (from, to) = (live.join(rel), next.join(rel));
        // Nothing of the archive's on the way: a link there (`evidence` -> /etc) must not
        // lead the clearing elsewhere on the host.
        let mut at = next.to_path_buf();
        for c in Path::new(rel).parent().into_iter().flat_map(Path::components) {
            at.push(c);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
                let _ = std::fs::remove_file(&at);
            }
        }
        clear(&to);
        let Ok(meta) = std::fs::symlink_metadata(&from) else {
            continue;
        };
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        if meta.is_dir() {
            std::fs::rename(&from, &to)
        } else {
            std::fs::hard_link(&from, &to).map(|()| linked.push(rel.clone()))
        }
        .map_err(|e| format!("keeping runbook's own {}: {e}", from.display()))?;
    }
    Ok(linked)
}

/// Undoes `keep_own` before the swap: the directories moved go back to the live tree.
fn give_back_own(next: &Path, live: &Path, keeps: &[String]) {
    for rel in keeps {
        let (at, home) = (next.join(rel), live.join(rel));
        if at.is_dir() && !home.exists() {
            let _ = std::fs::rename(&at, &home);
        }
    }
}

/// Copies a database's files (`x.db` and, if there, `x.db-wal` and `x.db-journal`) to `to`
/// with the same suffixes, byte for byte; returns the names of those copied.
fn copy_database_files(live: &Path, to: &Path) -> std::io::Result<Vec<String>> {
    let mut copied = Vec::new();
    for ext in ["", "-wal", "-journal"] {
        let (mut from, mut into) = (live.as_os_str().to_owned(), to.as_os_str().to_owned());
        from.push(ext);
        into.push(ext);
        let from = PathBuf::from(from);
        if ext.is_empty() || from.exists() {
            std::fs::copy(&from, &into)?;
            std::fs::File::open(&into)?.sync_all()?;
            copied.push(file_name(&from));
        }
    }
    Ok(copied)
}

/// `<dir>/<name><suffix>` beside `path` (`/srv/x/` and `/srv/x` both give `/srv/x<suffix>`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.parent().unwrap_or(Path::new("")).join(format!("{name}{suffix}"))
}

/// Removes what is at `path`, a tree or a file, if anything.
fn clear(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => super::remove_tree(path),
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Gives `to` the owner and group of `from` where this user may (root); elsewhere it stays
/// the restoring user's, which is then the owner `from` had anyway.
fn own_like(from: &Path, to: &Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::symlink_metadata(from) {
        let _ = std::os::unix::fs::lchown(to, Some(m.uid()), Some(m.gid()));
    }
}

/// Moves a staged tree into place: a rename on the same filesystem, a copy across.
fn move_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => copy_tree(from, to), // EXDEV
        Err(e) => Err(e),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        own_like(from, to);
        extract::link_time(to, meta.mtime(), meta.mtime_nsec())
    } else if meta.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        own_like(from, to);
        std::fs::set_permissions(to, meta.permissions())?;
        std::fs::File::open(to)?.set_modified(meta.modified()?)
    } else {
        std::fs::copy(from, to).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", to.display())))?;
        own_like(from, to);
        // Opened to read: a file restored read-only (0444) is still ours to date.
        std::fs::File::open(to)?.set_modified(meta.modified()?)
    }
}
