-- The room log (docs/design/room-log.md): every change to a room's
-- conversation is an event that takes the room's next seq, in the
-- transaction that makes it. The log says what happened, in order, and
-- never holds content: texts live only in `messages`, so erasing one is one
-- update and a replay cannot show an old text.
--
-- kind: 1 message, 2 edit, 3 delete, 4 reaction added, 5 reaction removed.
-- message_id: the message the event is about (for a message, itself);
-- actor_id: who did it (the sender, the editor, the deleter, the reactor);
-- emoji: for reactions only; at: microseconds since the Unix epoch.
CREATE TABLE room_events (
    room_id    BLOB NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    kind       INTEGER NOT NULL,
    message_id BLOB,
    actor_id   BLOB,
    emoji      TEXT,
    at         INTEGER NOT NULL,
    PRIMARY KEY (room_id, seq)
) WITHOUT ROWID;

-- Until now every seq was a message's: one `message` event each.
INSERT INTO room_events (room_id, seq, kind, message_id, actor_id, emoji, at)
    SELECT room_id, seq, 1, id, sender_id, NULL, sent_at FROM messages;
