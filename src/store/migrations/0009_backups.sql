-- Backup archives: one row per archive written, with its last verification and drill.
CREATE TABLE backups (
    id            INTEGER PRIMARY KEY,
    target        TEXT NOT NULL,
    path          TEXT NOT NULL UNIQUE,
    created_at    TEXT NOT NULL,
    host          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    files         INTEGER NOT NULL,
    data_bytes    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    verified_at   TEXT,
    verify_ok     INTEGER,
    verify_detail TEXT,
    drilled_at    TEXT,
    drill_ok      INTEGER,
    drill_ms      INTEGER,
    pruned_at     TEXT
);
CREATE INDEX backups_by_target ON backups(target, created_at);
