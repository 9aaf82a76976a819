-- Offsite uploads in progress: what `backup push` has sent of one archive, part by part, so
-- an interrupted push continues where it stopped. A row goes when its upload completes.
CREATE TABLE offsite_uploads (
    url        TEXT NOT NULL,
    archive    TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    upload_id  TEXT NOT NULL,
    part_size  INTEGER NOT NULL,
    parts      TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (url, archive)
);
