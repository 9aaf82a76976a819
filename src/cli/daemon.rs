//! The daemon, composed here at the top: the scheduler's tick loop, the upkeep thread and the
//! API, until told to stop.
//!
//! Owns the tick loop, signal handling (TERM/INT: drain and stop; HUP: reload), the systemd
//! notify protocol and the one-daemon-per-state lock. Runs happen on their own threads, so a
//! slow profile never delays another. Invariant: a reload swaps the configuration only after
//! the new file validated completely; runs in flight keep the configuration they started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::clock;
use crate::config::model::RunOn;
use crate::config::{self, Config, ConfigError};
use crate::exec::Cancel;
use crate::schedule::check_tasks;
use crate::schedule::lease::{self, Leadership};
use crate::schedule::runner::{Fence, Runner};
use crate::schedule::upkeep::{self, Upkeep};
use crate::schedule::{gaps, lock, next_after};
use crate::store::{Backend, Store, StoreError, Trigger};
use crate::util::{ExitClass, Explain};

/// Longest sleep between wake-ups, so a wall-clock jump is noticed within a minute.
const MAX_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    pub config_path: PathBuf,
    /// How long running tasks may go on after SIGTERM before they are killed.
    pub shutdown_grace: Duration,
    /// Record alerts but send nothing (`--no-notify`).
    pub no_notify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another runbook daemon (pid {pid}) is running on {state}")]
    AlreadyRunning { pid: String, state: PathBuf },
    #[error("cannot set up the daemon: {0}")]
    Setup(#[from] std::io::Error),
}

impl Explain for DaemonError {
    fn class(&self) -> ExitClass {
        match self {
            DaemonError::Config(c) => c.class(),
            DaemonError::Store(s) => s.class(),
            DaemonError::AlreadyRunning { .. } => ExitClass::Usage,
            DaemonError::Setup(_) => ExitClass::Internal,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            DaemonError::Config(c) => c.kind(),
            DaemonError::Store(s) => s.kind(),
            _ => self.class().name(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            DaemonError::Config(c) => c.hint(),
            DaemonError::Store(s) => s.hint(),
            DaemonError::AlreadyRunning { .. } => {
                Some("stop it first, or use `runbook reload` to apply a new configuration".into())
            }
            DaemonError::Setup(_) => None,
        }
    }
}

enum Event {
    Stop(&'static str),
    Reload,
}

struct Active {
    profile: String,
    handle: JoinHandle<()>,
}

fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(state)
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

fn next_times(config: &Config, now: Timestamp) -> BTreeMap<String, Timestamp> {
    config
        .profiles
        .iter()
        .filter(|(_, p)| p.enabled)
        .filter_map(|(name, p)| {
            p.schedule
                .as_ref()
                .and_then(|s| next_after(s, now))
                .map(|t| (name.clone(), t))
        })
        .collect()
}

/// Runs until SIGTERM or SIGINT. Returns after every run has finished or been stopped.
pub fn run(opts: &Options) -> Result<(), DaemonError> {
    let load = |path: &Path| {
        config::load(path).map(|mut c| {
            c.notify.enabled &= !opts.no_notify;
            c
        })
    };
    let mut config = Arc::new(load(&opts.config_path)?);
    let store = Arc::new(Store::open_state(&config.state)?);
    let state_path = config.state.path.clone();
    let Some(_daemon_lock) = lock::try_lock_daemon(&state_path)? else {
        let pid = lock::running_daemon(&state_path)
            .map(|p| p.to_string())
            .unwrap_or_else(|| "?".into());
        return Err(DaemonError::AlreadyRunning { pid, state: state_path });
    };

    let (tx, rx) = mpsc::channel::<Event>();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let signal_handle = signals.handle();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            let event = match sig {
                SIGHUP => Event::Reload,
                SIGINT => Event::Stop("SIGINT"),
                _ => Event::Stop("SIGTERM"),
            };
            if tx.send(event).is_err() {
                break;
            }
        }
    })?;

    let cancel = Cancel::default();
    let shared = Arc::new(RwLock::new(config.clone()));
    let (stop_dispatch, stop_rx) = mpsc::channel::<()>();
    // Fleet mode: on a PostgreSQL state this daemon is one host of a fleet; it heartbeats and
    // runs `run_on: any` work and the outbox only while it holds the leader lease.
    let lead = Arc::new(Leadership::new(&config.host));
    let fleet = store.backend() == Backend::Postgres;
    let lease_loop = if fleet {
        Some(lease::spawn(shared.clone(), store.clone(), lead.clone())?)
    } else {
        None
    };
    let mut takeovers = 0;
    let dispatcher = spawn_dispatcher(shared.clone(), store.clone(), stop_rx, fleet.then(|| lead.clone()))?;
    let (api_stop, api_handle) = start_api(&config, shared.clone(), store.clone());
    let mut active: Vec<Active> = Vec::new();
    let mut next = next_times(&config, clock::now());
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut last_ping = Instant::now();
    tracing::info!(
        config = %opts.config_path.display(),
        state = %state_path.display(),
        profiles = next.len(),
        pid = std::process::id(),
        "daemon started"
    );
    notify(&[NotifyState::Ready, NotifyState::Status("scheduling")]);

    let gaps = Arc::new(gaps::Gaps::default());
    let reason = loop {
        active.retain(|a| !a.handle.is_finished());
        gaps.flush(&config, &store);
        // Published for /v1/ready: the scheduler is alive (at most one write a minute when idle).
        if let Err(e) = store.set_daemon_status(
            "scheduler_tick",
            &std::process::id().to_string(),
            &clock::to_text(clock::now()),
        ) {
            tracing::warn!(error = %e, "cannot publish the scheduler tick");
        }
        let now = clock::now();
        let due: Vec<(String, Timestamp)> = next
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        let mut starts: Vec<(String, Option<Fence>)> = Vec::new();
        for (name, tick) in due {
            let Some(profile) = config.profiles.get(&name) else {
                continue;
            };
            if let Some(s) = &profile.schedule {
                match next_after(s, now) {
                    Some(t) => next.insert(name.clone(), t),
                    None => next.remove(&name),
                };
            }
            if !profile.run_on.includes(&config.host, &config.host_labels) {
                continue;
            }
            if !fleet || profile.run_on != RunOn::Any {
                starts.push((name, None));
            } else if lead.term().is_none() {
                // The leader runs the tick; this host probes the profile's checks of its own.
                let checks = check_tasks::host_checks(&config, &name);
                if !checks.is_empty() {
                    let (c, s) = (config.clone(), store.clone());
                    match std::thread::Builder::new()
                        .name(format!("host-checks:{name}"))
                        .spawn(move || check_tasks::probe_host_checks(&c, &s, &checks))
                    {
                        Ok(handle) => active.push(Active {
                            profile: format!("{name}@{}", config.host),
                            handle,
                        }),
                        Err(e) => gaps.note(&name, &format!("cannot start its thread: {e}")),
                    }
                }
            } else if let Some(term) = lead.term() {
                // The tick, not the time it started, names the run: it is claimed once.
                starts.push((
                    name,
                    Some(Fence {
                        term,
                        tick: clock::to_text(tick),
                    }),
                ));
            }
        }
        // A new term: the ticks missed while no host led are run (the newest) or recorded.
        if lead.takeovers() != takeovers {
            takeovers = lead.takeovers();
            if let Some(term) = lead.term() {
                for (name, tick) in lease::catch_up(&config, &store, term, now) {
                    // A tick due now is started above already.
                    if starts
                        .iter()
                        .any(|(n, f)| *n == name && f.as_ref().is_some_and(|f| f.tick == tick))
                    {
                        continue;
                    }
                    tracing::info!(profile = %name, %tick, "running a tick missed during the failover");
                    starts.push((name, Some(Fence { term, tick })));
                }
            }
        }
        for (name, fence) in starts {
            match spawn_run(
                name.clone(),
                config.clone(),
                store.clone(),
                cancel.clone(),
                gaps.clone(),
                fence,
            ) {
                Ok(a) => active.push(a),
                Err(e) => gaps.note(&name, &format!("cannot start its thread: {e}")),
            }
        }

        let until_next = next
            .values()
            .min()
            .map(|t| {
                Duration::from_millis(t.as_millisecond().saturating_sub(clock::now().as_millisecond()).max(0) as u64)
            })
            .unwrap_or(MAX_SLEEP);
        let mut sleep = until_next.min(MAX_SLEEP);
        if let Some(w) = watchdog {
            if last_ping.elapsed() >= w {
                notify(&[NotifyState::Watchdog]);
                last_ping = Instant::now();
            }
            sleep = sleep.min(w.saturating_sub(last_ping.elapsed()));
        }
        match rx.recv_timeout(sleep.max(Duration::from_millis(1))) {
            Ok(Event::Stop(sig)) => break sig,
            Ok(Event::Reload) => {
                notify(&[
                    NotifyState::Reloading,
                    NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
                ]);
                match reload(&opts.config_path, &config).map(|mut c| {
                    c.notify.enabled &= !opts.no_notify;
                    c
                }) {
                    Some(new) => {
                        config = Arc::new(new);
                        *shared.write().unwrap_or_else(|e| e.into_inner()) = config.clone();
                        next = next_times(&config, clock::now());
                        tracing::info!(profiles = next.len(), "configuration reloaded");
                    }
                    None => tracing::error!(
                        "configuration not reloaded: the file has errors; still running the previous configuration"
                    ),
                }
                notify(&[NotifyState::Ready]);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break "signal thread ended",
        }
    };

    tracing::info!(signal = reason, running = active.len(), grace = %crate::config::HumanDuration(opts.shutdown_grace), "stopping: no new runs");
    notify(&[NotifyState::Stopping]);
    let deadline = Instant::now() + opts.shutdown_grace;
    while active.iter().any(|a| !a.handle.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if active.iter().any(|a| !a.handle.is_finished()) {
        let names: Vec<&str> = active
            .iter()
            .filter(|a| !a.handle.is_finished())
            .map(|a| a.profile.as_str())
            .collect();
        tracing::warn!(profiles = ?names, "grace period over: stopping running tasks");
        cancel.cancel();
    }
    for a in active {
        let _ = a.handle.join();
    }
    let _ = stop_dispatch.send(());
    let _ = dispatcher.join();
    if let Some(l) = lease_loop {
        l.stop();
    }
    let _ = api_stop.send(());
    let _ = crate::util::runtime::runtime()
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), api_handle).await });
    signal_handle.close();
    tracing::info!("daemon stopped");
    Ok(())
}

fn spawn_run(
    name: String,
    config: Arc<Config>,
    store: Arc<Store>,
    cancel: Cancel,
    gaps: Arc<gaps::Gaps>,
    fence: Option<Fence>,
) -> std::io::Result<Active> {
    let profile = name.clone();
    let handle = std::thread::Builder::new().name(format!("run:{name}")).spawn(move || {
        let mut runner = Runner::new(&config, &store);
        runner.cancel = cancel;
        runner.shared = Some(config.clone());
        let term = fence.as_ref().map(|f| f.term);
        let tick = fence.as_ref().map(|f| f.tick.clone());
        runner.fence = fence;
        let since = crate::clock::to_text(crate::clock::now());
        match runner.run_profile(&name, Trigger::Schedule) {
            Ok(_) => match term {
                Some(t) => store.fenced(t, || gaps.recovered(&config, &store, &name)),
                None => gaps.recovered(&config, &store, &name),
            },
            // Another host recorded this tick first: nothing was missed.
            Err(crate::schedule::runner::RunError::TickTaken { tick, .. }) => {
                tracing::debug!(profile = %name, %tick, "tick already in the ledger");
            }
            // A leader's run is recorded under its term and tick, or left to the next leader.
            Err(e) => gaps.note_fenced(&name, Some(since), &e.to_string(), term.zip(tick)),
        }
    })?;
    Ok(Active { profile, handle })
}

/// Serves the API on the probe runtime. A port that cannot be bound is logged, not fatal:
/// the API must never stop scheduled monitoring.
fn start_api(
    config: &Config,
    shared: Arc<RwLock<Arc<Config>>>,
    store: Arc<Store>,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listen = config.api.listen.clone();
    let handle = crate::util::runtime::runtime().spawn(async move {
        let Ok(addr) = listen.parse::<std::net::SocketAddr>() else { return };
        match crate::api::bind(addr, &store).await {
            Ok(listener) => {
                let bound = listener.local_addr().map(|a| a.to_string()).unwrap_or(listen);
                tracing::info!(addr = %bound, "serving the API");
                let state = Arc::new(crate::api::ApiState::new(store, shared));
                if let Err(e) = crate::api::serve(listener, state, async {
                    let _ = stopped.await;
                })
                .await
                {
                    tracing::error!(error = %e, "the API stopped");
                }
            }
            Err(e) => tracing::warn!(error = %e, hint = e.hint().unwrap_or_default(), "the API is not served; scheduling goes on"),
        }
    });
    (stop, handle)
}

/// Does the upkeep every second until told to stop; the last pass runs after the final
/// profile runs ended, so their alerts still go out. In fleet mode only the leader does it,
/// fenced by its term.
fn spawn_dispatcher(
    config: Arc<RwLock<Arc<Config>>>,
    store: Arc<Store>,
    stop: mpsc::Receiver<()>,
    lead: Option<Arc<Leadership>>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("dispatch".into()).spawn(move || {
        let current = || config.read().unwrap_or_else(|e| e.into_inner()).clone();
        let first = current();
        if !first.notify.enabled {
            tracing::warn!(
                "notifications are disabled (notify.enabled: false or --no-notify): alerts are recorded, not sent"
            );
        }
        if lead.is_none() {
            upkeep::recover(&first, &store);
        }
        let mut upkeep = Upkeep::default();
        let mut led = 0;
        loop {
            let stopping = !matches!(
                stop.recv_timeout(Duration::from_secs(1)),
                Err(RecvTimeoutError::Timeout)
            );
            match &lead {
                None => upkeep.pass(&current(), &store, stopping),
                Some(l) => {
                    if let Some(term) = l.term() {
                        store.fenced(term, || {
                            // Sends a former leader left half-done are this leader's now.
                            if l.takeovers() != led {
                                led = l.takeovers();
                                upkeep::recover(&current(), &store);
                            }
                            upkeep.pass(&current(), &store, stopping)
                        });
                    }
                }
            }
            if stopping {
                break;
            }
        }
    })
}

/// Loads and validates the file again; logs every error and returns `None` if it is bad.
pub fn reload(path: &Path, current: &Config) -> Option<Config> {
    match config::load(path) {
        Ok(new) => {
            if new.state.path != current.state.path {
                tracing::warn!(old = %current.state.path.display(), new = %new.state.path.display(), "state.url changed: it takes effect at the next restart");
            }
            Some(Config {
                state: current.state.clone(),
                ..new
            })
        }
        Err(ConfigError::Invalid { diagnostics, .. }) => {
            for d in diagnostics {
                tracing::error!("{}", d.render().trim_end());
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot reload the configuration");
            None
        }
    }
}

/// Asks the daemon and `runbook serve` running on this configuration's state file to reload;
/// returns (daemon pid, serve pid) of those that were signalled.
pub fn signal_reload(config: &Config) -> (Option<u32>, Option<u32>) {
    let hup = |pid: u32| {
        let p = rustix::process::Pid::from_raw(pid as i32)?;
        rustix::process::kill_process(p, rustix::process::Signal::HUP).ok()?;
        Some(pid)
    };
    (
        lock::running_daemon(&config.state.path).and_then(hup),
        lock::running_serve(&config.state.path).and_then(hup),
    )
}
