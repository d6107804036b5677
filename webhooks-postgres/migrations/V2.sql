
CREATE INDEX deliveries_pending ON webhooks.deliveries (subscription_id) WHERE state = 'pending';
