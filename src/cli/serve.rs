//! `runbook serve` (the API alone) and `runbook token create | list | revoke`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use clap::Subcommand;
use serde_json::json;

use super::output;
use super::{CliError, Ctx, Outcome};
use crate::api::{self, ApiState};
use crate::audit::Draft;
use crate::clock;
use crate::store::ApiToken;

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is printed once and only its hash is kept
    Create {
        name: String,
        /// read (GET only) or write
        #[arg(long, default_value = "read")]
        scope: String,
    },
    /// Tokens by name and scope (never the tokens themselves)
    List,
    /// Revoke a token; requests with it are refused from then on
    Revoke { name: String },
}

pub fn serve(cx: &Ctx, listen: Option<String>) -> Result<Outcome, CliError> {
    let config_path = crate::config::discover(cx.config_path.as_deref())?;
    let config = cx.load()?;
    let store = Arc::new(cx.open_store(&config)?);
    let text = listen.unwrap_or_else(|| config.api.listen.clone());
    let addr: SocketAddr = text.parse().map_err(|_| {
        CliError::usage(
            format!("`{text}` is not an address:port"),
            Some("e.g. --listen 127.0.0.1:8923".into()),
        )
    })?;
    // `runbook reload` finds this process by the lock; a second `serve` on the same state
    // file runs without it and reloads on its own SIGHUP only.
    let _lock = crate::schedule::lock::try_lock_serve(&config.state.path).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot take the serve lock: `runbook reload` will not find this process");
        None
    });
    let shared = Arc::new(RwLock::new(Arc::new(config)));
    let state = Arc::new(ApiState::new(store.clone(), shared.clone()));
    crate::util::runtime::runtime().block_on(async move {
        tokio::spawn(reload_on_hangup(config_path, shared));
        let listener = api::bind(addr, &store).await?;
        // The bound address, so `--listen 127.0.0.1:0` tells which port it got.
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, "serving the API; stop with SIGTERM or Ctrl-C");
        api::serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| CliError::internal(format!("API server: {e}"), None))?;
        tracing::info!("API stopped");
        Ok(Outcome::Ok)
    })
}

/// SIGHUP: loads the configuration again and swaps it in for the next request (public
/// paths, rate limit, approvers, checks); a bad file is logged and the old one kept.
async fn reload_on_hangup(path: std::path::PathBuf, shared: Arc<RwLock<Arc<crate::config::Config>>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let current = shared.read().unwrap_or_else(|e| e.into_inner()).clone();
        let path = path.clone();
        let loaded = tokio::task::spawn_blocking(move || super::daemon::reload(&path, &current)).await;
        if let Ok(Some(new)) = loaded {
            *shared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
            tracing::info!("configuration reloaded");
        } else {
            tracing::error!("configuration not reloaded: the old one stays in force");
        }
    }
}

pub fn token(cx: &Ctx, cmd: TokenCmd) -> Result<Outcome, CliError> {
    let config = cx.load()?;
    let store = cx.open_store(&config)?;
    match cmd {
        TokenCmd::Create { name, scope } => {
            if scope != "read" && scope != "write" {
                return Err(CliError::usage(
                    format!("unknown scope `{scope}`"),
                    Some("use read or write".into()),
                ));
            }
            let secret = api::generate_token().map_err(|e| CliError::internal(format!("no randomness: {e}"), None))?;
            let token = ApiToken {
                name: name.clone(),
                hash: api::hash_token(&secret),
                scope: scope.clone(),
                created_at: clock::to_text(clock::now()),
                created_by: crate::audit::actor::current(),
            };
            let draft = Draft::new("token.created", &name, json!({ "scope": scope }), &config.redactor);
            if !store.add_token(&token, &draft)? {
                return Err(CliError::usage(
                    format!("a token named `{name}` exists"),
                    Some(format!("pick another name, or runbook token revoke {name}")),
                ));
            }
            cx.out
                .either(&json!({ "name": name, "scope": scope, "token": secret }), || {
                    cx.out.line(secret.clone());
                    eprintln!("token `{name}` ({scope}) created. It is shown only now; runbook keeps only its hash.");
                });
            Ok(Outcome::Ok)
        }
        TokenCmd::List => {
            let tokens = store.tokens()?;
            cx.out.either(&tokens, || {
                let mut t = output::table(&["NAME", "SCOPE", "CREATED (UTC)", "BY"]);
                for tk in &tokens {
                    t.add_row(vec![
                        tk.name.clone(),
                        tk.scope.clone(),
                        tk.created_at.clone(),
                        tk.created_by.clone(),
                    ]);
                }
                output::print_table(&t);
            });
            Ok(Outcome::Ok)
        }
        TokenCmd::Revoke { name } => {
            let draft = Draft::new("token.revoked", &name, json!({}), &config.redactor);
            if !store.revoke_token(&name, &draft)? {
                return Err(CliError::usage(
                    format!("no token named `{name}`"),
                    Some("see runbook token list".into()),
                ));
            }
            cx.out.either(&json!({ "revoked": name }), || {
                cx.out.line(format!("token `{name}` revoked"))
            });
            Ok(Outcome::Ok)
        }
    }
}
