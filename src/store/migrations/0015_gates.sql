-- Runs of release and rollback gates: the verdict, the release judged, and the evidence file
-- with its SHA-256 (also in the audit chain). `measured` holds each check's mean values, the
-- baseline of the gate's next run when this one passed.
CREATE TABLE gate_runs (
    id INTEGER PRIMARY KEY,
    gate TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    verdict TEXT NOT NULL,
    release_ref TEXT,
    release_sha TEXT,
    operator TEXT NOT NULL,
    evidence_path TEXT NOT NULL,
    evidence_sha256 TEXT NOT NULL UNIQUE,
    measured TEXT NOT NULL
);
CREATE INDEX gate_runs_by_gate ON gate_runs (gate, id);
