-- A change request may stand outside a session: a gate waiver (`runbook gate waive`) is asked
-- for from the command line, approved like any other change, and ends by itself at
-- `expires_at`. SQLite cannot drop a NOT NULL, so the table is rebuilt.
CREATE TABLE change_requests_new (
    id         INTEGER PRIMARY KEY,
    objective  TEXT NOT NULL,
    argv       TEXT NOT NULL,
    cwd        TEXT NOT NULL,
    impact     TEXT NOT NULL,
    rollback   TEXT NOT NULL,
    session_id INTEGER REFERENCES sessions(id),
    requester  TEXT NOT NULL,
    binding    TEXT NOT NULL,
    status     TEXT NOT NULL,
    uses_left  INTEGER NOT NULL,
    approver   TEXT,
    decided_at TEXT,
    reason     TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT
);
INSERT INTO change_requests_new (id, objective, argv, cwd, impact, rollback, session_id, requester, binding, status,
    uses_left, approver, decided_at, reason, created_at)
    SELECT id, objective, argv, cwd, impact, rollback, session_id, requester, binding, status,
    uses_left, approver, decided_at, reason, created_at FROM change_requests;
DROP TABLE change_requests;
ALTER TABLE change_requests_new RENAME TO change_requests;
