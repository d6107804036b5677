//! Keeping the store in bounds: held deliveries trimmed past their limits,
//! expired idempotency keys forgotten. Dispatchers run both every minute.

use std::time::Duration;

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;

use super::Webhooks;
use crate::error::Error;
use crate::model::{Attempt, AttemptResult, Subscription};
use crate::operational::{OperationalEvent, held_drop_reason};
use crate::store::{AttemptRecord, DeliveryQuery, StateFilter, Verdict, held_excess};

impl Webhooks {
    /// Drops, unsent, the oldest held deliveries of every disabled
    /// subscription past its held limit ([`EndpointSettings::held_limit`](crate::EndpointSettings::held_limit),
    /// [`DEFAULT_HELD_LIMIT`](crate::DEFAULT_HELD_LIMIT) unless set), each with a log entry saying
    /// why; returns how many. Dispatchers call it every minute; a host may
    /// call it too.
    pub async fn trim_held(&self) -> Result<u64, Error> {
        let store = &self.inner.store;
        // From the subscriptions, not the deliveries: no store indexes held
        // deliveries across subscriptions, and there are far fewer
        // subscriptions than deliveries.
        let mut dropped = 0;
        for subscription in store.subscriptions().await? {
            if subscription.is_enabled() {
                continue;
            }
            let limit = subscription.settings.held_limit_or_default();
            // A disabled subscription's pending deliveries are all held.
            let mut excess = held_excess(store.delivery_counts(subscription.id).await?.pending, limit);
            while excess > 0 {
                let trimmed = self.drop_oldest_held(&subscription, limit, excess).await?;
                if trimmed == 0 {
                    break;
                }
                dropped += trimmed;
                excess = excess.saturating_sub(trimmed);
            }
        }
        Ok(dropped)
    }

    /// Drops up to `count` (at most a thousand) of `subscription`'s oldest
    /// held deliveries, saying why in each log; how many it dropped.
    async fn drop_oldest_held(
        &self,
        subscription: &Subscription,
        limit: u32,
        count: u64,
    ) -> Result<u64, Error> {
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        // Oldest first: a page in creation order.
        let query = DeliveryQuery {
            subscription: Some(subscription.id),
            state: Some(StateFilter::Held),
            limit: usize::try_from(count).unwrap_or(usize::MAX).min(1000),
            ..DeliveryQuery::default()
        };
        let reason = held_drop_reason(limit);
        let records: Vec<AttemptRecord> = store
            .list_deliveries(&query)
            .await?
            .iter()
            .map(|delivery| AttemptRecord {
                attempt: Attempt {
                    delivery_id: delivery.id,
                    cycle: delivery.cycle,
                    number: delivery.attempts + 1,
                    started_at: now,
                    duration: Duration::ZERO,
                    result: AttemptResult::Error(reason.clone()),
                },
                verdict: Verdict::Dropped,
                disable_after: None,
                disable_now: None,
                now,
            })
            .collect();
        let dropped =
            store.record_attempts(&records).await?.iter().filter(|recorded| recorded.is_ok()).count();
        tracing::warn!(subscription_id = %subscription.id, dropped, limit, "held deliveries dropped");
        let dropped = dropped as u64;
        if dropped > 0 {
            self.tell(OperationalEvent::HeldDropped {
                subscription_id: subscription.id,
                dropped,
                limit,
                at: now,
            })
            .await;
        }
        Ok(dropped)
    }

    /// Forgets the idempotency keys whose window has ended, a thousand per
    /// store step; returns how many. Dispatchers run it every minute; a
    /// host without one runs it itself now and then. A key whose window has
    /// ended publishes anew whether or not it was forgotten yet.
    pub async fn forget_expired_keys(&self) -> Result<u64, Error> {
        let forgotten = self.inner.store.forget_expired_keys(self.inner.clock.now(), 1000).await?;
        if forgotten > 0 {
            tracing::debug!(forgotten, "expired idempotency keys forgotten");
        }
        Ok(forgotten)
    }
}
