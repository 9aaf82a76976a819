-- Jobs ledger: one row per profile run, per task run, per pre-run sync.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    parent_id   INTEGER REFERENCES runs(id),
    profile     TEXT NOT NULL,
    task        TEXT,
    kind        TEXT NOT NULL,          -- profile | task | sync
    trigger     TEXT NOT NULL,          -- schedule | manual | retry
    status      TEXT NOT NULL,          -- running | ok | failed | skipped | stale | retryable
    host        TEXT NOT NULL,
    pid         INTEGER,
    pid_start   INTEGER,                -- process start time, to tell a live pid from a reused one
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    exit_code   INTEGER,
    signal      INTEGER,
    duration_ms INTEGER,
    command     TEXT,                   -- redacted, shell-quoted
    output      TEXT,                   -- redacted excerpt (head and tail)
    error       TEXT,
    retry_of    INTEGER REFERENCES runs(id)
);
CREATE INDEX runs_by_status ON runs(status, started_at);
CREATE INDEX runs_by_profile ON runs(profile, kind, started_at);
CREATE INDEX runs_by_parent ON runs(parent_id);

-- Free-form state that scripts and checks keep between runs.
CREATE TABLE monitor_state (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- Hash-chained audit log; append-only.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    ts        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    data      TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_by_kind ON audit_events(kind, seq);
