-- The channels a subscription listens on, as a JSON array of names: read
-- with its listeners when an event is published, and matched against the
-- event's channels there. Empty: it hears every channel.
ALTER TABLE subscriptions ADD COLUMN channels TEXT NOT NULL DEFAULT '[]';
