-- Pings from jobs runbook does not run itself (dead-man's switch checks).
CREATE TABLE heartbeats (
    check_name   TEXT PRIMARY KEY,
    last_ping    TEXT,                   -- the last success (or any finish) ping
    last_start   TEXT,                   -- the last /start ping
    last_status  TEXT NOT NULL,          -- ok | fail | start
    exit_code    INTEGER,
    duration_ms  INTEGER,                -- start → finish, when both were pinged
    updated_at   TEXT NOT NULL
);
