//! The API's router in process, over a real state file: one request at a time through
//! `tower::ServiceExt::oneshot`, no socket.

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::{Env, create_token};
use runbook::api::{ApiState, router};
use runbook::store::Store;

pub struct Api {
    pub state: Arc<ApiState>,
    pub read: String,
    pub write: String,
    _env: Env,
}

impl Api {
    pub fn new() -> Api {
        Api::with("version: 1\napi: { rate_limit: off }\n", &[])
    }

    /// An API over the state `commands` leave behind in an environment of `yaml`.
    pub fn with(yaml: &str, commands: &[&[&str]]) -> Api {
        let env = Env::new(yaml);
        for c in commands {
            env.run(c);
        }
        let read = create_token(&env, "reader", "read");
        let write = create_token(&env, "writer", "write");
        let config = runbook::config::load(&env.config).expect("config");
        let store = Arc::new(Store::open_state(&config.state).expect("state"));
        let state = Arc::new(ApiState::new(store, Arc::new(RwLock::new(Arc::new(config)))));
        Api {
            state,
            read,
            write,
            _env: env,
        }
    }

    /// The status and the body as text of a GET.
    pub fn text(&self, path: &str) -> (StatusCode, String) {
        let req = Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.read))
            .body(Body::empty())
            .unwrap();
        let rt = runbook::util::runtime::runtime();
        let resp = rt.block_on(router(self.state.clone()).oneshot(req)).unwrap();
        let status = resp.status();
        let bytes = rt.block_on(axum::body::to_bytes(resp.into_body(), 1 << 20)).unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The status and the JSON body of one request.
    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        let rt = runbook::util::runtime::runtime();
        let resp = rt.block_on(router(self.state.clone()).oneshot(req)).unwrap();
        let status = resp.status();
        let kind = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = rt.block_on(axum::body::to_bytes(resp.into_body(), 1 << 20)).unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, json, kind)
    }
}
