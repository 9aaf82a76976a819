-- A cumulative latency histogram per check (never pruned, so /metrics can serve it as a
-- Prometheus histogram): non-cumulative counts per bucket, comma-separated, plus sum and count.
CREATE TABLE check_latency (
    check_name TEXT PRIMARY KEY,
    buckets    TEXT NOT NULL,
    sum_ms     INTEGER NOT NULL,
    count      INTEGER NOT NULL
);
