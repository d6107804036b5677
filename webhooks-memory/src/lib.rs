//! An in-memory [`Store`] for `webhooks-core`.
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

#![warn(missing_docs)]

mod queue;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use webhooks_core::{
    Attempt, AttemptRecord, Claim, Delivery, DeliveryCounts, DeliveryId, DeliveryQuery, DeliveryState, Event,
    Recorded, StateFilter, Store, StoreError, StoreResult, Subscription, SubscriptionId, SubscriptionStats,
    SubscriptionStatus, Verdict,
};

use crate::queue::ClaimQueue;

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
    /// By id, so listing pages in creation order.
    deliveries: BTreeMap<DeliveryId, Entry>,
    /// Each subscription's deliveries; they leave only with it.
    by_subscription: HashMap<SubscriptionId, Vec<DeliveryId>>,
    /// Pending deliveries of enabled subscriptions, by when they can be
    /// claimed.
    claimable: ClaimQueue,
}

#[derive(Debug)]
struct Entry {
    delivery: Delivery,
    lease_until: Option<DateTime<Utc>>,
    log: Vec<Attempt>,
    /// Its place in the claim queue, if it is queued.
    claimable_at: Option<DateTime<Utc>>,
}

impl State {
    fn subscription_mut(&mut self, id: SubscriptionId) -> StoreResult<&mut Subscription> {
        self.subscriptions.get_mut(&id).map(Arc::make_mut).ok_or(StoreError::SubscriptionNotFound(id))
    }

    fn is_enabled(&self, id: SubscriptionId) -> bool {
        self.subscriptions.get(&id).is_some_and(|s| s.is_enabled())
    }

    /// Puts a delivery in the claim queue at the right place, or takes it
    /// out when it is finished or its subscription is disabled.
    fn reindex(&mut self, id: DeliveryId) {
        let Some(entry) = self.deliveries.get(&id) else { return };
        let delivery = &entry.delivery;
        let enabled = self.subscriptions.get(&delivery.subscription_id).is_some_and(|s| s.is_enabled());
        let key = match (delivery.state, delivery.next_attempt_at) {
            (DeliveryState::Pending, Some(due)) if enabled => {
                Some(entry.lease_until.map_or(due, |lease| lease.max(due)))
            }
            _ => None,
        };
        let Some(entry) = self.deliveries.get_mut(&id) else { return };
        let from = std::mem::replace(&mut entry.claimable_at, key);
        self.claimable.requeue(id, entry.delivery.subscription_id, from, key);
    }

    fn reindex_subscription(&mut self, id: SubscriptionId) {
        for delivery in self.deliveries_of(id) {
            self.reindex(delivery);
        }
    }

    fn deliveries_of(&self, id: SubscriptionId) -> Vec<DeliveryId> {
        self.by_subscription.get(&id).into_iter().flatten().copied().collect()
    }

    fn disable(&mut self, id: SubscriptionId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.subscription_mut(id)?.status =
            SubscriptionStatus::Disabled { reason: reason.to_owned(), at: now };
        self.reindex_subscription(id);
        Ok(())
    }

    fn enable(&mut self, id: SubscriptionId) -> StoreResult<()> {
        let subscription = self.subscription_mut(id)?;
        subscription.status = SubscriptionStatus::Enabled;
        subscription.consecutive_failures = 0;
        Ok(())
    }

    /// A new attempt cycle: pending, due at `now`, the count back to zero.
    fn restart(&mut self, id: DeliveryId, now: DateTime<Utc>) {
        if let Some(entry) = self.deliveries.get_mut(&id) {
            entry.delivery.state = DeliveryState::Pending;
            entry.delivery.attempts = 0;
            entry.delivery.next_attempt_at = Some(now);
            entry.lease_until = None;
        }
        self.reindex(id);
    }

    fn insert_delivery(&mut self, event: &Event, body: Bytes, subscription_id: SubscriptionId) -> DeliveryId {
        let delivery = Delivery {
            id: DeliveryId::new(),
            event_id: event.id,
            event_type: event.name.clone(),
            subscription_id,
            body,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: Some(event.occurred_at),
            created_at: event.occurred_at,
        };
        let id = delivery.id;
        self.deliveries
            .insert(id, Entry { delivery, lease_until: None, log: Vec::new(), claimable_at: None });
        self.by_subscription.entry(subscription_id).or_default().push(id);
        self.reindex(id);
        id
    }

    fn publish(&mut self, event: &Event, body: &Bytes) -> Vec<DeliveryId> {
        let targets: Vec<SubscriptionId> = self
            .subscriptions
            .values()
            .filter(|s| s.is_enabled() && s.listens_to(&event.name))
            .map(|s| s.id)
            .collect();
        targets.into_iter().map(|target| self.insert_delivery(event, body.clone(), target)).collect()
    }

    fn record(&mut self, record: &AttemptRecord) -> StoreResult<Recorded> {
        let id = record.attempt.delivery_id;
        let entry = self.deliveries.get_mut(&id).ok_or(StoreError::DeliveryNotFound(id))?;
        entry.log.push(record.attempt.clone());
        let subscription_id = entry.delivery.subscription_id;
        if entry.delivery.state == DeliveryState::Pending {
            let delivery = &mut entry.delivery;
            delivery.attempts = delivery.attempts.max(record.attempt.number);
            entry.lease_until = None;
            (delivery.state, delivery.next_attempt_at) = match record.verdict {
                Verdict::Delivered => (DeliveryState::Delivered, None),
                Verdict::Dropped => (DeliveryState::Dropped, None),
                Verdict::Retry { at } => (DeliveryState::Pending, Some(at)),
            };
            self.reindex(id);
        }

        let subscription = self.subscription_mut(subscription_id)?;
        subscription.consecutive_failures =
            if record.attempt.succeeded() { 0 } else { subscription.consecutive_failures.saturating_add(1) };
        let failures = subscription.consecutive_failures;
        let disable = subscription.is_enabled().then(|| record.disable_reason(failures)).flatten();
        let disabled_subscription = disable.is_some();
        if let Some(reason) = disable {
            self.disable(subscription_id, &reason, record.now)?;
        }
        Ok(Recorded { consecutive_failures: failures, disabled_subscription })
    }

    /// Whether `entry` passes `query`'s filters (the cursor aside).
    fn matches(&self, entry: &Entry, query: &DeliveryQuery) -> bool {
        let delivery = &entry.delivery;
        let state_matches = match query.state {
            None => true,
            Some(StateFilter::Delivered) => delivery.state == DeliveryState::Delivered,
            Some(StateFilter::Dropped) => delivery.state == DeliveryState::Dropped,
            Some(StateFilter::Pending) => {
                delivery.state == DeliveryState::Pending && self.is_enabled(delivery.subscription_id)
            }
            Some(StateFilter::Held) => {
                delivery.state == DeliveryState::Pending && !self.is_enabled(delivery.subscription_id)
            }
        };
        state_matches
            && query.subscription.is_none_or(|id| id == delivery.subscription_id)
            && query.event_type.as_ref().is_none_or(|name| *name == delivery.event_type)
            && query.created_from.is_none_or(|from| delivery.created_at >= from)
            && query.created_until.is_none_or(|until| delivery.created_at < until)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let mut state = self.lock();
        if state.subscriptions.contains_key(&subscription.id) {
            return Err(StoreError::DuplicateSubscription(subscription.id));
        }
        state.subscriptions.insert(subscription.id, Arc::new(subscription.clone()));
        Ok(())
    }

    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let mut state = self.lock();
        let stored = state.subscription_mut(subscription.id)?;
        stored.url = subscription.url.clone();
        stored.event_types = subscription.event_types.clone();
        stored.secret = subscription.secret.clone();
        stored.previous_secret = subscription.previous_secret.clone();
        Ok(())
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        Ok(self.lock().subscriptions.get(&id).map(|s| Subscription::clone(s)))
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        Ok(self.lock().subscriptions.values().map(|s| Subscription::clone(s)).collect())
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        let mut state = self.lock();
        if state.subscriptions.remove(&id).is_none() {
            return Ok(false);
        }
        for delivery in state.by_subscription.remove(&id).unwrap_or_default() {
            if let Some(entry) = state.deliveries.remove(&delivery) {
                state.claimable.requeue(delivery, id, entry.claimable_at, None);
            }
        }
        Ok(true)
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
        state.enable(id)?;
        for delivery in state.deliveries_of(id) {
            if let Some(entry) = state.deliveries.get_mut(&delivery) {
                entry.delivery.next_attempt_at = entry.delivery.next_attempt_at.map(|due| due.min(now));
            }
            state.reindex(delivery);
        }
        Ok(())
    }

    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Vec<DeliveryId>> {
        Ok(self.lock().publish(event, &body))
    }

    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Vec<DeliveryId>>> {
        let mut state = self.lock();
        Ok(events.iter().map(|(event, body)| state.publish(event, body)).collect())
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
        skip: &[SubscriptionId],
    ) -> StoreResult<Vec<Claim>> {
        let mut state = self.lock();
        let due = state.claimable.due(now, limit, skip);
        let mut claims = Vec::with_capacity(due.len());
        for id in due {
            let Some(entry) = state.deliveries.get_mut(&id) else { continue };
            entry.lease_until = Some(lease_until);
            let delivery = entry.delivery.clone();
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
                entry.lease_until = Some(claimable_at);
                state.reindex(*id);
            }
        }
        Ok(())
    }

    async fn record_attempt(&self, record: &AttemptRecord) -> StoreResult<Recorded> {
        self.lock().record(record)
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        let mut state = self.lock();
        Ok(records.iter().map(|record| state.record(record)).collect())
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        Ok(self.lock().deliveries.get(&id).map(|entry| entry.delivery.clone()))
    }

    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        Ok(self.lock().deliveries.get(&id).map(|entry| entry.log.clone()).unwrap_or_default())
    }

    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts> {
        let state = self.lock();
        let mut counts = DeliveryCounts::default();
        for id in state.by_subscription.get(&subscription).into_iter().flatten() {
            match state.deliveries.get(id).map(|entry| entry.delivery.state) {
                Some(DeliveryState::Pending) => counts.pending += 1,
                Some(DeliveryState::Delivered) => counts.delivered += 1,
                Some(DeliveryState::Dropped) => counts.dropped += 1,
                None => {}
            }
        }
        Ok(counts)
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let state = self.lock();
        let from = query.after.map_or(Unbounded, Excluded);
        Ok(state
            .deliveries
            .range((from, Unbounded))
            .map(|(_, entry)| entry)
            .filter(|entry| state.matches(entry, query))
            .take(query.limit)
            .map(|entry| entry.delivery.clone())
            .collect())
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.lock();
        if !state.deliveries.contains_key(&id) {
            return Err(StoreError::DeliveryNotFound(id));
        }
        state.restart(id, now);
        Ok(())
    }

    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut state = self.lock();
        let held = !state
            .subscriptions
            .get(&subscription)
            .ok_or(StoreError::SubscriptionNotFound(subscription))?
            .is_enabled();
        state.enable(subscription)?;
        let mut recovered = 0;
        for id in state.deliveries_of(subscription) {
            let Some(delivery) = state.deliveries.get(&id).map(|entry| &entry.delivery) else { continue };
            let requeue = match delivery.state {
                DeliveryState::Dropped => delivery.created_at >= since,
                DeliveryState::Pending => held,
                DeliveryState::Delivered => false,
            };
            if requeue {
                state.restart(id, now);
                recovered += 1;
            } else {
                state.reindex(id);
            }
        }
        Ok(recovered)
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

    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats> {
        let state = self.lock();
        let subscription = state.subscriptions.get(&id).ok_or(StoreError::SubscriptionNotFound(id))?;
        let mut stats = SubscriptionStats {
            consecutive_failures: subscription.consecutive_failures,
            ..SubscriptionStats::default()
        };
        let attempts =
            state.by_subscription.get(&id).into_iter().flatten().filter_map(|d| state.deliveries.get(d));
        for attempt in attempts.flat_map(|entry| &entry.log) {
            stats.attempts += 1;
            let last = if attempt.succeeded() {
                stats.succeeded += 1;
                &mut stats.last_success_at
            } else {
                &mut stats.last_failure_at
            };
            *last = (*last).max(Some(attempt.started_at));
        }
        Ok(stats)
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        let state = self.lock();
        Ok(state.deliveries.values().filter(|e| e.delivery.state == DeliveryState::Pending).count() as u64)
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self.lock().claimable.first())
    }
}
