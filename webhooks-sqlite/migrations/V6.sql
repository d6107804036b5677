-- Each subscription's claimable deliveries by when they can be claimed: a
-- claim that passes over busy endpoints walks the other subscriptions with
-- work and reads each one's front here, never a busy endpoint's backlog.
CREATE INDEX deliveries_claimable_by_subscription ON deliveries (subscription_id, claimable_at)
    WHERE state = 'pending' AND held = 0 AND waiting = 0;
