//! [`SubscriptionStore`]: the endpoints and the event types they listen to.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::model::{Subscription, SubscriptionId};

/// Keeps subscriptions. Each method is one atomic step.
#[async_trait]
pub trait SubscriptionStore: Send + Sync + Debug + 'static {
    /// Adds a subscription; `DuplicateSubscription` when its id is taken.
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()>;

    /// Replaces a subscription's URL, event types and secrets.
    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()>;

    /// One subscription.
    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>>;

    /// Every subscription, oldest first.
    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>>;

    /// Removes a subscription with its deliveries and their logs; `false`
    /// when there was none.
    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool>;

    /// Disables a subscription: its pending deliveries are held, not lost.
    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Enables a subscription again and resets its failure count; its held
    /// deliveries become due by `now` (retries of one that was never
    /// disabled keep their schedule).
    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()>;
}
