//! [`DeliveryQueue`]: publishing, leasing and recording, the part of a
//! store the dispatcher drives.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::{AttemptRecord, Recorded, StoreError, StoreResult};
use crate::model::{Delivery, DeliveryId, Event, EventId, Subscription, SubscriptionId};

/// A due delivery handed to one worker until `lease_until`, with the
/// subscription it goes to.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The delivery; `attempts` counts the attempts made before this one.
    pub delivery: Delivery,
    /// Its subscription (URL and secret), shared by the claims that go to it.
    pub subscription: Arc<Subscription>,
}

/// What [`DeliveryQueue::claim_due`] asks of the store: which deliveries
/// to lease, how many, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct ClaimRequest<'a> {
    /// The time at which a delivery must be due (and its lease run out) to
    /// be claimed.
    pub now: DateTime<Utc>,
    /// The most deliveries to lease.
    pub limit: usize,
    /// When the leases taken end and the deliveries become claimable again.
    pub lease_until: DateTime<Utc>,
    /// Subscriptions whose deliveries are left in the queue: the endpoints
    /// that have their share of requests in flight already.
    pub skip: &'a [SubscriptionId],
}

/// What publishing one event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publication {
    /// The event's id: the first publication's when this was a repeat.
    pub event_id: EventId,
    /// One delivery per subscription it reached; a repeat's are the first
    /// publication's.
    pub deliveries: Vec<DeliveryId>,
    /// Whether its idempotency key was held already, so nothing was created.
    pub repeated: bool,
}

/// The durable queue of deliveries. Each method is one atomic step.
///
/// Eight methods are required; a store that pays per call (a commit)
/// overrides the batch forms' defaults and says so in
/// [`DeliveryQueue::prefers_batches`].
#[async_trait]
pub trait DeliveryQueue: Send + Sync + Debug + 'static {
    /// Publishes events in one step where the store can (one transaction):
    /// records each event and creates one pending delivery of its body, due
    /// at `event.occurred_at`, for every subscription of
    /// `event.audience` that listens to `event.name`; a disabled one's is
    /// held until it is enabled. Delivery ids are made with
    /// [`DeliveryId::at`] from `event.occurred_at`.
    ///
    /// An event with an [idempotency key](crate::IdempotencyKey) that its
    /// audience holds at `event.occurred_at` (taken by an earlier event, or
    /// one before it in `events`, and held until after then) creates
    /// nothing and returns the first event's publication, marked repeated:
    /// its id and those of its deliveries that still exist. Otherwise the
    /// event takes the key, held until its `held_until`, even when it
    /// reaches no subscription, and whatever later happens to its
    /// deliveries. The store enforces keys itself (a unique key per
    /// audience), so two processes racing with one key create one event.
    /// An event that reached no subscription is not kept.
    ///
    /// A delivery for an [ordered](crate::EndpointSettings::ordered)
    /// subscription that has a pending delivery already is stored waiting:
    /// pending, never claimed, reported with no `next_attempt_at`, until
    /// recording finishes the ones before it (see
    /// [`Changes::release_next`](super::Changes::release_next)).
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>>;

    /// Publishes one event, as [`DeliveryQueue::publish_many`] does.
    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Publication> {
        let published = self.publish_many(&[(event.clone(), body)]).await?;
        published.into_iter().next().ok_or_else(|| StoreError::backend("the store published nothing"))
    }

    /// Creates one pending delivery of `event` for `subscription` only,
    /// whatever it listens to (a test event), due at `event.occurred_at`;
    /// held if the subscription is disabled.
    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId>;

    /// Leases up to `request.limit` pending deliveries that are due at
    /// `request.now` (never a waiting one), whose subscription is enabled and
    /// not in `request.skip`, and which no live lease holds, until
    /// `request.lease_until`; earliest due first. A lease that runs out makes
    /// the delivery claimable again, so a crashed worker's claims come back.
    /// `request.skip` holds the endpoints that have their share of requests
    /// in flight already; what they have due waits in the queue.
    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>>;

    /// Gives claims back unattempted: each lease is cut to end at
    /// `claimable_at` (now, or a little later to let a busy endpoint be).
    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()>;

    /// Records attempts, in order, each in one step: appends the attempt to
    /// its delivery's log (with its cycle) and writes the
    /// [`Changes`](super::Changes) that [`AttemptRecord::changes`] computes
    /// from the state read in that step, releasing the next delivery of an
    /// ordered subscription when they say so.
    /// A store that can should record the batch in one transaction. A record
    /// that cannot apply (its delivery was deleted) gets its own error and
    /// leaves the others be; the outer error says the batch as a whole failed.
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>>;

    /// Records one attempt, as [`DeliveryQueue::record_attempts`] does.
    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<Recorded> {
        let recorded = self.record_attempts(std::slice::from_ref(record)).await?;
        recorded.into_iter().next().unwrap_or_else(|| Err(StoreError::backend("the store recorded nothing")))
    }

    /// Whether one call for many deliveries costs much less than one call
    /// each, as it does for a durable store that pays a commit per call. The
    /// dispatcher then hands attempts to one recorder that records them in
    /// batches; otherwise each worker records its own. Either way a claim
    /// serves every worker waiting for one, so claims grow as the store
    /// slows.
    fn prefers_batches(&self) -> bool {
        false
    }

    /// One delivery.
    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>>;

    /// Pending deliveries in the whole store, held ones included: the
    /// dispatcher's gauge. Counted from an index or kept, never a scan of
    /// finished deliveries.
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
