//! `runbook incident open | status | log | handoff | classify | timeline | close | export | list | show`.

use std::sync::Arc;

use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};
use crate::incident::{self, Entry};
use crate::store::Incident;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Md,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// Open an incident: a note from incidents.template and a record; opening a slug twice
    /// returns the first
    #[command(alias = "new")]
    Open {
        slug: String,
        /// One of incidents.severities (any name when none are declared)
        #[arg(long)]
        severity: String,
        #[arg(long)]
        title: Option<String>,
    },
    /// Move to the next state: triage → investigating → mitigated → resolved (or cancelled)
    Status {
        id: String,
        state: String,
        /// What changed, for the note and the severity's channels
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a line of your own to the timeline
    Log { id: String, text: String },
    /// Hand the commander role to someone else
    Handoff {
        id: String,
        #[arg(long)]
        to: String,
    },
    /// Classify the incident (incidents.classes: storage, stale-state, config-drift, compatibility, other)
    Classify { id: String, class: String },
    /// The timeline, assembled from the audit chain, each line with its event's hash
    Timeline { id: String },
    /// Close the incident once incidents.verify checks pass now
    Close {
        id: String,
        #[arg(long)]
        cause: String,
        /// Close although the verification fails (needs --reason; recorded)
        #[arg(long, requires = "reason")]
        force: bool,
        #[arg(long)]
        reason: Option<String>,
    },
    /// A postmortem: summary, impact, timeline with audit hashes, cause, commands run
    Export {
        id: String,
        #[arg(long, value_enum, default_value = "md")]
        format: Format,
    },
    /// Incidents not ended (with --all, every one), newest first
    List {
        #[arg(long)]
        all: bool,
    },
    /// One incident
    Show { id: String },
}

fn line(i: &Incident) -> String {
    format!(
        "incident {} #{} [{}] {} — {} (commander {})",
        i.slug, i.id, i.severity, i.state, i.title, i.commander
    )
}

pub fn run(cx: &Ctx, cmd: IncidentCmd) -> Result<Outcome, CliError> {
    let config = Arc::new(cx.load()?);
    let store = cx.open_store(&config)?;
    let done = |i: &Incident| {
        cx.out.either(i, || cx.out.line(line(i)));
    };
    let outcome = match cmd {
        IncidentCmd::Open { slug, severity, title } => {
            let title = title.unwrap_or_else(|| slug.clone());
            let (i, new) = incident::open(&config, &store, &slug, &severity, &title)?;
            cx.out.either(&json!({ "incident": i, "new": new }), || {
                cx.out
                    .line(format!("{}{}", if new { "" } else { "already open: " }, line(&i)));
                if let Some(n) = &i.note {
                    cx.out.line(format!("note: {n}"));
                }
            });
            Outcome::Ok
        }
        IncidentCmd::Status { id, state, note } => {
            done(&incident::status(&config, &store, &id, &state, note.as_deref())?);
            Outcome::Ok
        }
        IncidentCmd::Log { id, text } => {
            done(&incident::log(&config, &store, &id, &text)?);
            Outcome::Ok
        }
        IncidentCmd::Handoff { id, to } => {
            done(&incident::handoff(&config, &store, &id, &to)?);
            Outcome::Ok
        }
        IncidentCmd::Classify { id, class } => {
            done(&incident::classify(&config, &store, &id, &class)?);
            Outcome::Ok
        }
        IncidentCmd::Close {
            id,
            cause,
            force,
            reason,
        } => {
            let force = force.then_some(reason.unwrap_or_default());
            let (i, checks) = incident::close(&config, &store, &id, &cause, force.as_deref())?;
            cx.out.either(&json!({ "incident": i, "verification": checks }), || {
                for c in &checks {
                    cx.out.line(format!(
                        "  {} {}: {}",
                        if c.ok { "ok  " } else { "FAIL" },
                        c.check,
                        c.detail
                    ));
                }
                cx.out.line(line(&i));
            });
            Outcome::Ok
        }
        IncidentCmd::Timeline { id } => {
            let i = store
                .incident(&id)?
                .ok_or(incident::IncidentError::Unknown(id.clone()))?;
            let entries = incident::timeline(&store, &i)?;
            cx.out.either(&entries, || {
                for e in &entries {
                    cx.out.line(format!(
                        "{} {:<8} {} {}  [{}]",
                        e.at,
                        e.source,
                        if e.typed { "✎" } else { " " },
                        e.what,
                        &e.hash[..12]
                    ));
                }
            });
            Outcome::Ok
        }
        IncidentCmd::Export { id, format } => {
            let i = store
                .incident(&id)?
                .ok_or(incident::IncidentError::Unknown(id.clone()))?;
            let entries = incident::timeline(&store, &i)?;
            match format {
                Format::Json => cx.out.json(&postmortem_json(&i, &entries)),
                Format::Md => cx.out.line(postmortem_md(&i, &entries)),
            }
            Outcome::Ok
        }
        IncidentCmd::List { all } => {
            let rows = store.incidents(!all, 200)?;
            cx.out.either(&rows, || {
                let mut t = output::table(&["#", "SLUG", "SEVERITY", "STATE", "COMMANDER", "OPENED (UTC)", "TITLE"]);
                for i in &rows {
                    t.add_row(vec![
                        i.id.to_string(),
                        i.slug.clone(),
                        i.severity.clone(),
                        i.state.clone(),
                        i.commander.clone(),
                        i.opened_at.clone(),
                        output::one_line(&i.title, 50),
                    ]);
                }
                output::print_table(&t);
            });
            Outcome::Ok
        }
        IncidentCmd::Show { id } => {
            done(&store.incident(&id)?.ok_or(incident::IncidentError::Unknown(id))?);
            Outcome::Ok
        }
    };
    crate::schedule::upkeep::after_command(&config, &store);
    Ok(outcome)
}

fn postmortem_json(i: &Incident, entries: &[Entry]) -> serde_json::Value {
    let from_chain = entries.iter().filter(|e| !e.typed).count();
    json!({
        "incident": i,
        "impact": entries.iter().filter(|e| e.kind == "alert.opened").map(|e| &e.what).collect::<Vec<_>>(),
        "timeline": entries,
        "commands": entries.iter().filter(|e| e.kind == "session.command").map(|e| &e.what).collect::<Vec<_>>(),
        "follow_ups": entries.iter().filter(|e| e.typed && e.what.to_lowercase().starts_with("follow-up")).map(|e| &e.what).collect::<Vec<_>>(),
        "entries_from_audit_chain": from_chain,
        "entries_typed": entries.len() - from_chain,
    })
}

fn postmortem_md(i: &Incident, entries: &[Entry]) -> String {
    let mut md = format!("# Postmortem: {}\n\n", i.title);
    md.push_str(&format!(
        "- incident: {} (#{}), severity {}, state {}\n- commander: {}\n- opened: {}; closed: {}\n- classification: {}\n- cause: {}\n",
        i.slug,
        i.id,
        i.severity,
        i.state,
        i.commander,
        i.opened_at,
        i.closed_at.as_deref().unwrap_or("not yet"),
        i.classification.as_deref().unwrap_or("not classified"),
        i.cause.as_deref().unwrap_or("not recorded")
    ));
    let section = |md: &mut String, title: &str, lines: Vec<String>| {
        md.push_str(&format!("\n## {title}\n\n"));
        if lines.is_empty() {
            md.push_str("none\n");
        }
        for l in lines {
            md.push_str(&format!("- {l}\n"));
        }
    };
    section(
        &mut md,
        "Impact",
        entries
            .iter()
            .filter(|e| e.kind == "alert.opened")
            .map(|e| format!("{} {}", e.at, e.what))
            .collect(),
    );
    section(
        &mut md,
        "Timeline",
        entries
            .iter()
            .map(|e| {
                format!(
                    "{} [{}] {}{} (audit {} #{})",
                    e.at,
                    e.source,
                    if e.typed { "✎ " } else { "" },
                    e.what,
                    e.hash,
                    e.seq
                )
            })
            .collect(),
    );
    section(
        &mut md,
        "Commands run",
        entries
            .iter()
            .filter(|e| e.kind == "session.command")
            .map(|e| format!("{} {}", e.at, e.what))
            .collect(),
    );
    section(
        &mut md,
        "Follow-ups",
        entries
            .iter()
            .filter(|e| e.typed && e.what.to_lowercase().starts_with("follow-up"))
            .map(|e| e.what.clone())
            .collect(),
    );
    md.push_str("\nEvery timeline line names the audit event it comes from; `runbook audit verify` proves them.\n");
    md
}
