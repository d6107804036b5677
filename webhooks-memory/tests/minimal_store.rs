//! A deliberately naive third-party store, written as someone outside this
//! project would write one: plain collections behind one mutex, linear scans
//! everywhere, and only the required methods of the four traits (the
//! defaults provide single publish and record, owned reads, counts and
//! stats). It shows what a store must write, and no more.
//!
//! It decides nothing about a delivery's life. Every rule comes from core:
//! recording writes the [`Changes`](webhooks_core::Changes) that
//! [`AttemptRecord::changes`] computes, and publishing, disabling, enabling,
//! resending, recovering and reordering write what [`Standing`] and the
//! functions beside it return. That it passes the whole behaviour suite is
//! what shows the lifecycle lives in core, not in the stores.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use webhooks_core::bytes::Bytes;
use webhooks_core::chrono::{DateTime, Utc};
use webhooks_core::{
    Admin, Attempt, AttemptRecord, Claim, ClaimRequest, Current, Delivery, DeliveryId, DeliveryQuery,
    DeliveryQueue, DeliveryState, Enabling, Event, EventId, IdempotencyKey, NewCycle, Owner, Publication,
    Recorded, Reordering, Retention, Standing, StateFilter, StoreError, StoreResult, Subscription,
    SubscriptionId, SubscriptionStatus, SubscriptionStore, async_trait, in_order, release_next,
};

#[derive(Clone, Debug, Default)]
struct Minimal(Arc<Mutex<State>>);

impl Minimal {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every method checks before it writes, so a panic leaves nothing
        // half-done and a poisoned lock still guards consistent data.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct State {
    /// By id: UUIDv7, so oldest first.
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    /// By id: creation order, which is also publish order.
    deliveries: BTreeMap<DeliveryId, Row>,
    /// Idempotency keys by audience (its stored key) and key.
    keys: BTreeMap<(String, String), Keyed>,
}

/// The first publication of an idempotency key.
#[derive(Debug)]
struct Keyed {
    key: IdempotencyKey,
    event_id: EventId,
    deliveries: Vec<DeliveryId>,
}

/// A delivery as stored. Held is not a column: a pending delivery is held
/// exactly when its subscription is disabled.
#[derive(Debug)]
struct Row {
    event_id: EventId,
    event_type: String,
    occurred_at: DateTime<Utc>,
    subscription_id: SubscriptionId,
    body: Bytes,
    state: DeliveryState,
    attempts: u32,
    cycle: u32,
    next_attempt_at: Option<DateTime<Utc>>,
    lease_until: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    /// Behind an earlier pending delivery of an ordered subscription; means
    /// nothing once the delivery is finished.
    waiting: bool,
    log: Vec<Attempt>,
}

impl Row {
    fn is_pending(&self) -> bool {
        self.state == DeliveryState::Pending
    }

    /// When its next attempt is due: never once finished or while waiting.
    fn due(&self) -> Option<DateTime<Utc>> {
        self.next_attempt_at.filter(|_| self.is_pending() && !self.waiting)
    }

    /// When a worker may take it, its subscription's standing aside: its
    /// due time, or the end of a lease if that is later.
    fn claimable_at(&self) -> Option<DateTime<Utc>> {
        self.due().map(|due| self.lease_until.map_or(due, |lease| lease.max(due)))
    }

    /// Reported as stored: the facade, not the store, calls a pending
    /// delivery of a disabled subscription held.
    fn delivery(&self, id: DeliveryId) -> Delivery {
        Delivery {
            id,
            event_id: self.event_id,
            event_type: self.event_type.clone(),
            subscription_id: self.subscription_id,
            body: self.body.clone(),
            state: self.state,
            cycle: self.cycle,
            attempts: self.attempts,
            next_attempt_at: self.due(),
            created_at: self.occurred_at,
        }
    }

    /// Writes a new attempt cycle (a resend, a recovery). `cycle.held`
    /// needs no write: held follows from the subscription's status.
    fn start(&mut self, cycle: NewCycle) {
        self.state = DeliveryState::Pending;
        self.attempts = NewCycle::ATTEMPTS;
        self.cycle = NewCycle::cycle_after(self.cycle);
        self.next_attempt_at = Some(cycle.due);
        self.lease_until = None;
        self.finished_at = None;
        self.waiting = false;
    }
}

impl State {
    fn standing(&self, id: SubscriptionId) -> StoreResult<Standing> {
        self.subscriptions.get(&id).map(Standing::of).ok_or(StoreError::SubscriptionNotFound(id))
    }

    fn is_enabled(&self, id: SubscriptionId) -> bool {
        self.subscriptions.get(&id).is_some_and(Subscription::is_enabled)
    }

    /// A subscription's pending deliveries (held and waiting ones too), in
    /// id order.
    fn pending_of(&self, id: SubscriptionId) -> impl Iterator<Item = (DeliveryId, &Row)> {
        self.deliveries
            .iter()
            .filter(move |(_, row)| row.subscription_id == id && row.is_pending())
            .map(|(delivery, row)| (*delivery, row))
    }

    fn rows_of(&mut self, id: SubscriptionId) -> impl Iterator<Item = &mut Row> {
        self.deliveries.values_mut().filter(move |row| row.subscription_id == id)
    }

    /// Writes the waiting flags [`in_order`] gives an ordered subscription's
    /// pending deliveries.
    fn put_in_order(&mut self, id: SubscriptionId) {
        let pending: Vec<DeliveryId> = self.pending_of(id).map(|(delivery, _)| delivery).collect();
        for (delivery, waiting) in in_order(pending) {
            if let Some(row) = self.deliveries.get_mut(&delivery) {
                row.waiting = waiting;
            }
        }
    }

    fn disable(&mut self, id: SubscriptionId, reason: &str, now: DateTime<Utc>) -> StoreResult<()> {
        let disabling = self.standing(id)?.disabling(reason, now);
        // `hold_pending` needs no write either: held follows from the status.
        if let Some(subscription) = self.subscriptions.get_mut(&id) {
            subscription.status = disabling.status;
        }
        Ok(())
    }

    fn enable(&mut self, id: SubscriptionId, enabling: Enabling) {
        if let Some(subscription) = self.subscriptions.get_mut(&id) {
            subscription.status = SubscriptionStatus::Enabled;
            subscription.consecutive_failures = enabling.consecutive_failures;
        }
        for row in self.rows_of(id).filter(|row| row.is_pending()) {
            row.next_attempt_at = row.next_attempt_at.map(|due| enabling.due(due));
        }
    }

    /// Stores one pending delivery of `event` to subscription `to`, waiting
    /// if its placement says so; `placement.held` needs no write.
    fn insert(&mut self, event: &Event, body: Bytes, to: SubscriptionId) -> StoreResult<DeliveryId> {
        let placement = self.standing(to)?.placement();
        let has_pending = self.pending_of(to).next().is_some();
        let id = DeliveryId::at(event.occurred_at);
        let row = Row {
            event_id: event.id,
            event_type: event.name.clone(),
            occurred_at: event.occurred_at,
            subscription_id: to,
            body,
            state: DeliveryState::Pending,
            attempts: 0,
            cycle: 1,
            next_attempt_at: Some(event.occurred_at),
            lease_until: None,
            finished_at: None,
            waiting: placement.waiting(has_pending),
            log: Vec::new(),
        };
        self.deliveries.insert(id, row);
        Ok(id)
    }

    fn publish(&mut self, event: &Event, body: &Bytes) -> StoreResult<Publication> {
        let slot = event
            .idempotency_key
            .as_ref()
            .map(|key| (event.audience.stored_key().to_owned(), key.key.clone()));
        let first = slot.as_ref().and_then(|slot| self.keys.get(slot));
        if let Some(first) = first.filter(|first| first.key.is_held_at(event.occurred_at)) {
            let deliveries =
                first.deliveries.iter().filter(|id| self.deliveries.contains_key(id)).copied().collect();
            return Ok(Publication { event_id: first.event_id, deliveries, repeated: true });
        }
        let targets: Vec<SubscriptionId> = self
            .subscriptions
            .values()
            .filter(|s| event.audience.includes(&s.owner) && s.hears(event))
            .map(|s| s.id)
            .collect();
        let deliveries: Vec<DeliveryId> = targets
            .into_iter()
            .map(|target| self.insert(event, body.clone(), target))
            .collect::<StoreResult<_>>()?;
        // The key is taken even when the event reached nobody; the event
        // itself is kept only in its deliveries' rows.
        if let (Some(slot), Some(key)) = (slot, &event.idempotency_key) {
            let keyed = Keyed { key: key.clone(), event_id: event.id, deliveries: deliveries.clone() };
            self.keys.insert(slot, keyed);
        }
        Ok(Publication { event_id: event.id, deliveries, repeated: false })
    }

    /// Logs the attempt and writes what core's rule makes of it.
    fn record(&mut self, record: &AttemptRecord) -> StoreResult<Recorded> {
        let id = record.attempt.delivery_id;
        let row = self.deliveries.get(&id).ok_or(StoreError::DeliveryNotFound(id))?;
        let subscription_id = row.subscription_id;
        let subscription = self
            .subscriptions
            .get(&subscription_id)
            .ok_or(StoreError::SubscriptionNotFound(subscription_id))?;
        let standing = Standing::of(subscription);
        let changes = record.changes(Current {
            state: row.state,
            attempts: row.attempts,
            cycle: row.cycle,
            consecutive_failures: subscription.consecutive_failures,
            enabled: standing.enabled,
            ordered: standing.ordered,
        });

        let row = self.deliveries.get_mut(&id).ok_or(StoreError::DeliveryNotFound(id))?;
        row.log.push(record.attempt.clone());
        if let Some(next) = changes.delivery {
            row.state = next.state;
            row.attempts = next.attempts;
            row.next_attempt_at = next.next_attempt_at;
            row.finished_at = next.finished_at;
            row.lease_until = None;
        }
        if changes.release_next {
            let going = self.pending_of(subscription_id).any(|(_, row)| !row.waiting);
            let earliest_waiting =
                self.pending_of(subscription_id).find(|(_, row)| row.waiting).map(|(id, _)| id);
            if let Some(released) = release_next(going, earliest_waiting, record.now)
                && let Some(row) = self.deliveries.get_mut(&released.delivery)
            {
                row.waiting = false;
                row.next_attempt_at = Some(released.due);
                row.lease_until = None;
            }
        }
        if let Some(subscription) = self.subscriptions.get_mut(&subscription_id) {
            subscription.consecutive_failures = changes.consecutive_failures;
        }
        if let Some(reason) = &changes.disable {
            self.disable(subscription_id, reason, record.now)?;
        }
        Ok(changes.recorded())
    }

    fn delete_subscription(&mut self, id: SubscriptionId) -> bool {
        let existed = self.subscriptions.remove(&id).is_some();
        self.deliveries.retain(|_, row| row.subscription_id != id);
        existed
    }

    /// Whether a row passes every filter of `query` that is set, the cursor
    /// aside.
    fn matches(&self, row: &Row, query: &DeliveryQuery) -> bool {
        let held = row.is_pending() && !self.is_enabled(row.subscription_id);
        let state = match query.state {
            None => true,
            Some(StateFilter::Pending) => row.is_pending() && !held,
            Some(StateFilter::Held) => held,
            Some(StateFilter::Delivered) => row.state == DeliveryState::Delivered,
            Some(StateFilter::Dropped) => row.state == DeliveryState::Dropped,
        };
        let owner =
            |owner: &Owner| self.subscriptions.get(&row.subscription_id).is_some_and(|s| &s.owner == owner);
        state
            && query.owner.as_ref().is_none_or(owner)
            && query.subscription.is_none_or(|id| id == row.subscription_id)
            && query.event_type.as_ref().is_none_or(|name| name == &row.event_type)
            && query.created_from.is_none_or(|from| row.occurred_at >= from)
            && query.created_until.is_none_or(|until| row.occurred_at < until)
    }
}

#[async_trait]
impl SubscriptionStore for Minimal {
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
        let id = subscription.id;
        let stored = state.subscriptions.get_mut(&id).ok_or(StoreError::SubscriptionNotFound(id))?;
        let was_ordered = stored.settings.ordered;
        stored.url = subscription.url.clone();
        stored.event_types = subscription.event_types.clone();
        stored.channels = subscription.channels.clone();
        stored.secret = subscription.secret.clone();
        stored.previous_secret = subscription.previous_secret.clone();
        stored.settings = subscription.settings.clone();
        match Reordering::between(was_ordered, subscription.settings.ordered) {
            Some(Reordering::PutInOrder) => state.put_in_order(id),
            // Each keeps its stored due time: publish time or retry time.
            Some(Reordering::ReleaseAll) => state.rows_of(id).for_each(|row| row.waiting = false),
            None => {}
        }
        Ok(())
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        Ok(self.lock().subscriptions.get(&id).cloned())
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        Ok(self.lock().subscriptions.values().cloned().collect())
    }

    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64> {
        let mut state = self.lock();
        let theirs: Vec<SubscriptionId> =
            state.subscriptions.values().filter(|s| &s.owner == owner).map(|s| s.id).collect();
        for id in &theirs {
            state.delete_subscription(*id);
        }
        state.keys.retain(|(audience, _), _| audience != owner.as_str());
        Ok(theirs.len() as u64)
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        Ok(self.lock().delete_subscription(id))
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
        state.enable(id, enabling);
        Ok(())
    }
}

#[async_trait]
impl DeliveryQueue for Minimal {
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>> {
        let mut state = self.lock();
        events.iter().map(|(event, body)| state.publish(event, body)).collect()
    }

    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId> {
        self.lock().insert(event, body, subscription)
    }

    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>> {
        let mut state = self.lock();
        let mut due: Vec<(DateTime<Utc>, DeliveryId)> = state
            .deliveries
            .iter()
            .filter(|(_, row)| {
                state.is_enabled(row.subscription_id) && !request.skip.contains(&row.subscription_id)
            })
            .filter_map(|(id, row)| row.claimable_at().filter(|at| *at <= request.now).map(|at| (at, *id)))
            .collect();
        due.sort();
        due.truncate(request.limit);
        // The claims that go to one subscription share one copy of it.
        let mut shared: BTreeMap<SubscriptionId, Arc<Subscription>> = BTreeMap::new();
        let mut claims = Vec::with_capacity(due.len());
        for (_, id) in due {
            let Some(row) = state.deliveries.get_mut(&id) else { continue };
            row.lease_until = Some(request.lease_until);
            let delivery = row.delivery(id);
            let Some(subscription) = state.subscriptions.get(&delivery.subscription_id) else { continue };
            let subscription =
                shared.entry(subscription.id).or_insert_with(|| Arc::new(subscription.clone())).clone();
            claims.push(Claim { delivery, subscription });
        }
        Ok(claims)
    }

    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.lock();
        for id in ids {
            if let Some(row) = state.deliveries.get_mut(id) {
                row.lease_until = Some(claimable_at);
            }
        }
        Ok(())
    }

    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        let mut state = self.lock();
        Ok(records.iter().map(|record| state.record(record)).collect())
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        Ok(self.lock().deliveries.get(&id).map(|row| row.delivery(id)))
    }

    /// A scan: a real store counts from an index or keeps the count.
    async fn pending_count(&self) -> StoreResult<u64> {
        Ok(self.lock().deliveries.values().filter(|row| row.is_pending()).count() as u64)
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        let state = self.lock();
        Ok(state
            .deliveries
            .values()
            .filter(|row| state.is_enabled(row.subscription_id))
            .filter_map(Row::claimable_at)
            .min())
    }
}

#[async_trait]
impl Admin for Minimal {
    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        Ok(self.lock().deliveries.get(&id).map(|row| row.log.clone()).unwrap_or_default())
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        let state = self.lock();
        Ok(state
            .deliveries
            .iter()
            .filter(|(id, _)| query.after.is_none_or(|after| **id > after))
            .filter(|(_, row)| state.matches(row, query))
            .take(query.limit)
            .map(|(id, row)| row.delivery(*id))
            .collect())
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        let mut state = self.lock();
        let subscription = state.deliveries.get(&id).ok_or(StoreError::DeliveryNotFound(id))?.subscription_id;
        let resend = state.standing(subscription)?.resend(now);
        if let Some(row) = state.deliveries.get_mut(&id) {
            row.start(resend.cycle);
        }
        if resend.put_in_order {
            state.put_in_order(subscription);
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
        state.enable(subscription, recovery.enabling);
        let mut restarted = 0;
        for row in state.rows_of(subscription) {
            if recovery.restarts(row.state, row.occurred_at) {
                row.start(recovery.cycle);
                restarted += 1;
            }
        }
        if recovery.put_in_order {
            state.put_in_order(subscription);
        }
        Ok(restarted)
    }
}

#[async_trait]
impl Retention for Minimal {
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let mut state = self.lock();
        let mut old: Vec<(DateTime<Utc>, DeliveryId)> = state
            .deliveries
            .iter()
            .filter_map(|(id, row)| row.finished_at.filter(|at| *at < older_than).map(|at| (at, *id)))
            .collect();
        old.sort();
        old.truncate(limit.max(1));
        for (_, id) in &old {
            state.deliveries.remove(id);
        }
        Ok(old.len() as u64)
    }

    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let mut state = self.lock();
        let expired: Vec<(String, String)> = state
            .keys
            .iter()
            .filter(|(_, keyed)| !keyed.key.is_held_at(now))
            .map(|(slot, _)| slot.clone())
            .take(limit.max(1))
            .collect();
        for slot in &expired {
            state.keys.remove(slot);
        }
        Ok(expired.len() as u64)
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
