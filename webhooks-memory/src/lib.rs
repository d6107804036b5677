//! An in-memory [`Store`](webhooks_core::Store) for `webhooks-core`.
//!
//! A real store, not a mock: it passes the same behaviour suite as the
//! durable ones. Use it in tests, and in a single process that can afford to
//! lose its queue when it exits. Handles are cheap clones of one shared
//! queue, safe to use from many tasks.
//!
//! ```
//! use webhooks_core::{Preset, Webhooks};
//! use webhooks_memory::MemoryStore;
//!
//! let store = MemoryStore::new();
//! let webhooks = Webhooks::builder()
//!     .store(store.clone())
//!     .preset(Preset::deepsmith())
//!     .build()
//!     .unwrap();
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod queue;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use webhooks_core::{
    Admin, Attempt, AttemptRecord, Claim, ClaimRequest, Current, Delivery, DeliveryCounts, DeliveryId,
    DeliveryQuery, DeliveryQueue, DeliveryState, Enabling, Event, EventId, NewCycle, Owner, Publication,
    Recorded, Reordering, Retention, Standing, StateFilter, StoreError, StoreResult, Subscription,
    SubscriptionId, SubscriptionStats, SubscriptionStatus, SubscriptionStore, in_order, release_next,
};

use crate::queue::{At, ClaimQueue, Micros};

/// The in-memory store; see the [crate docs](crate).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No operation leaves the state half-changed before it can panic, so
        // a poisoned lock still guards consistent data.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct State {
    /// By id; UUIDv7 ids make this oldest first. Shared with claims.
    subscriptions: BTreeMap<SubscriptionId, Arc<Subscription>>,
    /// Each owner's subscriptions, so publishing for one owner looks at
    /// theirs alone, however many owners there are.
    by_owner: HashMap<Owner, BTreeSet<SubscriptionId>>,
    /// By id, so listing pages in creation order. Boxed: a B-tree node holds
    /// eleven slots, and a large value would be paid for in all of them.
    deliveries: BTreeMap<DeliveryId, Box<Entry>>,
    /// Every event type published, so deliveries share one copy of each.
    event_types: HashSet<Arc<str>>,
    /// Pending deliveries of enabled subscriptions, by when they can be
    /// claimed.
    claimable: ClaimQueue,
    /// Each subscription's deliveries by state, kept as they change so
    /// counting is no scan.
    counts: HashMap<SubscriptionId, DeliveryCounts>,
    /// Idempotency keys taken, by audience and key, until forgotten.
    keys: HashMap<(String, String), Keyed>,
    /// Each ordered subscription's deliveries waiting behind an earlier
    /// one, in publish order.
    waiting: HashMap<SubscriptionId, BTreeSet<DeliveryId>>,
}

/// The first publication of an idempotency key, and until when it holds.
#[derive(Debug)]
struct Keyed {
    event_id: EventId,
    deliveries: Vec<DeliveryId>,
    held_until: DateTime<Utc>,
}

/// A delivery as kept: compact, since a queue may hold millions.
#[derive(Debug)]
struct Entry {
    event_id: EventId,
    event_type: Arc<str>,
    subscription_id: SubscriptionId,
    body: Bytes,
    created_at: Micros,
    /// When the next attempt is due while pending; when it finished once
    /// delivered or dropped (what retention goes by). One field for both
    /// saves eight bytes a delivery.
    at: Option<At>,
    lease_until: Option<At>,
    /// Its place in the claim queue, if it is queued.
    claimable_at: Option<At>,
    attempts: u32,
    cycle: u32,
    state: DeliveryState,
    /// Pending behind an earlier delivery of an ordered subscription: not
    /// claimable whatever `at` says.
    waiting: bool,
    log: Vec<Attempt>,
}

impl Entry {
    fn next_attempt_at(&self) -> Option<At> {
        self.at.filter(|_| self.state == DeliveryState::Pending && !self.waiting)
    }

    fn finished_at(&self) -> Option<At> {
        self.at.filter(|_| self.state != DeliveryState::Pending)
    }

    fn delivery(&self, id: DeliveryId) -> Delivery {
        Delivery {
            id,
            event_id: self.event_id,
            event_type: self.event_type.to_string(),
            subscription_id: self.subscription_id,
            body: self.body.clone(),
            state: self.state,
            cycle: self.cycle,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at().map(|at| queue::time(at.micros())),
            created_at: queue::time(self.created_at),
        }
    }
}

impl State {
    fn subscription_mut(&mut self, id: SubscriptionId) -> StoreResult<&mut Subscription> {
        self.subscriptions.get_mut(&id).map(Arc::make_mut).ok_or(StoreError::SubscriptionNotFound(id))
    }

    fn is_enabled(&self, id: SubscriptionId) -> bool {
        self.subscriptions.get(&id).is_some_and(|s| s.is_enabled())
    }

    fn standing(&self, id: SubscriptionId) -> StoreResult<Standing> {
        self.subscriptions.get(&id).map(|s| Standing::of(s)).ok_or(StoreError::SubscriptionNotFound(id))
    }

    /// Puts a delivery in the claim queue at the right place, or takes it
    /// out when it is finished or its subscription is disabled.
    fn reindex(&mut self, id: DeliveryId) {
        let Some(entry) = self.deliveries.get(&id) else { return };
        let enabled = self.is_enabled(entry.subscription_id);
        let key = match (entry.state, entry.next_attempt_at()) {
            (DeliveryState::Pending, Some(due)) if enabled => {
                Some(entry.lease_until.map_or(due, |l| l.max(due)))
            }
            _ => None,
        };
        let Some(entry) = self.deliveries.get_mut(&id) else { return };
        let from = std::mem::replace(&mut entry.claimable_at, key);
        self.claimable.requeue(id, entry.subscription_id, from.map(At::micros), key.map(At::micros));
    }

    /// A subscription's deliveries. A scan: per-subscription operations are
    /// rare, and an index would cost every pending delivery its memory.
    fn deliveries_of(&self, id: SubscriptionId) -> Vec<DeliveryId> {
        self.deliveries.iter().filter(|(_, e)| e.subscription_id == id).map(|(d, _)| *d).collect()
    }

    fn reindex_subscription(&mut self, id: SubscriptionId) {
        for delivery in self.deliveries_of(id) {
            self.reindex(delivery);
        }
    }

    /// Disables a subscription as core's rule says. Held is derived (a
    /// pending delivery of a disabled subscription), so holding is taking
    /// its deliveries out of the claim queue.
    fn disable(&mut self, id: SubscriptionId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let disabling = self.standing(id)?.disabling(reason, now);
        self.subscription_mut(id)?.status = disabling.status;
        if disabling.hold_pending {
            self.reindex_subscription(id);
        }
        Ok(())
    }

    /// Enables a subscription as core's rule says: a fresh failure count,
    /// its held deliveries due by the time the rule gives.
    fn enable(&mut self, id: SubscriptionId, enabling: Enabling) -> StoreResult<()> {
        let subscription = self.subscription_mut(id)?;
        subscription.status = SubscriptionStatus::Enabled;
        subscription.consecutive_failures = enabling.consecutive_failures;
        if enabling.release_held_by.is_none() {
            return Ok(());
        }
        for delivery in self.deliveries_of(id) {
            if let Some(entry) = self.deliveries.get_mut(&delivery)
                && entry.state == DeliveryState::Pending
            {
                entry.at = entry.at.map(|due| At::new(enabling.due(queue::time(due.micros()))));
            }
            self.reindex(delivery);
        }
        Ok(())
    }

    /// Starts a delivery's new cycle as core's rule gives it. The caller
    /// puts an ordered subscription's deliveries in order afterwards
    /// ([`State::order`]).
    fn restart(&mut self, id: DeliveryId, cycle: NewCycle) {
        if let Some(entry) = self.deliveries.get_mut(&id) {
            let (subscription, from) = (entry.subscription_id, entry.state);
            entry.state = DeliveryState::Pending;
            entry.attempts = NewCycle::ATTEMPTS;
            entry.cycle = NewCycle::cycle_after(entry.cycle);
            entry.at = Some(At::new(cycle.due));
            entry.lease_until = None;
            self.count(subscription, Some(from), Some(DeliveryState::Pending));
        }
        self.reindex(id);
    }

    /// Marks a delivery waiting or not, keeping the subscription's set.
    fn set_waiting(&mut self, id: DeliveryId, waiting: bool) {
        let Some(entry) = self.deliveries.get_mut(&id) else { return };
        if entry.waiting == waiting {
            return;
        }
        entry.waiting = waiting;
        let subscription = entry.subscription_id;
        let set = self.waiting.entry(subscription).or_default();
        if waiting {
            set.insert(id);
        } else {
            set.remove(&id);
            if set.is_empty() {
                self.waiting.remove(&subscription);
            }
        }
        self.reindex(id);
    }

    /// Pending deliveries of a subscription that are not waiting.
    fn going(&self, subscription: SubscriptionId) -> u64 {
        let pending = self.counts.get(&subscription).map_or(0, |c| c.pending);
        pending.saturating_sub(self.waiting.get(&subscription).map_or(0, |w| w.len() as u64))
    }

    /// Lets an ordered subscription's next delivery go, as core's rule
    /// picks it from what is going and what waits.
    fn release_next(&mut self, subscription: SubscriptionId, now: DateTime<Utc>) {
        let earliest_waiting = self.waiting.get(&subscription).and_then(|w| w.first().copied());
        if let Some(released) = release_next(self.going(subscription) > 0, earliest_waiting, now) {
            if let Some(entry) = self.deliveries.get_mut(&released.delivery) {
                entry.at = Some(At::new(released.due));
                entry.lease_until = None;
            }
            self.set_waiting(released.delivery, false);
        }
    }

    /// Puts an ordered subscription's pending deliveries in order, as core's
    /// rule lines them up. A scan, as every per-subscription change is.
    fn order(&mut self, subscription: SubscriptionId) {
        let pending: Vec<DeliveryId> = self
            .deliveries_of(subscription)
            .into_iter()
            .filter(|id| self.deliveries.get(id).is_some_and(|e| e.state == DeliveryState::Pending))
            .collect();
        for (id, waiting) in in_order(pending) {
            self.set_waiting(id, waiting);
        }
    }

    /// Lets every waiting delivery of a subscription go, each due when it
    /// was (its publish time, or its retry time).
    fn release_all(&mut self, subscription: SubscriptionId) {
        for id in self.waiting.remove(&subscription).unwrap_or_default() {
            if let Some(entry) = self.deliveries.get_mut(&id) {
                entry.waiting = false;
            }
            self.reindex(id);
        }
    }

    fn event_type(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.event_types.get(name) {
            return Arc::clone(known);
        }
        let new: Arc<str> = Arc::from(name);
        self.event_types.insert(Arc::clone(&new));
        new
    }

    /// Inserts a pending delivery where core's rule places it; held is
    /// derived from the subscription, so only waiting is written.
    fn insert_delivery(&mut self, event: &Event, body: Bytes, subscription_id: SubscriptionId) -> DeliveryId {
        let id = DeliveryId::at(event.occurred_at);
        let placement = self.subscriptions.get(&subscription_id).map(|s| Standing::of(s).placement());
        let has_pending = self.counts.get(&subscription_id).is_some_and(|counts| counts.pending > 0);
        let waits = placement.is_some_and(|placement| placement.waiting(has_pending));
        let due = queue::micros(event.occurred_at);
        let entry = Entry {
            event_id: event.id,
            event_type: self.event_type(&event.name),
            subscription_id,
            body,
            created_at: due,
            at: Some(At::from_micros(due)),
            lease_until: None,
            claimable_at: None,
            attempts: 0,
            cycle: 1,
            state: DeliveryState::Pending,
            waiting: false,
            log: Vec::new(),
        };
        self.deliveries.insert(id, Box::new(entry));
        self.count(subscription_id, None, Some(DeliveryState::Pending));
        self.reindex(id);
        if waits {
            self.set_waiting(id, true);
        }
        id
    }

    /// Moves one of a subscription's deliveries from one state's count to
    /// another's (`None`: it is new, or gone).
    fn count(
        &mut self,
        subscription: SubscriptionId,
        from: Option<DeliveryState>,
        to: Option<DeliveryState>,
    ) {
        if from == to {
            return;
        }
        let counts = self.counts.entry(subscription).or_default();
        fn slot(counts: &mut DeliveryCounts, state: DeliveryState) -> &mut u64 {
            match state {
                // Never stored: a held delivery is kept pending.
                DeliveryState::Pending | DeliveryState::Held => &mut counts.pending,
                DeliveryState::Delivered => &mut counts.delivered,
                DeliveryState::Dropped => &mut counts.dropped,
            }
        }
        if let Some(from) = from {
            *slot(counts, from) -= 1;
        }
        if let Some(to) = to {
            *slot(counts, to) += 1;
        }
    }

    /// Takes a delivery out of every index and its count.
    fn remove_delivery(&mut self, id: DeliveryId) {
        self.set_waiting(id, false);
        let Some(entry) = self.deliveries.remove(&id) else { return };
        self.claimable.requeue(id, entry.subscription_id, entry.claimable_at.map(At::micros), None);
        self.count(entry.subscription_id, Some(entry.state), None);
    }

    fn publish(&mut self, event: &Event, body: Bytes) -> Publication {
        let key = event
            .idempotency_key
            .as_ref()
            .map(|key| ((event.audience.stored_key().to_owned(), key.key.clone()), key.held_until));
        if let Some(held) = key
            .as_ref()
            .and_then(|(key, _)| self.keys.get(key))
            .filter(|held| event.occurred_at < held.held_until)
        {
            let deliveries =
                held.deliveries.iter().filter(|id| self.deliveries.contains_key(id)).copied().collect();
            return Publication { event_id: held.event_id, deliveries, repeated: true };
        }
        // A disabled subscription's delivery is kept, held until it is enabled.
        let listens = |s: &Subscription| s.hears(event);
        let targets: Vec<SubscriptionId> = match event.audience.owner() {
            Some(owner) => self
                .by_owner
                .get(owner)
                .into_iter()
                .flatten()
                .filter(|id| self.subscriptions.get(id).is_some_and(|s| listens(s)))
                .copied()
                .collect(),
            None => self.subscriptions.values().filter(|s| listens(s)).map(|s| s.id).collect(),
        };
        let mut ids = Vec::with_capacity(targets.len());
        if let Some((last, rest)) = targets.split_last() {
            for target in rest {
                ids.push(self.insert_delivery(event, body.clone(), *target));
            }
            // The last one takes the body itself: one subscriber, no sharing.
            ids.push(self.insert_delivery(event, body, *last));
        }
        if let Some((key, held_until)) = key {
            self.keys.insert(key, Keyed { event_id: event.id, deliveries: ids.clone(), held_until });
        }
        Publication { event_id: event.id, deliveries: ids, repeated: false }
    }

    /// Removes a subscription with its deliveries; `false` when there was none.
    fn delete_subscription(&mut self, id: SubscriptionId) -> bool {
        let Some(subscription) = self.subscriptions.remove(&id) else {
            return false;
        };
        if let Some(theirs) = self.by_owner.get_mut(&subscription.owner) {
            theirs.remove(&id);
            if theirs.is_empty() {
                self.by_owner.remove(&subscription.owner);
            }
        }
        for delivery in self.deliveries_of(id) {
            self.remove_delivery(delivery);
        }
        self.counts.remove(&id);
        self.waiting.remove(&id);
        true
    }

    /// Logs an attempt and writes the changes core's rules make of it.
    fn record(&mut self, record: &AttemptRecord) -> StoreResult<Recorded> {
        let id = record.attempt.delivery_id;
        let entry = self.deliveries.get(&id).ok_or(StoreError::DeliveryNotFound(id))?;
        let subscription_id = entry.subscription_id;
        let subscription = self
            .subscriptions
            .get(&subscription_id)
            .ok_or(StoreError::SubscriptionNotFound(subscription_id))?;
        let failures_before = subscription.consecutive_failures;
        let changes = record.changes(Current {
            state: entry.state,
            attempts: entry.attempts,
            cycle: entry.cycle,
            consecutive_failures: subscription.consecutive_failures,
            enabled: subscription.is_enabled(),
            ordered: subscription.settings.ordered,
        });

        let entry = self.deliveries.get_mut(&id).ok_or(StoreError::DeliveryNotFound(id))?;
        entry.log.push(record.attempt.clone());
        if let Some(next) = changes.delivery {
            let from = entry.state;
            entry.state = next.state;
            entry.attempts = next.attempts;
            entry.at = next.next_attempt_at.or(next.finished_at).map(At::new);
            entry.lease_until = None;
            self.count(subscription_id, Some(from), Some(next.state));
            if next.state != DeliveryState::Pending {
                self.set_waiting(id, false);
            }
            self.reindex(id);
        }
        if changes.release_next {
            self.release_next(subscription_id, record.now);
        }
        // Writing copies a subscription that claims in flight still share
        // (`Arc::make_mut`): only a count that changed is written.
        if changes.consecutive_failures != failures_before {
            self.subscription_mut(subscription_id)?.consecutive_failures = changes.consecutive_failures;
        }
        if let Some(reason) = &changes.disable {
            self.disable(subscription_id, reason, record.now)?;
        }
        Ok(changes.recorded())
    }

    /// Whether `entry` passes `query`'s filters (the cursor aside).
    fn matches(&self, entry: &Entry, query: &DeliveryQuery) -> bool {
        let pending = entry.state == DeliveryState::Pending;
        let state_matches = match query.state {
            None => true,
            Some(StateFilter::Delivered) => entry.state == DeliveryState::Delivered,
            Some(StateFilter::Dropped) => entry.state == DeliveryState::Dropped,
            Some(StateFilter::Pending) => pending && self.is_enabled(entry.subscription_id),
            Some(StateFilter::Held) => pending && !self.is_enabled(entry.subscription_id),
        };
        let created = queue::time(entry.created_at);
        state_matches
            && query.subscription.is_none_or(|id| id == entry.subscription_id)
            && query.owner.as_ref().is_none_or(|owner| {
                self.subscriptions.get(&entry.subscription_id).is_some_and(|s| &s.owner == owner)
            })
            && query.event_type.as_deref().is_none_or(|name| name == &*entry.event_type)
            && query.created_from.is_none_or(|from| created >= from)
            && query.created_until.is_none_or(|until| created < until)
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let mut state = self.lock();
        if state.subscriptions.contains_key(&subscription.id) {
            return Err(StoreError::DuplicateSubscription(subscription.id));
        }
        state.subscriptions.insert(subscription.id, Arc::new(subscription.clone()));
        state.by_owner.entry(subscription.owner.clone()).or_default().insert(subscription.id);
        Ok(())
    }

    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.subscription_mut(subscription.id)?;
        stored.url = subscription.url.clone();
        stored.event_types = subscription.event_types.clone();
        stored.channels = subscription.channels.clone();
        stored.secret = subscription.secret.clone();
        stored.previous_secret = subscription.previous_secret.clone();
        let was_ordered = std::mem::replace(&mut stored.settings, subscription.settings.clone()).ordered;
        match Reordering::between(was_ordered, subscription.settings.ordered) {
            Some(Reordering::PutInOrder) => state.order(subscription.id),
            Some(Reordering::ReleaseAll) => state.release_all(subscription.id),
            None => {}
        }
        Ok(())
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        Ok(self.lock().subscriptions.get(&id).map(|s| Subscription::clone(s)))
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        Ok(self.lock().subscriptions.values().map(|s| Subscription::clone(s)).collect())
    }

    async fn owned_subscription(
        &self,
        owner: &Owner,
        id: SubscriptionId,
    ) -> StoreResult<Option<Subscription>> {
        let state = self.lock();
        Ok(state.subscriptions.get(&id).filter(|s| &s.owner == owner).map(|s| Subscription::clone(s)))
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        Ok(self.lock().delete_subscription(id))
    }

    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64> {
        let mut state = self.lock();
        let theirs: Vec<SubscriptionId> = state.by_owner.get(owner).into_iter().flatten().copied().collect();
        for id in &theirs {
            state.delete_subscription(*id);
        }
        state.keys.retain(|(audience, _), _| audience != owner.as_str());
        Ok(theirs.len() as u64)
    }

    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.lock().disable(id, reason, now)
    }

    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.lock();
        let enabling = state.standing(id)?.enabling(now);
        state.enable(id, enabling)
    }
}

#[async_trait]
impl DeliveryQueue for MemoryStore {
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>> {
        let mut state = self.lock();
        Ok(events.iter().map(|(event, body)| state.publish(event, body.clone())).collect())
    }

    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Publication> {
        Ok(self.lock().publish(event, body))
    }

    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId> {
        let mut state = self.lock();
        if !state.subscriptions.contains_key(&subscription) {
            return Err(StoreError::SubscriptionNotFound(subscription));
        }
        Ok(state.insert_delivery(event, body, subscription))
    }

    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>> {
        let mut state = self.lock();
        let due = state.claimable.due(queue::micros(request.now), request.limit, request.skip);
        let mut claims = Vec::with_capacity(due.len());
        for id in due {
            let Some(entry) = state.deliveries.get_mut(&id) else { continue };
            entry.lease_until = Some(At::new(request.lease_until));
            let delivery = entry.delivery(id);
            state.reindex(id);
            if let Some(subscription) = state.subscriptions.get(&delivery.subscription_id) {
                claims.push(Claim { delivery, subscription: Arc::clone(subscription) });
            }
        }
        Ok(claims)
    }

    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.lock();
        for id in ids {
            if let Some(entry) = state.deliveries.get_mut(id) {
                entry.lease_until = Some(At::new(claimable_at));
                state.reindex(*id);
            }
        }
        Ok(())
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        let mut state = self.lock();
        Ok(records.iter().map(|record| state.record(record)).collect())
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        Ok(self.lock().deliveries.get(&id).map(|entry| entry.delivery(id)))
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        Ok(self.lock().counts.values().map(|counts| counts.pending).sum())
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self.lock().claimable.first().map(queue::time))
    }
}

#[async_trait]
impl Admin for MemoryStore {
    async fn owned_delivery(&self, owner: &Owner, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        let state = self.lock();
        let Some(entry) = state.deliveries.get(&id) else { return Ok(None) };
        let theirs = state.subscriptions.get(&entry.subscription_id).is_some_and(|s| &s.owner == owner);
        Ok(theirs.then(|| entry.delivery(id)))
    }

    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        Ok(self.lock().deliveries.get(&id).map(|entry| entry.log.clone()).unwrap_or_default())
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let state = self.lock();
        let from = query.after.map_or(Unbounded, Excluded);
        Ok(state
            .deliveries
            .range((from, Unbounded))
            .filter(|(_, entry)| state.matches(entry, query))
            .take(query.limit)
            .map(|(id, entry)| entry.delivery(*id))
            .collect())
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.lock();
        let subscription = state.deliveries.get(&id).ok_or(StoreError::DeliveryNotFound(id))?.subscription_id;
        let resend = state.standing(subscription)?.resend(now);
        state.restart(id, resend.cycle);
        if resend.put_in_order {
            state.order(subscription);
        }
        Ok(())
    }

    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut state = self.lock();
        let recovery = state.standing(subscription)?.recovery(since, now);
        state.enable(subscription, recovery.enabling)?;
        let mut recovered = 0;
        for id in state.deliveries_of(subscription) {
            let Some(entry) = state.deliveries.get(&id) else { continue };
            if recovery.restarts(entry.state, queue::time(entry.created_at)) {
                state.restart(id, recovery.cycle);
                recovered += 1;
            }
        }
        if recovery.put_in_order {
            state.order(subscription);
        }
        Ok(recovered)
    }

    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts> {
        Ok(self.lock().counts.get(&subscription).copied().unwrap_or_default())
    }

    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats> {
        let state = self.lock();
        let subscription = state.subscriptions.get(&id).ok_or(StoreError::SubscriptionNotFound(id))?;
        let mut stats = SubscriptionStats {
            consecutive_failures: subscription.consecutive_failures,
            ..SubscriptionStats::default()
        };
        let entries = state.deliveries.values().filter(|e| e.subscription_id == id);
        for attempt in entries.flat_map(|entry| &entry.log) {
            stats.count(attempt);
        }
        Ok(stats)
    }
}

#[async_trait]
impl Retention for MemoryStore {
    /// A scan of the map: finished times are not indexed, which would cost
    /// every delivery its memory. Purges are rare; the lock is held for one
    /// batch.
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let before = At::new(older_than);
        let mut state = self.lock();
        let mut old: Vec<(At, DeliveryId)> = state
            .deliveries
            .iter()
            .filter_map(|(id, entry)| entry.finished_at().filter(|at| *at < before).map(|at| (at, *id)))
            .collect();
        // Oldest finished first, as the trait says.
        old.sort_unstable();
        old.truncate(limit.max(1));
        for (_, id) in &old {
            state.remove_delivery(*id);
        }
        Ok(old.len() as u64)
    }

    /// A scan of the keys, as purging is.
    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let mut state = self.lock();
        let expired: Vec<(String, String)> = state
            .keys
            .iter()
            .filter(|(_, keyed)| keyed.held_until <= now)
            .map(|(key, _)| key.clone())
            .take(limit.max(1))
            .collect();
        for key in &expired {
            state.keys.remove(key);
        }
        Ok(expired.len() as u64)
    }
}
