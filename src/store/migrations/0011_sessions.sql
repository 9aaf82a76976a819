-- Guarded operator sessions, every command they ran or refused, and change requests.
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    mode       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    incident   TEXT,
    actor      TEXT NOT NULL,
    host       TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    next_step  TEXT
);
CREATE TABLE session_commands (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions(id),
    argv        TEXT NOT NULL,
    cwd         TEXT NOT NULL,
    decision    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    change_id   INTEGER,
    exit_code   INTEGER,
    output      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    duration_ms INTEGER
);
CREATE INDEX session_commands_by_session ON session_commands(session_id, id);
CREATE TABLE change_requests (
    id         INTEGER PRIMARY KEY,
    objective  TEXT NOT NULL,
    argv       TEXT NOT NULL,
    cwd        TEXT NOT NULL,
    impact     TEXT NOT NULL,
    rollback   TEXT NOT NULL,
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    requester  TEXT NOT NULL,
    binding    TEXT NOT NULL,
    status     TEXT NOT NULL,
    uses_left  INTEGER NOT NULL,
    approver   TEXT,
    decided_at TEXT,
    reason     TEXT,
    created_at TEXT NOT NULL
);
