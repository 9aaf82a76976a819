//! The one Tokio runtime of the synchronous parts (probes, offsite copies, notifications sent
//! from the CLI).

use std::sync::OnceLock;

/// Blocking threads at most: one per probe in flight.
pub const MAX_BLOCKING: usize = 64;

/// The runtime probes run on: built once, on first use, so commands that never probe
/// (`list`, `run --dry-run`) never start it.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(MAX_BLOCKING)
            .thread_name("probe")
            .enable_all()
            .build()
            .expect("cannot start the probe runtime")
    })
}
