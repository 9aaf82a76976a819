-- API bearer tokens: only a SHA-256 of each token is kept.
CREATE TABLE api_tokens (
    name         TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL,          -- read | write
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL
);

-- Liveness facts the daemon publishes (its scheduler tick), read by /v1/ready.
CREATE TABLE daemon_status (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- When a notification was claimed for sending: a send is only "interrupted" once its claim is
-- older than any send can take, so two overlapping commands do not recover each other's sends.
ALTER TABLE notifications ADD COLUMN claimed_at TEXT;
