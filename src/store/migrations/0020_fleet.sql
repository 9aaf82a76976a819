-- Fleet mode: the hosts sharing a state (a heartbeat each), the leader lease (its holder and
-- term, times in milliseconds of the database's clock), and the term and scheduled tick that
-- fence a run and an outbox row. A tick of a profile is claimed once, whichever host claims it.
CREATE TABLE fleet_hosts (
    host         TEXT PRIMARY KEY,
    instance     TEXT NOT NULL,
    labels       TEXT NOT NULL,
    pid          INTEGER,
    version      TEXT NOT NULL,
    started_ms   INTEGER NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    stopped_ms   INTEGER
);
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT,
    instance    TEXT,
    term        INTEGER NOT NULL,
    acquired_ms INTEGER NOT NULL,
    expires_ms  INTEGER NOT NULL
);
ALTER TABLE runs ADD COLUMN term INTEGER;
ALTER TABLE runs ADD COLUMN tick TEXT;
CREATE UNIQUE INDEX runs_one_per_tick ON runs (profile, tick) WHERE tick IS NOT NULL AND parent_id IS NULL;
ALTER TABLE notifications ADD COLUMN term INTEGER;
