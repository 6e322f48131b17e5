-- Edits and deletions (docs/design/room-log.md). A message holds its
-- current state only: an edit replaces the text, a deletion empties it and
-- leaves a tombstone, so that no old text stays anywhere the server reads.
-- edited_at: microseconds since the Unix epoch of the last edit, NULL if
-- never (and on tombstones).
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
