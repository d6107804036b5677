-- Idempotency keys in a table of their own, each held until its window
-- ends whatever happens to its event's deliveries (purged, their endpoint
-- deleted), and kept even when the event reached no one. The key's row is
-- taken before its event is stored, so a racing publish of the same key
-- waits on it; `event_seq` is drawn then, and the event stored under it.
CREATE TABLE webhooks.idempotency_keys (
    audience   TEXT NOT NULL,
    key        TEXT NOT NULL,
    event_id   UUID NOT NULL,
    event_seq  BIGINT NOT NULL,
    held_until BIGINT NOT NULL,
    PRIMARY KEY (audience, key)
);
-- Forgetting expired keys reads them from the front.
CREATE INDEX idempotency_keys_by_expiry ON webhooks.idempotency_keys (held_until);
-- Keys held before: for a day from their event, as the default window.
INSERT INTO webhooks.idempotency_keys (audience, key, event_id, event_seq, held_until)
    SELECT audience, idempotency_key, id, seq, occurred_at + 86400000000
    FROM webhooks.events WHERE idempotency_key IS NOT NULL;
DROP INDEX webhooks.events_by_idempotency_key;
ALTER TABLE webhooks.events DROP COLUMN idempotency_key;
