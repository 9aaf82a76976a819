-- Consecutive outcomes per check and host, for fail_after / recover_after.
CREATE TABLE check_state (
    check_name TEXT NOT NULL,
    host       TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    fails      INTEGER NOT NULL,
    oks        INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (check_name, host)
);

-- Alerts: one row per episode; at most one open (firing or silenced) row per key.
CREATE TABLE alerts (
    id             INTEGER PRIMARY KEY,
    key            TEXT NOT NULL,
    source         TEXT NOT NULL,          -- check | task
    name           TEXT NOT NULL,          -- check name, or profile/task
    host           TEXT NOT NULL,
    severity       TEXT NOT NULL,
    status         TEXT NOT NULL,          -- firing | silenced | resolved
    labels         TEXT NOT NULL,          -- JSON object
    summary        TEXT NOT NULL,
    first_seen     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    resolved_at    TEXT,
    count          INTEGER NOT NULL,
    suppressed_by  TEXT,                   -- the failing dependency, when suppressed
    acked_by       TEXT,
    acked_at       TEXT
);
CREATE UNIQUE INDEX alerts_one_open_per_key ON alerts(key) WHERE status != 'resolved';
CREATE INDEX alerts_by_status ON alerts(status, id);

-- Silences: an alert key (or a check name) that must not notify until a time.
CREATE TABLE silences (
    id         INTEGER PRIMARY KEY,
    target     TEXT NOT NULL,
    until      TEXT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX silences_by_target ON silences(target, until);
