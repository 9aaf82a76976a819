//! The fence of fleet mode, as this process holds it: the lease term it holds and until when,
//! the term this thread's write transactions are fenced by, and the PostgreSQL trigger that
//! refuses a write under a term that is no longer the leader's.
//!
//! A leaf of `store`: the backends read the fence from here, and `fleet` (the lease's queries)
//! sets it.

use std::cell::Cell;

thread_local! {
    /// The lease term the write transactions of this thread are fenced by (`Store::fenced`).
    static FENCE: Cell<Option<i64>> = const { Cell::new(None) };
}

/// The term write transactions on this thread are fenced by, if any.
pub(super) fn current_fence() -> Option<i64> {
    FENCE.with(Cell::get)
}

thread_local! {
    /// Set while this thread runs work of this host alone (a `run_on: all` or host-named
    /// profile): what it judges is this host's, not the fleet's.
    static PER_HOST: Cell<bool> = const { Cell::new(false) };
}

/// The lease term this process holds and until when (this host's monotonic clock) it is
/// surely its own: set by the daemon's lease loop after each renewal.
static LEASE: std::sync::Mutex<Option<(i64, std::time::Instant)>> = std::sync::Mutex::new(None);

/// Records the term held and until when it is surely this process's (`None`: none held);
/// returns the term recorded before.
pub fn set_lease(held: Option<(i64, std::time::Instant)>) -> Option<i64> {
    std::mem::replace(&mut *LEASE.lock().unwrap_or_else(|e| e.into_inner()), held).map(|(t, _)| t)
}

/// The term this process holds now, before its local deadline.
pub fn held_term() -> Option<i64> {
    LEASE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .filter(|(_, d)| std::time::Instant::now() < *d)
        .map(|(t, _)| t)
}

/// Whether this thread may act on the world (send a message) now: always outside a fence;
/// inside one, only before the lease's local deadline. Checked just before each side effect
/// the database cannot fence, so a holder that was paused past its lease stops at once.
pub fn may_act() -> bool {
    match current_fence() {
        None => true,
        fence => held_term() == fence,
    }
}

/// PostgreSQL only, applied after the migrations: the fence trigger on the tables whose rows a
/// leader writes under its term (stamped with it: runs, notifications), and on the alert
/// episodes and check states it judges (refused, not stamped: a paused leader cannot flip an
/// alert from an observation older than the new leader's). SQLite has no fleet (one host), so
/// no trigger.
pub(super) const PG_FENCE: &str = r#"
CREATE OR REPLACE FUNCTION runbook_fenced_term() RETURNS bigint AS $fence$
DECLARE
    t text := current_setting('runbook.term', true);
BEGIN
    IF t IS NULL OR t = '' THEN
        RETURN NULL;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM leases
        WHERE name = 'leader' AND term = t::bigint
          AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    ) THEN
        RAISE EXCEPTION 'fenced: lease term % is no longer the leader''s', t;
    END IF;
    RETURN t::bigint;
END
$fence$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION runbook_fence() RETURNS trigger AS $fence$
DECLARE
    t bigint := runbook_fenced_term();
BEGIN
    IF t IS NOT NULL THEN
        NEW.term := t;
    END IF;
    RETURN NEW;
END
$fence$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION runbook_fence_only() RETURNS trigger AS $fence$
BEGIN
    PERFORM runbook_fenced_term();
    RETURN COALESCE(NEW, OLD);
END
$fence$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS runs_fence ON runs;
CREATE TRIGGER runs_fence BEFORE INSERT OR UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION runbook_fence();
DROP TRIGGER IF EXISTS notifications_fence ON notifications;
CREATE TRIGGER notifications_fence BEFORE INSERT OR UPDATE ON notifications FOR EACH ROW EXECUTE FUNCTION runbook_fence();
DROP TRIGGER IF EXISTS alerts_fence ON alerts;
CREATE TRIGGER alerts_fence BEFORE INSERT OR UPDATE OR DELETE ON alerts FOR EACH ROW EXECUTE FUNCTION runbook_fence_only();
DROP TRIGGER IF EXISTS check_state_fence ON check_state;
CREATE TRIGGER check_state_fence BEFORE INSERT OR UPDATE OR DELETE ON check_state FOR EACH ROW EXECUTE FUNCTION runbook_fence_only();
"#;

/// Runs `f` with the thread-local `cell` set to `value`, and puts the value before back
/// after, even when `f` panics.
fn with_cell<V: Copy + 'static, T>(
    cell: &'static std::thread::LocalKey<Cell<V>>,
    value: V,
    f: impl FnOnce() -> T,
) -> T {
    struct Reset<V: Copy + 'static>(&'static std::thread::LocalKey<Cell<V>>, V);
    impl<V: Copy + 'static> Drop for Reset<V> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _reset = Reset(cell, cell.with(|c| c.replace(value)));
    f()
}

/// Runs `f` with every write transaction it makes on this thread fenced by `term`.
pub(super) fn fenced<T>(term: i64, f: impl FnOnce() -> T) -> T {
    with_cell(&FENCE, Some(term), f)
}

/// Runs `f` as the work of this host alone.
pub(super) fn per_host<T>(f: impl FnOnce() -> T) -> T {
    with_cell(&PER_HOST, true, f)
}

/// Whether this thread runs work of this host alone now.
pub(super) fn is_per_host() -> bool {
    PER_HOST.with(Cell::get)
}
