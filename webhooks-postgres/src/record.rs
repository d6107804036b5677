//! Recording a batch of attempts: worked out in memory from the locked
//! rows, in record order, exactly as recording them one by one would, then
//! written in a few statements whatever the batch's size. Against a server,
//! round trips are the cost; one per record would be most of it.

use chrono::{DateTime, Utc};
use webhooks_core::{
    AttemptRecord, DeliveryId, DeliveryState, Recorded, StoreError, StoreResult, SubscriptionId, Verdict,
};

use crate::error::Outcome;
use crate::queries::{self, Db};

/// A delivery's columns that recording changes, as locked and then as
/// the batch leaves them.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub(crate) state: DeliveryState,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_at: Option<DateTime<Utc>>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    /// Whether the batch changed it.
    pub(crate) changed: bool,
}

impl Progress {
    /// Applies an attempt's verdict to a pending delivery; its lease ends
    /// when it is written.
    fn apply(&mut self, number: u32, verdict: Verdict, now: DateTime<Utc>) {
        self.attempts = self.attempts.max(number);
        (self.state, self.next_attempt_at, self.finished_at) = match verdict {
            Verdict::Delivered => (DeliveryState::Delivered, None, Some(now)),
            Verdict::Dropped => (DeliveryState::Dropped, None, Some(now)),
            Verdict::Retry { at } => (DeliveryState::Pending, Some(at), None),
        };
        self.changed = true;
    }
}

/// A subscription's failure count and status, as locked and then as the
/// batch leaves them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Failures {
    pub(crate) consecutive: u32,
    pub(crate) enabled: bool,
    /// The count as locked: an unchanged one (a success after a success,
    /// the usual case) is not written, sparing the row a new version.
    pub(crate) locked: u32,
}

/// Applies attempt records in order inside the caller's transaction, as the
/// memory store does: log each, apply its verdict to a pending delivery,
/// count the failure or reset the count, and disable the subscription when
/// the record says so. Every subscription and delivery the batch touches is
/// locked first, in id order. A record whose delivery is gone fails alone,
/// having written nothing.
pub(crate) async fn record_all(
    db: &Db<'_>,
    records: &[AttemptRecord],
) -> Outcome<Vec<StoreResult<Recorded>>> {
    let deliveries: Vec<DeliveryId> = records.iter().map(|r| r.attempt.delivery_id).collect();
    let subscription_of = queries::subscriptions_of(db, &deliveries).await?;
    let subscriptions: Vec<SubscriptionId> = subscription_of.values().copied().collect();
    let mut failures = queries::lock_subscriptions_to_count(db, &subscriptions).await?;
    // Locked, so read again: one deleted since the look-up is missing here.
    let mut progress = queries::lock_deliveries(db, &deliveries).await?;

    let mut logged = Vec::with_capacity(records.len());
    let mut disables: Vec<(SubscriptionId, String, DateTime<Utc>)> = Vec::new();
    let mut results = Vec::with_capacity(records.len());
    for record in records {
        let id = record.attempt.delivery_id;
        let found =
            subscription_of.get(&id).and_then(|s| Some((*s, failures.get_mut(s)?, progress.get_mut(&id)?)));
        let Some((subscription, count, delivery)) = found else {
            results.push(Err(StoreError::DeliveryNotFound(id)));
            continue;
        };
        logged.push(&record.attempt);
        if delivery.state == DeliveryState::Pending {
            delivery.apply(record.attempt.number, record.verdict, record.now);
        }
        count.consecutive = if record.attempt.succeeded() { 0 } else { count.consecutive.saturating_add(1) };
        let disable = if count.enabled { record.disable_reason(count.consecutive) } else { None };
        if let Some(reason) = &disable {
            count.enabled = false;
            disables.push((subscription, reason.clone(), record.now));
        }
        results.push(Ok(Recorded {
            consecutive_failures: count.consecutive,
            disabled_subscription: disable.is_some(),
        }));
    }

    queries::insert_attempts(db, &logged).await?;
    queries::write_progress(db, &progress).await?;
    queries::write_failures(db, &failures).await?;
    for (subscription, reason, now) in disables {
        // A disable waits for the publishes in flight to it, as the trait's
        // disable does, so none of them leaves a delivery unheld; and it
        // holds the deliveries written above.
        queries::lock_subscription(db, subscription).await?;
        queries::disable_subscription(db, subscription, &reason, now).await?;
    }
    Ok(results)
}
