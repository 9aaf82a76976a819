//! The tools an assistant is offered: name, description, input schema and behaviour hints,
//! and which of them this server's policy offers.
//!
//! Owns the catalogue and the rule of what counts as read-only diagnosis for the `check` and
//! `gate_run` tools. Invariant: `offered` is the one answer to "may this tool be called": both
//! `tools/list` and `tools/call` ask it, so a hidden tool cannot be called by name.

use serde_json::{Value, json};

use crate::config::checks::Probe;
use crate::config::program::{Program, RunArgs};
use crate::config::{Check, Config};
use crate::session::{Class, Policy};

/// The longest text argument, in bytes.
pub const MAX_TEXT: usize = 4096;
/// The most words of a command.
pub const MAX_ARGV: usize = 256;
/// The most bytes of a whole command.
pub const MAX_COMMAND: usize = 64 * 1024;

/// How a tool behaves, as MCP's annotations say it (hints to the client, not guarantees: the
/// guarantees are the session's and the kernel's).
#[derive(Debug, Clone, Copy)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
}

const READS: Hints = Hints {
    read_only: true,
    destructive: false,
    idempotent: true,
};
/// Changes nothing on the host, but records what it found in runbook's state (results,
/// alerts, evidence), which may notify.
const RECORDS: Hints = Hints {
    read_only: false,
    destructive: false,
    idempotent: false,
};
const WRITES: Hints = Hints {
    read_only: false,
    destructive: false,
    idempotent: false,
};

pub struct ToolDef {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub hints: Hints,
    /// `properties` of the input schema, and the required ones.
    pub properties: fn() -> Value,
    pub required: &'static [&'static str],
}

fn none() -> Value {
    json!({})
}

fn text(description: &str) -> Value {
    json!({ "type": "string", "description": description, "maxLength": MAX_TEXT })
}

fn count(description: &str) -> Value {
    json!({ "type": "integer", "minimum": 1, "description": description })
}

fn argv(description: &str) -> Value {
    json!({ "type": "array", "items": { "type": "string" }, "minItems": 1,
            "maxItems": MAX_ARGV, "description": description })
}

pub const CATALOGUE: &[ToolDef] = &[
    ToolDef {
        name: "status",
        title: "Host status",
        description: "This host at a glance: the session, each profile's last run, each check's last result, open alerts, open incidents and the live release of each deployed app. Changes nothing.",
        hints: READS,
        properties: none,
        required: &[],
    },
    ToolDef {
        name: "check",
        title: "Probe checks",
        description: "Probe the named checks now (all read-only checks when none are named) and return each outcome. Results are recorded, and alerts opened or resolved, like `runbook check`. Checks that could change something on the host (a command the session policy does not call read-only, an SQL query, an HTTP method other than GET or HEAD) are refused.",
        hints: RECORDS,
        properties: || json!({ "names": { "type": "array", "items": { "type": "string" }, "maxItems": MAX_ARGV, "description": "Check names (keys of `checks:`)" } }),
        required: &[],
    },
    ToolDef {
        name: "alerts",
        title: "Alerts",
        description: "Alerts, newest first: open ones unless a status is given.",
        hints: READS,
        properties: || json!({ "status": { "type": "string", "enum": ["firing", "silenced", "resolved"] }, "limit": count("At most this many (default 50)") }),
        required: &[],
    },
    ToolDef {
        name: "jobs",
        title: "Jobs ledger",
        description: "Recent runs of the jobs ledger, newest first.",
        hints: READS,
        properties: || json!({ "limit": count("At most this many (default 20)"), "status": text("running, ok, failed, skipped, retryable"), "profile": text("Only this profile's runs") }),
        required: &[],
    },
    ToolDef {
        name: "job",
        title: "One job",
        description: "One run of the jobs ledger with its output excerpt, its tasks and its retries.",
        hints: READS,
        properties: || json!({ "id": count("The run's id") }),
        required: &["id"],
    },
    ToolDef {
        name: "logs",
        title: "Logs",
        description: "The last lines of a configured systemd unit's journal or of a configured log file (mcp.logs), secrets redacted.",
        hints: READS,
        properties: || json!({ "unit": text("A unit of mcp.logs.units"), "file": text("A file of mcp.logs.files"), "lines": count("How many lines (at most mcp.logs.lines)") }),
        required: &[],
    },
    ToolDef {
        name: "session_exec",
        title: "Run a command in the session",
        description: "Run one command (an argv, no shell) in the session this server was started for. A diagnostic session runs read-only commands only, inside the kernel's read-only sandbox; a state-changing command runs only in a maintenance session under a change request a person approved for exactly this command and directory. Output is redacted and bounded; every command is recorded.",
        hints: Hints {
            read_only: false,
            destructive: true,
            idempotent: false,
        },
        properties: || json!({ "command": argv("The program and its arguments"), "cwd": text("Working directory (default: the server's)") }),
        required: &["command"],
    },
    ToolDef {
        name: "change_request",
        title: "File a change request",
        description: "Ask a person to approve one state-changing command: objective, exact command, expected impact, rollback path. It stays pending until a person approves or denies it through `runbook change approve|deny` or the API; no tool can approve it. Once approved it runs through session_exec in a maintenance session.",
        hints: WRITES,
        properties: || {
            json!({
                "objective": text("What the change is for"),
                "command": argv("The exact command"),
                "impact": text("What it affects"),
                "rollback": text("How to undo it"),
                "cwd": text("Where it runs (default: the server's directory)"),
            })
        },
        required: &["objective", "command", "impact", "rollback"],
    },
    ToolDef {
        name: "change_status",
        title: "Change request status",
        description: "One change request (pending, approved, denied, used), or every request of this session.",
        hints: READS,
        properties: || json!({ "id": count("The request's id") }),
        required: &[],
    },
    ToolDef {
        name: "incident_log",
        title: "Add to an incident's timeline",
        description: "Add a line to an incident's timeline and note, by the assistant (one line: control characters escaped, secrets redacted).",
        hints: WRITES,
        properties: || json!({ "incident": text("The incident's slug or number"), "text": text("The line") }),
        required: &["incident", "text"],
    },
    ToolDef {
        name: "incident_timeline",
        title: "Incident timeline",
        description: "An incident's timeline, assembled from the audit chain, each line with its event's hash.",
        hints: READS,
        properties: || json!({ "incident": text("The incident's slug or number") }),
        required: &["incident"],
    },
    ToolDef {
        name: "drift",
        title: "Baseline drift",
        description: "Compare the host with `baseline:` now: every difference, acknowledged or not. Reads the host and changes nothing on it; when each difference came and went is recorded.",
        hints: RECORDS,
        properties: none,
        required: &[],
    },
    ToolDef {
        name: "backup_list",
        title: "Backups",
        description: "Backup archives, newest first, with whether each was verified and drilled.",
        hints: READS,
        properties: || json!({ "target": text("Only this target's archives") }),
        required: &[],
    },
    ToolDef {
        name: "gate_run",
        title: "Measure a gate",
        description: "Measure a release gate now and return its verdict; its evidence file is written and sealed like `runbook gate run`. Only gates whose every check is read-only diagnosis can be run here.",
        hints: RECORDS,
        properties: || json!({ "gate": text("The gate (a key of `gates:`)"), "release": text("The release judged: a tag or commit") }),
        required: &["gate"],
    },
];

pub fn find(name: &str) -> Option<&'static ToolDef> {
    CATALOGUE.iter().find(|t| t.name == name)
}

/// Whether this server offers `tool`: it is in `mcp.tools`, and has something to work on.
pub fn offered(config: &Config, tool: &ToolDef) -> bool {
    config.mcp.offers(tool.name)
        && match tool.name {
            "logs" => !config.mcp.logs.units.is_empty() || !config.mcp.logs.files.is_empty(),
            "gate_run" => !config.gates.is_empty(),
            "backup_list" => !config.backups.is_empty(),
            _ => true,
        }
}

/// The tool as `tools/list` shows it.
pub fn describe(tool: &ToolDef) -> Value {
    let mut schema = json!({ "type": "object", "properties": (tool.properties)(), "additionalProperties": false });
    if !tool.required.is_empty() {
        schema["required"] = json!(tool.required);
    }
    json!({
        "name": tool.name,
        "title": tool.title,
        "description": tool.description,
        "inputSchema": schema,
        "annotations": {
            "title": tool.title,
            "readOnlyHint": tool.hints.read_only,
            "destructiveHint": tool.hints.destructive,
            "idempotentHint": tool.hints.idempotent,
            "openWorldHint": false,
        },
    })
}

/// Why probing `check` could change something, if it could: only probes that observe run
/// from an assistant's call.
pub fn changes_something(check: &Check, policy: &Policy) -> Option<String> {
    match &check.probe {
        Probe::Http(h) if !matches!(h.method.to_ascii_uppercase().as_str(), "" | "GET" | "HEAD") => {
            Some(format!("an HTTP {} probe", h.method))
        }
        Probe::Command(c) => {
            let argv = match &c.program {
                Program::Run(RunArgs::Argv(a)) => a.clone(),
                Program::Run(RunArgs::Line(l)) => shlex::split(l).unwrap_or_default(),
                Program::Sh(_) => return Some("a shell script".into()),
            };
            match policy.classify(&argv) {
                Class::ReadOnly => None,
                _ => Some(format!(
                    "it runs `{}`, which the session policy does not call read-only",
                    crate::util::display(&argv)
                )),
            }
        }
        Probe::Sql(_) => Some("an SQL query".into()),
        _ => None,
    }
}
