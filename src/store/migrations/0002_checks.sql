-- Recent outcomes of every check; the daemon keeps this bounded by retention.
CREATE TABLE check_results (
    id         INTEGER PRIMARY KEY,
    check_name TEXT NOT NULL,
    host       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    ok         INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    detail     TEXT NOT NULL,
    data       TEXT NOT NULL,
    at         TEXT NOT NULL,
    run_id     INTEGER REFERENCES runs(id)
);
CREATE INDEX check_results_by_check ON check_results(check_name, id);
