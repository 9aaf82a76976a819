-- Deploys of an application: one row an attempt (or a rollback), with the last step it
-- completed, so a deploy stopped half-way says where it stopped.
CREATE TABLE deploys (
    id          INTEGER PRIMARY KEY,
    app         TEXT NOT NULL,
    ref         TEXT NOT NULL,
    sha         TEXT NOT NULL,
    release     TEXT NOT NULL,
    previous    TEXT,
    status      TEXT NOT NULL,
    step        TEXT NOT NULL,
    operator    TEXT NOT NULL,
    host        TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    error       TEXT
);
CREATE INDEX deploys_by_app ON deploys (app, id);
