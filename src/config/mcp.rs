//! `mcp:`: what an assistant connected through `runbook mcp` may see and call.
//!
//! Owns the names of the assistant tools and the shape of their policy: which tools are
//! offered, and which logs the `logs` tool reads. Invariant: the policy is read from
//! runbook.yaml when the server starts; no tool changes it.

use schemars::JsonSchema;
use serde::Serialize;
use std::path::PathBuf;

/// Every tool `runbook mcp` knows, in the order `tools/list` gives them.
pub const TOOLS: &[&str] = &[
    "status",
    "check",
    "alerts",
    "jobs",
    "job",
    "logs",
    "session_exec",
    "change_request",
    "change_status",
    "incident_log",
    "incident_timeline",
    "drift",
    "backup_list",
    "gate_run",
];

/// Lines a `logs` call returns when it asks for none.
pub const DEFAULT_LOG_LINES: u32 = 200;

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// The tools an assistant may list and call; any other is refused by name too.
    /// Default: every tool.
    pub tools: Vec<String>,
    /// What the `logs` tool may read.
    #[serde(default)]
    pub logs: McpLogs,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            tools: TOOLS.iter().map(|t| t.to_string()).collect(),
            logs: McpLogs::default(),
        }
    }
}

impl McpConfig {
    pub fn offers(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t == tool)
    }
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpLogs {
    /// systemd units whose journal may be read (`journalctl -u UNIT`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// Log files whose last lines may be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PathBuf>,
    /// The most lines one call returns. Default: 200.
    pub lines: u32,
}

impl Default for McpLogs {
    fn default() -> Self {
        McpLogs {
            units: Vec::new(),
            files: Vec::new(),
            lines: DEFAULT_LOG_LINES,
        }
    }
}
