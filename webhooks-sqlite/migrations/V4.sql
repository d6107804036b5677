
ALTER TABLE subscriptions ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE subscriptions ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN cycle INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN cycle INTEGER NOT NULL DEFAULT 1;
DROP INDEX deliveries_claimable;
CREATE INDEX deliveries_claimable ON deliveries (claimable_at) WHERE state = 'pending' AND held = 0 AND waiting = 0;
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_pending ON deliveries (subscription_id, waiting) WHERE state = 'pending';
CREATE INDEX deliveries_waiting ON deliveries (subscription_id, id) WHERE waiting = 1;
