//! Deploys: a pinned ref into a release directory of its own, switched live with one rename(2)
//! of the `current` link, checked by gates, and rolled back to the last good release when the
//! gate after the switch fails.
//!
//! Invariants: `current` always points at a complete release (the switch is the only commit
//! point, one rename of a link made beside it); nothing live is touched before the switch; one
//! deploy of an app at a time (a lock the kernel drops with its holder); every step and its
//! outcome is a row of `deploys` written with its audit event.

mod git;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::config::deploy::DeployApp;
use crate::config::program::Program;
use crate::store::{Deploy, Store, StoreError};

const STEP_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no app named `{0}` under deploy:")]
    Unknown(String),
    #[error("ref `{0}` {1}")]
    Ref(String, String),
    #[error("`{0}`: its signature does not verify: {1}")]
    Signature(String, String),
    #[error("{0}")]
    Refused(String),
    #[error("{step}: {detail}")]
    Step { step: String, detail: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl crate::util::Explain for DeployError {
    fn class(&self) -> crate::util::ExitClass {
        match self {
            DeployError::Unknown(_) => crate::util::ExitClass::Usage,
            DeployError::Store(_) => crate::util::ExitClass::Internal,
            _ => crate::util::ExitClass::Failed,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            DeployError::Ref(..) => {
                Some("`git tag` lists the tags; `runbook deploy history APP` what went live".into())
            }
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        "deploy"
    }
}

/// What `deploy APP REF` would do, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub app: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub sha: String,
    pub release: String,
    pub path: PathBuf,
    /// The release live now, if any.
    pub current: Option<String>,
    pub steps: Vec<String>,
}

fn app<'a>(config: &'a Config, name: &str) -> Result<&'a DeployApp, DeployError> {
    config
        .deploy
        .get(name)
        .ok_or_else(|| DeployError::Unknown(name.to_string()))
}

/// The repository refs are read from: the configured one when it is a local directory, else a
/// mirror under the app's path (fetched by `apply`).
fn repo_dir(a: &DeployApp) -> PathBuf {
    let local = Path::new(&a.repo);
    if local.is_dir() {
        local.to_path_buf()
    } else {
        a.path.join(".repo.git")
    }
}

/// The release `current` points at; an error when `current` is not a link (a legacy layout).
pub fn live(a: &DeployApp) -> Result<Option<String>, DeployError> {
    let current = a.path.join("current");
    match std::fs::symlink_metadata(&current) {
        Err(_) => Ok(None),
        Ok(m) if m.file_type().is_symlink() => Ok(std::fs::read_link(&current)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))),
        Ok(_) => Err(DeployError::Refused(format!(
            "{} is a real directory, not a link to a release: move it into {}/releases/ and link it, then deploy",
            current.display(),
            a.path.display()
        ))),
    }
}

fn describe(p: &Program) -> String {
    crate::util::display(&p.argv())
}

pub fn plan(config: &Config, name: &str, reference: &str, allow_branch: bool) -> Result<Plan, DeployError> {
    let a = app(config, name)?;
    let current = live(a)?;
    let repo = repo_dir(a);
    let sha = if repo.is_dir() {
        git::resolve(&repo, &a.refs, reference, allow_branch)?
    } else {
        String::new()
    };
    let stamp = clock::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let release = format!("{}-{stamp}", if sha.is_empty() { "unresolved" } else { &sha[..12] });
    let mut steps = Vec::new();
    if !Path::new(&a.repo).is_dir() {
        steps.push(format!("fetch {} into {}", a.repo, repo.display()));
    }
    steps.push(format!(
        "resolve {reference} ({}) to {}",
        a.refs,
        if sha.is_empty() {
            "its commit, after the fetch"
        } else {
            &sha
        }
    ));
    if let Some(s) = &a.allowed_signers {
        steps.push(format!("verify its SSH signature against {}", s.display()));
    }
    steps.push(format!("create releases/{release} (git worktree at the commit)"));
    for s in &a.shared {
        steps.push(format!("link shared/{s} into the release"));
    }
    steps.extend(a.build.iter().map(|p| format!("build: {}", describe(p))));
    steps.extend(a.gate_before.iter().map(|g| format!("gate {g} must pass")));
    if let (Some(m), false) = (&a.migrate, a.expand_only) {
        steps.push(format!(
            "backup {} (the migration is not expand-only)",
            a.backup.as_deref().unwrap_or("?")
        ));
        steps.push(format!("migrate: {}", describe(m)));
    } else if let Some(m) = &a.migrate {
        steps.push(format!("migrate (expand-only): {}", describe(m)));
    }
    steps.push(format!("switch: current -> releases/{release} (one rename)"));
    steps.extend(a.restart.iter().map(|p| format!("restart: {}", describe(p))));
    if let Some(g) = &a.gate_after {
        steps.push(format!(
            "gate {g} must pass, else {} goes back live",
            current.as_deref().unwrap_or("the previous release")
        ));
    }
    steps.push("mark the release good".into());
    Ok(Plan {
        app: name.to_string(),
        reference: reference.to_string(),
        sha,
        release,
        path: a.path.clone(),
        current,
        steps,
    })
}

/// Runs `program` in `dir` with the configured environment; what it printed, or why it failed.
fn run(config: &Config, p: &Program, dir: &Path) -> Result<String, String> {
    let mut spec = crate::exec::Spec::new(p.argv(), STEP_TIMEOUT);
    spec.cwd = Some(dir.to_path_buf());
    spec.env = config.env.clone();
    let out = crate::exec::run(&spec, &Default::default()).map_err(|e| e.to_string())?;
    if out.success() {
        return Ok(out.combined_output());
    }
    // The end of what it printed says why: the person reading this has nothing else.
    let printed = out.combined_output();
    let lines: Vec<&str> = printed.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    let said = if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    };
    Err(config
        .redactor
        .redact(&format!("{}{said}", out.summary(STEP_TIMEOUT)))
        .into_owned())
}

/// Points `current` at `release` with one rename of a link made beside it.
fn switch(path: &Path, release: &str) -> std::io::Result<()> {
    let tmp = path.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("releases").join(release), &tmp)?;
    std::fs::rename(&tmp, path.join("current"))?;
    std::fs::File::open(path)?.sync_all()
}

/// A finished deploy (or rollback).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub deploy: Deploy,
    pub log: Vec<String>,
    /// The evidence of each gate run on the way.
    pub gates: Vec<PathBuf>,
}

struct Run<'a> {
    config: &'a Arc<Config>,
    store: &'a Store,
    id: i64,
    app: String,
    log: Vec<String>,
    gates: Vec<PathBuf>,
    progress: &'a dyn Fn(&str),
}

impl<'a> Run<'a> {
    fn new(config: &'a Arc<Config>, store: &'a Store, id: i64, app: &str, progress: &'a dyn Fn(&str)) -> Run<'a> {
        Run {
            config,
            store,
            id,
            app: app.to_string(),
            log: Vec::new(),
            gates: Vec::new(),
            progress,
        }
    }

    fn step(&mut self, step: &str, detail: String) -> Result<(), DeployError> {
        (self.progress)(&format!("{step}: {detail}"));
        self.log.push(format!("{step}: {detail}"));
        let draft = Draft::new(
            "deploy.step",
            &self.app,
            json!({ "deploy": self.id, "step": step, "detail": detail }),
            &self.config.redactor,
        );
        Ok(self.store.deploy_step(self.id, step, &draft)?)
    }

    fn gate(&mut self, name: &str, reference: &str) -> Result<bool, DeployError> {
        let r = crate::gate::run(self.config, self.store, name, Some(reference), &|_, _| {}).map_err(|e| {
            DeployError::Step {
                step: format!("gate {name}"),
                detail: e.to_string(),
            }
        })?;
        self.gates.push(r.evidence.clone());
        let failing = r.failing().join(", ");
        self.log.push(format!(
            "gate {name}: {}{}",
            r.verdict,
            if failing.is_empty() {
                String::new()
            } else {
                format!(" ({failing})")
            }
        ));
        (self.progress)(&format!("gate {name}: {}", r.verdict));
        Ok(r.passed())
    }

    fn finish(&mut self, status: &str, error: Option<&str>) -> Result<(), DeployError> {
        let draft = Draft::new(
            "deploy.finished",
            &self.app,
            json!({ "deploy": self.id, "status": status, "error": error }),
            &self.config.redactor,
        );
        Ok(self
            .store
            .finish_deploy(self.id, status, error, &clock::to_text(clock::now()), &draft)?)
    }
}

/// The row of a deploy (or rollback) that starts now, by this process.
fn started(config: &Config, app: &str, reference: &str, sha: &str, release: &str, previous: Option<String>) -> Deploy {
    Deploy {
        id: 0,
        app: app.to_string(),
        reference: reference.to_string(),
        sha: sha.to_string(),
        release: release.to_string(),
        previous,
        status: "running".into(),
        step: "resolved".into(),
        operator: crate::audit::actor::current(),
        host: config.host.clone(),
        pid: std::process::id() as i64,
        started_at: clock::to_text(clock::now()),
        finished_at: None,
        error: None,
    }
}

/// Options of `deploy APP REF --apply`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub allow_branch: bool,
    pub no_rollback: bool,
    /// Deploy over a live release whose tracked files were changed by hand.
    pub allow_dirty: bool,
}

/// Deploys `reference` of app `name`: every step of `plan`, for real.
pub fn apply(
    config: &Arc<Config>,
    store: &Store,
    name: &str,
    reference: &str,
    options: Options,
    progress: &dyn Fn(&str),
) -> Result<Report, DeployError> {
    let _lock = lock(config, name)?;
    deploy_locked(config, store, name, reference, options, progress)
}

/// The app's deploy lock: one deploy (or rollback, or resume) of an app at a time. The kernel
/// drops it when its holder dies, which is how a stopped deploy is told from a running one.
fn lock(config: &Config, name: &str) -> Result<crate::schedule::lock::ProfileLock, DeployError> {
    let key = format!("deploy-{name}");
    let held = crate::schedule::lock::try_lock(&config.state.path, &key)
        .map_err(|e| DeployError::Refused(format!("cannot take the deploy lock: {e}")))?;
    let Some(lock) = held else {
        // The holder wrote who it is into the lock file.
        let path = crate::schedule::lock::lock_dir(&config.state.path).join(format!("{key}.lock"));
        let owner = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(DeployError::Refused(format!(
            "a deploy of `{name}` is running ({}): one at a time",
            if owner.trim().is_empty() {
                "holder unknown".to_string()
            } else {
                owner.trim().to_string()
            }
        )));
    };
    let owner = format!(
        "pid {} of {} on {}, since {}",
        std::process::id(),
        crate::audit::actor::current(),
        config.host,
        clock::to_text(clock::now())
    );
    let _ = std::fs::write(&lock.path, owner);
    Ok(lock)
}

fn deploy_locked(
    config: &Arc<Config>,
    store: &Store,
    name: &str,
    reference: &str,
    options: Options,
    progress: &dyn Fn(&str),
) -> Result<Report, DeployError> {
    let a = app(config, name)?.clone();
    let current = live(&a)?;
    let repo = repo_dir(&a);
    if !Path::new(&a.repo).is_dir() {
        let fetched = if repo.is_dir() {
            git::git(
                &repo,
                &["fetch", "--prune", "--tags", "origin", "+refs/heads/*:refs/heads/*"],
            )
        } else {
            git::git(
                &a.path,
                &["clone", "--mirror", "--", &a.repo, &repo.display().to_string()],
            )
        };
        fetched.map_err(|e| DeployError::Step {
            step: "fetch".into(),
            detail: e,
        })?;
    }
    let sha = git::resolve(&repo, &a.refs, reference, options.allow_branch)?;
    if let Some(signers) = &a.allowed_signers {
        git::verify_signature(&repo, &a.refs, reference, &sha, signers)?;
    }
    let release = format!("{}-{}", &sha[..12], clock::now().strftime("%Y%m%dT%H%M%SZ"));
    let dir = a.path.join("releases").join(&release);
    if dir.exists() {
        return Err(DeployError::Refused(format!(
            "{} exists already: a release is never reused",
            dir.display()
        )));
    }
    let record = started(config, name, reference, &sha, &release, current.clone());
    let draft = Draft::new(
        "deploy.started",
        name,
        json!({ "ref": reference, "sha": sha, "release": release, "previous": current }),
        &config.redactor,
    );
    let id = store.start_deploy(&record, &draft)?;
    let mut r = Run::new(config, store, id, name, progress);
    let check_live = current.is_some() && !options.allow_dirty;
    let before = prepare(&mut r, &a, &repo, &sha, &release, reference, check_live);
    if let Err(e) = before {
        // Nothing live was touched: the half-made release goes.
        let _ = git::git(&repo, &["worktree", "remove", "--force", &dir.display().to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = git::git(&repo, &["worktree", "prune"]);
        r.finish("failed", Some(&e.to_string()))?;
        return Err(e);
    }
    switch(&a.path, &release).map_err(|e| DeployError::Step {
        step: "switch".into(),
        detail: e.to_string(),
    })?;
    r.step("switched", format!("current -> releases/{release}"))?;
    settle(&mut r, &a, reference, current.as_deref(), options.no_rollback)?;
    Ok(Report {
        deploy: store.deploys(name, 1)?.into_iter().next().unwrap_or(record),
        log: r.log,
        gates: r.gates,
    })
}

/// After the switch: restart and the gate after; the release is then good, or the one live
/// before goes back and this one is bad.
fn settle(
    r: &mut Run,
    a: &DeployApp,
    reference: &str,
    previous: Option<&str>,
    no_rollback: bool,
) -> Result<(), DeployError> {
    match (go_live(r, a, reference), previous, no_rollback) {
        (Ok(()), _, _) => r.finish("good", None),
        (Err(e), Some(previous), false) => {
            r.step("rolling back", format!("{e}; current -> releases/{previous}"))?;
            switch(&a.path, previous).map_err(|e| DeployError::Step {
                step: "switch back".into(),
                detail: e.to_string(),
            })?;
            let again = go_live(r, a, reference);
            let detail = match &again {
                Ok(()) => format!("{e}; rolled back to {previous}"),
                Err(e2) => format!("{e}; rolled back to {previous}, which does not pass either: {e2}"),
            };
            r.finish("bad", Some(&detail))?;
            Err(DeployError::Step {
                step: "deploy".into(),
                detail,
            })
        }
        (Err(e), _, _) => {
            r.finish("bad", Some(&e.to_string()))?;
            Err(e)
        }
    }
}

/// Finishes the deploy of `name` whose runbook died half-way (its row still `running`, its
/// lock free). Stopped before the switch: nothing live changed; the half-made release goes and
/// the deploy starts again from its ref. Stopped after: the release is live, so the restart
/// and the gate after run, and it is kept or rolled back like any deploy.
pub fn resume(
    config: &Arc<Config>,
    store: &Store,
    name: &str,
    options: Options,
    progress: &dyn Fn(&str),
) -> Result<Report, DeployError> {
    let a = app(config, name)?.clone();
    let guard = lock(config, name)?;
    let Some(d) = store
        .deploys(name, 1)?
        .into_iter()
        .next()
        .filter(|d| d.status == "running")
    else {
        return Err(DeployError::Refused(format!(
            "no deploy of `{name}` was stopped half-way"
        )));
    };
    let mut r = Run::new(config, store, d.id, name, progress);
    if live(&a)?.as_deref() == Some(d.release.as_str()) {
        r.step(
            "resumed",
            format!("releases/{} is live: restart and the gate after", d.release),
        )?;
        settle(&mut r, &a, &d.reference, d.previous.as_deref(), options.no_rollback)?;
        return Ok(Report {
            deploy: store.deploys(name, 1)?.into_iter().next().unwrap_or(d),
            log: r.log,
            gates: r.gates,
        });
    }
    let dir = a.path.join("releases").join(&d.release);
    let repo = repo_dir(&a);
    let _ = git::git(&repo, &["worktree", "remove", "--force", &dir.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = git::git(&repo, &["worktree", "prune"]);
    r.finish(
        "stopped",
        Some(&format!(
            "stopped after step `{}`, before the switch: nothing live changed",
            d.step
        )),
    )?;
    if d.reference.starts_with("rollback:") {
        return Err(DeployError::Refused(
            "a rollback was stopped before its switch: nothing changed; run it again".into(),
        ));
    }
    drop(guard);
    progress(&format!("starting the deploy of {} again", d.reference));
    let _lock = lock(config, name)?;
    deploy_locked(config, store, name, &d.reference, options, progress)
}

/// Everything before the switch: the release made, linked, built, gated, the data backed up
/// and migrated.
fn prepare(
    r: &mut Run,
    a: &DeployApp,
    repo: &Path,
    sha: &str,
    release: &str,
    reference: &str,
    check_live: bool,
) -> Result<(), DeployError> {
    let dir = a.path.join("releases").join(release);
    std::fs::create_dir_all(a.path.join("releases")).map_err(|e| DeployError::Refused(e.to_string()))?;
    // Whether the live release was changed by hand is asked while the new one is made: one
    // only reads the live tree, the other only writes the new one (git's first status of a
    // tree written in the same second as its index reads every file).
    let (changes, made) = std::thread::scope(|s| {
        let check = s.spawn(|| if check_live { live_changes(a) } else { Vec::new() });
        let made = git::git(repo, &["worktree", "add", "--detach", &dir.display().to_string(), sha]);
        (check.join().unwrap_or_default(), made)
    });
    if !changes.is_empty() {
        return Err(DeployError::Refused(format!(
            "the live release was changed by hand ({}): commit the change, or pass --allow-dirty (the changed release stays on disk)",
            changes.join("; ")
        )));
    }
    made.map_err(|e| DeployError::Step {
        step: "create release".into(),
        detail: e,
    })?;
    r.step("release created", format!("releases/{release} at {sha}"))?;
    for s in &a.shared {
        let (from, to) = (a.path.join("shared").join(s), dir.join(s));
        if !from.exists() {
            return Err(DeployError::Step {
                step: "link shared".into(),
                detail: format!("{} does not exist: create it first", from.display()),
            });
        }
        if std::fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
            let _ = std::fs::remove_dir_all(&to);
        } else {
            let _ = std::fs::remove_file(&to);
        }
        if let Some(parent) = to.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        std::os::unix::fs::symlink(&from, &to).map_err(|e| DeployError::Step {
            step: "link shared".into(),
            detail: format!("{}: {e}", to.display()),
        })?;
    }
    if !a.shared.is_empty() {
        r.step("shared linked", a.shared.join(", "))?;
    }
    for p in &a.build {
        let out = run(r.config, p, &dir).map_err(|e| DeployError::Step {
            step: format!("build `{}`", describe(p)),
            detail: e,
        })?;
        r.step("built", format!("{} ({} bytes of output)", describe(p), out.len()))?;
    }
    if let Some(g) = &a.gate_before
        && !r.gate(g, reference)?
    {
        return Err(DeployError::Step {
            step: format!("gate {g}"),
            detail: "did not pass: nothing went live".into(),
        });
    }
    if let Some(m) = &a.migrate {
        if !a.expand_only
            && let Some(target) = &a.backup
        {
            let c = crate::backup::create(r.config, r.store, target, &Default::default(), &|_| {}).map_err(|e| {
                DeployError::Step {
                    step: format!("backup {target}"),
                    detail: e.to_string(),
                }
            })?;
            r.step("backed up", c.path.display().to_string())?;
        }
        run(r.config, m, &dir).map_err(|e| DeployError::Step {
            step: "migrate".into(),
            detail: e,
        })?;
        r.step("migrated", describe(m))?;
    }
    Ok(())
}

/// After a switch: restart, then the gate after.
fn go_live(r: &mut Run, a: &DeployApp, reference: &str) -> Result<(), DeployError> {
    let current = a.path.join("current");
    for p in &a.restart {
        run(r.config, p, &current).map_err(|e| DeployError::Step {
            step: format!("restart `{}`", describe(p)),
            detail: e,
        })?;
        r.step("restarted", describe(p))?;
    }
    if let Some(g) = &a.gate_after
        && !r.gate(g, reference)?
    {
        return Err(DeployError::Step {
            step: format!("gate {g}"),
            detail: "did not pass after the switch".into(),
        });
    }
    Ok(())
}

/// What is live: the release, its commit, whether its tree is as committed (shared links
/// aside), and since when.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub app: String,
    pub release: Option<String>,
    pub sha: Option<String>,
    pub clean: Option<bool>,
    /// What differs from the commit, as `git status --porcelain` says it.
    pub changes: Vec<String>,
    pub since: Option<String>,
    pub last: Option<Deploy>,
}

/// What differs in the live release from its commit, as `git status --porcelain` says it:
/// tracked files only (build output does not count), shared links aside.
fn live_changes(a: &DeployApp) -> Vec<String> {
    git::git(
        &a.path.join("current"),
        &["status", "--porcelain", "--untracked-files=no"],
    )
    .unwrap_or_default()
    .lines()
    .filter(|l| {
        let path = l.get(3..).unwrap_or_default();
        !a.shared.iter().any(|s| path == s || path.starts_with(&format!("{s}/")))
    })
    .map(String::from)
    .collect()
}

pub fn status(config: &Config, store: &Store, name: &str) -> Result<Status, DeployError> {
    let a = app(config, name)?;
    let release = live(a)?;
    let current = a.path.join("current");
    let sha = release
        .as_ref()
        .and_then(|_| git::git(&current, &["rev-parse", "HEAD"]).ok());
    let changes = if release.is_some() { live_changes(a) } else { Vec::new() };
    let history = store.deploys(name, 100)?;
    let since = history
        .iter()
        .find(|d| Some(&d.release) == release.as_ref() && d.status == "good")
        .and_then(|d| d.finished_at.clone());
    Ok(Status {
        app: name.to_string(),
        clean: release.as_ref().map(|_| changes.is_empty()),
        release,
        sha,
        changes,
        since,
        last: history.into_iter().next(),
    })
}

/// Whether the live release is at `reference` and clean (seed 001's check after a deploy).
pub fn verify(
    config: &Config,
    store: &Store,
    name: &str,
    reference: &str,
) -> Result<(Status, String, bool), DeployError> {
    let a = app(config, name)?;
    let sha = git::resolve(&repo_dir(a), &a.refs, reference, true)?;
    let s = status(config, store, name)?;
    let ok = s.sha.as_deref() == Some(sha.as_str()) && s.clean == Some(true);
    Ok((s, sha, ok))
}

/// Releases that went live and stayed (a `good` deploy), newest first, never one marked bad
/// since.
fn good_releases(store: &Store, name: &str) -> Result<Vec<String>, DeployError> {
    let history = store.deploys(name, 1000)?;
    let mut out: Vec<String> = Vec::new();
    for d in &history {
        let bad = history
            .iter()
            .any(|b| b.release == d.release && b.status == "bad" && b.id > d.id);
        if d.status == "good" && !bad && !out.contains(&d.release) {
            out.push(d.release.clone());
        }
    }
    Ok(out)
}

/// `deploy rollback`: the release `to` (or the newest good one that is not live) goes back
/// live: switch, restart, the gate after. Without `apply`, only says which.
pub fn rollback(
    config: &Arc<Config>,
    store: &Store,
    name: &str,
    to: Option<&str>,
    apply: bool,
    progress: &dyn Fn(&str),
) -> Result<(String, Option<Report>), DeployError> {
    let a = app(config, name)?.clone();
    let current = live(&a)?;
    let good = good_releases(store, name)?;
    let target = match to {
        Some(t) if good.iter().any(|g| g == t) => t.to_string(),
        Some(t) => {
            return Err(DeployError::Refused(format!(
                "release {t} is not a good release of `{name}` (see `deploy history {name}`)"
            )));
        }
        None => good
            .into_iter()
            .find(|g| Some(g) != current.as_ref())
            .ok_or_else(|| DeployError::Refused(format!("`{name}` has no other good release to go back to")))?,
    };
    if !apply {
        return Ok((target, None));
    }
    let _lock = lock(config, name)?;
    let sha = git::git(&a.path.join("releases").join(&target), &["rev-parse", "HEAD"]).unwrap_or_default();
    let record = started(
        config,
        name,
        &format!("rollback:{target}"),
        &sha,
        &target,
        current.clone(),
    );
    let draft = Draft::new(
        "deploy.rollback",
        name,
        json!({ "to": target, "from": current }),
        &config.redactor,
    );
    let id = store.start_deploy(&record, &draft)?;
    let mut r = Run::new(config, store, id, name, progress);
    switch(&a.path, &target).map_err(|e| DeployError::Step {
        step: "switch".into(),
        detail: e.to_string(),
    })?;
    r.step("switched", format!("current -> releases/{target}"))?;
    match go_live(&mut r, &a, &record.reference) {
        Ok(()) => r.finish("good", None)?,
        Err(e) => {
            r.finish("failed", Some(&e.to_string()))?;
            return Err(e);
        }
    }
    Ok((
        target,
        Some(Report {
            deploy: store.deploys(name, 1)?.into_iter().next().unwrap_or(record),
            log: r.log,
            gates: r.gates,
        }),
    ))
}

/// What `deploy prune` removes and keeps.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

/// Releases beyond `keep`: never the live one nor the previous good one; bad releases (and
/// releases that never went live) go first, then the oldest good ones. Without `apply`, only
/// says which.
pub fn prune(config: &Config, store: &Store, name: &str, apply: bool) -> Result<Pruned, DeployError> {
    let a = app(config, name)?;
    let current = live(a)?;
    let good = good_releases(store, name)?;
    let mut on_disk: Vec<String> = std::fs::read_dir(a.path.join("releases"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    on_disk.sort();
    on_disk.reverse(); // newest first: names end with their UTC time
    let previous = good.iter().find(|g| Some(*g) != current.as_ref()).cloned();
    let mut kept: Vec<String> = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    // Kept: the live release, the previous good one, the newest good ones up to `keep`.
    let good_on_disk: Vec<&String> = good.iter().filter(|g| on_disk.contains(g)).collect();
    for r in &on_disk {
        let keep = Some(r) == current.as_ref()
            || Some(r) == previous.as_ref()
            || good_on_disk.iter().take(a.keep as usize).any(|g| *g == r);
        if keep {
            kept.push(r.clone());
        }
    }
    // Removed: not good (bad, failed, never live) first, then the older good ones.
    let (not_good, old_good): (Vec<&String>, Vec<&String>) = on_disk
        .iter()
        .filter(|r| !kept.contains(r))
        .partition(|r| !good.contains(r));
    removed.extend(not_good.into_iter().chain(old_good).cloned());
    if apply && !removed.is_empty() {
        let repo = repo_dir(a);
        for r in &removed {
            let dir = a.path.join("releases").join(r);
            let _ = git::git(&repo, &["worktree", "remove", "--force", &dir.display().to_string()]);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| DeployError::Refused(format!("{}: {e}", dir.display())))?;
            }
        }
        let _ = git::git(&repo, &["worktree", "prune"]);
        store.audit_append(&Draft::new(
            "deploy.pruned",
            name,
            json!({ "removed": removed, "kept": kept }),
            &config.redactor,
        ))?;
    }
    Ok(Pruned { removed, kept })
}
