DROP INDEX deliveries_by_subscription;
-- Every delivery by subscription: its entry is written once, at publish, and
-- never moves (the state is not in the key), and it serves the foreign key.
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id);
