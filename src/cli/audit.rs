//! `runbook audit list | verify | keygen | checkpoint | export | summary`.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::audit::Verifier;
use crate::audit::checkpoint::{self, Checkpoint};
use crate::clock;
use crate::store::{AuditFilter, Store};

/// A checkpoint from a file or an http(s) URL.
fn fetch(against: &str) -> Result<Checkpoint, CliError> {
    let text = if against.starts_with("http://") || against.starts_with("https://") {
        crate::util::runtime::runtime()
            .block_on(async {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(30))
                    .build()?;
                client.get(against).send().await?.error_for_status()?.text().await
            })
            .map_err(|e| CliError::failed(format!("cannot fetch the checkpoint {against}: {e}"), None))?
    } else {
        std::fs::read_to_string(against)
            .map_err(|e| CliError::usage(format!("cannot read the checkpoint {against}: {e}"), None))?
    };
    serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!("{against} is not a checkpoint: {e}"),
            Some("`runbook audit checkpoint --out FILE` writes one".into()),
        )
    })
}

/// Verifies the chain, keeping the hashes of the seqs the checkpoints name.
fn scan(store: &Store, wanted: &HashSet<i64>) -> Result<(Verifier, HashMap<i64, String>), CliError> {
    let mut hashes = HashMap::new();
    let verifier = crate::store::chain::scan_chain(store, &mut |e| {
        if wanted.contains(&e.seq) {
            hashes.insert(e.seq, e.hash.clone());
        }
    })?;
    Ok((verifier, hashes))
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Recent audit events, newest first
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only events of this kind (e.g. run.finished, run.recovered, state.set)
        #[arg(long)]
        kind: Option<String>,
    },
    /// Check the hash chain and every checkpoint: exit 1 naming what is wrong
    ///
    /// Recomputes every event's hash from its content and the previous event's hash. An
    /// edited, deleted or reordered event breaks the chain at that event; the report names
    /// its sequence number and what is wrong. Then holds every signed checkpoint (those in
    /// the state file, and the one given with --against) against the chain: a checkpoint
    /// past the end of the log shows a cut tail, one whose hash differs shows a rewrite.
    /// Only a checkpoint kept elsewhere can show a cut tail: whoever cuts the log can delete
    /// the checkpoints in the same file.
    Verify {
        /// A checkpoint kept elsewhere: a file, or an http(s) URL serving it
        #[arg(long, value_name = "FILE|URL")]
        against: Option<String>,
        /// Trust only checkpoints signed by this key (hex; adds to audit.public_keys)
        #[arg(long = "public-key", value_name = "HEX")]
        public_keys: Vec<String>,
    },
    /// Make a signing key for checkpoints: writes the private key, prints the public key
    ///
    /// The key file (mode 0600) is what `audit checkpoint` signs with; it can live off the
    /// host. Put the printed public key under audit.public_keys where logs are verified.
    Keygen {
        /// Where to write the private key (must not exist)
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
    },
    /// Sign (seq, head hash, time) of the chain as it is now, and keep the checkpoint
    ///
    /// Refuses a chain that does not verify. The checkpoint is kept in the state file and
    /// printed; copy it somewhere else (--out, a ticket, a chat) so a cut tail can be shown
    /// later with `audit verify --against`.
    Checkpoint {
        /// Signing key [default: audit.signing_key]
        #[arg(long, value_name = "PATH")]
        key: Option<PathBuf>,
        /// Also write the checkpoint to this file
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Every event in seq order, streamed: a JSON array, or one event per line
    Export {
        /// json or jsonl
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Only events at or after this time (RFC 3339)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// Counts by kind and by actor, the time span, and whether the chain verifies
    Summary,
    /// Move events older than a date into a compressed file (dry run unless --apply)
    ///
    /// The file (`audit-<first>-<last>.jsonl.zst`) holds the events exactly as hashed; the
    /// state file keeps its last event's seq and hash as the anchor the rest of the chain
    /// continues from, and the file's SHA-256, so `audit verify` still checks the chain, and
    /// the file too when it is there. Refuses a chain that does not verify.
    Archive {
        /// Events before this time (RFC 3339, or a date: 2026-01-01)
        #[arg(long, value_name = "DATE")]
        before: String,
        /// Where the files go [default: next to the state file, <state>.audit/]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Do it (default: say what would move)
        #[arg(long)]
        apply: bool,
    },
}

pub fn run(cx: &Ctx, cmd: AuditCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        AuditCmd::List { limit, kind } => {
            let events = store.audit_list(&AuditFilter {
                limit,
                kind,
                ..Default::default()
            })?;
            cx.out.either(&events, || {
                let mut t = output::table(&["SEQ", "TIME (UTC)", "ACTOR", "KIND", "SUBJECT", "DATA"]);
                for e in &events {
                    t.add_row(vec![
                        e.seq.to_string(),
                        e.ts.clone(),
                        e.actor.clone(),
                        e.kind.clone(),
                        e.subject.clone(),
                        one_line(&e.data, 60),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        AuditCmd::Verify { against, public_keys } => {
            let mut trusted = config.audit.public_keys.clone();
            trusted.extend(public_keys.iter().map(|k| k.to_ascii_lowercase()));
            let mut held: Vec<(Checkpoint, String)> = store
                .checkpoints()?
                .into_iter()
                .map(|c| (c, "state file".to_string()))
                .collect();
            if let Some(a) = &against {
                held.push((fetch(a)?, a.clone()));
            }
            let recorded_head = crate::store::head::read(&config.state.path);
            let mut wanted: HashSet<i64> = held.iter().map(|(c, _)| c.seq).collect();
            wanted.extend(recorded_head.as_ref().map(|h| h.seq));
            let (verifier, hashes) = scan(&store, &wanted)?;
            let head = verifier.head().cloned();
            let head_seq = head.as_ref().map_or(0, |h| h.0);
            let anchor = store.audit_anchor()?;
            let judged: Vec<_> = held
                .iter()
                .map(|(c, from)| {
                    checkpoint::judge(c, from, &trusted, head_seq, anchor.clone(), &|s| {
                        hashes.get(&s).cloned()
                    })
                })
                .collect();
            let bad_checkpoints: Vec<_> = judged.iter().filter(|j| !j.ok).collect();
            let files = crate::store::archive::check_files(&store)?;
            // Only a whole chain can be held against the head file: a broken one is reported
            // as broken already.
            let tail = recorded_head
                .as_ref()
                .filter(|_| verifier.first_break.is_none())
                .map(|h| {
                    crate::audit::tail::judge(
                        &crate::store::head::path_for(&config.state.path),
                        (h.seq, &h.hash),
                        head_seq,
                        anchor.as_ref(),
                        &|s| hashes.get(&s).cloned(),
                    )
                });
            let intact = verifier.first_break.is_none()
                && bad_checkpoints.is_empty()
                && files.iter().all(|f| f.ok)
                && tail.as_ref().is_none_or(|t| t.ok);
            let value = json!({
                "intact": intact,
                "chain_intact": verifier.first_break.is_none(),
                "checked": verifier.checked,
                "head_seq": head.as_ref().map(|h| h.0),
                "head_hash": head.as_ref().map(|h| h.1.clone()),
                "first_bad": verifier.first_break,
                "checkpoints": judged,
                "archives": files,
                "head_file": tail,
                "trusted_keys": trusted.len(),
            });
            cx.out.either(&value, || {
                match &verifier.first_break {
                    None => {
                        let at = head
                            .as_ref()
                            .map(|(seq, hash)| format!(", head #{seq} {}", &hash[..12]))
                            .unwrap_or_default();
                        cx.out.line(format!(
                            "audit chain intact: {} event{}{at}",
                            verifier.checked,
                            if verifier.checked == 1 { "" } else { "s" }
                        ));
                    }
                    Some(b) => {
                        cx.out
                            .line(format!("audit chain BROKEN at seq {}: {}", b.seq, b.reason));
                        cx.out.line(format!(
                            "{} event(s) before it verified; everything from seq {} on cannot be trusted",
                            verifier.checked, b.seq
                        ));
                    }
                }
                for j in &judged {
                    cx.out.line(format!(
                        "checkpoint seq {} ({}, key {}): {}{}",
                        j.checkpoint.seq,
                        j.from,
                        checkpoint::short(&j.checkpoint.public_key),
                        if j.ok { "" } else { "BAD: " },
                        j.detail
                    ));
                }
                for f in &files {
                    cx.out.line(format!(
                        "archive {} (seq {}..{}): {}{}",
                        f.file,
                        f.first_seq,
                        f.last_seq,
                        if f.ok { "" } else { "BAD: " },
                        f.detail
                    ));
                }
                if let Some(t) = tail.as_ref().filter(|t| !t.ok) {
                    cx.out.line(format!("LOST TAIL: {}", t.detail));
                    cx.out.line(format!(
                        "(recorded in {}; if an older state file was put back on purpose, delete that file: the next change records the head again)",
                        t.file
                    ));
                }
                if !judged.is_empty() && trusted.is_empty() {
                    cx.out.line(
                        "note: no audit.public_keys configured: checkpoints were checked against the key they carry",
                    );
                }
            });
            Ok(if intact { Outcome::Ok } else { Outcome::Failed })
        }
        AuditCmd::Keygen { out } => {
            let (private, public) = checkpoint::generate().map_err(|e| CliError::internal(e, None))?;
            super::write_key_file(&out, &private)?;
            let value = json!({ "key_file": out, "public_key": public });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "private key written to {} (keep it off this host if you can)",
                    out.display()
                ));
                cx.out.line(format!("public key: {public}"));
                cx.out.line("add it to audit.public_keys where the log is verified");
            });
            Ok(Outcome::Ok)
        }
        AuditCmd::Checkpoint { key, out } => {
            let path = key.or(config.audit.signing_key.clone()).ok_or_else(|| {
                CliError::usage(
                    "no signing key: pass --key or set audit.signing_key",
                    Some("make one with: runbook audit keygen --out FILE".into()),
                )
            })?;
            let text = std::fs::read_to_string(&path)
                .map_err(|e| CliError::usage(format!("{}: {e}", path.display()), None))?;
            let pair =
                checkpoint::load(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display()), None))?;
            let cp = crate::store::chain::sign_head(&store, &pair).map_err(|e| match e {
                crate::store::chain::SignError::Store(s) => s.into(),
                crate::store::chain::SignError::Broken(b) => CliError::failed(
                    format!(
                        "the audit chain is broken at seq {} ({}): not signing it",
                        b.seq, b.reason
                    ),
                    Some("run `runbook audit verify` for the details".into()),
                ),
                crate::store::chain::SignError::Empty => {
                    CliError::usage("the audit log is empty: nothing to sign yet", None)
                }
            })?;
            if let Some(o) = &out {
                let text = serde_json::to_string_pretty(&cp).unwrap_or_default();
                crate::util::file::write_atomic(o, format!("{text}\n").as_bytes())
                    .map_err(|e| CliError::internal(format!("{}: {e}", o.display()), None))?;
            }
            cx.out.json(&cp);
            Ok(Outcome::Ok)
        }
        AuditCmd::Export { format, since } => {
            let jsonl = match format.as_str() {
                "jsonl" => true,
                "json" => false,
                other => {
                    return Err(CliError::usage(
                        format!("unknown format `{other}` (json or jsonl)"),
                        None,
                    ));
                }
            };
            let since = since
                .map(|s| {
                    clock::from_text(&s)
                        .map(clock::to_text)
                        .ok_or_else(|| CliError::usage(format!("`{s}` is not an RFC 3339 time"), None))
                })
                .transpose()?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut first = true;
            let mut failed = None;
            if !jsonl {
                let _ = out.write_all(b"[");
            }
            store.audit_scan(&mut |e| {
                if since.as_deref().is_some_and(|s| e.ts.as_str() < s) {
                    return true;
                }
                let line = serde_json::to_string(e).unwrap_or_default();
                let r = if jsonl {
                    writeln!(out, "{line}")
                } else {
                    let sep = if first { "\n" } else { ",\n" };
                    write!(out, "{sep}{line}")
                };
                first = false;
                if let Err(err) = r {
                    failed = Some(err);
                    return false;
                }
                true
            })?;
            if !jsonl {
                let _ = out.write_all(b"\n]\n");
            }
            if let Some(e) = failed.filter(|e| e.kind() != std::io::ErrorKind::BrokenPipe) {
                return Err(CliError::internal(format!("writing the export: {e}"), None));
            }
            let _ = out.flush();
            Ok(Outcome::Ok)
        }
        AuditCmd::Archive { before, dir, apply } => {
            let ts = crate::store::archive::parse_before(&before)
                .ok_or_else(|| CliError::usage(format!("`{before}` is not a date or an RFC 3339 time"), None))?;
            let dir = dir.unwrap_or_else(|| crate::store::archive::default_dir(&config.state.path));
            let plan =
                crate::store::archive::archive(&store, &ts, &dir, apply, &config.redactor).map_err(|e| match e {
                    crate::store::archive::ArchiveError::Store(s) => s.into(),
                    crate::store::archive::ArchiveError::Broken(_) => {
                        CliError::failed(e.to_string(), Some("run `runbook audit verify` for the details".into()))
                    }
                    other => CliError::internal(other.to_string(), None),
                })?;
            cx.out
                .either(&plan, || match (plan.first_seq, plan.last_seq, &plan.file) {
                    (Some(a), Some(b), Some(f)) if plan.applied => {
                        cx.out
                            .line(format!("archived events {a}..{b} ({}) to {}", plan.events, f.display()))
                    }
                    (Some(a), Some(b), Some(f)) => cx.out.line(format!(
                        "dry run: events {a}..{b} ({}) would move to {}; add --apply",
                        plan.events,
                        f.display()
                    )),
                    _ => cx.out.line(format!("no events before {ts}")),
                });
            Ok(Outcome::Ok)
        }
        AuditCmd::Summary => {
            let s = store.audit_summary()?;
            let (verifier, _) = scan(&store, &HashSet::new())?;
            let value = json!({ "summary": s, "chain": { "intact": verifier.first_break.is_none(),
                                 "checked": verifier.checked, "first_bad": verifier.first_break },
                                "checkpoints": store.checkpoints()?.len() });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "{} events, {} to {}; chain {}",
                    s.events,
                    s.first.as_deref().unwrap_or("-"),
                    s.last.as_deref().unwrap_or("-"),
                    if verifier.first_break.is_none() {
                        "intact"
                    } else {
                        "BROKEN"
                    }
                ));
                let mut t = output::table(&["KIND", "EVENTS"]);
                for (k, n) in &s.by_kind {
                    t.add_row(vec![k.clone(), n.to_string()]);
                }
                output::print_table(&t);
                let mut t = output::table(&["ACTOR", "EVENTS"]);
                for (k, n) in &s.by_actor {
                    t.add_row(vec![k.clone(), n.to_string()]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
    }
}
