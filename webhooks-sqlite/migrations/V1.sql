
CREATE TABLE subscriptions (
    id                   BLOB PRIMARY KEY,
    url                  TEXT NOT NULL,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_valid_until INTEGER,
    -- Both NULL while the subscription is enabled.
    disabled_reason      TEXT,
    disabled_at          INTEGER,
    consecutive_failures INTEGER NOT NULL,
    created_at           INTEGER NOT NULL,
    CHECK ((previous_secret IS NULL) = (previous_valid_until IS NULL)),
    CHECK ((disabled_reason IS NULL) = (disabled_at IS NULL))
);

-- Keyed by event type first: publishing looks subscriptions up by it.
CREATE TABLE subscription_event_types (
    event_type      TEXT NOT NULL,
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, subscription_id)
) WITHOUT ROWID;
CREATE INDEX subscription_event_types_by_subscription ON subscription_event_types (subscription_id);

-- One row per publish that reached a subscription: the body is stored once,
-- however many deliveries carry it, and lives as long as one of them does.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL,
    name        TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    body        BLOB NOT NULL
);

CREATE TABLE deliveries (
    id              BLOB PRIMARY KEY,
    event_seq       INTEGER NOT NULL REFERENCES events (seq),
    subscription_id BLOB NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dropped')),
    attempts        INTEGER NOT NULL,
    -- NULL once delivered or dropped.
    next_attempt_at INTEGER,
    -- The end of the last claim's lease; NULL once an attempt is recorded.
    lease_until     INTEGER,
    -- 1 while the subscription is disabled: kept, not claimed.
    held            INTEGER NOT NULL DEFAULT 0,
    -- When it was delivered or dropped; what purging goes by.
    finished_at     INTEGER,
    -- When it can be claimed: its due time, or the end of its lease if later.
    claimable_at    INTEGER GENERATED ALWAYS AS
                        (max(next_attempt_at, coalesce(lease_until, next_attempt_at))) VIRTUAL,
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL))
);
-- Only what can be claimed, in claim order: claiming reads from the front,
-- so its cost does not grow with the queue or with held deliveries.
CREATE INDEX deliveries_claimable ON deliveries (claimable_at) WHERE state = 'pending' AND held = 0;
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, state);
CREATE INDEX deliveries_by_event ON deliveries (event_seq);
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- An event goes with its last delivery, however that is deleted.
CREATE TRIGGER deliveries_delete_unreferenced_event AFTER DELETE ON deliveries
WHEN NOT EXISTS (SELECT 1 FROM deliveries WHERE event_seq = OLD.event_seq)
BEGIN
    DELETE FROM events WHERE seq = OLD.event_seq;
END;

CREATE TABLE attempts (
    -- Recording order.
    seq         INTEGER PRIMARY KEY,
    delivery_id BLOB NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    -- The response's status and the start of its body, or why none came.
    status      INTEGER,
    response    TEXT,
    error       TEXT,
    CHECK ((status IS NULL) = (error IS NOT NULL)),
    CHECK ((status IS NULL) = (response IS NULL))
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, seq);
