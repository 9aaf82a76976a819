//! Who is calling and what each call leaves in the audit chain.
//!
//! Invariant: the client's name and version are the handshake's words, kept as text and
//! never trusted for a decision; the actor of an assistant's act is `mcp:NAME`, which no OS
//! account or token can be, so a person approving its request is never "the requester".

use serde_json::{Value, json};

use super::reply::Outcome;
use crate::audit::Draft;
use crate::config::Config;
use crate::store::{Store, StoreError};

/// The most bytes of a call's arguments kept in its event; a longer text keeps its start.
const KEPT_ARGUMENTS: usize = 8 * 1024;

/// The client as its handshake named it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub version: String,
    pub protocol: String,
}

impl Caller {
    pub fn new(info: Option<rmcp::model::Implementation>, protocol: Option<rmcp::model::ProtocolVersion>) -> Self {
        let (name, version) = info.map_or_else(|| ("unknown".into(), String::new()), |i| (i.name, i.version));
        Caller {
            name: clip(&name, 64),
            version: clip(&version, 64),
            protocol: protocol.map(|p| p.to_string()).unwrap_or_default(),
        }
    }

    /// `mcp:NAME`, the name reduced to letters, digits, `.`, `_` and `-`.
    pub fn actor(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("mcp:{}", if name.is_empty() { "unknown" } else { &name })
    }
}

/// `text` with control characters escaped, cut to `max` characters.
pub fn clip(text: &str, max: usize) -> String {
    let head: String = text.chars().take(max).collect();
    crate::util::escape_controls(&head).chars().take(max).collect()
}

/// The `mcp.call` event of one call, subject `session ID`.
#[allow(clippy::too_many_arguments)]
pub fn call(
    config: &Config,
    store: &Store,
    session: i64,
    caller: &Caller,
    tool: &str,
    arguments: &serde_json::Map<String, Value>,
    outcome: Outcome,
    detail: Option<Value>,
) -> Result<(), StoreError> {
    // Redacted before it is cut, so a secret is never cut into a fragment that escapes.
    let mut arguments = Value::Object(arguments.clone());
    config.redactor.redact_json(&mut arguments);
    let text = arguments.to_string();
    let arguments = if text.len() > KEPT_ARGUMENTS {
        json!({ "truncated": true, "bytes": text.len(), "start": text.chars().take(KEPT_ARGUMENTS / 4).collect::<String>() })
    } else {
        arguments
    };
    let mut draft = Draft::new(
        "mcp.call",
        &format!("session {session}"),
        json!({
            "client": { "name": caller.name, "version": caller.version },
            "protocol": caller.protocol,
            "tool": clip(tool, 64),
            "arguments": arguments,
            "outcome": outcome.as_str(),
            "detail": detail,
        }),
        &config.redactor,
    );
    draft.actor = caller.actor();
    store.audit_append(&draft).map(|_| ())
}

/// What the server tells the assistant at the handshake.
pub fn instructions(config: &Config, session: i64) -> String {
    format!(
        "runbook on {host}, session {session}. Diagnose with the read-only tools and session_exec (read-only \
         commands run in the kernel's read-only sandbox). A state change needs a change request (change_request: \
         objective, exact command, impact, rollback) that a person approves; you cannot approve it. Then it runs \
         through session_exec in a maintenance session. Every call is recorded in the audit log.",
        host = config.host
    )
}
