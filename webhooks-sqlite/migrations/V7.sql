-- Idempotency keys in a table of their own, each held until its window
-- ends whatever happens to its event's deliveries (purged, their endpoint
-- deleted), and kept even when the event reached no one. `event_seq` is the
-- event's row when it was stored; the event's id guards against a row
-- number reused after the event was deleted.
CREATE TABLE idempotency_keys (
    audience   TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   BLOB NOT NULL,
    event_seq  INTEGER,
    held_until INTEGER NOT NULL,
    PRIMARY KEY (audience, key)
) WITHOUT ROWID;
-- Forgetting expired keys reads them from the front.
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (held_until);
-- Keys held before: for a day from their event, as the default window.
INSERT INTO idempotency_keys (audience, key, event_id, event_seq, held_until)
    SELECT audience, idempotency_key, id, seq, occurred_at + 86400000000
    FROM events WHERE idempotency_key IS NOT NULL;
DROP INDEX events_by_idempotency_key;
ALTER TABLE events DROP COLUMN idempotency_key;
