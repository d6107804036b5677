DROP INDEX deliveries_by_subscription;
CREATE INDEX deliveries_finished_by_subscription ON deliveries (subscription_id, state) WHERE state <> 'pending';
