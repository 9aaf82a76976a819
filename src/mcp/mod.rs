//! `runbook mcp`: a guarded session offered to an assistant over the Model Context Protocol
//! (stdio, through the official SDK).
//!
//! Owns the protocol side: the handshake, `tools/list` and `tools/call` as the policy allows
//! them, the record of every call, and stopping when the session ends. The rules themselves
//! are the session's (`session::exec`, the kernel's sandbox, approvals by people).
//! Invariant: every `tools/call` (allowed, refused, pending approval or malformed) is one
//! `mcp.call` audit event before its answer is sent; with no event, no answer.

mod args;
mod call;
mod logs;
mod record;
mod reply;
pub mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelledNotificationParam, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler};
use serde_json::json;

use crate::config::Config;
use crate::exec::Cancel;
use crate::store::Store;
pub use record::Caller;

/// The protocol revisions served: 2025-11-25 (with the `initialize` handshake) and newer.
const VERSIONS: &[ProtocolVersion] = &[ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2026_07_28];
/// The longest JSON-RPC message read; a longer line is dropped unread.
const MAX_MESSAGE: usize = 1024 * 1024;
/// How often the server looks whether its session was ended.
const SESSION_POLL: Duration = Duration::from_secs(1);
/// The longest the server waits at exit for calls still running, beyond a command's timeout.
const DRAIN_CAP: Duration = Duration::from_secs(3600);
/// How often the exit looks whether the calls still running have ended.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// Calls running at once; a client sending more waits for a free one.
const CONCURRENT_CALLS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot start the protocol runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the client did not complete the MCP handshake: {0}")]
    Handshake(String),
}

impl crate::util::Explain for McpError {
    fn class(&self) -> crate::util::ExitClass {
        match self {
            McpError::Runtime(_) => crate::util::ExitClass::Internal,
            McpError::Handshake(_) => crate::util::ExitClass::Failed,
        }
    }
}

/// The server: one session, one configuration, one state, for the life of the process.
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    /// Read once at start: nothing an assistant does reloads or changes it.
    config: Arc<Config>,
    store: Arc<Store>,
    session: i64,
    /// Where commands run when a call names no directory: the server's own.
    cwd: String,
    /// One permit per call running, held by its thread until it ends: bounds the threads a
    /// flood of calls could start, and tells the exit which calls to wait for (so a command
    /// whose caller vanished still gets its outcome recorded).
    slots: Arc<tokio::sync::Semaphore>,
    /// The calls running, by request id: what a `notifications/cancelled` stops.
    running: Mutex<HashMap<String, Cancel>>,
}

impl Server {
    pub fn new(config: Arc<Config>, store: Arc<Store>, session: i64, cwd: String) -> Self {
        Server {
            inner: Arc::new(Inner {
                config,
                store,
                session,
                cwd,
                slots: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CALLS)),
                running: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Serves MCP on stdin/stdout until the client leaves or the session ends, then waits
    /// for the calls still running.
    pub fn serve_stdio(self) -> Result<(), McpError> {
        let inner = self.inner.clone();
        let waiting = self.inner.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(McpError::Runtime)?;
        let served = rt.block_on(async move {
            let transport = rmcp::transport::async_rw::AsyncRwTransport::new(tokio::io::stdin(), tokio::io::stdout())
                .with_max_line_length(MAX_MESSAGE);
            let running = rmcp::serve_server(self, transport)
                .await
                .map_err(|e| McpError::Handshake(e.to_string()))?;
            let stop = running.cancellation_token();
            let watch = inner.clone();
            let watcher = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SESSION_POLL).await;
                    let store = watch.store.clone();
                    let id = watch.session;
                    let ended = tokio::task::spawn_blocking(move || {
                        store.session(id).map(|s| s.is_none_or(|s| s.ended_at.is_some()))
                    })
                    .await;
                    if matches!(ended, Ok(Ok(true))) {
                        tracing::warn!(session = id, "the session ended: the assistant's server stops");
                        stop.cancel();
                        return;
                    }
                }
            });
            let _ = running.waiting().await;
            watcher.abort();
            Ok(())
        });
        // A read of stdin cannot be cancelled: waiting for it would keep a server whose
        // session ended alive until the client writes or closes the pipe.
        rt.shutdown_background();
        served?;
        waiting.drain();
        Ok(())
    }
}

impl Inner {
    /// Waits until no call is running. Every tool is bounded by its own limits (a command by
    /// the session's timeout, a gate by its samples); the cap only guards against a bug.
    fn drain(&self) {
        let deadline = std::time::Instant::now() + self.config.sessions.timeout.0 + DRAIN_CAP;
        while self.slots.available_permits() < CONCURRENT_CALLS && std::time::Instant::now() < deadline {
            std::thread::sleep(DRAIN_POLL);
        }
    }

    /// Appends the call's `mcp.call` event to the audit chain.
    fn record(
        &self,
        caller: &Caller,
        name: &str,
        given: &serde_json::Map<String, serde_json::Value>,
        outcome: reply::Outcome,
        detail: Option<serde_json::Value>,
    ) -> Result<(), crate::store::StoreError> {
        record::call(
            &self.config,
            &self.store,
            self.session,
            caller,
            name,
            given,
            outcome,
            detail,
        )
    }

    /// A call that ended without an answer of its own: recorded as failed, answered with an
    /// internal error (or with the recording's own failure).
    fn unanswered(
        &self,
        caller: &Caller,
        name: &str,
        given: &serde_json::Map<String, serde_json::Value>,
        why: &str,
    ) -> ErrorData {
        match self.record(caller, name, given, reply::Outcome::Failed, Some(json!(why))) {
            Ok(()) => ErrorData::internal_error(why.to_string(), None),
            Err(e) => ErrorData::internal_error(format!("{why}; and the call could not be recorded: {e}"), None),
        }
    }

    /// One call, on a thread of its own: policy, arguments, the tool, the record.
    fn call(
        &self,
        caller: &Caller,
        name: &str,
        given: &serde_json::Map<String, serde_json::Value>,
        cancel: &Cancel,
    ) -> Result<CallToolResult, ErrorData> {
        let actor = caller.actor();
        let cx = call::Ctx {
            config: &self.config,
            store: &self.store,
            session: self.session,
            cwd: &self.cwd,
            actor: &actor,
            cancel,
        };
        // A tool the policy does not offer is unknown by name too.
        let answer = match tools::find(name).filter(|t| tools::offered(&self.config, t)) {
            None => Err(format!("no tool `{}` here", record::clip(name, 64))),
            // A panic in a tool is a failed call, recorded like any other.
            Some(tool) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call::call(&cx, tool, given)))
                .unwrap_or_else(|_| Ok(reply::Reply::broken("the call failed inside runbook")))
                .map_err(|e| e.0),
        };
        let (outcome, detail) = match &answer {
            Ok(reply) => (
                reply.outcome,
                reply.value.get("refused").or(reply.value.get("error")).cloned(),
            ),
            Err(why) => (reply::Outcome::Refused, Some(json!(why))),
        };
        // Fail closed: an answer goes out only once the call is in the audit chain.
        self.record(caller, name, given, outcome, detail)
            .map_err(|e| ErrorData::internal_error(format!("the call could not be recorded: {e}"), None))?;
        match answer {
            Err(why) => Err(ErrorData::invalid_params(why, None)),
            Ok(reply) => {
                let mut result = if reply.is_error() {
                    CallToolResult::error(vec![rmcp::model::ContentBlock::text(reply.value.to_string())])
                } else {
                    CallToolResult::success(vec![rmcp::model::ContentBlock::text(reply.value.to_string())])
                };
                result.structured_content = Some(json!({ "outcome": outcome.as_str(), "result": reply.value }));
                Ok(result)
            }
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        let info = json!({
            "protocolVersion": ProtocolVersion::V_2025_11_25.as_str(),
            "capabilities": { "tools": { "listChanged": false } },
            "serverInfo": { "name": "runbook", "title": "runbook", "version": env!("CARGO_PKG_VERSION") },
            "instructions": record::instructions(&self.inner.config, self.inner.session),
        });
        serde_json::from_value(info).expect("a valid InitializeResult")
    }

    fn supported_protocol_versions(&self) -> std::borrow::Cow<'static, [ProtocolVersion]> {
        std::borrow::Cow::Borrowed(VERSIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools: Vec<serde_json::Value> = tools::CATALOGUE
            .iter()
            .filter(|t| tools::offered(&self.inner.config, t))
            .map(tools::describe)
            .collect();
        // `resultType` is required from revision 2026-07-28 on; the SDK strips it for older peers.
        serde_json::from_value(json!({ "tools": tools, "resultType": "complete" }))
            .map_err(|e| ErrorData::internal_error(format!("tool list: {e}"), None))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = Caller::new(context.client_info(), context.protocol_version());
        let request = Arc::new(request);
        let inner = self.inner.clone();
        // Known before it waits for a slot: a cancellation while it waits is not lost.
        let running = Running::new(&self.inner, format!("{:?}", context.id));
        let slot = inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ErrorData::internal_error("the server is stopping", None))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        // A plain thread: tools block (probes, commands, the store), and some start runtimes
        // of their own, which a runtime's thread may not.
        let (asked, who, cancel) = (request.clone(), caller.clone(), running.cancel.clone());
        let spawned = std::thread::Builder::new().name("mcp-call".into()).spawn(move || {
            let _slot = slot;
            let given = asked.arguments.clone().unwrap_or_default();
            let _ = tx.send(inner.call(&who, &asked.name, &given, &cancel));
        });
        if let Err(e) = spawned {
            let given = request.arguments.clone().unwrap_or_default();
            let why = format!("cannot start the call: {e}");
            return Err(self.inner.unanswered(&caller, &request.name, &given, &why));
        }
        let answer = match rx.await {
            Ok(result) => result.map(CallToolResponse::from),
            Err(_) => Err(ErrorData::internal_error("the call stopped without an answer", None)),
        };
        drop(running);
        answer
    }

    /// The client gave up on a call (2025-11-25; the SDK does not pass a cancellation of a
    /// 2026-07-28 call on): its command is stopped, and the call is recorded as it ended.
    async fn on_cancelled(&self, notification: CancelledNotificationParam, _context: NotificationContext<RoleServer>) {
        let Some(id) = notification.request_id else { return };
        let running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        // Keyed by the id with its type: a number 5 and a string "5" are two requests.
        if let Some(cancel) = running.get(&format!("{id:?}")) {
            tracing::info!(request = %id, reason = notification.reason.as_deref().unwrap_or(""), "the client cancelled a call");
            cancel.cancel();
        }
    }
}

/// A call's entry in `Inner::running`, removed when the call ends.
struct Running<'a> {
    inner: &'a Inner,
    id: String,
    cancel: Cancel,
}

impl<'a> Running<'a> {
    fn new(inner: &'a Inner, id: String) -> Self {
        let cancel = Cancel::default();
        inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), cancel.clone());
        Running { inner, id, cancel }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}
