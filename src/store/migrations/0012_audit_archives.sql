-- Audit events moved out of the state file by `audit archive`: each file holds a contiguous
-- run of the chain; the newest row is the anchor the remaining chain continues from.
CREATE TABLE audit_archives (
    id          INTEGER PRIMARY KEY,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    last_hash   TEXT NOT NULL,
    file        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    archived_at TEXT NOT NULL
);
