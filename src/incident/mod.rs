//! Incidents: a note opened from a template, a lifecycle that cannot skip a step, and a
//! timeline assembled from the audit chain rather than typed.
//!
//! Invariants: every change to an incident is an audit event (subject `incident SLUG`) written
//! with it; a timeline entry cites the hash of the audit event it comes from; an incident closes
//! only while its verification checks pass, or with a forced, audited reason.

mod timeline;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

pub use timeline::{Entry, timeline};

use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::store::{Incident, Store, StoreError};

/// The lifecycle, in order; `cancelled` may end any state before `closed`.
pub const STATES: [&str; 5] = ["triage", "investigating", "mitigated", "resolved", "closed"];

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("no incident `{0}`")]
    Unknown(String),
    #[error("incident slug `{0}` may only use letters, digits, `.`, `_` and `-`")]
    BadSlug(String),
    #[error("unknown severity `{0}` (incidents.severities has: {1})")]
    Severity(String, String),
    #[error("unknown class `{0}` (one of: {1})")]
    Class(String, String),
    #[error("incident `{slug}` is {from}: it cannot go to {to} ({why})")]
    Transition {
        slug: String,
        from: String,
        to: String,
        why: String,
    },
    #[error("incident `{0}` cannot close: its verification fails: {1}")]
    Unverified(String, String),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl crate::util::Explain for IncidentError {
    fn class(&self) -> crate::util::ExitClass {
        match self {
            IncidentError::Unverified(..) => crate::util::ExitClass::Failed,
            IncidentError::Io(..) | IncidentError::Store(_) => crate::util::ExitClass::Internal,
            _ => crate::util::ExitClass::Usage,
        }
    }
    fn hint(&self) -> Option<String> {
        match self {
            IncidentError::Transition { .. } => Some(format!("the lifecycle is {} (or cancelled)", STATES.join(" → "))),
            IncidentError::Unverified(..) => {
                Some("fix it and try again, or close with --force --reason TEXT (recorded in the audit log)".into())
            }
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        "incident"
    }
}

fn draft(config: &Config, kind: &str, i: &Incident, data: serde_json::Value) -> Draft {
    Draft::new(kind, &format!("incident {}", i.slug), data, &config.redactor)
}

/// The template's placeholders filled in (`{{title}}`, `{{severity}}`, `{{meaning}}`, `{{host}}`,
/// `{{version}}`, `{{opened_at}}`, `{{commander}}`, `{{open_alerts}}`, `{{release}}`,
/// `{{last_deploy}}`, `{{last_verified_backup}}`).
fn fill(config: &Config, store: &Store, template: &str, i: &Incident) -> Result<String, IncidentError> {
    let alerts = store.list_alerts(&crate::store::AlertFilter {
        status: Some(crate::store::AlertStatus::Firing),
        limit: 50,
        ..Default::default()
    })?;
    let open_alerts = if alerts.is_empty() {
        "none".to_string()
    } else {
        alerts
            .iter()
            .map(|a| format!("{} ({})", a.key, a.severity))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut release = Vec::new();
    let mut last_deploy = Vec::new();
    for (name, a) in &config.deploy {
        if let Some(r) = crate::deploy::live(a).ok().flatten() {
            release.push(format!("{name}: {r}"));
        }
        if let Some(d) = store.deploys(name, 1)?.into_iter().next() {
            last_deploy.push(format!("{name}: {} {} ({})", d.reference, d.status, d.started_at));
        }
    }
    let mut backups = Vec::new();
    for name in config.backups.keys() {
        if let Ok(Some(b)) = crate::backup::newest_verified(config, store, name) {
            backups.push(format!("{name}: {} ({})", b.path, b.created_at));
        }
    }
    let or_none = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join("; ") };
    let meaning = config
        .incidents
        .severities
        .get(&i.severity)
        .map(|s| s.meaning.clone())
        .unwrap_or_default();
    let values = [
        ("title", i.title.clone()),
        ("severity", i.severity.clone()),
        ("meaning", meaning),
        ("host", config.host.clone()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("opened_at", i.opened_at.clone()),
        ("commander", i.commander.clone()),
        ("slug", i.slug.clone()),
        ("open_alerts", open_alerts),
        ("release", or_none(release)),
        ("last_deploy", or_none(last_deploy)),
        ("last_verified_backup", or_none(backups)),
    ];
    let mut text = template.to_string();
    for (k, v) in values {
        text = text.replace(&format!("{{{{{k}}}}}"), &v);
    }
    Ok(text)
}

const DEFAULT_TEMPLATE: &str = "# {{title}}\n\n- severity: {{severity}} {{meaning}}\n- host: {{host}} (runbook {{version}})\n- opened: {{opened_at}} by {{commander}}\n- open alerts: {{open_alerts}}\n- live release: {{release}}\n- last deploy: {{last_deploy}}\n- last verified backup: {{last_verified_backup}}\n\n## Timeline\n";

/// The note of `i` as the template makes it.
fn note_text(config: &Config, store: &Store, i: &Incident) -> Result<String, IncidentError> {
    let template = match &config.incidents.template {
        Some(t) => std::fs::read_to_string(t).map_err(|e| IncidentError::Io(t.clone(), e))?,
        None => DEFAULT_TEMPLATE.to_string(),
    };
    fill(config, store, &template, i)
}

/// Creates the note at `path` with `text`, whole; a note already there is kept.
fn create_note(path: &std::path::Path, text: &str) -> Result<bool, IncidentError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| IncidentError::Io(dir.to_path_buf(), e))?;
    }
    crate::util::file::create_new(path, text.as_bytes()).map_err(|e| IncidentError::Io(path.to_path_buf(), e))
}

/// Adds a section to the note in one `O_APPEND` write: other writers at the same time (an
/// update, a session's end-of-session record) are never lost, and a person's edits stay. A
/// note that is gone is made again from the template, with the section.
fn append_note(config: &Config, store: &Store, i: &Incident, section: &str) -> Result<(), IncidentError> {
    let Some(path) = i.note.as_deref().map(PathBuf::from) else {
        return Ok(());
    };
    // Twice at most: a note made by another writer between the two steps is appended to; a
    // name that is neither a note nor free (a dangling link) is an error, not a loop.
    for _ in 0..2 {
        match crate::util::file::append(&path, section) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if create_note(&path, &(note_text(config, store, i)? + section))? {
                    return Ok(());
                }
            }
            r => return r.map_err(|e| IncidentError::Io(path, e)),
        }
    }
    Err(IncidentError::Io(
        path,
        std::io::Error::other("neither a note nor free (a dangling link?)"),
    ))
}

/// Opens incident `slug` (or returns the one already open under it).
pub fn open(
    config: &Config,
    store: &Store,
    slug: &str,
    severity: &str,
    title: &str,
) -> Result<(Incident, bool), IncidentError> {
    if !crate::session::note::valid_id(slug) || slug.chars().all(|c| c.is_ascii_digit()) {
        return Err(IncidentError::BadSlug(slug.to_string()));
    }
    let declared = &config.incidents.severities;
    if !declared.is_empty() && !declared.contains_key(severity) {
        return Err(IncidentError::Severity(
            severity.into(),
            declared.keys().cloned().collect::<Vec<_>>().join(", "),
        ));
    }
    if let Some(existing) = store.incident(slug)? {
        return Ok((existing, false));
    }
    let now = clock::now();
    let note = config
        .incidents
        .dir
        .as_ref()
        .map(|d| d.join(format!("{}-{slug}.md", now.strftime("%Y-%m-%d"))));
    let mut i = Incident {
        id: 0,
        slug: slug.to_string(),
        title: title.to_string(),
        severity: severity.to_string(),
        state: "triage".into(),
        commander: crate::audit::actor::current(),
        classification: None,
        cause: None,
        note: note.as_ref().map(|p| p.display().to_string()),
        opened_at: clock::to_text(now),
        updated_at: clock::to_text(now),
        closed_at: None,
    };
    // Made before the row (a template that cannot be read opens nothing), written after it and
    // only by the process whose row it is: two opening one slug at once leave one note, the
    // one that matches the incident.
    let text = note.as_ref().map(|_| note_text(config, store, &i)).transpose()?;
    let d = draft(
        config,
        "incident.opened",
        &i,
        json!({ "title": title, "severity": severity, "note": i.note }),
    );
    let (stored, new) = store.open_incident(&i, &d)?;
    i = stored;
    if new {
        // Told first: a note that cannot be written does not cost the channels the news (the
        // next line written to the note makes it).
        tell(config, store, &i, &format!("opened: {title}"))?;
        if let (Some(path), Some(text)) = (&note, &text) {
            create_note(path, text)?;
        }
    }
    Ok((i, new))
}

/// Tells the channels of the incident's severity.
fn tell(config: &Config, store: &Store, i: &Incident, what: &str) -> Result<(), IncidentError> {
    let Some(sev) = config.incidents.severities.get(&i.severity) else {
        return Ok(());
    };
    if sev.notify.is_empty() || !config.notify.enabled {
        return Ok(());
    }
    let summary = format!("{} [{}] {what} (commander {})", i.title, i.state, i.commander);
    let key = format!("incident:{}:{}:{}", i.slug, i.state, clock::to_text(clock::now()));
    let message = crate::notify::Message::event("incident", &i.slug, &config.host, &i.severity, summary);
    crate::notify::queue_event(store, &sev.notify, &message, &key)?;
    Ok(())
}

fn get(store: &Store, id: &str) -> Result<Incident, IncidentError> {
    store
        .incident(id)?
        .ok_or_else(|| IncidentError::Unknown(id.to_string()))
}

/// Moves the incident to `to`: the next state of the lifecycle (or `cancelled`), never a skip.
pub fn status(
    config: &Config,
    store: &Store,
    id: &str,
    to: &str,
    note: Option<&str>,
) -> Result<Incident, IncidentError> {
    let mut i = get(store, id)?;
    let refuse = |why: &str| IncidentError::Transition {
        slug: i.slug.clone(),
        from: i.state.clone(),
        to: to.to_string(),
        why: why.to_string(),
    };
    let from = STATES.iter().position(|s| *s == i.state);
    match (to, from) {
        (_, None) => return Err(refuse("it has ended")),
        ("cancelled", Some(_)) => {}
        ("closed", _) => return Err(refuse("close it with `incident close`, which checks its verification")),
        (to, Some(f)) => match STATES.iter().position(|s| *s == to) {
            Some(t) if t == f + 1 => {}
            Some(t) if t <= f => return Err(refuse("a state already passed")),
            Some(_) => return Err(refuse(&format!("the next state is {}", STATES[f + 1]))),
            None => return Err(refuse("not a state")),
        },
    }
    let now = clock::to_text(clock::now());
    i.state = to.to_string();
    i.updated_at = now.clone();
    if to == "cancelled" {
        i.closed_at = Some(now.clone());
    }
    store.update_incident(
        &i,
        &draft(config, "incident.status", &i, json!({ "state": to, "note": note })),
    )?;
    append_note(
        config,
        store,
        &i,
        &format!(
            "\n- {now} **{to}**{}\n",
            note.map(|n| format!(": {n}")).unwrap_or_default()
        ),
    )?;
    tell(
        config,
        store,
        &i,
        &format!("now {to}{}", note.map(|n| format!(": {n}")).unwrap_or_default()),
    )?;
    Ok(i)
}

/// A human line in the timeline.
pub fn log(config: &Config, store: &Store, id: &str, text: &str) -> Result<Incident, IncidentError> {
    let mut i = get(store, id)?;
    let now = clock::to_text(clock::now());
    i.updated_at = now.clone();
    store.update_incident(&i, &draft(config, "incident.log", &i, json!({ "text": text })))?;
    append_note(config, store, &i, &format!("\n- {now} {text}\n"))?;
    Ok(i)
}

/// Hands the commander role to `to`; the note says who held it when.
pub fn handoff(config: &Config, store: &Store, id: &str, to: &str) -> Result<Incident, IncidentError> {
    let mut i = get(store, id)?;
    let from = std::mem::replace(&mut i.commander, to.to_string());
    let now = clock::to_text(clock::now());
    i.updated_at = now.clone();
    store.update_incident(
        &i,
        &draft(config, "incident.handoff", &i, json!({ "from": from, "to": to })),
    )?;
    append_note(config, store, &i, &format!("\n- {now} commander: {from} → {to}\n"))?;
    Ok(i)
}

pub fn classify(config: &Config, store: &Store, id: &str, class: &str) -> Result<Incident, IncidentError> {
    let mut i = get(store, id)?;
    if !config.incidents.classes.iter().any(|c| c == class) {
        return Err(IncidentError::Class(class.into(), config.incidents.classes.join(", ")));
    }
    i.classification = Some(class.to_string());
    i.updated_at = clock::to_text(clock::now());
    store.update_incident(&i, &draft(config, "incident.classified", &i, json!({ "class": class })))?;
    append_note(
        config,
        store,
        &i,
        &format!("\n- {} classified: {class}\n", i.updated_at),
    )?;
    Ok(i)
}

/// Closes the incident once its verification checks pass now (or with `force`, whose reason
/// is recorded).
pub fn close(
    config: &Arc<Config>,
    store: &Store,
    id: &str,
    cause: &str,
    force: Option<&str>,
) -> Result<(Incident, Vec<crate::check::Outcome>), IncidentError> {
    let mut i = get(store, id)?;
    if matches!(i.state.as_str(), "closed" | "cancelled") {
        return Err(IncidentError::Transition {
            slug: i.slug.clone(),
            from: i.state.clone(),
            to: "closed".into(),
            why: "it has ended".into(),
        });
    }
    let outcomes = if config.incidents.verify.is_empty() {
        Vec::new()
    } else {
        crate::check::probe_blocking(config, &config.incidents.verify)
    };
    let failing: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.check, o.detail))
        .collect();
    if !failing.is_empty() && force.is_none() {
        return Err(IncidentError::Unverified(i.slug.clone(), failing.join("; ")));
    }
    let now = clock::to_text(clock::now());
    i.state = "closed".into();
    i.cause = Some(cause.to_string());
    i.closed_at = Some(now.clone());
    i.updated_at = now.clone();
    let verified: Vec<_> = outcomes
        .iter()
        .map(|o| json!({ "check": o.check, "ok": o.ok, "detail": o.detail }))
        .collect();
    store.update_incident(
        &i,
        &draft(
            config,
            "incident.closed",
            &i,
            json!({ "cause": cause, "verification": verified, "forced": force }),
        ),
    )?;
    append_note(
        config,
        store,
        &i,
        &format!(
            "\n- {now} **closed**: {cause}{}\n",
            force
                .map(|r| format!(" (closed without verification: {r})"))
                .unwrap_or_default()
        ),
    )?;
    tell(config, store, &i, &format!("closed: {cause}"))?;
    Ok((i, outcomes))
}
