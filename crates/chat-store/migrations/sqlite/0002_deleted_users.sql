-- Deleted accounts stay as tombstones so that their messages keep a sender
-- and every room's seqs stay gapless.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
