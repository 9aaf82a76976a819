//! `runbook backup create | list | verify | prune`.

use std::io::IsTerminal;
use std::path::Path;
use std::path::PathBuf;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};
use crate::backup::{self, Progress};
use crate::clock;
use crate::exec::Cancel;
use crate::util::duration_ms;

/// A progress bar on stderr when it is a terminal and the output is not JSON.
pub(super) struct Bar(Option<ProgressBar>);

impl Bar {
    pub(super) fn new(cx: &Ctx) -> Self {
        Bar((!cx.out.json && std::io::stderr().is_terminal()).then(|| {
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template(
                    // wide_bar takes what the terminal's width leaves: one line on 80 columns.
                    "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            pb
        }))
    }

    pub(super) fn report(&self, p: Progress) {
        let Some(pb) = &self.0 else { return };
        match p {
            Progress::Phase(m) => {
                pb.set_position(0);
                pb.set_message(m.to_string());
            }
            Progress::Total(n) => pb.set_length(n),
            Progress::Advance(n) => pb.inc(n),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write a new archive of TARGET, verify nothing yet, record it (exit 0 when written)
    ///
    /// Snapshots the sources, writes the archive under a temporary name, fsyncs it, writes
    /// the sidecar, then renames it into place: an interrupted create leaves nothing that
    /// list shows or verify accepts, and the next create removes its leftovers. Records the
    /// archive and an audit event with its SHA-256. An archive under `min_size_ratio` of the
    /// median size of the last 7 opens an alert. Shows progress on a terminal.
    Create {
        /// Target name (a key of `backups:`)
        target: String,
    },
    /// Recorded archives, newest first: size, age, last verification
    List {
        /// Only this target's archives
        target: Option<String>,
    },
    /// Read every byte of an archive and check it; exit 1 naming the first problem
    ///
    /// Checks the file against its sidecar, every entry against the manifest (size and
    /// SHA-256, nothing missing or extra), runs PRAGMA integrity_check on each SQLite
    /// snapshot restored to a scratch directory and pg_restore --list on each PostgreSQL
    /// dump. The outcome is recorded with the archive.
    Verify {
        /// Path of the archive
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        archive: Option<PathBuf>,
        /// Verify the newest archive of this target instead
        #[arg(long, value_name = "TARGET")]
        latest: Option<String>,
    },
    /// Restore an archive into scratch space, check the data, measure the recovery time
    ///
    /// Phases, each timed: the archive against its sidecar, every entry unpacked and
    /// checked against the manifest, PRAGMA integrity_check of each SQLite database, each
    /// PostgreSQL dump restored into a scratch database (dropped after), then the target's
    /// drill.checks run in the restored tree with RUNBOOK_DRILL_DIR (and
    /// RUNBOOK_DRILL_DATABASE_URL). Writes evidence JSON under drill.evidence_dir and records
    /// the outcome with the archive. Exit 1 if any phase or check failed.
    Drill {
        /// Path of the archive
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        archive: Option<PathBuf>,
        /// Drill the newest archive of this target instead
        #[arg(long, value_name = "TARGET")]
        latest: Option<String>,
        /// Fetch the archive from the target's offsite copy first (ARCHIVE is then a file
        /// name there; with --latest, the newest one there)
        #[arg(long)]
        from_offsite: bool,
    },
    /// Copy archives not yet offsite (by SHA-256) to the target's `offsite:` store
    ///
    /// S3-compatible buckets (s3://bucket/prefix, with `endpoint` for MinIO, Ceph, Wasabi…)
    /// or another directory. Each archive is uploaded in parts, then its sidecar: an archive
    /// counts as offsite once its sidecar is there with the same hash, so an interrupted push
    /// is resumed by the next one, from its last stored part. A copy there under the same hash
    /// whose size cannot be the archive's (cut short) is pushed again (listed as replaced).
    /// Exit 1 if any archive could not go (listed with the reason); the others still do.
    Push {
        /// Target name (a key of `backups:`)
        target: String,
        /// Also read back every copy offsite and hash it (decrypting one encrypted on the way,
        /// with offsite.identity_file); a copy that is not its archive any more is pushed
        /// again, or listed as damaged (exit 1) when its archive is no longer here.
        /// Downloads them all: run it now and then, not every push
        #[arg(long)]
        check: bool,
    },
    /// Copy offsite archives that are not here back into the target's `dest`
    ///
    /// Each is written under a temporary name, hashed as it arrives, checked against its
    /// offsite sidecar, then renamed and recorded.
    Pull {
        /// Target name (a key of `backups:`)
        target: String,
        /// Only this archive (a file name offsite)
        #[arg(long, value_name = "NAME")]
        archive: Option<String>,
    },
    /// Put an archive's data back where it came from (a plan unless --execute)
    ///
    /// Without --execute, prints what is replaced, where the safety copy of the current data
    /// goes and which pre/post commands run, and touches nothing. With --execute: a
    /// preflight (archive matches its sidecar; destinations and the safety directory are
    /// writable) that stops before anything changes; the target's pre commands; safety
    /// copies; the archive unpacked and checked; each source put back; post commands; then
    /// restore_checks. Exit 1 if anything failed.
    Restore {
        /// Path of the archive
        archive: PathBuf,
        /// Do it (default: print the plan)
        #[arg(long)]
        execute: bool,
    },
    /// Remove archives the target's `keep:` policy does not keep (dry run unless --apply)
    ///
    /// keep: { last, daily, weekly, monthly }: an archive stays if any rule keeps it (UTC
    /// days, ISO weeks, months). The newest verified archive always stays, and so does the
    /// one a scheduled drill takes next, until it is drilled. Records of archives whose file
    /// is gone are listed as gone and forgotten; when none of the target's archives is there
    /// (a backup disk not mounted) --apply refuses. An archive that cannot be removed is
    /// listed with the reason (exit 1); the others still go. One backup.pruned audit event.
    Prune {
        /// Target name (a key of `backups:`)
        target: String,
        /// Delete the archives listed (default: only list them)
        #[arg(long)]
        apply: bool,
        /// With --apply: forget the records of missing archives even when none of the
        /// target's archives is there (removed on purpose); otherwise that is refused, as a
        /// backup disk that is not mounted
        #[arg(long)]
        forget_missing: bool,
    },
    /// Make an age key pair for encrypted archives: the identity file and its recipient
    ///
    /// Writes the identity (the private key) to --out with mode 0600, refusing a file that
    /// exists, and prints the recipient (`age1…`) to put under the target's `encrypt_to` (or
    /// `offsite.encrypt_to`). Keep a copy of the identity file off this host: without it no
    /// encrypted archive can be read back. Needs no configuration.
    Keygen {
        /// Where to write the identity file (must not exist)
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
}

/// 1.5 GiB, 320 KiB, 12 B.
pub fn bytes(n: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, size) in units {
        if n >= size {
            return format!("{:.1} {u}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

fn age(created: &str) -> String {
    clock::from_text(created)
        .map(|t| {
            let secs = (clock::now().as_second() - t.as_second()).max(0) as u64;
            clock::span(secs)
        })
        .unwrap_or_else(|| "-".into())
}

/// An archive named on the command line, or the newest of `--latest TARGET`.
fn resolve(
    config: &crate::config::Config,
    store: &crate::store::Store,
    archive: Option<std::path::PathBuf>,
    latest: Option<String>,
) -> Result<std::path::PathBuf, CliError> {
    match (archive, latest) {
        (Some(p), _) => Ok(p),
        (None, Some(t)) => {
            backup::target(config, &t)?;
            Ok(backup::latest(config, store, &t)?.path.into())
        }
        (None, None) => Err(CliError::usage("name an archive or --latest TARGET", None)),
    }
}

/// `backup keygen --out PATH`: a new age identity file, and the recipient to encrypt to.
pub fn keygen(cx: &Ctx, out: &Path) -> Result<Outcome, CliError> {
    let (text, recipient) = backup::crypt::generate_identity();
    super::write_key_file(out, &text)?;
    let value = json!({ "identity_file": out, "recipient": recipient });
    cx.out.either(&value, || {
        cx.out.line(format!(
            "identity written to {} (mode 0600); keep a copy off this host: without it no archive encrypted to this key can be read",
            out.display()
        ));
        cx.out.line(format!("recipient: {recipient}"));
        cx.out.line(format!(
            "in runbook.yaml: encrypt_to: \"{recipient}\" and identity_file: {}",
            out.display()
        ));
    });
    Ok(Outcome::Ok)
}

fn print_plan(cx: &Ctx, plan: &backup::restore::RestorePlan) {
    cx.out.line(format!(
        "restore plan for {} (target `{}`)",
        plan.archive.display(),
        plan.target
    ));
    for p in &plan.pre {
        cx.out.line(format!("  pre      {p}"));
    }
    for s in &plan.steps {
        cx.out
            .line(format!("  {:8} {} -> {}: {}", s.kind, s.from, s.to, s.action));
        match &s.safety {
            // A database or tree not there yet (a new host) has nothing to copy first.
            Some(_) if s.kind != "postgres" && !Path::new(&s.to).exists() => {
                cx.out.line("           nothing there yet: no safety copy needed");
            }
            Some(safety) => cx.out.line(format!("           current data first copied to {safety}")),
            None => {}
        }
        if !s.keeps.is_empty() {
            cx.out.line(format!(
                "           runbook's own, kept as they are: {}",
                s.keeps.join(", ")
            ));
        }
    }
    for p in &plan.post {
        cx.out.line(format!("  post     {p}"));
    }
    for c in &plan.checks {
        cx.out.line(format!("  check    {c}"));
    }
    for p in &plan.problems {
        cx.out.line(format!("  PROBLEM  {p}"));
    }
    if plan.problems.is_empty() {
        cx.out.line("dry run: nothing changed; add --execute to restore");
    }
}

pub fn run(cx: &Ctx, cmd: BackupCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        // Dispatched before the config is read (see `cli::dispatch`); the same if it gets here.
        BackupCmd::Keygen { out } => keygen(cx, &out),
        BackupCmd::Create { target } => {
            let bar = Bar::new(cx);
            let created = backup::create(&config, &store, &target, &Cancel::default(), &|p| bar.report(p))?;
            drop(bar);
            if let Some(v) = &created.size_verdict {
                crate::notify::observe(
                    &store,
                    &config,
                    &[crate::alert::Observation::backup_size(&target, v.ok, &v.detail)],
                )?;
            }
            cx.out.either(&created, || {
                cx.out.line(format!(
                    "{}  {}  {} entries, {} of data in {}",
                    created.path.display(),
                    bytes(created.size),
                    created.files,
                    bytes(created.data_bytes),
                    duration_ms(created.duration_ms)
                ));
                cx.out.line(format!("sha256 {}", created.sha256));
                for w in &created.warnings {
                    cx.out.line(format!("warning: {w}"));
                }
                if let Some(s) = &created.too_small {
                    cx.out.line(format!("ALERT: {s}"));
                }
                for d in &created.damaged {
                    cx.out.line(format!("PROBLEM: {d}"));
                }
            });
            Ok(if created.damaged.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            })
        }
        BackupCmd::List { target } => {
            if let Some(t) = &target {
                backup::target(&config, t)?;
            }
            let listed = backup::list(&config, &store, target.as_deref())?;
            cx.out.either(&listed, || {
                if listed.is_empty() {
                    cx.out.line("no archives recorded");
                    return;
                }
                let mut t = output::table(&["TARGET", "ARCHIVE", "SIZE", "AGE", "VERIFIED", "DRILLED"]);
                for l in &listed {
                    let r = &l.record;
                    let name = Path::new(&r.path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let verified = match (r.verify_ok, &r.verified_at) {
                        (Some(true), Some(at)) => format!("ok, {} ago", age(at)),
                        (Some(false), Some(at)) => format!("FAILED, {} ago", age(at)),
                        _ => "never".into(),
                    };
                    let drilled = match (r.drill_ok, &r.drilled_at) {
                        (Some(true), Some(at)) => format!("ok, {} ago", age(at)),
                        (Some(false), Some(at)) => format!("FAILED, {} ago", age(at)),
                        _ => "never".into(),
                    };
                    let name = if l.present { name } else { format!("{name} (MISSING)") };
                    // Not this configuration's to prune, push or drill on schedule.
                    let name = if l.in_dest {
                        name
                    } else {
                        let dir = Path::new(&r.path).parent().unwrap_or(Path::new(""));
                        format!("{name} (elsewhere: {})", dir.display())
                    };
                    t.add_row(vec![
                        r.target.clone(),
                        name,
                        bytes(r.size as u64),
                        age(&r.created_at),
                        verified,
                        drilled,
                    ]);
                }
                output::print_table(&t);
                // A dest not there at all: its archives are listed missing, and this says why.
                let mut unmounted: Vec<&str> = listed
                    .iter()
                    .filter(|l| l.in_dest && !l.present)
                    .map(|l| l.record.target.as_str())
                    .filter(|t| config.backups.get(*t).is_some_and(|b| !b.dest.exists()))
                    .collect();
                unmounted.sort_unstable();
                unmounted.dedup();
                for t in unmounted {
                    cx.out.line(format!(
                        "WARNING: {} (the dest of `{t}`) is not there: is its disk mounted?",
                        config.backups[t].dest.display()
                    ));
                }
            });
            Ok(Outcome::Ok)
        }
        BackupCmd::Verify { archive, latest } => {
            let path = resolve(&config, &store, archive, latest)?;
            let bar = Bar::new(cx);
            let report = backup::verify::verify_and_record(&config, &store, &path, &|p| bar.report(p))?;
            drop(bar);
            if let Some(why) = &report.not_recorded {
                eprintln!("warning: this verification is not recorded: {why}; run it outside a session to record it");
            }
            cx.out.either(&report, || {
                if report.ok {
                    cx.out.line(format!(
                        "ok: {}  {} files, {} of data, sha256 {}",
                        report.archive.display(),
                        report.files_checked,
                        bytes(report.data_bytes),
                        report.sha256
                    ));
                    for (p, r) in report.sqlite.iter().chain(&report.postgres) {
                        cx.out.line(format!("  {p}: {r}"));
                    }
                } else {
                    if report.unchecked == report.problems.len() {
                        cx.out.line(format!(
                            "FAILED: {} could not be checked (nothing found wrong with it; its last verification stands)",
                            report.archive.display()
                        ));
                    } else {
                        cx.out.line(format!("FAILED: {}", report.archive.display()));
                    }
                    for p in &report.problems {
                        cx.out.line(format!("  {p}"));
                    }
                }
            });
            if report.ok {
                Ok(Outcome::Ok)
            } else {
                Ok(Outcome::Failed)
            }
        }
        BackupCmd::Drill {
            archive,
            latest,
            from_offsite,
        } => {
            let bar = Bar::new(cx);
            // From offsite: fetched into scratch space next to the archives, removed after.
            let mut fetched = None;
            let path = if from_offsite {
                // An archive is named `<target>-<time>.tar.zst`: the longest target that fits.
                let Some(t) = latest
                    .clone()
                    .or_else(|| backup::target_named_in(&config, archive.as_ref()?))
                else {
                    return Err(CliError::usage("name --latest TARGET or an archive", None));
                };
                let target = backup::target(&config, &t)?;
                std::fs::create_dir_all(&target.dest)
                    .map_err(|e| CliError::internal(format!("{}: {e}", target.dest.display()), None))?;
                let dir = backup::scratch::create(&target.dest, ".offsite-drill-")
                    .map_err(|e| CliError::internal(format!("{}: {e}", target.dest.display()), None))?;
                let newest = match &archive {
                    Some(a) => a.file_name().map(|n| n.to_string_lossy().into_owned()),
                    None => backup::offsite::list(&config, &t)?
                        .into_iter()
                        .find(|r| r.sha256.is_some())
                        .map(|r| r.name),
                };
                let Some(newest) = newest else {
                    return Err(CliError::usage(format!("no archive of `{t}` offsite"), None));
                };
                let pulled =
                    backup::offsite::pull(&config, &store, &t, Some(&newest), Some(dir.path()), &|p| bar.report(p))?;
                let Some(path) = pulled.pulled.first().cloned() else {
                    let why = pulled
                        .failed
                        .first()
                        .map(|(_, why)| why.clone())
                        .or_else(|| pulled.skipped.first().cloned())
                        .unwrap_or_else(|| "nothing was fetched".into());
                    return Err(CliError::failed(
                        format!("{newest} could not be fetched from offsite: {why}"),
                        None,
                    ));
                };
                fetched = Some(dir);
                path
            } else {
                resolve(&config, &store, archive, latest.clone())?
            };
            // The target named, or the archive's: a damaged one is still drilled, and the
            // drill's evidence says what is wrong with it.
            let (name, target) = match &latest {
                Some(t) => (t.clone(), backup::target(&config, t)?),
                None => backup::target_of_any(&config, &store, &path)?,
            };
            let report = backup::drill::drill(&config, &store, &name, target, &path, &|p| bar.report(p))?;
            drop(fetched);
            drop(bar);
            cx.out.either(&report, || {
                cx.out.line(format!(
                    "{}: {}  recovery {} (total {}), {} files, {}",
                    if report.ok { "ok" } else { "FAILED" },
                    report.archive.display(),
                    duration_ms(report.recovery_ms),
                    duration_ms(report.total_ms),
                    report.files,
                    bytes(report.data_bytes)
                ));
                for p in report.phases.iter().chain(&report.checks) {
                    cx.out.line(format!(
                        "  {:4} {:10} {:>8}  {}",
                        if p.ok { "ok" } else { "FAIL" },
                        p.name,
                        duration_ms(p.ms),
                        output::one_line(&p.detail, 100)
                    ));
                }
                if let Some(e) = &report.evidence {
                    cx.out.line(format!("evidence: {}", e.display()));
                }
            });
            Ok(if report.ok { Outcome::Ok } else { Outcome::Failed })
        }
        BackupCmd::Restore { archive, execute } => {
            // An archive too damaged to be planned from is named so, not by the decoder.
            let (name, target) = backup::target_of(&config, &archive).map_err(|e| {
                match archive
                    .is_file()
                    .then(|| backup::archive::against_sidecar(&archive).err())
                    .flatten()
                {
                    Some(why) => CliError::failed(
                        format!("{} is damaged ({why}): nothing was restored", archive.display()),
                        Some("restore an older archive: `runbook backup list` shows which verified".into()),
                    ),
                    None => e.into(),
                }
            })?;
            let plan = backup::restore::plan(&config, &name, target, &archive)?;
            if !execute {
                cx.out.either(&plan, || print_plan(cx, &plan));
                return Ok(if plan.problems.is_empty() {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                });
            }
            let bar = Bar::new(cx);
            let probe = |names: &[String]| {
                let outcomes = crate::check::probe_blocking(&std::sync::Arc::new(config.clone()), names);
                outcomes.iter().map(|o| crate::check::to_result(o, None)).collect()
            };
            let report = backup::restore::execute(&config, &store, target, plan, &|p| bar.report(p), &probe)?;
            drop(bar);
            cx.out.either(&report, || {
                if !report.executed {
                    print_plan(cx, &report.plan);
                    cx.out.line("nothing was changed");
                    return;
                }
                for l in &report.log {
                    cx.out.line(l);
                }
                cx.out.line(if report.ok {
                    "restore complete".to_string()
                } else if report.plan.safety_dir.exists() {
                    format!(
                        "restore FAILED: see above; the safety copies are kept in {}",
                        report.plan.safety_dir.display()
                    )
                } else {
                    "restore FAILED: see above".to_string()
                });
            });
            Ok(if report.ok { Outcome::Ok } else { Outcome::Failed })
        }
        BackupCmd::Push { target, check } => {
            let bar = Bar::new(cx);
            let report = backup::offsite::push(&config, &store, &target, check, &|p| bar.report(p))?;
            drop(bar);
            cx.out.either(&report, || {
                for (p, why) in &report.replaced {
                    cx.out.line(format!("replaced {p}: {why}"));
                }
                for p in &report.pushed {
                    if report.resumed.contains(p) {
                        cx.out.line(format!("pushed   {p} (continued from an earlier push)"));
                        continue;
                    }
                    cx.out.line(format!("pushed   {p}"));
                }
                for (f, why) in &report.refused {
                    cx.out.line(format!("PROBLEM: {f} not pushed: {why}"));
                }
                for (f, why) in &report.unchecked {
                    cx.out.line(format!("PROBLEM: {f} offsite could not be checked: {why}"));
                }
                for (f, why) in &report.damaged {
                    cx.out.line(format!(
                        "PROBLEM: {f} offsite is damaged, and not here to push again: {why}"
                    ));
                }
                cx.out.line(format!(
                    "{} pushed ({}), {} already offsite{}, to {}",
                    report.pushed.len(),
                    bytes(report.bytes),
                    report.skipped.len(),
                    if check {
                        format!(" ({} read back and checked)", report.checked.len())
                    } else {
                        String::new()
                    },
                    report.url
                ));
            });
            Ok(
                if report.refused.is_empty() && report.unchecked.is_empty() && report.damaged.is_empty() {
                    Outcome::Ok
                } else {
                    Outcome::Failed
                },
            )
        }
        BackupCmd::Pull { target, archive } => {
            let bar = Bar::new(cx);
            let report = backup::offsite::pull(&config, &store, &target, archive.as_deref(), None, &|p| bar.report(p))?;
            drop(bar);
            cx.out.either(&report, || {
                for p in &report.pulled {
                    cx.out.line(format!("pulled   {}", p.display()));
                }
                for s in &report.skipped {
                    cx.out.line(format!("skipped  {s}"));
                }
                for (name, why) in &report.failed {
                    cx.out.line(format!("FAILED   {name}: {why}"));
                }
            });
            Ok(if report.failed.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            })
        }
        BackupCmd::Prune {
            target,
            apply,
            forget_missing,
        } => {
            let plan = backup::prune(&config, &store, &target, apply, forget_missing)?;
            let t_dest = backup::target(&config, &target)?.dest.clone();
            let value = json!({
                "target": plan.target,
                "applied": plan.applied,
                "keep": plan.keep.iter().map(|(r, why)| json!({ "path": r.path, "created_at": r.created_at, "why": why })).collect::<Vec<_>>(),
                "remove": plan.remove.iter().map(|r| json!({ "path": r.path, "created_at": r.created_at, "size": r.size })).collect::<Vec<_>>(),
                "gone": plan.gone.iter().map(|r| json!({ "path": r.path, "created_at": r.created_at })).collect::<Vec<_>>(),
                "failed": plan.failed.iter().map(|(path, why)| json!({ "path": path, "why": why })).collect::<Vec<_>>(),
            });
            cx.out.either(&value, || {
                for (r, why) in &plan.keep {
                    cx.out.line(format!("keep    {}  ({})", r.path, why.join(", ")));
                }
                let verb = if plan.applied { "removed" } else { "remove" };
                for r in &plan.remove {
                    cx.out.line(format!("{verb:7} {}  {}", r.path, bytes(r.size as u64)));
                }
                for r in &plan.gone {
                    let then = if plan.applied {
                        "its record is forgotten"
                    } else {
                        "its record goes with --apply"
                    };
                    cx.out.line(format!("gone    {}  (the file is missing; {then})", r.path));
                }
                for (path, why) in &plan.failed {
                    cx.out.line(format!("PROBLEM: {path} could not be removed: {why}"));
                }
                if plan.keep.is_empty() && plan.remove.is_empty() && !plan.gone.is_empty() {
                    cx.out.line(format!(
                        "WARNING: none of the archives recorded in {} is there (is its disk mounted?); --apply refuses then (--forget-missing, if they were removed on purpose)",
                        t_dest.display()
                    ));
                } else if !plan.applied && (!plan.remove.is_empty() || !plan.gone.is_empty()) {
                    cx.out.line(format!(
                        "dry run: nothing removed; run `runbook backup prune {target} --apply` to remove {} archive(s){}",
                        plan.remove.len(),
                        if plan.gone.is_empty() {
                            String::new()
                        } else {
                            format!(" and forget {} missing", plan.gone.len())
                        }
                    ));
                } else if plan.remove.is_empty() && plan.gone.is_empty() && plan.failed.is_empty() {
                    cx.out.line("nothing to remove");
                }
            });
            Ok(if plan.failed.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Failed
            })
        }
    }
}
