
ALTER TABLE subscriptions ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscriptions_by_owner ON subscriptions (owner, id);
ALTER TABLE subscription_event_types ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscription_event_types_by_owner ON subscription_event_types (owner, event_type);
ALTER TABLE events ADD COLUMN audience TEXT NOT NULL DEFAULT 'default';
ALTER TABLE events ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_by_idempotency_key ON events (audience, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
