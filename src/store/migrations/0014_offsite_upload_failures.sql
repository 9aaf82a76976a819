-- How many pushes in a row could not reach an upload an earlier push began (their first
-- request to it failed): after a few, the upload is started over rather than tried for ever.
ALTER TABLE offsite_uploads ADD COLUMN failed_starts INTEGER NOT NULL DEFAULT 0;
