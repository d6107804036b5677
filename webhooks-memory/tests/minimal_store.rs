//! The smallest store the traits allow: only the required methods, each
//! handed to a `MemoryStore`, so every default the traits provide (single
//! publish and record, counts, stats) runs under the whole behaviour suite.
//! What a third-party store must write, and no more.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use webhooks_core::{
    Admin, Attempt, AttemptRecord, Claim, ClaimRequest, Delivery, DeliveryId, DeliveryQuery, DeliveryQueue,
    Event, Owner, Publication, Recorded, Retention, StoreResult, Subscription, SubscriptionId,
    SubscriptionStore,
};
use webhooks_memory::MemoryStore;

#[derive(Clone, Debug, Default)]
struct Minimal(MemoryStore);

#[async_trait]
impl SubscriptionStore for Minimal {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.0.insert_subscription(subscription).await
    }

    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.0.update_subscription(subscription).await
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        self.0.subscription(id).await
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.0.subscriptions().await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        self.0.delete_subscription(id).await
    }

    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64> {
        self.0.delete_owner(owner).await
    }

    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.0.disable_subscription(id, reason, now).await
    }

    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()> {
        self.0.enable_subscription(id, now).await
    }
}

#[async_trait]
impl DeliveryQueue for Minimal {
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>> {
        self.0.publish_many(events).await
    }

    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId> {
        self.0.publish_to(event, body, subscription).await
    }

    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>> {
        self.0.claim_due(request).await
    }

    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()> {
        self.0.release(ids, claimable_at).await
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        self.0.record_attempts(records).await
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.0.delivery(id).await
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        self.0.pending_count().await
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.0.next_due_at().await
    }
}

#[async_trait]
impl Admin for Minimal {
    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        self.0.attempts(id).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        self.0.list_deliveries(query).await
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        self.0.resend(id, now).await
    }

    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.0.recover(subscription, since, now).await
    }
}

#[async_trait]
impl Retention for Minimal {
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.0.purge_batch(older_than, limit).await
    }

    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        self.0.forget_keys(now, limit).await
    }
}

webhooks_core::store_suite!(|| async { (Minimal::default(), ()) });

/// The facade takes it like any other store.
#[tokio::test]
async fn the_facade_runs_on_the_minimal_store() {
    let webhooks = webhooks_core::Webhooks::builder()
        .store(Minimal::default())
        .preset(webhooks_core::Preset::deepsmith())
        .build()
        .unwrap();
    let subscription = webhooks
        .subscribe(Subscription::builder("https://customer.example/").event_type("content.status_updated"))
        .await
        .unwrap();
    webhooks.publish("content.status_updated", serde_json::json!({"id": 1})).await.unwrap();
    assert_eq!(webhooks.delivery_counts(subscription.id).await.unwrap().pending, 1);
}
