//! Recording a batch of attempts: worked out in memory from the locked
//! rows, in record order, exactly as recording them one by one would, then
//! written in a few statements whatever the batch's size. Against a server,
//! round trips are the cost; one per record would be most of it.

use chrono::{DateTime, Utc};
use webhooks_core::{AttemptRecord, Current, DeliveryId, Recorded, StoreError, StoreResult, SubscriptionId};

use crate::error::Step;
use crate::queries::{self, Db, Failures};

/// Applies attempt records in order inside the caller's transaction: logs
/// each and applies the changes core's rules make of it, to the rows as the
/// records before it in the batch left them. Every subscription and delivery the batch touches is
/// locked first, in id order. A record whose delivery is gone fails alone,
/// having written nothing.
pub(crate) async fn record_all(db: &Db<'_>, records: &[AttemptRecord]) -> Step<Vec<StoreResult<Recorded>>> {
    let deliveries: Vec<DeliveryId> = records.iter().map(|r| r.attempt.delivery_id).collect();
    let subscription_of = queries::subscriptions_of(db, &deliveries).await?;
    let subscriptions: Vec<SubscriptionId> = subscription_of.values().copied().collect();
    // A subscription with no failures counted, every attempt of which in
    // the batch succeeded (none disables it), and that releases nothing
    // (not ordered) has nothing written: it is only share-locked, so recorders of a busy endpoint on
    // several instances do not queue behind each other's commits.
    let counts = |subscription: SubscriptionId, failures: &Failures| {
        failures.ordered
            || failures.consecutive != 0
            || records.iter().any(|record| {
                subscription_of.get(&record.attempt.delivery_id) == Some(&subscription)
                    && (!record.attempt.succeeded()
                        || record.disable_now.is_some()
                        || record.disable_after == Some(0))
            })
    };
    let mut failures = queries::lock_subscriptions_to_count(db, &subscriptions, counts).await?;
    // Locked, so read again: one deleted since the look-up is missing here.
    let mut progress = queries::lock_deliveries(db, &deliveries).await?;

    let mut logged = Vec::with_capacity(records.len());
    let mut disables: Vec<(SubscriptionId, String, DateTime<Utc>)> = Vec::new();
    let mut releases: Vec<(SubscriptionId, DateTime<Utc>)> = Vec::new();
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
        let changes = record.changes(Current {
            state: delivery.state,
            attempts: delivery.attempts,
            cycle: delivery.cycle,
            consecutive_failures: count.consecutive,
            enabled: count.enabled,
            ordered: count.ordered,
        });
        if changes.release_next {
            releases.push((subscription, record.now));
        }
        if let Some(next) = changes.delivery {
            (delivery.state, delivery.attempts) = (next.state, next.attempts);
            (delivery.next_attempt_at, delivery.finished_at) = (next.next_attempt_at, next.finished_at);
            delivery.changed = true;
        }
        count.consecutive = changes.consecutive_failures;
        if let Some(reason) = &changes.disable {
            count.enabled = false;
            disables.push((subscription, reason.clone(), record.now));
        }
        results.push(Ok(changes.recorded()));
    }

    queries::insert_attempts(db, &logged).await?;
    queries::write_progress(db, &progress).await?;
    queries::write_failures(db, &failures).await?;
    for (subscription, reason, now) in disables {
        // A disable waits for the publishes in flight to it, as the trait's
        // disable does, so none of them leaves a delivery unheld; and it
        // holds the deliveries written above.
        if let Some(standing) = queries::lock_subscription(db, subscription).await? {
            queries::disable_subscription(db, subscription, &standing.disabling(&reason, now)).await?;
        }
    }
    // After the finished deliveries are written, so the next one sees them
    // gone; the subscriptions are locked above, as publishing to an ordered
    // one locks it.
    let released = !releases.is_empty();
    for (subscription, now) in releases {
        queries::release_next(db, subscription, now).await?;
    }
    // A delivery that waited is due now: every instance may take it.
    if released {
        crate::listen::announce(db).await?;
    }
    Ok(results)
}
