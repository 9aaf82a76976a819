-- Drift as it came and went: one row an item (`kind:key:attribute`) while it lasts, kept once
-- gone; and acknowledgements, which expire.
CREATE TABLE drift_items (
    id         INTEGER PRIMARY KEY,
    item       TEXT NOT NULL,
    change     TEXT NOT NULL,
    expected   TEXT NOT NULL,
    actual     TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    gone_at    TEXT
);
CREATE UNIQUE INDEX drift_items_open ON drift_items (item) WHERE gone_at IS NULL;
CREATE TABLE drift_acks (
    id         INTEGER PRIMARY KEY,
    item       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
