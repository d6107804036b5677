//! The store as the facade and the dispatcher use it: secrets are sealed on
//! the way in and opened on the way out (see [`crate::sealing`]), so no
//! store implementation ever sees one in the clear.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{
    Admin, AttemptRecord, Claim, ClaimRequest, DeliveryCounts, DeliveryQuery, DeliveryQueue, Publication,
    Recorded, Retention, Store, StoreError, StoreResult, SubscriptionStats, SubscriptionStore,
};
use crate::model::{Attempt, Delivery, DeliveryId, Event, Owner, Subscription, SubscriptionId};
use crate::sealing::{SecretKeys, needs_resealing, open, seal};

/// `inner` with its secrets sealed with `keys` (kept as they are without).
#[derive(Debug, Clone)]
pub(crate) struct Sealed {
    inner: Arc<dyn Store>,
    keys: Option<Arc<SecretKeys>>,
}

impl Sealed {
    pub(crate) fn new(inner: Arc<dyn Store>, keys: Option<SecretKeys>) -> Self {
        Self { inner, keys: keys.map(Arc::new) }
    }

    fn open(&self, subscription: Subscription) -> StoreResult<Subscription> {
        open(subscription, self.keys.as_deref()).map_err(StoreError::backend)
    }

    fn seal(&self, subscription: &Subscription) -> Subscription {
        seal(subscription, self.keys.as_deref())
    }

    /// Seals again, with the key that seals now, every subscription with a
    /// secret in the clear or sealed with an older key; how many.
    pub(crate) async fn reseal(&self) -> StoreResult<u64> {
        let Some(keys) = &self.keys else { return Ok(0) };
        let mut resealed = 0;
        for stored in self.inner.subscriptions().await? {
            if !needs_resealing(&stored, keys) {
                continue;
            }
            // Read again just before writing: a rotation since the listing
            // is kept.
            let Some(stored) = self.inner.subscription(stored.id).await? else { continue };
            let opened = self.open(stored)?;
            self.inner.update_subscription(&self.seal(&opened)).await?;
            resealed += 1;
        }
        Ok(resealed)
    }
}

#[async_trait]
impl SubscriptionStore for Sealed {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.inner.insert_subscription(&self.seal(subscription)).await
    }

    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.inner.update_subscription(&self.seal(subscription)).await
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        self.inner.subscription(id).await?.map(|stored| self.open(stored)).transpose()
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.inner.subscriptions().await?.into_iter().map(|stored| self.open(stored)).collect()
    }

    async fn owned_subscription(
        &self,
        owner: &Owner,
        id: SubscriptionId,
    ) -> StoreResult<Option<Subscription>> {
        self.inner.owned_subscription(owner, id).await?.map(|stored| self.open(stored)).transpose()
    }

    async fn owner_subscriptions(&self, owner: &Owner) -> StoreResult<Vec<Subscription>> {
        self.inner.owner_subscriptions(owner).await?.into_iter().map(|stored| self.open(stored)).collect()
    }

    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64> {
        self.inner.delete_owner(owner).await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        self.inner.delete_subscription(id).await
    }

    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.inner.disable_subscription(id, reason, now).await
    }

    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()> {
        self.inner.enable_subscription(id, now).await
    }
}

#[async_trait]
impl DeliveryQueue for Sealed {
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>> {
        self.inner.publish_many(events).await
    }

    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Publication> {
        self.inner.publish(event, body).await
    }

    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId> {
        self.inner.publish_to(event, body, subscription).await
    }

    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>> {
        let mut claims = self.inner.claim_due(request).await?;
        // Claims to one subscription share it: each is opened once.
        let mut opened: HashMap<SubscriptionId, Arc<Subscription>> = HashMap::new();
        for claim in &mut claims {
            let subscription = match opened.get(&claim.subscription.id) {
                Some(subscription) => Arc::clone(subscription),
                None => {
                    let subscription = Arc::new(self.open(Subscription::clone(&claim.subscription))?);
                    opened.insert(subscription.id, Arc::clone(&subscription));
                    subscription
                }
            };
            claim.subscription = subscription;
        }
        Ok(claims)
    }

    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()> {
        self.inner.release(ids, claimable_at).await
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        self.inner.record_attempts(records).await
    }

    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<Recorded> {
        self.inner.record_attempt(record).await
    }

    fn prefers_batches(&self) -> bool {
        self.inner.prefers_batches()
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.inner.delivery(id).await
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        self.inner.pending_count().await
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.inner.next_due_at().await
    }

    fn wake_ups(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.wake_ups()
    }
}

#[async_trait]
impl Admin for Sealed {
    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        self.inner.attempts(id).await
    }

    async fn attempts_of(&self, ids: &[DeliveryId]) -> StoreResult<Vec<(DeliveryId, Vec<Attempt>)>> {
        self.inner.attempts_of(ids).await
    }

    async fn owned_delivery(&self, owner: &Owner, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.inner.owned_delivery(owner, id).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        self.inner.list_deliveries(query).await
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        self.inner.resend(id, now).await
    }

    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.inner.recover(subscription, since, now).await
    }

    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts> {
        self.inner.delivery_counts(subscription).await
    }

    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats> {
        self.inner.subscription_stats(id).await
    }
}

#[async_trait]
impl Retention for Sealed {
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.inner.purge_batch(older_than, limit).await
    }

    async fn purge_finished(&self, older_than: DateTime<Utc>, batch: usize) -> StoreResult<u64> {
        self.inner.purge_finished(older_than, batch).await
    }

    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.inner.forget_keys(now, limit).await
    }

    async fn forget_expired_keys(&self, now: DateTime<Utc>, batch: usize) -> StoreResult<u64> {
        self.inner.forget_expired_keys(now, batch).await
    }
}
