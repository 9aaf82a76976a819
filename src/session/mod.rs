//! Guarded operator sessions: read-only diagnosis by default; state changes only through
//! approved, recorded, bounded commands.
//!
//! Owns the rules: `policy` classifies a command; a diagnostic session runs only read-only
//! ones; a maintenance session runs a state-changing one only with an approved change
//! request bound to exactly that argv, working directory and session, one use per approval
//! unless it says more; the requester never approves their own request; persistent
//! privileged shells never run. Every command runs through `exec/` with the session limits,
//! its output redacted before it is stored or shown, and every decision is an audit event.

pub mod note;
pub mod policy;
pub mod redact;

use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::audit::Draft;
use crate::clock;
use crate::config::Config;
use crate::exec::{self, Cancel, Spec};
use crate::store::{ChangeRequest, NewChange, Session, Store, StoreError};
use crate::util::hex;
use crate::util::sshsig;
use crate::util::{ExitClass, Explain};
pub use policy::{Class, Policy};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("no session {0}")]
    NotFound(i64),
    #[error("session {0} has ended")]
    Ended(i64),
    #[error("no session given")]
    NoSession,
    #[error("mode must be diagnostic or maintenance, not `{0}`")]
    BadMode(String),
    #[error("no change request {0}")]
    NoChange(i64),
    #[error("change request {0} is {1}, not pending")]
    NotPending(i64, String),
    #[error("`{0}` requested change {1}: the requester cannot approve their own request")]
    SelfApproval(String, i64),
    #[error("change request {0} needs an approval signed with an approver's SSH key (sessions.approvers is set)")]
    SignatureRequired(i64),
    #[error("a signed approval needs sessions.approvers: no public keys to check it against")]
    NoApprovers,
    #[error("signature refused: {0}")]
    Signature(#[from] sshsig::SigError),
    #[error("incident `{0}`: an incident id is letters, digits, `.`, `_` and `-`, not starting with `.`")]
    BadIncident(String),
    #[error("cannot read the command `{0}`: unbalanced quotes")]
    BadCommand(String),
    #[error("a diagnostic session needs the kernel's read-only sandbox: {0}")]
    NoSandbox(crate::exec::sandbox::SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Explain for SessionError {
    fn class(&self) -> ExitClass {
        match self {
            SessionError::Store(s) => s.class(),
            SessionError::SelfApproval(..) | SessionError::NotPending(..) => ExitClass::Failed,
            _ => ExitClass::Usage,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            SessionError::Store(s) => s.kind(),
            _ => self.class().name(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            SessionError::NoSession => Some(
                "start one: runbook session start --mode diagnostic --reason TEXT, then export RUNBOOK_SESSION".into(),
            ),
            SessionError::NoSandbox(_) => Some(
                "run on a kernel with Landlock, or set `sessions.sandbox: off` to run diagnosis unsandboxed (every record then says so)".into(),
            ),
            SessionError::SelfApproval(..) => {
                Some("another person approves it (their own OS account, or an API token)".into())
            }
            SessionError::SignatureRequired(id) => Some(format!(
                "the approver runs: runbook change show {id} --payload | ssh-keygen -Y sign -f ~/.ssh/id_ed25519 -n {} > {id}.sig; then: runbook change approve {id} --signature {id}.sig",
                sshsig::NAMESPACE
            )),
            SessionError::Signature(sshsig::SigError::Mismatch(_)) => Some(
                "sign exactly the text of `runbook change show ID --payload` for this request, on this host".into(),
            ),
            SessionError::Store(e) => e.hint(),
            _ => None,
        }
    }
}

pub fn policy(config: &Config) -> Policy {
    Policy {
        read_only: config.sessions.read_only.clone(),
        deny_read: config.secrets.deny_read.clone(),
    }
}

/// Whether `program` is an absolute path to a file that only root can replace: the file and
/// every directory above it owned by root and not writable by group or others. A program by
/// a relative path, or anywhere a user could write, is not judged by its name.
fn root_owned(program: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if !program.is_absolute() {
        return false;
    }
    let Ok(real) = std::fs::canonicalize(program) else {
        return false;
    };
    real.ancestors()
        .all(|p| std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
}

/// What an approval binds to: this argv, in this directory, asked by this person, on this
/// host. Any maintenance session of the requester on the host may use it, so the documented
/// order works: diagnose, file the request, have it approved, run it in maintenance.
pub fn binding(argv: &[String], cwd: &str, requester: &str, host: &str) -> String {
    hex(&Sha256::digest(
        json!([argv, cwd, requester, host]).to_string().as_bytes(),
    ))
}

pub fn start(
    config: &Config,
    store: &Store,
    mode: &str,
    reason: &str,
    incident: Option<&str>,
) -> Result<(i64, Vec<(String, String)>), SessionError> {
    if !matches!(mode, "diagnostic" | "maintenance") {
        return Err(SessionError::BadMode(mode.into()));
    }
    if let Some(i) = incident
        && !note::valid_id(i)
    {
        return Err(SessionError::BadIncident(i.into()));
    }
    if mode == "diagnostic" && config.sessions.sandbox {
        crate::exec::sandbox::ReadOnly::new(None).map_err(SessionError::NoSandbox)?;
    }
    let actor = crate::audit::actor::current();
    let list = checklist(config, mode, incident);
    let draft = Draft::new(
        "session.started",
        "session",
        json!({ "mode": mode, "reason": reason, "incident": incident,
                "sandbox": if config.sessions.sandbox { "read-only" } else { "unsandboxed" },
                "checklist": list }),
        &config.redactor,
    );
    let id = store.start_session(
        mode,
        reason,
        incident,
        &actor,
        &config.host,
        &clock::to_text(clock::now()),
        &draft,
    )?;
    Ok((id, list))
}

/// The start-of-session checklist, as runbook can answer it: what the mode allows, how long
/// access lasts, whether recording is on and what happens when it fails, the kernel sandbox,
/// the linked incident, and the policy's version.
pub fn checklist(config: &Config, mode: &str, incident: Option<&str>) -> Vec<(String, String)> {
    let s = &config.sessions;
    [
        ("mode", match mode {
            "diagnostic" => "diagnostic: read-only commands run; anything else is refused".to_string(),
            _ => "maintenance: a state-changing command runs only under an approved change request naming it".to_string(),
        }),
        ("access window", format!("until `runbook session end`; every command bounded ({})", limit_text(config))),
        ("recording", "on, fail-closed: a command is recorded in the audit log before it runs, or it does not run".to_string()),
        ("sandbox", if s.sandbox { "the kernel's read-only sandbox for read-only commands".to_string() } else { "off (sessions.sandbox: false)".to_string() }),
        ("incident", incident.map(String::from).unwrap_or_else(|| "none: for more than routine maintenance, `runbook incident open SLUG` and start with --incident SLUG".into())),
        ("policy", format!("version {} ({} read-only patterns of yours, {} deny_read paths)", policy::version(&s.read_only, &config.secrets.deny_read), s.read_only.len(), config.secrets.deny_read.len())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn open(store: &Store, id: i64) -> Result<Session, SessionError> {
    let s = store.session(id)?.ok_or(SessionError::NotFound(id))?;
    if s.ended_at.is_some() {
        return Err(SessionError::Ended(id));
    }
    Ok(s)
}

/// The outcome of `session exec`.
#[derive(Debug, Clone, Serialize)]
pub struct Executed {
    pub session: i64,
    pub argv: Vec<String>,
    pub class: Class,
    /// ran or refused
    pub decision: String,
    pub reason: String,
    pub change_id: Option<i64>,
    pub exit_code: Option<i32>,
    /// Redacted.
    pub output: String,
    /// How the command ran: `read-only` (the kernel's sandbox), `none (approved change)`, or
    /// `unsandboxed` (`sessions.sandbox: off`); absent when it did not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// For a refusal: what to do instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Refused because it needs an approved change request (the hint says how to file one).
    #[serde(skip)]
    pub needs_request: bool,
}

/// The paths no command may read unapproved: `secrets.deny_read`, and the env files that hold
/// the secrets, as they are on this host now.
pub fn secret_paths(config: &Config) -> Vec<std::path::PathBuf> {
    let patterns: Vec<String> = config
        .secrets
        .deny_read
        .iter()
        .cloned()
        .chain(config.secrets.env_files.iter().map(|p| p.display().to_string()))
        .collect();
    exec::mask::expand(&patterns)
}

/// How a read-only command of a session is held: in the kernel's read-only sandbox (unless
/// `sessions.sandbox` is off), every secret path masked.
pub fn confine(config: &Config) -> exec::Confine {
    exec::Confine {
        read_only: config.sessions.sandbox,
        masked: secret_paths(config),
    }
}

/// Classifies and, if allowed, runs `argv` under session `id`.
/// `cancel` stops the command (TERM, then KILL after its grace): its caller gave up on it.
pub fn exec(
    config: &Config,
    store: &Store,
    id: i64,
    argv: &[String],
    cwd: &str,
    cancel: &Cancel,
) -> Result<Executed, SessionError> {
    let session = open(store, id)?;
    // The program is judged, and run, as the file it is: a bare name is looked up in PATH
    // here, so a `.` or a writable directory in PATH cannot lend a name to another program.
    let resolved: Vec<String> = match argv.split_first() {
        Some((program, rest)) if !program.contains('/') => {
            let found = exec::resolve(
                program,
                cwd,
                config.env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()),
            );
            std::iter::once(found.unwrap_or_else(|| program.clone()))
                .chain(rest.iter().cloned())
                .collect()
        }
        _ => argv.to_vec(),
    };
    let trusted = resolved.first().is_some_and(|p| root_owned(std::path::Path::new(p)));
    // Everything shown or stored about the command is redacted: its reasons quote it.
    let class = policy(config)
        .classify_as(&resolved, trusted)
        .redacted(&config.redactor);
    let shown = config.redactor.redact(&crate::util::display(argv)).into_owned();
    let request_hint = format!(
        "file a change request: runbook change request --session {id} --objective '…' --command {} --impact '…' --rollback '…'",
        shlex::try_quote(&shown)
            .map(|q| q.into_owned())
            .unwrap_or_else(|_| shown.clone())
    );
    // Decide without spending anything yet: (may run?, reason, hint). A state change or a
    // secret read runs only with an approval, taken when the command starts.
    let needs_approval = match (&class, session.mode.as_str()) {
        (Class::StateChanging(_), "maintenance") | (Class::SecretRead(_), _) => {
            Some(binding(argv, cwd, &session.actor, &session.host))
        }
        _ => None,
    };
    let (run, reason, hint) = match (&class, session.mode.as_str()) {
        (Class::Refused(why), _) => (false, why.clone(), None),
        (Class::ReadOnly, _) => (true, "read-only".to_string(), None),
        (Class::StateChanging(why), "diagnostic") => (
            false,
            format!("{why}; a diagnostic session runs read-only commands only"),
            Some(format!("{request_hint}, and run it in a maintenance session")),
        ),
        (Class::StateChanging(_) | Class::SecretRead(_), _) => (true, String::new(), None),
    };
    // Everything but an approved state change runs in the kernel's read-only sandbox: the
    // argv policy above is the explainable first layer, the kernel the one that holds.
    let sandbox = if !config.sessions.sandbox {
        "unsandboxed"
    } else if matches!(class, Class::StateChanging(_)) {
        "none (approved change)"
    } else {
        "read-only"
    };
    // `deny_read` files are masked for every command, in every mode, except a path an
    // approved change request accepted the exposure of (the command names it).
    let exposed: Vec<std::path::PathBuf> = match &class {
        Class::SecretRead(_) => argv
            .iter()
            .filter_map(|a| std::fs::canonicalize(std::path::Path::new(cwd).join(a)).ok())
            .collect(),
        _ => Vec::new(),
    };
    let masked: Vec<std::path::PathBuf> = secret_paths(config)
        .into_iter()
        .filter(|p| !exposed.contains(p))
        .collect();
    let (run, reason, hint) = match exec::mask::Masks::new(&masked) {
        Err(e) if run => (false, e.to_string(), e.hint()),
        _ => (run, reason, hint),
    };
    let at = clock::to_text(clock::now());
    let stored_argv: Vec<String> = argv.iter().map(|a| config.redactor.redact(a).into_owned()).collect();
    let refuse = |reason: String, hint: Option<String>, needs_request: bool| -> Result<Executed, SessionError> {
        let draft = Draft::new(
            "session.refused",
            &format!("session {id}"),
            json!({ "command": shown, "cwd": cwd, "class": class, "reason": reason }),
            &config.redactor,
        );
        store.record_refusal(id, &stored_argv, cwd, &reason, &at, &draft)?;
        Ok(Executed {
            session: id,
            argv: stored_argv.clone(),
            class: class.clone(),
            decision: "refused".into(),
            reason,
            change_id: None,
            exit_code: None,
            output: String::new(),
            sandbox: None,
            hint,
            needs_request,
        })
    };
    if !run {
        let needs_request = matches!((&class, session.mode.as_str()), (Class::StateChanging(_), "diagnostic"));
        return refuse(reason, hint, needs_request);
    }
    // Recorded as started before it runs (spending its approval in the same transaction): a
    // runbook killed meanwhile leaves "started, outcome unknown", never nothing.
    let started = store.start_session_command(id, &stored_argv, cwd, needs_approval.as_deref(), &at, &|change| {
        Draft::new(
            "session.command_started",
            &format!("session {id}"),
            json!({ "command": shown, "cwd": cwd, "class": class, "change_id": change, "sandbox": sandbox }),
            &config.redactor,
        )
    })?;
    let Some((row, change_id)) = started else {
        let why = match &class {
            Class::StateChanging(why) | Class::SecretRead(why) => why.as_str(),
            _ => "",
        };
        return refuse(
            format!("{why}; no approved change request names exactly this command here"),
            Some(request_hint.clone()),
            true,
        );
    };
    let reason = match change_id {
        Some(c) => format!("approved by change request {c}"),
        None => reason,
    };
    let mut spec = Spec::new(resolved, config.sessions.timeout.0);
    spec.cwd = Some(cwd.into());
    spec.env = config.env.clone();
    spec.env.push(("RUNBOOK_SESSION".into(), id.to_string()));
    spec.limits = config.sessions.limits.clone();
    spec.hold = exec::Confine {
        read_only: sandbox == "read-only",
        masked,
    };
    // What is shown is what is kept: both bounded by sessions.limits.output.
    if let Some(limit) = config.sessions.output {
        let limit = usize::try_from(limit.0).unwrap_or(usize::MAX).max(64);
        spec.head = limit / 4;
        spec.tail = limit - spec.head;
    }
    let (decision, reason, exit_code, output, duration_ms) = match exec::run(&spec, cancel) {
        Ok(o) => {
            let output = redact::output(&config.redactor, &o.combined_output());
            let duration = Some(o.duration.as_millis() as i64);
            match o.stopped {
                Some(exec::Stop::Timeout) => (
                    "timed out",
                    format!("{reason}; killed at the session timeout ({})", config.sessions.timeout),
                    None,
                    output,
                    duration,
                ),
                Some(exec::Stop::Shutdown) => (
                    "cancelled",
                    format!("{reason}; killed: its caller cancelled it"),
                    None,
                    output,
                    duration,
                ),
                None => ("ran", reason, o.exit_code, output, duration),
            }
        }
        Err(e) => (
            "failed to start",
            format!("{reason}; {e}"),
            None,
            String::new(),
            Some(0),
        ),
    };
    let draft = Draft::new(
        "session.command",
        &format!("session {id}"),
        json!({ "command": shown, "cwd": cwd, "class": class, "reason": reason, "change_id": change_id,
                "decision": decision, "exit_code": exit_code, "duration_ms": duration_ms, "sandbox": sandbox }),
        &config.redactor,
    );
    store.finish_session_command(
        row,
        decision,
        &reason,
        exit_code.map(i64::from),
        &output,
        duration_ms,
        &draft,
    )?;
    Ok(Executed {
        session: id,
        argv: stored_argv,
        class,
        decision: decision.into(),
        reason,
        change_id,
        exit_code,
        output,
        sandbox: Some(sandbox.to_string()),
        hint: None,
        needs_request: false,
    })
}

/// A change request as asked: what for, the exact command, where, its impact and undo.
#[derive(Debug, Clone)]
pub struct Asked {
    pub objective: String,
    pub argv: Vec<String>,
    pub cwd: String,
    pub impact: String,
    pub rollback: String,
    /// How many times the approval may be used (at least once).
    pub uses: u32,
}

/// Splits a command given as one string, as a shell would split it (no shell features).
pub fn split_command(command: &str) -> Result<Vec<String>, SessionError> {
    shlex::split(command)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| SessionError::BadCommand(command.into()))
}

/// Files a change request in session `id`, asked by the current actor. Its approval binds to
/// the session's owner: any maintenance session of theirs on this host may use it, whoever
/// (an assistant through `runbook mcp`, say) asked.
pub fn request(config: &Config, store: &Store, id: i64, asked: Asked) -> Result<i64, SessionError> {
    let session = open(store, id)?;
    let Asked {
        objective,
        argv,
        cwd,
        impact,
        rollback,
        uses,
    } = asked;
    if argv.is_empty() {
        return Err(SessionError::BadCommand(String::new()));
    }
    let requester = crate::audit::actor::current();
    let draft = Draft::new(
        "change.requested",
        "change",
        json!({ "session": id, "objective": objective, "command": crate::util::display(&argv), "cwd": cwd,
                "impact": impact, "rollback": rollback, "uses": uses }),
        &config.redactor,
    );
    Ok(store.request_change(
        &NewChange {
            binding: binding(&argv, &cwd, &session.actor, &session.host),
            objective,
            argv,
            cwd,
            impact,
            rollback,
            session_id: Some(id),
            expires_at: None,
            requester,
            uses: i64::from(uses.max(1)),
            created_at: clock::to_text(clock::now()),
        },
        &draft,
    )?)
}

/// The exact text an approver signs with their SSH key for change `c` on this host
/// (`runbook change show ID --payload`): the request and its binding, so the signature
/// authorises that one command, in that directory and session, here.
pub fn payload(config: &Config, c: &ChangeRequest) -> String {
    let mut text = format!(
        "runbook change approval\nhost: {}\nchange: {}\nrequested: {} by {}\nsession: {}\ncommand: {}\ncwd: {}\nuses: {}\nbinding: {}\n",
        config.host,
        c.id,
        c.created_at,
        c.requester,
        c.session_id.map_or("none".to_string(), |s| s.to_string()),
        crate::util::display(&c.argv),
        c.cwd,
        c.uses_left,
        c.binding
    );
    if let Some(at) = &c.expires_at {
        text.push_str(&format!("expires: {at}\n"));
    }
    text
}

/// The command a waiver of gate `gate` stands for.
pub fn waiver_argv(gate: &str) -> Vec<String> {
    ["runbook", "gate", "waive", gate].map(String::from).to_vec()
}

/// Asks for a waiver of gate `gate` until `expires_at`: a change request outside any session,
/// approved by another person like any other (`runbook change approve ID`).
pub fn request_waiver(
    config: &Config,
    store: &Store,
    gate: &str,
    reason: &str,
    expires_at: &str,
) -> Result<i64, SessionError> {
    let argv = waiver_argv(gate);
    let requester = crate::audit::actor::current();
    let draft = Draft::new(
        "change.requested",
        "change",
        json!({ "waiver": gate, "objective": reason, "command": crate::util::display(&argv), "expires_at": expires_at }),
        &config.redactor,
    );
    Ok(store.request_change(
        &NewChange {
            objective: reason.into(),
            // Never the binding of a session command: a waiver authorises no command.
            binding: format!("waiver:{}", binding(&argv, "", &requester, &config.host)),
            argv,
            cwd: String::new(),
            impact: format!("gate `{gate}` counts as passed, whatever it measures, until {expires_at}"),
            rollback: "deny it while pending; an approved waiver ends at its expiry".into(),
            session_id: None,
            requester,
            uses: 0,
            created_at: clock::to_text(clock::now()),
            expires_at: Some(expires_at.into()),
        },
        &draft,
    )?)
}

/// The approvers of `sessions.approvers`, their keys parsed (validated at config load).
fn approvers(config: &Config) -> Vec<(String, sshsig::PublicKey)> {
    config
        .sessions
        .approvers
        .iter()
        .filter_map(|(name, line)| sshsig::PublicKey::parse(line).ok().map(|k| (name.clone(), k)))
        .collect()
}

/// Approves (or denies) change `id` as `actor`, who must not be its requester.
///
/// With `sessions.approvers` set, an approval must carry an `ssh-keygen -Y sign` signature
/// over [`payload`] by one of those keys; the approver's name from the config is then the
/// actor, whatever OS account ran the command. `behalf` is the person an API token acts for
/// (the OS user who created it): without a signature, neither it nor `actor` may be the
/// requester.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    config: &Config,
    store: &Store,
    id: i64,
    approve: bool,
    actor: &str,
    behalf: Option<&str>,
    reason: Option<&str>,
    signature: Option<&str>,
) -> Result<ChangeRequest, SessionError> {
    let c = store.change(id)?.ok_or(SessionError::NoChange(id))?;
    if c.status != "pending" {
        return Err(SessionError::NotPending(id, c.status));
    }
    let mut actor = actor.to_string();
    let mut signed_by = None;
    if approve {
        let keys = approvers(config);
        let refuse = |e: SessionError| -> Result<ChangeRequest, SessionError> {
            store.audit_append(&Draft::new(
                "change.signature_refused",
                &format!("change {id}"),
                json!({ "actor": actor, "error": e.to_string() }),
                &config.redactor,
            ))?;
            Err(e)
        };
        match (signature, keys.is_empty()) {
            (None, false) => return refuse(SessionError::SignatureRequired(id)),
            (Some(_), true) => return refuse(SessionError::NoApprovers),
            (None, true) => {}
            (Some(sig), false) => match sshsig::verify(sig, sshsig::NAMESPACE, payload(config, &c).as_bytes(), &keys) {
                Ok(name) => {
                    let key = &keys.iter().find(|(n, _)| n == name).expect("found").1;
                    signed_by = Some(json!({ "approver": name, "key": key.fingerprint(), "os_user": actor }));
                    actor = name.to_string();
                }
                Err(e) => return refuse(e.into()),
            },
        }
    }
    // A signature names the approver whoever carried it; without one, the token's creator is.
    if approve && (c.requester == actor || (signed_by.is_none() && behalf == Some(c.requester.as_str()))) {
        store.audit_append(&Draft::new(
            "change.self_approval_refused",
            &format!("change {id}"),
            json!({ "actor": actor, "on_behalf_of": behalf }),
            &config.redactor,
        ))?;
        return Err(SessionError::SelfApproval(actor, id));
    }
    let status = if approve { "approved" } else { "denied" };
    let mut draft = Draft::new(
        if approve { "change.approved" } else { "change.denied" },
        &format!("change {id}"),
        json!({ "command": crate::util::display(&c.argv), "session": c.session_id, "requester": c.requester,
                "reason": reason, "signed": signed_by }),
        &config.redactor,
    );
    draft.actor = actor.clone();
    if !store.decide_change(id, status, &actor, &clock::to_text(clock::now()), reason, &draft)? {
        return Err(SessionError::NotPending(id, "no longer pending".into()));
    }
    store.change(id)?.ok_or(SessionError::NoChange(id))
}

/// The end-of-session record of the playbook.
#[derive(Debug, Clone, Serialize)]
pub struct EndRecord {
    pub session: Session,
    pub commands_run: usize,
    pub commands_refused: usize,
    pub state_changed: bool,
    pub approvals_used: Vec<i64>,
    pub open_change_requests: Vec<i64>,
    pub next_step: String,
    /// The incident note the record was appended to.
    pub incident_note: Option<String>,
    /// Why the record could not be appended to the session's incident note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_note_error: Option<String>,
}

pub fn end(config: &Config, store: &Store, id: i64, next: Option<&str>) -> Result<EndRecord, SessionError> {
    let session = open(store, id)?;
    let commands = store.session_commands(id)?;
    // Started, timed out, cancelled or ran: each was run (a `started` one by a runbook that stopped
    // before it ended: its outcome is not known).
    let run = commands.iter().filter(|c| c.decision != "refused").count();
    let approvals: Vec<i64> = commands.iter().filter_map(|c| c.change_id).collect();
    let open: Vec<i64> = store
        .changes(1000)?
        .into_iter()
        .filter(|c| c.session_id == Some(id) && c.status == "pending")
        .map(|c| c.id)
        .collect();
    let next_step = next.map(str::to_string).unwrap_or_else(|| {
        if !open.is_empty() {
            format!("decide the open change request(s) {open:?}, or withdraw them")
        } else if approvals.is_empty() {
            "no state was changed: keep watching the checks; escalate with a maintenance session if needed".into()
        } else {
            "verify the change held: runbook check, and watch the alerts for an hour".into()
        }
    });
    let at = clock::to_text(clock::now());
    let mut record = EndRecord {
        commands_run: run,
        commands_refused: commands.len() - run,
        state_changed: !approvals.is_empty(),
        approvals_used: approvals,
        open_change_requests: open,
        next_step: next_step.clone(),
        incident_note: None,
        incident_note_error: None,
        session: Session {
            ended_at: Some(at.clone()),
            next_step: Some(next_step.clone()),
            ..session
        },
    };
    // The note is found first and written after the session's end is committed, so a note
    // never tells of a session that did not end.
    let mut note_path = None;
    if let Some(incident) = &record.session.incident {
        match &config.incidents.dir {
            None => record.incident_note_error = Some("no incidents.dir in the config".into()),
            Some(dir) => match note::find(dir, incident) {
                None => {
                    record.incident_note_error =
                        Some(format!("no single note for incident `{incident}` in {}", dir.display()))
                }
                Some(path) => note_path = Some(path),
            },
        }
    }
    let draft = Draft::new(
        "session.ended",
        &format!("session {id}"),
        json!({ "commands_run": record.commands_run, "commands_refused": record.commands_refused,
                "state_changed": record.state_changed, "approvals_used": record.approvals_used,
                "open_change_requests": record.open_change_requests, "next_step": next_step,
                "incident_note": note_path }),
        &config.redactor,
    );
    store.end_session(id, &at, Some(&next_step), &draft)?;
    if let Some(path) = note_path {
        match crate::util::file::append(&path, &note::markdown(&record, &commands)) {
            Ok(()) => record.incident_note = Some(path.display().to_string()),
            Err(e) => record.incident_note_error = Some(format!("{}: {e}", path.display())),
        }
    }
    Ok(record)
}

/// How long a session command may run, for display.
pub fn limit_text(config: &Config) -> String {
    format!("timeout {}", config.sessions.timeout)
}
