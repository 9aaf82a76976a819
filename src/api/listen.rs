//! The accept loop: connections in, each served by hyper with a header-read timeout, and a
//! bound on how many are kept open, so that no client can starve the API or the daemon.
//!
//! Owns the sockets; it knows nothing of routes. Invariants: a connection without a whole
//! request head within `HEADER_READ_TIMEOUT` is closed; at most `limit()` connections are
//! open, and one past that closes the oldest with no request in flight; running out of file
//! descriptors slows accepting down, it never stops the server.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// A client gets this long to send a request head, on a new connection or between requests
/// of a kept-alive one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept free of connections for the rest of the process: the state file,
/// logs, lock files, the pipes of the tasks it runs, outgoing notifications.
const RESERVED_FDS: u64 = 64;
const MAX_CONNECTIONS: u64 = 1024;

/// How many connections may be open at once: half of what the file limit leaves after the
/// reserve, between 8 and `MAX_CONNECTIONS`.
pub fn limit() -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(MAX_CONNECTIONS * 2 + RESERVED_FDS);
    (soft.saturating_sub(RESERVED_FDS) / 2).clamp(8, MAX_CONNECTIONS) as usize
}

/// One open connection as the accept loop sees it.
struct Open {
    /// Requests being handled, their response bodies included.
    in_flight: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, Open>,
}

impl Connections {
    /// Closes the oldest connection with no request in flight; false when every one is busy.
    fn evict_idle(&mut self) -> bool {
        let idle = self
            .open
            .iter()
            .find(|(_, c)| c.in_flight.load(Ordering::SeqCst) == 0)
            .map(|(id, _)| *id);
        match idle.and_then(|id| self.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets every request in flight
/// finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limit = limit();
    let conns = Arc::new(Mutex::new(Connections::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when the last one is gone, all have ended.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut fd_warned = false;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if out_of_descriptors(&e) => {
                    // Make room: an idle connection gives its descriptor back. Then wait a
                    // moment, as the kernel keeps the new connection queued meanwhile.
                    let freed = lock(&conns).evict_idle();
                    if !fd_warned {
                        tracing::warn!(error = %e, freed, "out of file descriptors accepting an API connection; closing idle ones");
                        fd_warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        fd_warned = false;
        let open = Open {
            in_flight: Arc::new(AtomicUsize::new(0)),
            close: Arc::new(Notify::new()),
        };
        let (id, in_flight, close) = {
            let mut c = lock(&conns);
            if c.open.len() >= limit && !c.evict_idle() {
                // Every open connection is handling a request: this one waits for none.
                drop(stream);
                continue;
            }
            let id = c.next;
            c.next += 1;
            let handles = (id, open.in_flight.clone(), open.close.clone());
            c.open.insert(id, open);
            handles
        };
        let (app, conns, mut stop, done) = (app.clone(), conns.clone(), stop_rx.clone(), done_tx.clone());
        tokio::spawn(async move {
            connection(stream, peer, app, in_flight, &close, &mut stop).await;
            lock(&conns).open.remove(&id);
            drop(done);
        });
    }
    let _ = stop_tx.send(true);
    drop(done_tx);
    let _ = done_rx.recv().await;
    Ok(())
}

fn lock(conns: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    conns.lock().unwrap_or_else(|e| e.into_inner())
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    in_flight: Arc<AtomicUsize>,
    close: &Notify,
    stop: &mut watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = InFlight::new(in_flight.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|body| {
                Body::new(Counted {
                    inner: body,
                    _guard: guard,
                })
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, %peer, "API connection ended");
            }
        }
        () = close.notified() => {}
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Counts a request in flight from the moment its head is read until its response body is
/// sent or dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        InFlight(n)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted in flight while it is being sent.
struct Counted {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
