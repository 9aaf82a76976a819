//! `runbook gate run | list | show | verify`, and `runbook gate NAME` for `gate run NAME`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};
use crate::gate::{self, Report, evidence};

#[derive(Debug, Subcommand)]
pub enum GateCmd {
    /// Measure a gate now: exit 0 when it passes, 1 when it fails or cannot tell
    ///
    /// Every check of the gate is probed (`count` times, `interval` apart, all at once),
    /// every condition judged; each sample is pass, fail, inconclusive or error, and each
    /// measure is judged by its limits. The run is written to evidence/releases/<gate>-<UTC>.json
    /// beside runbook.yaml, sealed with its SHA-256, which the audit log records.
    Run {
        /// The gate (a key of `gates:`)
        name: String,
        /// The release judged: a tag or commit, resolved in the gate's `repo`
        #[arg(long, value_name = "REF")]
        release: Option<String>,
    },
    /// The gates of runbook.yaml with their last run
    List,
    /// One gate: what it measures, and its recent runs
    Show { name: String },
    /// Check an evidence file: its seal, and the audit event that recorded it
    ///
    /// Exit 0 when the file is as written (its SHA-256 matches its seal) and the audit chain,
    /// intact up to that event, recorded that seal; says whether a signed checkpoint covers it.
    Verify { file: PathBuf },
    /// Ask for a waiver: the gate counts as passed until it expires, once another person
    /// approves it (`runbook change approve ID`, signed when sessions.approvers is set)
    ///
    /// The waiver is a change request outside any session. While an approved one is in force,
    /// a run that does not pass has the verdict `waived` (exit 0); its evidence names the
    /// waiver, its reason, requester and approver, and what was measured.
    Waive {
        name: String,
        /// Why the gate may be passed over
        #[arg(long)]
        reason: String,
        /// How long the waiver lasts once asked for: 30m, 24h…
        #[arg(long, value_parser = super::parse_duration, default_value = "24h")]
        expires: crate::config::HumanDuration,
    },
    /// `runbook gate NAME [--release REF]` is `runbook gate run NAME …`
    #[command(external_subcommand)]
    Named(Vec<String>),
}

pub fn run(cx: &Ctx, cmd: GateCmd) -> Result<Outcome, CliError> {
    let config = Arc::new(cx.load()?);
    let store = cx.open_store(&config)?;
    match cmd {
        GateCmd::Run { name, release } => measure(cx, &config, &store, &name, release.as_deref()),
        GateCmd::Named(args) => {
            let (name, release) = named(&args)?;
            measure(cx, &config, &store, &name, release.as_deref())
        }
        GateCmd::List => {
            let rows: Vec<serde_json::Value> = config
                .gates
                .iter()
                .map(|(name, g)| {
                    let last = store.gate_runs(Some(name), 1).ok().and_then(|r| r.into_iter().next());
                    json!({
                        "name": name,
                        "measures": g.measures.iter().map(|m| &m.name).collect::<Vec<_>>(),
                        "last": last,
                    })
                })
                .collect();
            cx.out.either(&rows, || {
                let mut t = output::table(&["GATE", "MEASURES", "LAST RUN", "VERDICT", "RELEASE"]);
                for r in &rows {
                    let last = &r["last"];
                    t.add_row(vec![
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["measures"].as_array().map_or(0, Vec::len).to_string(),
                        last["finished_at"].as_str().unwrap_or("never").to_string(),
                        last["verdict"].as_str().unwrap_or("-").to_string(),
                        last["release_ref"].as_str().unwrap_or("-").to_string(),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        GateCmd::Show { name } => {
            let Some(g) = config.gates.get(&name) else {
                return Err(gate::GateError::Unknown(name.clone(), None).into());
            };
            let runs = store.gate_runs(Some(&name), 10)?;
            let value = json!({ "name": name, "definition": g, "runs": runs });
            cx.out.either(&value, || {
                cx.out.line(format!("gate {name}"));
                for m in &g.measures {
                    let sampling = if m.count > 1 {
                        format!(" ×{} every {} (failure_limit {})", m.count, m.interval, m.failure_limit)
                    } else {
                        String::new()
                    };
                    let compare: Vec<String> = m.compare.iter().map(|(k, c)| format!("{k} {}", c.text)).collect();
                    let dry = if g.dry_run.contains(&m.name) { " [dry run]" } else { "" };
                    cx.out.line(format!(
                        "  {:<24} {}{sampling}{}{dry}",
                        m.name,
                        crate::check::describe(&m.check),
                        if compare.is_empty() {
                            String::new()
                        } else {
                            format!("; {}", compare.join(", "))
                        }
                    ));
                }
                if let Some(s) = g.no_open_alerts {
                    cx.out.line(format!(
                        "  {:<24} no open alert of severity {} or above",
                        "no_open_alerts",
                        s.as_str()
                    ));
                }
                if g.config_valid {
                    cx.out
                        .line(format!("  {:<24} runbook.yaml loads without a warning", "config_valid"));
                }
                for r in &runs {
                    cx.out.line(format!(
                        "  run {} {} {}{}",
                        r.finished_at,
                        r.verdict,
                        r.evidence_path,
                        r.release_ref
                            .as_deref()
                            .map(|x| format!(" (release {x})"))
                            .unwrap_or_default()
                    ));
                }
            });
            Ok(Outcome::Ok)
        }
        GateCmd::Verify { file } => verify(cx, &config, &store, &file),
        GateCmd::Waive { name, reason, expires } => {
            let (id, until) = gate::waive(&config, &store, &name, &reason, expires.0)?;
            let value = json!({ "change": id, "gate": name, "expires_at": until, "status": "pending" });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "waiver of gate {name} asked for as change request {id}, until {until}"
                ));
                cx.out
                    .line(format!("another person approves it: runbook change approve {id}"));
            });
            Ok(Outcome::Ok)
        }
    }
}

/// `gate NAME [--release REF | --release=REF]`.
fn named(args: &[String]) -> Result<(String, Option<String>), CliError> {
    let usage = || {
        CliError::usage(
            "usage: runbook gate NAME [--release REF]",
            Some("or `runbook gate run NAME`".into()),
        )
    };
    let mut it = args.iter();
    let name = it.next().cloned().ok_or_else(usage)?;
    let mut release = None;
    while let Some(a) = it.next() {
        match a.strip_prefix("--release=") {
            Some(r) => release = Some(r.to_string()),
            None if a == "--release" => release = Some(it.next().cloned().ok_or_else(usage)?),
            None => return Err(usage()),
        }
    }
    Ok((name, release))
}

fn measure(
    cx: &Ctx,
    config: &Arc<crate::config::Config>,
    store: &crate::store::Store,
    name: &str,
    release: Option<&str>,
) -> Result<Outcome, CliError> {
    let tty = std::io::stderr().is_terminal();
    let report: Report = gate::run(config, store, name, release, &|measure, s| {
        if tty {
            eprintln!("  {measure:<24} {:<12} {}", s.verdict, s.detail);
        }
    })?;
    // What the gate's `notify` queued is sent before the command exits.
    crate::schedule::upkeep::after_command(config, store);
    cx.out.either(&report, || {
        cx.out.line(format!(
            "gate {}: {}{}",
            report.gate,
            report.verdict.to_uppercase(),
            report
                .release
                .reference
                .as_deref()
                .map(|r| format!(" (release {r})"))
                .unwrap_or_default()
        ));
        for m in &report.measures {
            let last = m.samples.last().map(|s| s.detail.as_str()).unwrap_or_default();
            let counts = if m.count > 1 {
                format!(
                    " [{} samples: {} failed, {} inconclusive, {} errors]",
                    m.samples.len(),
                    m.failures,
                    m.inconclusive,
                    m.errors
                )
            } else {
                String::new()
            };
            cx.out
                .line(format!("  {:<12} {:<24} {last}{counts}", m.verdict, m.name));
            let mut notes: Vec<&String> = m.samples.iter().flat_map(|s| &s.notes).collect();
            notes.dedup();
            for note in notes {
                cx.out.line(format!("               {note}"));
            }
        }
        cx.out.line(format!(
            "evidence: {} (sha256 {})",
            report.evidence.display(),
            report.sha256
        ));
    });
    Ok(if report.passed() { Outcome::Ok } else { Outcome::Failed })
}

fn verify(
    cx: &Ctx,
    config: &crate::config::Config,
    store: &crate::store::Store,
    file: &Path,
) -> Result<Outcome, CliError> {
    let text =
        std::fs::read_to_string(file).map_err(|e| CliError::internal(format!("{}: {e}", file.display()), None))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CliError::failed(format!("{}: not an evidence file: {e}", file.display()), None))?;
    let claimed = doc["sha256"].as_str().unwrap_or_default().to_string();
    let actual = evidence::seal(&doc);
    let sealed = !claimed.is_empty() && claimed == actual;
    let mut event = None;
    let verifier = crate::store::chain::scan_chain(store, &mut |e| {
        // The seal the file claims: found while the file hashes otherwise, the file was
        // changed after the run recorded it.
        if e.kind == "gate.run" && event.is_none() && !claimed.is_empty() && e.data.contains(&claimed) {
            event = Some((e.seq, e.ts.clone()));
        }
    })?;
    let intact_to_event = match (&event, &verifier.first_break) {
        (Some((seq, _)), Some(b)) => b.seq > *seq,
        (Some(_), None) => true,
        _ => false,
    };
    let trusted = &config.audit.public_keys;
    let covered = event.as_ref().and_then(|(seq, _)| {
        store
            .checkpoints()
            .ok()?
            .into_iter()
            .filter(|c| c.seq >= *seq && crate::audit::checkpoint::check(c, trusted).is_ok())
            .min_by_key(|c| c.seq)
    });
    let ok = sealed && intact_to_event;
    let value = json!({
        "ok": ok,
        "file": file,
        "sealed": sealed,
        "sha256": actual,
        "claimed_sha256": claimed,
        "audit_event": event.as_ref().map(|(seq, ts)| json!({ "seq": seq, "time": ts })),
        "chain_intact_to_event": intact_to_event,
        "checkpoint": covered.as_ref().map(|c| json!({ "seq": c.seq, "time": c.time, "public_key": c.public_key })),
    });
    cx.out.either(&value, || {
        if sealed {
            cx.out.line(format!("seal: ok (sha256 {actual})"));
        } else {
            cx.out.line(format!("seal: BROKEN: the file hashes to {actual}, its seal says {claimed}: it was changed after it was written"));
        }
        match (&event, intact_to_event) {
            (Some((seq, ts)), true) => cx.out.line(format!("audit: recorded by event #{seq} at {ts}, chain intact to it")),
            (Some((seq, _)), false) => cx.out.line(format!("audit: event #{seq} lies after a break in the chain (`runbook audit verify`)")),
            (None, _) => cx.out.line("audit: NO event records this seal: the file was not written by a gate run recorded in this state file"),
        }
        match &covered {
            Some(c) => cx.out.line(format!("checkpoint: covered by the signed checkpoint of seq {} ({})", c.seq, c.time)),
            None if event.is_some() => cx.out.line("checkpoint: no signed checkpoint covers it yet (`runbook audit checkpoint`)"),
            None => {}
        }
    });
    Ok(if ok { Outcome::Ok } else { Outcome::Failed })
}
