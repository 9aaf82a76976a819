-- Read paths that must not scan: the latest result per check (kept on write), and an
-- alert's notifications.
CREATE TABLE check_latest (
    check_name TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    detail     TEXT NOT NULL,
    data       TEXT NOT NULL,
    at         TEXT NOT NULL,
    run_id     INTEGER
);
INSERT INTO check_latest (check_name, kind, ok, latency_ms, detail, data, at, run_id)
    SELECT check_name, kind, ok, latency_ms, detail, data, at, run_id FROM check_results
    WHERE id IN (SELECT MAX(id) FROM check_results GROUP BY check_name);
CREATE INDEX notifications_by_alert ON notifications(alert_id);
