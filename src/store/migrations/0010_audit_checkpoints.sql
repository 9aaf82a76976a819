-- Signed checkpoints of the audit chain (see src/audit/checkpoint.rs).
CREATE TABLE audit_checkpoints (
    id         INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL,
    head_hash  TEXT NOT NULL,
    time       TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);
