
CREATE INDEX deliveries_pending ON deliveries (subscription_id) WHERE state = 'pending';
