
CREATE TABLE webhooks.subscriptions (
    id                   UUID PRIMARY KEY,
    url                  TEXT NOT NULL,
    secret               TEXT NOT NULL,
    previous_secret      TEXT,
    previous_valid_until BIGINT,
    -- Both NULL while the subscription is enabled.
    disabled_reason      TEXT,
    disabled_at          BIGINT,
    consecutive_failures BIGINT NOT NULL CHECK (consecutive_failures BETWEEN 0 AND 4294967295),
    created_at           BIGINT NOT NULL,
    CHECK ((previous_secret IS NULL) = (previous_valid_until IS NULL)),
    CHECK ((disabled_reason IS NULL) = (disabled_at IS NULL))
);

-- Keyed by event type first: publishing looks subscriptions up by it.
CREATE TABLE webhooks.subscription_event_types (
    event_type      TEXT NOT NULL,
    subscription_id UUID NOT NULL REFERENCES webhooks.subscriptions (id) ON DELETE CASCADE,
    PRIMARY KEY (event_type, subscription_id)
);
CREATE INDEX subscription_event_types_by_subscription
    ON webhooks.subscription_event_types (subscription_id);

-- One row per publish that reached a subscription: the body is stored once,
-- however many deliveries carry it, and lives as long as one of them does.
CREATE TABLE webhooks.events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          UUID NOT NULL,
    name        TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    body        BYTEA NOT NULL
);

CREATE TABLE webhooks.deliveries (
    id              UUID PRIMARY KEY,
    event_seq       BIGINT NOT NULL REFERENCES webhooks.events (seq),
    subscription_id UUID NOT NULL REFERENCES webhooks.subscriptions (id) ON DELETE CASCADE,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dropped')),
    attempts        BIGINT NOT NULL CHECK (attempts BETWEEN 0 AND 4294967295),
    -- NULL once delivered or dropped.
    next_attempt_at BIGINT,
    -- The end of the last claim's lease; NULL once an attempt is recorded.
    lease_until     BIGINT,
    -- True while the subscription is disabled: kept, not claimed. Only a
    -- pending delivery is held.
    held            BOOLEAN NOT NULL DEFAULT false,
    -- When it was delivered or dropped; what purging goes by.
    finished_at     BIGINT,
    -- When it can be claimed: its due time, or the end of its lease if later
    -- (GREATEST passes over a NULL lease).
    claimable_at    BIGINT GENERATED ALWAYS AS (GREATEST(next_attempt_at, lease_until)) STORED,
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL)),
    CHECK (state = 'pending' OR NOT held)
);
-- Only what can be claimed, in claim order: claiming reads from the front,
-- so its cost does not grow with the queue or with held deliveries.
CREATE INDEX deliveries_claimable ON webhooks.deliveries (claimable_at) WHERE state = 'pending' AND NOT held;
CREATE INDEX deliveries_by_subscription ON webhooks.deliveries (subscription_id, state);
CREATE INDEX deliveries_by_event ON webhooks.deliveries (event_seq);
CREATE INDEX deliveries_finished ON webhooks.deliveries (finished_at) WHERE finished_at IS NOT NULL;

-- An event goes with its last delivery, however that is deleted. The lock
-- on the event row makes transactions deleting its last deliveries at once
-- take turns, so the last of them sees that none is left.
CREATE FUNCTION webhooks.delete_unreferenced_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM webhooks.events WHERE seq = OLD.event_seq FOR UPDATE;
    DELETE FROM webhooks.events e WHERE e.seq = OLD.event_seq
        AND NOT EXISTS (SELECT 1 FROM webhooks.deliveries d WHERE d.event_seq = OLD.event_seq);
    RETURN NULL;
END
$$;
CREATE TRIGGER deliveries_delete_unreferenced_event AFTER DELETE ON webhooks.deliveries
    FOR EACH ROW EXECUTE FUNCTION webhooks.delete_unreferenced_event();

CREATE TABLE webhooks.attempts (
    -- Recording order.
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id UUID NOT NULL REFERENCES webhooks.deliveries (id) ON DELETE CASCADE,
    number      BIGINT NOT NULL CHECK (number BETWEEN 0 AND 4294967295),
    started_at  BIGINT NOT NULL,
    duration_us BIGINT NOT NULL,
    -- The response's status and the start of its body, or why none came.
    status      INTEGER,
    response    TEXT,
    error       TEXT,
    CHECK ((status IS NULL) = (error IS NOT NULL)),
    CHECK ((status IS NULL) = (response IS NULL))
);
CREATE INDEX attempts_by_delivery ON webhooks.attempts (delivery_id, seq);
