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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use webhooks_core::{
    Attempt, AttemptRecord, Claim, Delivery, DeliveryCounts, DeliveryId, DeliveryState, Event, Recorded,
    Store, StoreError, StoreResult, Subscription, SubscriptionId, SubscriptionStatus, Verdict,
};

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
    /// By id; UUIDv7 ids make this oldest first.
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    deliveries: HashMap<DeliveryId, Entry>,
    by_subscription: HashMap<SubscriptionId, HashSet<DeliveryId>>,
    /// Pending deliveries of enabled subscriptions, by the time they become
    /// claimable (due time, or the end of their lease). Claiming walks it
    /// from the front, so its cost does not grow with the queue.
    claimable: BTreeSet<(DateTime<Utc>, DeliveryId)>,
}

#[derive(Debug)]
struct Entry {
    delivery: Delivery,
    lease_until: Option<DateTime<Utc>>,
    log: Vec<Attempt>,
    /// Its key in `State::claimable`, if it is there.
    claimable_at: Option<DateTime<Utc>>,
}

impl State {
    fn subscription_mut(&mut self, id: SubscriptionId) -> StoreResult<&mut Subscription> {
        self.subscriptions.get_mut(&id).ok_or(StoreError::SubscriptionNotFound(id))
    }

    fn is_enabled(&self, id: SubscriptionId) -> bool {
        self.subscriptions.get(&id).is_some_and(Subscription::is_enabled)
    }

    /// Puts a delivery in the claimable index at the right place, or takes
    /// it out when it is finished or its subscription is disabled.
    fn reindex(&mut self, id: DeliveryId) {
        let Some(entry) = self.deliveries.get(&id) else { return };
        let key = match (entry.delivery.state, entry.delivery.next_attempt_at) {
            (DeliveryState::Pending, Some(due)) if self.is_enabled(entry.delivery.subscription_id) => {
                Some(entry.lease_until.map_or(due, |lease| lease.max(due)))
            }
            _ => None,
        };
        let Some(entry) = self.deliveries.get_mut(&id) else { return };
        if let Some(old) = entry.claimable_at.take() {
            self.claimable.remove(&(old, id));
        }
        if let Some(key) = key {
            self.claimable.insert((key, id));
            entry.claimable_at = Some(key);
        }
    }

    fn reindex_subscription(&mut self, id: SubscriptionId) {
        let ids: Vec<_> = self.by_subscription.get(&id).into_iter().flatten().copied().collect();
        for delivery in ids {
            self.reindex(delivery);
        }
    }

    fn disable(&mut self, id: SubscriptionId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        self.subscription_mut(id)?.status =
            SubscriptionStatus::Disabled { reason: reason.to_owned(), at: now };
        self.reindex_subscription(id);
        Ok(())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let mut state = self.lock();
        if state.subscriptions.contains_key(&subscription.id) {
            return Err(StoreError::DuplicateSubscription(subscription.id));
        }
        state.subscriptions.insert(subscription.id, subscription.clone());
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
        Ok(self.lock().subscriptions.get(&id).cloned())
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        Ok(self.lock().subscriptions.values().cloned().collect())
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        let mut state = self.lock();
        if state.subscriptions.remove(&id).is_none() {
            return Ok(false);
        }
        for delivery in state.by_subscription.remove(&id).unwrap_or_default() {
            if let Some(entry) = state.deliveries.remove(&delivery)
                && let Some(key) = entry.claimable_at
            {
                state.claimable.remove(&(key, delivery));
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
        let subscription = state.subscription_mut(id)?;
        subscription.status = SubscriptionStatus::Enabled;
        subscription.consecutive_failures = 0;
        let held: Vec<_> = state.by_subscription.get(&id).into_iter().flatten().copied().collect();
        for delivery in held {
            if let Some(entry) = state.deliveries.get_mut(&delivery) {
                entry.delivery.next_attempt_at = entry.delivery.next_attempt_at.map(|due| due.min(now));
            }
            state.reindex(delivery);
        }
        Ok(())
    }

    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Vec<DeliveryId>> {
        let mut state = self.lock();
        let targets: Vec<SubscriptionId> = state
            .subscriptions
            .values()
            .filter(|s| s.is_enabled() && s.listens_to(&event.name))
            .map(|s| s.id)
            .collect();
        let mut ids = Vec::with_capacity(targets.len());
        for subscription_id in targets {
            let delivery = Delivery {
                id: DeliveryId::new(),
                event_id: event.id,
                event_type: event.name.clone(),
                subscription_id,
                body: body.clone(),
                state: DeliveryState::Pending,
                attempts: 0,
                next_attempt_at: Some(event.occurred_at),
                created_at: event.occurred_at,
            };
            let id = delivery.id;
            state
                .deliveries
                .insert(id, Entry { delivery, lease_until: None, log: Vec::new(), claimable_at: None });
            state.by_subscription.entry(subscription_id).or_default().insert(id);
            state.reindex(id);
            ids.push(id);
        }
        Ok(ids)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<Vec<Claim>> {
        let mut state = self.lock();
        let due: Vec<DeliveryId> =
            state.claimable.iter().take_while(|(at, _)| *at <= now).take(limit).map(|(_, id)| *id).collect();
        let mut claims = Vec::with_capacity(due.len());
        for id in due {
            let Some(entry) = state.deliveries.get_mut(&id) else { continue };
            entry.lease_until = Some(lease_until);
            let delivery = entry.delivery.clone();
            state.reindex(id);
            if let Some(subscription) = state.subscriptions.get(&delivery.subscription_id) {
                claims.push(Claim { delivery, subscription: subscription.clone() });
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
        let mut state = self.lock();
        let id = record.attempt.delivery_id;
        let entry = state.deliveries.get_mut(&id).ok_or(StoreError::DeliveryNotFound(id))?;
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
            state.reindex(id);
        }

        let subscription = state.subscription_mut(subscription_id)?;
        subscription.consecutive_failures =
            if record.attempt.succeeded() { 0 } else { subscription.consecutive_failures.saturating_add(1) };
        let failures = subscription.consecutive_failures;
        let disable = subscription.is_enabled().then(|| record.disable_reason(failures)).flatten();
        let disabled_subscription = disable.is_some();
        if let Some(reason) = disable {
            state.disable(subscription_id, &reason, record.now)?;
        }
        Ok(Recorded { consecutive_failures: failures, disabled_subscription })
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

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        Ok(self.lock().claimable.first().map(|(at, _)| *at))
    }
}
