//! One tool call: its arguments read, the domain function it stands for called, its answer
//! and outcome.
//!
//! Owns the mapping of each tool to what it does in runbook, nothing of the rules: commands go
//! through `session::exec`, requests through `session::request`, both as the assistant. There
//! is no path from here to an approval, a token, the policy or the configuration.

use std::sync::Arc;

use serde_json::{Value, json};

use super::args::{Args, BadArgs};
use super::logs;
use super::reply::{Outcome, Reply};
use super::tools::{self, ToolDef};
use crate::config::Config;
use crate::store::{AlertFilter, AlertStatus, RunFilter, Store};
use crate::util::Explain;

/// What a call is about: the server's session, and who called.
pub struct Ctx<'a> {
    pub config: &'a Arc<Config>,
    pub store: &'a Store,
    pub session: i64,
    /// The directory a command runs in when the call names none.
    pub cwd: &'a str,
    /// The audit actor of what the assistant does: `mcp:CLIENT`.
    pub actor: &'a str,
    /// Set when the client cancels the call: stops its command.
    pub cancel: &'a crate::exec::Cancel,
}

/// Runs `tool` with `given` arguments. A malformed argument is the caller's protocol error;
/// everything else is a reply.
pub fn call(cx: &Ctx, tool: &ToolDef, given: &serde_json::Map<String, Value>) -> Result<Reply, BadArgs> {
    let args = Args::new(tool, given)?;
    // A session that ended runs nothing more: the server is about to stop.
    match cx.store.session(cx.session) {
        Ok(Some(s)) if s.ended_at.is_some() => {
            return Ok(Reply::refused(
                format!("session {} has ended", cx.session),
                Some("a person starts a new one: runbook mcp --reason TEXT".into()),
            ));
        }
        Ok(_) => {}
        Err(e) => return Ok(Reply::failed(&e)),
    }
    // Whatever a tool records (a check's results, a gate's evidence, a request, a command)
    // is the assistant's act.
    crate::audit::actor::acting_as(cx.actor, || dispatch(cx, tool, &args))
}

fn dispatch(cx: &Ctx, tool: &ToolDef, args: &Args) -> Result<Reply, BadArgs> {
    Ok(match tool.name {
        "status" => done(status(cx)),
        "check" => check(cx, args)?,
        "alerts" => alerts(cx, args)?,
        "jobs" => jobs(cx, args)?,
        "job" => job(cx, args)?,
        "logs" => logs::read(cx.config, args.text("unit")?, args.text("file")?, args.count("lines")?),
        "session_exec" => session_exec(cx, args)?,
        "change_request" => change_request(cx, args)?,
        "change_status" => change_status(cx, args)?,
        "incident_log" => incident_log(cx, args)?,
        "incident_timeline" => incident_timeline(cx, args)?,
        "drift" => done(crate::drift::judge(cx.config, cx.store).map(|j| json!(j))),
        "backup_list" => {
            done(crate::backup::list(cx.config, cx.store, args.text("target")?).map(|l| json!({ "archives": l })))
        }
        "gate_run" => gate_run(cx, args)?,
        other => return Err(BadArgs(format!("no tool `{other}`"))),
    })
}

fn done<E: Explain>(r: Result<Value, E>) -> Reply {
    match r {
        Ok(v) => Reply::allowed(v),
        Err(e) => Reply::failed(&e),
    }
}

fn status(cx: &Ctx) -> Result<Value, crate::store::StoreError> {
    let store = cx.store;
    let session = store.session(cx.session)?;
    let last = store.last_profile_runs()?;
    let profiles: Vec<Value> = cx
        .config
        .profiles
        .iter()
        .map(|(name, p)| {
            let next = p
                .schedule
                .as_ref()
                .filter(|_| p.enabled)
                .and_then(|s| crate::schedule::next_after(s, crate::clock::now()))
                .map(crate::clock::to_text);
            json!({ "name": name, "enabled": p.enabled, "next_run": next,
                    "last_run": last.iter().find(|r| r.profile == *name) })
        })
        .collect();
    let alerts = alerts_in(store, &[AlertStatus::Firing, AlertStatus::Silenced], 200)?;
    let releases: Vec<Value> = cx
        .config
        .deploy
        .iter()
        .map(|(name, a)| {
            Ok(json!({ "app": name, "live": crate::deploy::live(a).ok().flatten(),
                       "last_deploy": store.deploys(name, 1)?.into_iter().next() }))
        })
        .collect::<Result<_, crate::store::StoreError>>()?;
    Ok(json!({
        "host": cx.config.host,
        "session": session,
        "profiles": profiles,
        "checks": store.latest_check_results()?,
        "open_alerts": alerts,
        "open_incidents": store.incidents(true, 20)?,
        "releases": releases,
    }))
}

/// The configuration an assistant's probes run under. The policy list
/// (`tools::changes_something`) lets a probe through; the kernel holds it: each command probe
/// runs in the read-only sandbox (unless `sessions.sandbox` is off) with the secrets masked,
/// as `session_exec` does.
fn confined(config: &Arc<Config>) -> Arc<Config> {
    let mut c = Config::clone(config);
    c.confine = Some(crate::session::confine(&c));
    Arc::new(c)
}

/// The check names a call may probe, or why it may not.
fn probeable(cx: &Ctx, names: &[String]) -> Result<Vec<String>, Reply> {
    let policy = crate::session::policy(cx.config);
    if names.is_empty() {
        return Ok(cx
            .config
            .checks
            .iter()
            .filter(|(_, c)| tools::changes_something(c, &policy).is_none())
            .map(|(n, _)| n.clone())
            .collect());
    }
    for name in names {
        let Some(check) = cx.config.checks.get(name) else {
            let near = crate::config::diagnostic::suggest(name, cx.config.checks.keys().map(String::as_str));
            return Err(Reply::refused(
                format!("no check named `{name}`"),
                near.map(|n| format!("did you mean `{n}`?")),
            ));
        };
        if let Some(why) = tools::changes_something(check, &policy) {
            return Err(Reply::refused(
                format!("check `{name}` is not read-only diagnosis: {why}"),
                Some("a person runs it: runbook check NAME".into()),
            ));
        }
    }
    Ok(names.to_vec())
}

fn check(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let names = match probeable(cx, &args.words("names")?.unwrap_or_default()) {
        Ok(n) if n.is_empty() => return Ok(Reply::refused("no read-only checks are configured", None)),
        Ok(n) => n,
        Err(r) => return Ok(r),
    };
    let outcomes = crate::check::probe_blocking(&confined(cx.config), &names);
    if let Err(e) = crate::notify::record_and_observe(cx.store, cx.config, &outcomes, &[]) {
        return Ok(Reply::failed(&e));
    }
    crate::schedule::upkeep::after_command(cx.config, cx.store);
    Ok(Reply::allowed(json!({ "outcomes": outcomes })))
}

fn alerts(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let limit = args.count("limit")?.unwrap_or(50).min(500) as usize;
    let status = match args.text("status")? {
        None => None,
        Some(s) => Some(
            AlertStatus::parse(s)
                .ok_or_else(|| BadArgs(format!("unknown status `{s}` (firing, silenced, resolved)")))?,
        ),
    };
    let statuses = match status {
        Some(s) => vec![s],
        None => vec![AlertStatus::Firing, AlertStatus::Silenced],
    };
    Ok(done(
        alerts_in(cx.store, &statuses, limit).map(|items| json!({ "alerts": items })),
    ))
}

/// The newest `limit` alerts in any of `statuses`, each status asked for by itself: no number
/// of resolved alerts can push an open one out of the list.
fn alerts_in(
    store: &Store,
    statuses: &[AlertStatus],
    limit: usize,
) -> Result<Vec<crate::store::Alert>, crate::store::StoreError> {
    let mut items = Vec::new();
    for status in statuses {
        items.extend(store.list_alerts(&AlertFilter {
            status: Some(*status),
            limit,
            ..Default::default()
        })?);
    }
    items.sort_by_key(|a| std::cmp::Reverse(a.id));
    items.truncate(limit);
    Ok(items)
}

fn jobs(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let status = match args.text("status")? {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| {
            BadArgs(format!(
                "unknown status `{s}` (running, ok, failed, skipped, stale, retryable)"
            ))
        })?),
    };
    let filter = RunFilter {
        limit: args.count("limit")?.unwrap_or(20).min(500) as usize,
        status,
        profile: args.text("profile")?.map(String::from),
        all_kinds: false,
        before: None,
    };
    Ok(done(cx.store.list_runs(&filter).map(|runs| json!({ "runs": runs }))))
}

fn job(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let id = args.id("id")?.unwrap_or_default();
    let store = cx.store;
    Ok(match store.get_run(id) {
        Ok(None) => Reply::refused(format!("no run {id}"), Some("the jobs tool lists them".into())),
        Ok(Some(run)) => done(
            store
                .child_runs(id)
                .and_then(|tasks| Ok(json!({ "run": run, "tasks": tasks, "retried_by": store.retries_of(id)? }))),
        ),
        Err(e) => Reply::failed(&e),
    })
}

fn session_exec(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let argv = args.command("command")?;
    let cwd = args.text("cwd")?.unwrap_or(cx.cwd);
    let ran = crate::session::exec(cx.config, cx.store, cx.session, &argv, cwd, cx.cancel);
    Ok(match ran {
        Ok(mut done) => {
            // The session's hint for a change that needs a request names the CLI; an
            // assistant files its request with a tool.
            if done.needs_request {
                done.hint = Some(
                    "file a change_request (objective, this exact command, impact, rollback); once a person approves it, it runs here only in a maintenance session".into(),
                );
            }
            Reply {
                outcome: match done.decision.as_str() {
                    "refused" => Outcome::Refused,
                    "ran" => Outcome::Allowed,
                    // Allowed, but it timed out, was cancelled or could not start.
                    _ => Outcome::Failed,
                },
                value: json!(done),
            }
        }
        Err(e) => Reply::failed(&e),
    })
}

fn change_request(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let asked = crate::session::Asked {
        objective: args.required_text("objective")?.to_string(),
        argv: args.command("command")?,
        cwd: args.text("cwd")?.unwrap_or(cx.cwd).to_string(),
        impact: args.required_text("impact")?.to_string(),
        rollback: args.required_text("rollback")?.to_string(),
        uses: 1,
    };
    let filed = crate::session::request(cx.config, cx.store, cx.session, asked);
    Ok(match filed {
        Ok(id) => Reply {
            outcome: Outcome::PendingApproval,
            value: json!({ "change": id, "status": "pending",
                           "next": format!("a person approves or denies it (runbook change approve {id}); then run the command with session_exec in a maintenance session") }),
        },
        Err(e) => Reply::failed(&e),
    })
}

fn change_status(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let mine = |c: &crate::store::ChangeRequest| c.session_id == Some(cx.session);
    Ok(match args.id("id")? {
        Some(id) => match cx.store.change(id) {
            Ok(Some(c)) if mine(&c) => Reply::allowed(json!(c)),
            Ok(_) => Reply::refused(format!("no change request {id} in session {}", cx.session), None),
            Err(e) => Reply::failed(&e),
        },
        None => done(
            cx.store
                .changes(1000)
                .map(|all| json!({ "changes": all.into_iter().filter(mine).collect::<Vec<_>>() })),
        ),
    })
}

fn incident_log(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let id = args.required_text("incident")?;
    // One line of the note, secrets out: a newline cannot start a line of its own.
    let text = crate::util::escape_controls(&cx.config.redactor.redact(args.required_text("text")?));
    let logged = crate::incident::log(cx.config, cx.store, id, &text);
    Ok(done(logged.map(|i| json!(i))))
}

fn incident_timeline(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let id = args.required_text("incident")?;
    Ok(match cx.store.incident(id) {
        Ok(None) => Reply::refused(format!("no incident `{id}`"), Some("status lists the open ones".into())),
        Ok(Some(i)) => done(crate::incident::timeline(cx.store, &i).map(|t| json!({ "incident": i, "timeline": t }))),
        Err(e) => Reply::failed(&e),
    })
}

fn gate_run(cx: &Ctx, args: &Args) -> Result<Reply, BadArgs> {
    let name = args.required_text("gate")?;
    let release = args.text("release")?;
    let Some(gate) = cx.config.gates.get(name) else {
        let near = crate::config::diagnostic::suggest(name, cx.config.gates.keys().map(String::as_str));
        return Ok(Reply::refused(
            format!("no gate named `{name}`"),
            near.map(|n| format!("did you mean `{n}`?")),
        ));
    };
    let policy = crate::session::policy(cx.config);
    let checks = gate.measures.iter().map(|m| (m.name.as_str(), &m.check)).chain(
        gate.dry_run
            .iter()
            .filter_map(|n| cx.config.checks.get(n).map(|c| (n.as_str(), c))),
    );
    for (measure, check) in checks {
        if let Some(why) = tools::changes_something(check, &policy) {
            return Ok(Reply::refused(
                format!("gate `{name}` is not read-only: `{measure}` is {why}"),
                Some(format!("a person runs it: runbook gate run {name}")),
            ));
        }
    }
    let report = crate::gate::run(&confined(cx.config), cx.store, name, release, &|_, _| {});
    crate::schedule::upkeep::after_command(cx.config, cx.store);
    Ok(done(report.map(|r| json!(r))))
}
