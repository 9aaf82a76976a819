//! The state's version for the read cache, one database round trip for many requests.
//!
//! On a state file the version is a read of shared memory, done in place. On PostgreSQL it is
//! a query; under load, requests that arrive while one read is in flight share the next read
//! instead of each making its own.
//! Invariant: a request is answered with a version read that *started after it arrived*, so it
//! sees every commit that finished before it arrived, whichever process made it (the same rule
//! as reading the version itself).

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::store::Store;

/// Reads in order of their start: `started` is the number of the newest, `wanted` the newest
/// number a waiting request needs.
#[derive(Default)]
struct Gate {
    started: u64,
    wanted: u64,
    running: bool,
}

type Read = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

pub struct Versions {
    /// `None` when the version is a read of memory (a state file): read in place.
    read: Option<Read>,
    local: Arc<Store>,
    gate: Mutex<Gate>,
    /// (number of the newest finished read, its result).
    done: watch::Sender<(u64, Option<i64>)>,
}

impl Versions {
    pub fn new(store: Arc<Store>) -> Versions {
        let read: Option<Read> = (!store.version_is_local()).then(|| {
            let store = store.clone();
            Arc::new(move || store.data_version().ok()) as Read
        });
        Versions {
            read,
            local: store,
            gate: Mutex::default(),
            done: watch::Sender::new((0, None)),
        }
    }

    /// The store's version read now, on this thread (which may block on the network).
    pub fn read_now(&self) -> Option<i64> {
        self.local.data_version().ok()
    }

    /// The store's version as of some moment after this call began.
    pub async fn read(self: &Arc<Self>) -> Option<i64> {
        if self.read.is_none() {
            return self.read_now();
        }
        let (need, mut done, start) = {
            let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            // The next read to start is the first that started after now.
            let need = gate.started + 1;
            let done = self.done.subscribe();
            let start = !gate.running;
            if start {
                gate.running = true;
                gate.started = need;
            } else {
                gate.wanted = gate.wanted.max(need);
            }
            (need, done, start)
        };
        if start {
            tokio::spawn(self.clone().reads(need));
        }
        loop {
            let (seq, version) = *done.borrow_and_update();
            if seq >= need {
                return version;
            }
            done.changed().await.ok()?;
        }
    }

    /// Reads until no request waits for a newer read.
    async fn reads(self: Arc<Self>, mut seq: u64) {
        let Some(read) = self.read.clone() else { return };
        loop {
            let read = read.clone();
            let version = tokio::task::spawn_blocking(move || read()).await.ok().flatten();
            self.done.send_replace((seq, version));
            let mut gate = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            if gate.wanted > seq {
                seq += 1;
                gate.started = seq;
            } else {
                gate.running = false;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A version source that takes `delay` per read and returns the commits made so far.
    fn slow(committed: Arc<AtomicI64>, delay: Duration) -> Arc<Versions> {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("s.db")).unwrap());
        let mut v = Versions::new(store);
        v.read = Some(Arc::new(move || {
            let at_start = committed.load(Ordering::SeqCst);
            std::thread::sleep(delay);
            Some(at_start)
        }));
        Arc::new(v)
    }

    #[test]
    fn a_request_never_shares_a_read_that_started_before_it_arrived() {
        runtime().block_on(async {
            let committed = Arc::new(AtomicI64::new(0));
            let versions = slow(committed.clone(), Duration::from_millis(100));
            // A read is in flight (it saw 0 commits) when a commit lands and a request arrives.
            let early = tokio::spawn({
                let v = versions.clone();
                async move { v.read().await }
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            committed.store(1, Ordering::SeqCst);
            let late: Vec<_> = (0..20)
                .map(|_| {
                    let v = versions.clone();
                    tokio::spawn(async move { v.read().await })
                })
                .collect();
            assert_eq!(early.await.unwrap(), Some(0));
            for r in late {
                assert_eq!(
                    r.await.unwrap(),
                    Some(1),
                    "a request saw a version read before it arrived"
                );
            }
        })
    }

    #[test]
    fn requests_in_flight_together_share_one_read() {
        runtime().block_on(async {
            let reads = Arc::new(AtomicI64::new(0));
            let versions = slow(Arc::new(AtomicI64::new(0)), Duration::from_millis(50));
            let mut v = Arc::try_unwrap(versions).ok().expect("one owner");
            let (r, slow_read) = (reads.clone(), v.read.clone().expect("a remote read"));
            v.read = Some(Arc::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
                slow_read()
            }));
            let versions = Arc::new(v);
            let all: Vec<_> = (0..100)
                .map(|_| {
                    let v = versions.clone();
                    tokio::spawn(async move { v.read().await })
                })
                .collect();
            for r in all {
                assert_eq!(r.await.unwrap(), Some(0));
            }
            let n = reads.load(Ordering::SeqCst);
            assert!(n <= 3, "100 concurrent requests made {n} reads");
        })
    }
}
