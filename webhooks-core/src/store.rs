//! The [`Store`] trait: where subscriptions, deliveries and their logs live.
//!
//! A store is dumb on purpose: it keeps state and applies the decisions it is
//! handed, atomically. It knows nothing about HTTP, presets or clocks; every
//! time it needs is passed in.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::model::{Attempt, Delivery, DeliveryId, Event, Subscription, SubscriptionId};

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No subscription has this id.
    #[error("subscription {0} not found")]
    SubscriptionNotFound(SubscriptionId),
    /// No delivery has this id.
    #[error("delivery {0} not found")]
    DeliveryNotFound(DeliveryId),
    /// A subscription with this id exists already.
    #[error("subscription {0} already exists")]
    DuplicateSubscription(SubscriptionId),
    /// The backend failed (I/O, database, corrupt data).
    #[error("store backend failed: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Wraps a backend's own error.
    pub fn backend(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend(error.into())
    }
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A due delivery handed to one worker until `lease_until`, with the
/// subscription it goes to.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The delivery; `attempts` counts the attempts made before this one.
    pub delivery: Delivery,
    /// Its subscription (URL and secret), shared by the claims that go to it.
    pub subscription: Arc<Subscription>,
}

/// What happens to a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledged; no more attempts.
    Delivered,
    /// Failed; try again at this time.
    Retry {
        /// When the next attempt is due.
        at: DateTime<Utc>,
    },
    /// Failed, and the retry policy gives up; kept with its log.
    Dropped,
}

impl Verdict {
    /// `delivered`, `retrying` or `dropped`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry { .. } => "retrying",
            Self::Dropped => "dropped",
        }
    }
}

/// An attempt and its consequences, applied by [`Store::record_attempt`] in
/// one step.
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    /// The attempt for the log.
    pub attempt: Attempt,
    /// The delivery's next state.
    pub verdict: Verdict,
    /// Disable the subscription when its consecutive failures reach this.
    pub disable_after: Option<u32>,
    /// Disable the subscription at once with this reason, whatever its
    /// failure count (a receiver that answered `410 Gone`).
    pub disable_now: Option<String>,
    /// Now, for the time of a disable.
    pub now: DateTime<Utc>,
}

impl AttemptRecord {
    /// Why this record disables its subscription, given the subscription's
    /// consecutive failures after it; `None` when it does not.
    pub fn disable_reason(&self, consecutive_failures: u32) -> Option<String> {
        match (&self.disable_now, self.disable_after) {
            (Some(reason), _) => Some(reason.clone()),
            (None, Some(limit)) if consecutive_failures >= limit => {
                Some(format!("{consecutive_failures} consecutive failed attempts"))
            }
            _ => None,
        }
    }
}

/// What recording an attempt did to the subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The subscription's failed attempts in a row after this one.
    pub consecutive_failures: u32,
    /// Whether this attempt disabled the subscription.
    pub disabled_subscription: bool,
}

/// How many of a subscription's deliveries are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Waiting for an attempt, or held while the subscription is disabled.
    pub pending: u64,
    /// Acknowledged.
    pub delivered: u64,
    /// Given up on.
    pub dropped: u64,
}

/// Which deliveries [`Store::list_deliveries`] returns: every filter that is
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
/// let mut query = DeliveryQuery {
///     subscription: Some(subscription.id),
///     state: Some(StateFilter::Pending),
///     limit: 2,
///     ..DeliveryQuery::default()
/// };
/// let first = webhooks.deliveries(query.clone()).await?;
/// assert_eq!(first.deliveries.len(), 2);
/// query.after = first.next;
/// assert_eq!(webhooks.deliveries(query).await?.deliveries.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryQuery {
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

/// A delivery state to filter by; `Held` is a pending delivery whose
/// subscription is disabled, and `Pending` excludes those.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
    /// Acknowledged attempts over all attempts; `None` before the first.
    pub fn success_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.succeeded as f64 / self.attempts as f64)
    }
}

/// Where subscriptions, deliveries and attempt logs live.
///
/// Every method is one atomic step: a crash between two calls may lose the
/// work of neither. Handles are cheap to clone and shared across tasks.
/// `webhooks_core::testing` (feature `testing`) holds the behaviour every
/// implementation must have, as tests to run against it.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// Adds a subscription.
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
    /// deliveries become due at once.
    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()>;

    /// Records `event` and creates one pending delivery of `body`, due at
    /// `event.occurred_at`, for every enabled subscription that listens to
    /// `event.name`, all in one step. Returns the new deliveries' ids.
    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Vec<DeliveryId>>;

    /// Publishes several events in one step where the store can (one
    /// transaction); each as [`Store::publish`] would, in order.
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Vec<DeliveryId>>> {
        let mut published = Vec::with_capacity(events.len());
        for (event, body) in events {
            published.push(self.publish(event, body.clone()).await?);
        }
        Ok(published)
    }

    /// Leases up to `limit` pending deliveries that are due at `now`, whose
    /// subscription is enabled and not in `skip`, and which no live lease
    /// holds, until `lease_until`; earliest due first. A lease that runs out
    /// makes the delivery claimable again, so a crashed worker's claims come
    /// back. `skip` holds the endpoints that have their share of requests in
    /// flight already; what they have due waits in the queue.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        skip: &[SubscriptionId],
    ) -> StoreResult<Vec<Claim>>;

    /// Gives claims back unattempted: each lease is cut to end at
    /// `claimable_at` (now, or a little later to let a busy endpoint be).
    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()>;

    /// Appends the attempt to its delivery's log and applies its verdict, the
    /// subscription's failure count (reset on success) and, when the count
    /// reaches `disable_after` or `disable_now` is set, the disable, all in
    /// one step. A delivery that
    /// is no longer pending keeps its state; the attempt is logged all the same.
    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<Recorded>;

    /// Whether one call for many deliveries costs much less than one call
    /// each, as it does for a durable store that pays a commit per call. The
    /// dispatcher then gathers attempts for a recorder and claims for a
    /// quarter of its slots at a time; otherwise each attempt records itself
    /// and a slot is refilled as soon as it frees.
    fn prefers_batches(&self) -> bool {
        false
    }

    /// Records several attempts, in order, each as [`Store::record_attempt`]
    /// would; a store that can should do it in one transaction, as the
    /// dispatcher records in batches under load. A record that cannot apply
    /// (its delivery was deleted) gets its own error and leaves the others
    /// be; the outer error says the batch as a whole failed.
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        let mut recorded = Vec::with_capacity(records.len());
        for record in records {
            recorded.push(match self.record_attempt(record).await {
                Err(StoreError::Backend(error)) => return Err(StoreError::Backend(error)),
                other => other,
            });
        }
        Ok(recorded)
    }

    /// One delivery.
    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>>;

    /// A delivery's attempts, first first.
    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>>;

    /// A subscription's deliveries counted by state.
    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts>;

    /// Deliveries matching `query`, in id order, at most `query.limit`.
    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>>;

    /// Starts a new attempt cycle for a delivery, whatever its state: pending
    /// again, due at `now`, its attempt count back to zero (the retry policy
    /// starts over), its id, body and log kept. A disabled subscription's
    /// delivery stays held until it is enabled.
    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()>;

    /// Recovers a subscription in one step: enables it, and starts a new
    /// attempt cycle, due at `now`, for each of its held deliveries and its
    /// dropped deliveries created at or after `since`. Returns how many.
    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;

    /// Creates one pending delivery of `event` for `subscription` only,
    /// whatever it listens to (a test event), due at `event.occurred_at`.
    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId>;

    /// What a subscription's attempts add up to.
    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats>;

    /// Pending deliveries in the whole store, held ones included.
    async fn pending_count(&self) -> StoreResult<u64>;

    /// When the next pending delivery of an enabled subscription becomes
    /// claimable (its due time or the end of its lease), if any.
    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>>;

    /// A signal that wakes an idle dispatcher when work arrives that the
    /// facade did not publish itself (another process's publish, say); `None`
    /// when the store has no such channel and dispatchers find that work at
    /// their next poll. A store that listens (PostgreSQL's `LISTEN`) starts
    /// doing so at the first call, made from within the host's runtime.
    fn wake_ups(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}
