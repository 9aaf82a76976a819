//! `mcp:`: the assistant tools offered and the logs they may read.

use std::path::Path;

use super::walker::Cx;
use crate::config::diagnostic::suggest;
use crate::config::mcp::{McpConfig, TOOLS};
use crate::config::yaml::Node;

/// The most lines a `logs` call may return, whatever the config says.
const MAX_LOG_LINES: u64 = 10_000;

pub(super) fn mcp(cx: &mut Cx, node: Option<&Node>, base: &Path) -> McpConfig {
    let mut out = McpConfig::default();
    let Some(f) = node.and_then(|n| cx.map(n, "mcp", &["tools", "logs"])) else {
        return out;
    };
    if let Some(n) = f.get("tools")
        && let Some(list) = cx.string_list(n, "mcp.tools")
    {
        for name in &list {
            if !TOOLS.contains(&name.as_str()) {
                let hint = suggest(name, TOOLS.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("tools: {}", TOOLS.join(", "))));
                cx.error(n.pos, format!("mcp.tools: no tool named `{name}`"), hint);
            }
        }
        out.tools = list;
    }
    if let Some(n) = f.get("logs")
        && let Some(l) = cx.map(n, "mcp.logs", &["units", "files", "lines"])
    {
        out.logs.units = l
            .get("units")
            .and_then(|n| cx.string_list(n, "mcp.logs.units"))
            .unwrap_or_default();
        out.logs.files = l
            .get("files")
            .and_then(|n| cx.string_list(n, "mcp.logs.files"))
            .unwrap_or_default()
            .into_iter()
            .map(|p| base.join(p))
            .collect();
        if let Some(n) = l.get("lines")
            && let Some(v) = cx.u64(n, "mcp.logs.lines")
        {
            if (1..=MAX_LOG_LINES).contains(&v) {
                out.logs.lines = v as u32;
            } else {
                cx.error(
                    n.pos,
                    format!("mcp.logs.lines must be between 1 and {MAX_LOG_LINES}, not {v}"),
                    None,
                );
            }
        }
    }
    out
}
