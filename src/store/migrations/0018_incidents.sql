-- Incidents: one row each; every change to one is also an audit event (subject
-- `incident SLUG`), which is where its timeline comes from.
CREATE TABLE incidents (
    id             INTEGER PRIMARY KEY,
    slug           TEXT NOT NULL UNIQUE,
    title          TEXT NOT NULL,
    severity       TEXT NOT NULL,
    state          TEXT NOT NULL,
    commander      TEXT NOT NULL,
    classification TEXT,
    cause          TEXT,
    note           TEXT,
    opened_at      TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    closed_at      TEXT
);
