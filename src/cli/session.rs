//! `runbook session …` and `runbook change …`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Subcommand;
use serde_json::json;

use super::output::{self, one_line};
use super::{CliError, Ctx, Outcome};
use crate::session::{self, SessionError};

fn session_id(id: Option<i64>) -> Result<i64, CliError> {
    id.ok_or_else(|| SessionError::NoSession.into())
}

fn cwd() -> String {
    std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/".into())
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Open a session; prints its id (export it as RUNBOOK_SESSION)
    Start {
        /// diagnostic (read-only) or maintenance (approved changes)
        #[arg(long, default_value = "diagnostic")]
        mode: String,
        /// Why: the issue being diagnosed
        #[arg(long)]
        reason: String,
        /// The incident this session belongs to
        #[arg(long, value_name = "ID")]
        incident: Option<String>,
    },
    /// Run one command under the session (no shell: pipes and redirections are refused)
    Exec {
        /// The session [default: RUNBOOK_SESSION]
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
        /// The command and its arguments, after `--`
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// The session: mode, reason, commands so far
    Status {
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
    },
    /// Close the session and print the end-of-session record
    End {
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
        /// The next safest step, for the record
        #[arg(long, value_name = "TEXT")]
        next: Option<String>,
    },
    /// Recent sessions, newest first
    List,
    /// Every command of a session with its decision, exit code and redacted output, in order
    Show { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ChangeCmd {
    /// Ask to run one state-changing command in a session; prints the request's id
    Request {
        #[arg(long, env = "RUNBOOK_SESSION", value_name = "ID")]
        session: Option<i64>,
        /// What the change is for
        #[arg(long)]
        objective: String,
        /// The exact command, as one string (split like a shell would, no shell features)
        #[arg(long)]
        command: String,
        /// What it affects
        #[arg(long)]
        impact: String,
        /// How to undo it
        #[arg(long)]
        rollback: String,
        /// How many times the approval may be used
        #[arg(long, default_value_t = 1)]
        uses: u32,
    },
    /// Change requests, newest first
    List,
    /// One request in full
    Show {
        id: i64,
        /// Print only the text an approver signs (`| ssh-keygen -Y sign -n runbook-change`)
        #[arg(long)]
        payload: bool,
    },
    /// Approve a pending request (not your own); on a terminal, type its id to confirm
    ///
    /// With `sessions.approvers` set, the approval must be signed with an approver's SSH key:
    /// `runbook change show ID --payload | ssh-keygen -Y sign -f ~/.ssh/id_ed25519 -n
    /// runbook-change > ID.sig`, then `runbook change approve ID --signature ID.sig`.
    Approve {
        id: i64,
        /// An `ssh-keygen -Y sign` signature of the request's payload (a file, or - for stdin)
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
    /// Deny a pending request
    Deny {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

pub fn run(cx: &Ctx, cmd: SessionCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        SessionCmd::Start { mode, reason, incident } => {
            let (id, checklist) = session::start(&config, &store, &mode, &reason, incident.as_deref())?;
            let list: serde_json::Map<String, serde_json::Value> =
                checklist.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            cx.out
                .either(&json!({ "session": id, "mode": mode, "checklist": list }), || {
                    cx.out.line(format!(
                        "session {id} started ({mode}; {})",
                        session::limit_text(&config)
                    ));
                    cx.out.line("start of session:");
                    for (k, v) in &checklist {
                        cx.out.line(format!("  {k:<14} {v}"));
                    }
                    cx.out.line(format!("export RUNBOOK_SESSION={id}"));
                });
            Ok(Outcome::Ok)
        }
        SessionCmd::Exec { session: id, command } => {
            let id = session_id(id)?;
            let done = session::exec(&config, &store, id, &command, &cwd(), &Default::default())?;
            if cx.out.json {
                cx.out.json(&done);
            } else if done.decision == "refused" {
                eprintln!("refused: {}", done.reason);
                if let Some(h) = &done.hint {
                    eprintln!("  {h}");
                }
            } else {
                output::emit(&done.output);
                if done.decision != "ran" {
                    eprintln!("{}: {}", done.decision, done.reason);
                }
            }
            Ok(match (done.decision.as_str(), done.exit_code) {
                ("refused", _) => Outcome::Code(super::error::EXIT_USAGE),
                ("ran", Some(0)) => Outcome::Ok,
                ("ran", Some(c)) => Outcome::Code(u8::try_from(c).unwrap_or(1).max(1)),
                _ => Outcome::Failed,
            })
        }
        SessionCmd::Status { session: id } => {
            let id = session_id(id)?;
            let s = store.session(id)?.ok_or(SessionError::NotFound(id))?;
            let commands = store.session_commands(id)?;
            let value = json!({ "session": s, "commands": commands.len(),
                                "refused": commands.iter().filter(|c| c.decision == "refused").count() });
            cx.out.either(&value, || {
                cx.out.line(format!(
                    "session {} ({}) by {} since {}{}: {}",
                    s.id,
                    s.mode,
                    s.actor,
                    s.started_at,
                    if s.ended_at.is_some() { ", ENDED" } else { "" },
                    s.reason
                ));
                cx.out.line(format!(
                    "{} command(s), {}",
                    commands.len(),
                    session::limit_text(&config)
                ));
            });
            Ok(Outcome::Ok)
        }
        SessionCmd::End { session: id, next } => {
            let id = session_id(id)?;
            let r = session::end(&config, &store, id, next.as_deref())?;
            cx.out.either(&r, || {
                cx.out.line(format!("session {id} ended"));
                cx.out.line(format!("  commands run:        {}", r.commands_run));
                cx.out.line(format!("  commands refused:    {}", r.commands_refused));
                cx.out.line(format!(
                    "  state changed:       {}",
                    if r.state_changed { "yes" } else { "no" }
                ));
                cx.out.line(format!("  approvals used:      {:?}", r.approvals_used));
                cx.out
                    .line(format!("  open change requests: {:?}", r.open_change_requests));
                cx.out.line(format!("  next safest step:    {}", r.next_step));
                if let Some(p) = &r.incident_note {
                    cx.out.line(format!("  appended to:         {p}"));
                }
            });
            if let Some(e) = &r.incident_note_error {
                eprintln!("warning: the record was not appended to the incident note: {e}");
            }
            Ok(Outcome::Ok)
        }
        SessionCmd::List => {
            let sessions = store.sessions(50)?;
            cx.out.either(&sessions, || {
                let mut t = output::table(&["ID", "MODE", "ACTOR", "STARTED (UTC)", "ENDED", "REASON"]);
                for s in &sessions {
                    t.add_row(vec![
                        s.id.to_string(),
                        s.mode.clone(),
                        s.actor.clone(),
                        s.started_at.clone(),
                        s.ended_at.clone().unwrap_or_else(|| "-".into()),
                        one_line(&s.reason, 50),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        SessionCmd::Show { id } => {
            let s = store.session(id)?.ok_or(SessionError::NotFound(id))?;
            let commands = store.session_commands(id)?;
            let calls = assistant_calls(&store, id)?;
            cx.out.either(
                &json!({ "session": s, "commands": commands, "assistant_calls": calls }),
                || {
                    cx.out
                        .line(format!("session {} ({}) by {}: {}", s.id, s.mode, s.actor, s.reason));
                    // Typed commands and an assistant's calls, in the order they happened.
                    let mut lines: Vec<(&str, Vec<String>)> = Vec::new();
                    for c in &commands {
                        let mut block = vec![format!(
                            "{} {:7} {} ({}){}",
                            c.started_at,
                            c.decision,
                            crate::util::display(&c.argv),
                            c.reason,
                            c.exit_code.map(|e| format!(" exit {e}")).unwrap_or_default()
                        )];
                        block.extend(c.output.lines().map(|l| format!("    {l}")));
                        lines.push((&c.started_at, block));
                    }
                    for c in &calls {
                        lines.push((
                            &c.at,
                            vec![format!(
                                "{} mcp     {} {} {} → {}",
                                c.at,
                                c.client,
                                c.tool,
                                one_line(&c.arguments.to_string(), 80),
                                c.outcome
                            )],
                        ));
                    }
                    lines.sort_by(|a, b| a.0.cmp(b.0));
                    for (_, block) in lines {
                        for l in block {
                            cx.out.line(l);
                        }
                    }
                },
            );
            Ok(Outcome::Ok)
        }
    }
}

pub fn change(cx: &Ctx, cmd: ChangeCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        ChangeCmd::Request {
            session: id,
            objective,
            command,
            impact,
            rollback,
            uses,
        } => {
            let id = session_id(id)?;
            let asked = session::Asked {
                objective,
                argv: session::split_command(&command)?,
                cwd: cwd(),
                impact,
                rollback,
                uses,
            };
            let c = session::request(&config, &store, id, asked)?;
            cx.out.either(&json!({ "change": c, "status": "pending" }), || {
                let argv = shlex::split(&command).unwrap_or_else(|| vec![command.clone()]);
                cx.out.line(format!(
                    "change request {c} filed (pending): {}",
                    crate::util::display(&argv)
                ));
                cx.out
                    .line(format!("another person approves it: runbook change approve {c}"));
            });
            Ok(Outcome::Ok)
        }
        ChangeCmd::List => {
            let all = store.changes(50)?;
            cx.out.either(&all, || {
                let mut t = output::table(&["ID", "STATUS", "SESSION", "REQUESTER", "APPROVER", "COMMAND"]);
                for c in &all {
                    t.add_row(vec![
                        c.id.to_string(),
                        c.status.clone(),
                        c.session_id.map_or("-".to_string(), |s| s.to_string()),
                        c.requester.clone(),
                        c.approver.clone().unwrap_or_else(|| "-".into()),
                        one_line(&crate::util::display(&c.argv), 60),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        ChangeCmd::Show { id, payload } => {
            let c = store.change(id)?.ok_or(SessionError::NoChange(id))?;
            if payload {
                let text = session::payload(&config, &c);
                if cx.out.json {
                    cx.out
                        .json(&json!({ "change": id, "payload": text, "namespace": crate::util::sshsig::NAMESPACE }));
                } else {
                    // Byte for byte what is verified: no decoration.
                    print!("{text}");
                }
            } else {
                cx.out.either(&c, || show(cx, &c));
            }
            Ok(Outcome::Ok)
        }
        ChangeCmd::Approve { id, signature } => {
            let signature = signature.map(|p| read_signature(&p)).transpose()?;
            let c = store.change(id)?.ok_or(SessionError::NoChange(id))?;
            // On a terminal the approver reads the whole request and types its id back.
            if std::io::stdin().is_terminal() && !cx.out.json {
                show(cx, &c);
                eprint!("type the request id ({id}) to approve it: ");
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                if line.trim() != id.to_string() {
                    return Err(CliError::usage("not approved: the id typed does not match", None));
                }
            }
            let actor = crate::audit::actor::current();
            let c = session::decide(&config, &store, id, true, &actor, None, None, signature.as_deref())?;
            let by = c.approver.clone().unwrap_or(actor);
            cx.out.either(&c, || {
                cx.out.line(format!(
                    "change request {id} approved by {by}{}",
                    if signature.is_some() {
                        " (SSH signature verified)"
                    } else {
                        ""
                    }
                ))
            });
            Ok(Outcome::Ok)
        }
        ChangeCmd::Deny { id, reason } => {
            let actor = crate::audit::actor::current();
            let c = session::decide(&config, &store, id, false, &actor, None, Some(&reason), None)?;
            cx.out
                .either(&c, || cx.out.line(format!("change request {id} denied by {actor}")));
            Ok(Outcome::Ok)
        }
    }
}

fn read_signature(path: &std::path::Path) -> Result<String, CliError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    text.map_err(|e| CliError::usage(format!("cannot read the signature {}: {e}", path.display()), None))
}

fn show(cx: &Ctx, c: &crate::store::ChangeRequest) {
    cx.out.line(format!("change request {} ({})", c.id, c.status));
    match (c.session_id, &c.expires_at) {
        (Some(s), _) => cx.out.line(format!("  session:   {s}")),
        (None, Some(at)) => cx.out.line(format!("  waiver:    until {at}")),
        (None, None) => {}
    }
    cx.out
        .line(format!("  requester: {}", crate::util::escape_controls(&c.requester)));
    cx.out
        .line(format!("  objective: {}", crate::util::escape_controls(&c.objective)));
    cx.out.line(format!("  command:   {}", crate::util::display(&c.argv)));
    cx.out
        .line(format!("  in:        {}", crate::util::escape_controls(&c.cwd)));
    cx.out
        .line(format!("  impact:    {}", crate::util::escape_controls(&c.impact)));
    cx.out
        .line(format!("  rollback:  {}", crate::util::escape_controls(&c.rollback)));
    cx.out.line(format!("  uses left: {}", c.uses_left));
    if let Some(a) = &c.approver {
        cx.out.line(format!(
            "  decided by {a} at {}",
            c.decided_at.as_deref().unwrap_or("-")
        ));
    }
}

/// One call an assistant made through `runbook mcp`, from its `mcp.call` event.
#[derive(Debug, serde::Serialize)]
struct AssistantCall {
    at: String,
    seq: i64,
    /// The client's name and version from the MCP handshake.
    client: String,
    tool: String,
    arguments: serde_json::Value,
    outcome: String,
    detail: serde_json::Value,
}

fn assistant_calls(store: &crate::store::Store, id: i64) -> Result<Vec<AssistantCall>, CliError> {
    let events = store.audit_list(&crate::store::AuditFilter {
        kind: Some("mcp.call".into()),
        subject: Some(format!("session {id}")),
        ..Default::default()
    })?;
    Ok(events
        .into_iter()
        .rev()
        .map(|e| {
            let d: serde_json::Value = serde_json::from_str(&e.data).unwrap_or_default();
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            AssistantCall {
                at: e.ts,
                seq: e.seq,
                client: format!("{} {}", text(&d["client"]["name"]), text(&d["client"]["version"]))
                    .trim()
                    .to_string(),
                tool: text(&d["tool"]),
                arguments: d["arguments"].clone(),
                outcome: text(&d["outcome"]),
                detail: d["detail"].clone(),
            }
        })
        .collect())
}
