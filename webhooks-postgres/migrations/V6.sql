-- The channels a subscription listens on: read with its listeners when an
-- event is published (the same row the publish locks), and matched against
-- the event's channels there. Empty: it hears every channel.
ALTER TABLE webhooks.subscriptions ADD COLUMN channels TEXT[] NOT NULL DEFAULT '{}';
