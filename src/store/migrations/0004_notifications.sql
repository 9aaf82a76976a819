-- The outbox: a notification is written in the same transaction as the alert transition,
-- then sent by a dispatcher. The idempotency key makes a second enqueue a no-op.
CREATE TABLE notifications (
    id              INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    alert_id        INTEGER REFERENCES alerts(id),
    change          TEXT NOT NULL,          -- opened | resolved | test
    channel         TEXT NOT NULL,
    payload         TEXT NOT NULL,          -- JSON message
    status          TEXT NOT NULL,          -- pending | sending | sent | dead
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX notifications_due ON notifications(status, next_attempt_at);

-- Delivery log per channel: watching the watcher.
CREATE TABLE channel_health (
    channel       TEXT PRIMARY KEY,
    last_success  TEXT,
    last_error    TEXT,
    last_error_at TEXT,
    failing_since TEXT
);
