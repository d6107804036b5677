//! [`SubscriptionStore`]: the endpoints and the event types they listen to.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::model::{Owner, Subscription, SubscriptionId};

/// Keeps subscriptions, each with its owner. Each method is one atomic step.
#[async_trait]
pub trait SubscriptionStore: Send + Sync + Debug + 'static {
    /// Adds a subscription; `DuplicateSubscription` when its id is taken.
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()>;

    /// Replaces a subscription's URL, event types, channels, secrets and
    /// settings.
    /// Turning [`ordered`](crate::EndpointSettings::ordered) off makes its
    /// waiting deliveries due; turning it on leaves the earliest pending
    /// delivery going and makes the others wait behind it.
    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()>;

    /// One subscription.
    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>>;

    /// Every subscription, oldest first.
    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>>;

    /// One owner's subscriptions, oldest first. The default filters
    /// [`SubscriptionStore::subscriptions`]; a store with an index on owners
    /// overrides it.
    async fn owner_subscriptions(&self, owner: &Owner) -> StoreResult<Vec<Subscription>> {
        let mut all = self.subscriptions().await?;
        all.retain(|subscription| &subscription.owner == owner);
        Ok(all)
    }

    /// One of `owner`'s subscriptions: `None` for an id that does not exist
    /// and for another owner's alike. The default reads by id and compares
    /// owners; a store with an index on owners answers in one query.
    async fn owned_subscription(
        &self,
        owner: &Owner,
        id: SubscriptionId,
    ) -> StoreResult<Option<Subscription>> {
        Ok(self.subscription(id).await?.filter(|subscription| &subscription.owner == owner))
    }

    /// Removes an owner's subscriptions with their deliveries and logs, and
    /// the idempotency keys its events hold, in one step (an account
    /// deleted); returns how many subscriptions.
    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64>;

    /// Removes a subscription with its deliveries and their logs; `false`
    /// when there was none.
    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool>;

    /// Disables a subscription: its pending deliveries are held, not lost,
    /// and so are those published to it until it is enabled.
    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Enables a subscription again and resets its failure count; its held
    /// deliveries become due by `now` (retries of one that was never
    /// disabled keep their schedule). Deliveries waiting behind an earlier
    /// one of an ordered subscription keep waiting.
    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()>;
}
