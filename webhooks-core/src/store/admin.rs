//! [`Admin`]: what an operator reads and does: logs, listing, counts,
//! resend and recover.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use super::{DeliveryQueue, StoreError, StoreResult, SubscriptionStore};
use crate::model::{Attempt, Delivery, DeliveryId, DeliveryState, Owner, SubscriptionId};

/// How many of a subscription's deliveries are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DeliveryCounts {
    /// Waiting for an attempt, or held while the subscription is disabled.
    pub pending: u64,
    /// Acknowledged.
    pub delivered: u64,
    /// Given up on.
    pub dropped: u64,
}

impl DeliveryCounts {
    /// Counts `count` more deliveries in `state` (held ones as pending).
    pub fn add(&mut self, state: DeliveryState, count: u64) {
        match state {
            DeliveryState::Pending | DeliveryState::Held => self.pending += count,
            DeliveryState::Delivered => self.delivered += count,
            DeliveryState::Dropped => self.dropped += count,
        }
    }
}

/// Which deliveries [`Admin::list_deliveries`] returns: every filter that is
/// set must match. Results come in id order (creation order), after the
/// cursor.
///
/// ```
/// use webhooks_core::{DeliveryQuery, Preset, StateFilter, Subscription, Webhooks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// let webhooks = Webhooks::builder()
///     .store(webhooks_memory::MemoryStore::new())
///     .preset(Preset::deepsmith())
///     .build()?;
/// let subscription = webhooks
///     .subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated"))
///     .await?;
/// for n in 0..3 {
///     webhooks.publish("iq.status_updated", serde_json::json!({ "n": n })).await?;
/// }
/// // Pending deliveries of one customer, two at a time.
/// let query = DeliveryQuery::new().subscription(subscription.id).state(StateFilter::Pending).limit(2);
/// let first = webhooks.deliveries(query.clone()).await?;
/// assert_eq!(first.deliveries.len(), 2);
/// let rest = webhooks.deliveries(query.after(first.next)).await?;
/// assert_eq!(rest.deliveries.len(), 1);
/// # Ok(())
/// # }
/// ```
///
/// With the `serde` feature it reads from a query string or JSON, every
/// field optional (`?state=held&limit=50`); `owner` is never read from
/// outside (a customer must not pick another's): the host sets it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(default))]
#[non_exhaustive]
#[must_use]
pub struct DeliveryQuery {
    /// Only this owner's subscriptions'.
    #[cfg_attr(feature = "serde", serde(skip_deserializing))]
    pub owner: Option<Owner>,
    /// Only this subscription's.
    pub subscription: Option<SubscriptionId>,
    /// Only those in this state.
    pub state: Option<StateFilter>,
    /// Only this event type's.
    pub event_type: Option<String>,
    /// Only those created at or after this time.
    pub created_from: Option<DateTime<Utc>>,
    /// Only those created before this time.
    pub created_until: Option<DateTime<Utc>>,
    /// Only those after this delivery: the cursor of the page before.
    pub after: Option<DeliveryId>,
    /// At most this many (1 to 1000).
    pub limit: usize,
}

impl DeliveryQuery {
    /// Every delivery, a page of the default size (100).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this owner's subscriptions' (`None`: every owner's).
    pub fn owner(mut self, owner: impl Into<Option<Owner>>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Only this subscription's.
    pub fn subscription(mut self, id: impl Into<Option<SubscriptionId>>) -> Self {
        self.subscription = id.into();
        self
    }

    /// Only those in this state.
    pub fn state(mut self, state: impl Into<Option<StateFilter>>) -> Self {
        self.state = state.into();
        self
    }

    /// Only this event type's.
    pub fn event_type(mut self, name: impl Into<String>) -> Self {
        self.event_type = Some(name.into());
        self
    }

    /// Only those created at or after this time.
    pub fn created_from(mut self, at: impl Into<Option<DateTime<Utc>>>) -> Self {
        self.created_from = at.into();
        self
    }

    /// Only those created before this time.
    pub fn created_until(mut self, at: impl Into<Option<DateTime<Utc>>>) -> Self {
        self.created_until = at.into();
        self
    }

    /// Only those after this delivery: the `next` cursor of the page
    /// before (`None` starts from the first).
    pub fn after(mut self, cursor: impl Into<Option<DeliveryId>>) -> Self {
        self.after = cursor.into();
        self
    }

    /// At most this many (1 to 1000; 0 is the default size).
    pub fn limit(mut self, deliveries: usize) -> Self {
        self.limit = deliveries;
        self
    }
}

/// A delivery state to filter by; `Held` is a pending delivery whose
/// subscription is disabled, and `Pending` excludes those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(rename_all = "snake_case"))]
pub enum StateFilter {
    /// Waiting for an attempt at an enabled subscription.
    Pending,
    /// Waiting while its subscription is disabled.
    Held,
    /// Acknowledged.
    Delivered,
    /// Given up on.
    Dropped,
}

/// What a subscription's attempts add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct SubscriptionStats {
    /// Attempts made to it, kept in the log.
    pub attempts: u64,
    /// Those a 2xx acknowledged.
    pub succeeded: u64,
    /// When the last acknowledged attempt started.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the last failed attempt started.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Failed attempts in a row, now.
    pub consecutive_failures: u32,
}

impl SubscriptionStats {
    /// Adds one attempt from the log.
    pub fn count(&mut self, attempt: &Attempt) {
        self.attempts += 1;
        let last = if attempt.succeeded() {
            self.succeeded += 1;
            &mut self.last_success_at
        } else {
            &mut self.last_failure_at
        };
        *last = (*last).max(Some(attempt.started_at));
    }

    /// Acknowledged attempts over all attempts; `None` before the first.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.succeeded as f64 / self.attempts as f64)
    }
}

/// Operations on logs and deliveries for operators. Four methods are
/// required; counts and stats have defaults that page through the
/// subscription's deliveries, which a store with an index or kept counts
/// overrides.
#[async_trait]
pub trait Admin: SubscriptionStore + DeliveryQueue {
    /// A delivery's attempts, first first.
    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>>;

    /// The attempts of each of `ids`, first first, in the order of `ids`
    /// (a delivery that does not exist has none): a page of deliveries with
    /// their logs. The default asks [`Admin::attempts`] once per delivery;
    /// a store that pays per call reads them all in one.
    async fn attempts_of(&self, ids: &[DeliveryId]) -> StoreResult<Vec<(DeliveryId, Vec<Attempt>)>> {
        let mut all = Vec::with_capacity(ids.len());
        for id in ids {
            all.push((*id, self.attempts(*id).await?));
        }
        Ok(all)
    }

    /// One delivery to one of `owner`'s subscriptions: `None` for an id
    /// that does not exist and for another owner's alike. The default
    /// reads the delivery, then its subscription; a store answers in one
    /// query where it can.
    async fn owned_delivery(&self, owner: &Owner, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        let Some(delivery) = self.delivery(id).await? else { return Ok(None) };
        let subscription = self.subscription(delivery.subscription_id).await?;
        Ok(subscription.filter(|subscription| &subscription.owner == owner).map(|_| delivery))
    }

    /// Deliveries matching `query`, in id order, at most `query.limit`.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>>;

    /// Starts a new attempt cycle for a delivery, whatever its state: pending
    /// again, due at `now`, its cycle one more and its attempt count back to
    /// zero (the retry policy starts over), its id, body and log kept. A
    /// disabled subscription's delivery stays held until it is enabled.
    ///
    /// For an ordered subscription the delivery takes its place in publish
    /// order: the earliest pending delivery (by id) goes, the others wait.
    /// Resending an old delivery while later ones are pending therefore
    /// puts it at the head, and the one that was going waits behind it (an
    /// attempt of it already in flight is recorded, and it then waits).
    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()>;

    /// Recovers a subscription in one step: enables it, and starts a new
    /// attempt cycle, due at `now`, for each of its held deliveries and its
    /// dropped deliveries created at or after `since`. Returns how many. An
    /// ordered subscription's pending deliveries then go one at a time in
    /// publish order, as after [`Admin::resend`].
    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// A subscription's deliveries counted by state.
    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts> {
        let mut counts = DeliveryCounts::default();
        for delivery in all_deliveries(self, subscription).await? {
            counts.add(delivery.state, 1);
        }
        Ok(counts)
    }

    /// What a subscription's attempts add up to.
    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats> {
        let subscription = self.subscription(id).await?.ok_or(StoreError::SubscriptionNotFound(id))?;
        let mut stats = SubscriptionStats {
            consecutive_failures: subscription.consecutive_failures,
            ..SubscriptionStats::default()
        };
        for delivery in all_deliveries(self, id).await? {
            for attempt in self.attempts(delivery.id).await? {
                stats.count(&attempt);
            }
        }
        Ok(stats)
    }
}

/// Every delivery of a subscription, a page at a time.
async fn all_deliveries<A: Admin + ?Sized>(
    store: &A,
    subscription: SubscriptionId,
) -> StoreResult<Vec<Delivery>> {
    let mut query =
        DeliveryQuery { subscription: Some(subscription), limit: 1000, ..DeliveryQuery::default() };
    let mut all = Vec::new();
    loop {
        let page = store.list_deliveries(&query).await?;
        let full = page.len() == query.limit;
        query.after = page.last().map(|d| d.id);
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}
