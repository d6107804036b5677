
ALTER TABLE webhooks.subscriptions ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscriptions_by_owner ON webhooks.subscriptions (owner, id);
ALTER TABLE webhooks.subscription_event_types ADD COLUMN owner TEXT NOT NULL DEFAULT 'default';
CREATE INDEX subscription_event_types_by_owner ON webhooks.subscription_event_types (owner, event_type);
ALTER TABLE webhooks.events ADD COLUMN audience TEXT NOT NULL DEFAULT 'default';
ALTER TABLE webhooks.events ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX events_by_idempotency_key ON webhooks.events (audience, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
