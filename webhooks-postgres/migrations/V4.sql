
ALTER TABLE webhooks.subscriptions ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE webhooks.subscriptions ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE webhooks.deliveries ADD COLUMN cycle BIGINT NOT NULL DEFAULT 1
    CHECK (cycle BETWEEN 1 AND 4294967295);
ALTER TABLE webhooks.deliveries ADD COLUMN waiting BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE webhooks.deliveries ADD CONSTRAINT deliveries_only_pending_wait CHECK (state = 'pending' OR NOT waiting);
ALTER TABLE webhooks.attempts ADD COLUMN cycle BIGINT NOT NULL DEFAULT 1
    CHECK (cycle BETWEEN 1 AND 4294967295);
DROP INDEX webhooks.deliveries_claimable;
CREATE INDEX deliveries_claimable ON webhooks.deliveries (claimable_at)
    WHERE state = 'pending' AND NOT held AND NOT waiting;
DROP INDEX webhooks.deliveries_pending;
CREATE INDEX deliveries_pending ON webhooks.deliveries (subscription_id, waiting) WHERE state = 'pending';
CREATE INDEX deliveries_waiting ON webhooks.deliveries (subscription_id, id) WHERE waiting;
