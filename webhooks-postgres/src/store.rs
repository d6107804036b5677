//! [`Store`] for [`PostgresStore`]: each operation is one transaction.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use webhooks_core::{
    Admin, Attempt, AttemptRecord, Claim, ClaimRequest, Delivery, DeliveryCounts, DeliveryId, DeliveryQuery,
    DeliveryQueue, Event, Owner, Prepared, Publication, Recorded, Retention, StoreError, StoreResult,
    Subscription, SubscriptionId, SubscriptionStats, SubscriptionStore,
};

use crate::error::{Abort, Error, Step, lost_connection};
use crate::queries::{self, Db, PublishBatch};
use crate::session::{Connection, Session};
use crate::{PostgresStore, listen, record};

/// A store step: a future over the transaction and the step's arguments.
pub(crate) type Work<'c, T> = Pin<Box<dyn Future<Output = Step<T>> + Send + 'c>>;

/// How many times a transaction runs when PostgreSQL picks it as a deadlock
/// victim. Locks are taken in one order, so it should never happen; should
/// it, the step is run again rather than failed.
const TRIES: u32 = 3;

impl PostgresStore {
    /// Publishes prepared events inside the host's own transaction, so they
    /// commit or roll back with the host's rows (the outbox pattern, without
    /// an outbox to drain). The transaction is the host's, on the database
    /// this store uses: a tokio-postgres [`Transaction`](tokio_postgres::Transaction)
    /// or [`Client`](tokio_postgres::Client), or one of [`deadpool_postgres`]
    /// (a pool the host built, or [`PostgresStore::pool`], whose statement
    /// cache it then uses); see [`Session`]. A failure leaves the host's
    /// transaction as it was (the publish runs in a savepoint). On commit,
    /// PostgreSQL tells every instance's listening store, which wakes its
    /// dispatchers.
    ///
    /// Prepare the events with
    /// [`Webhooks::prepare`](webhooks_core::Webhooks::prepare): it checks and
    /// renders them exactly as publishing does.
    ///
    /// ```no_run
    /// use webhooks_core::{Publish, Webhooks};
    /// use webhooks_postgres::{PostgresStore, tokio_postgres};
    ///
    /// # async fn run(webhooks: Webhooks, client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// // The host's own tokio-postgres connection.
    /// let tx = client.transaction().await?;
    /// tx.execute("INSERT INTO orders (id, customer) VALUES ($1, $2)", &[&"o-17", &"c-42"]).await?;
    /// let event = webhooks.prepare(
    ///     Publish::new("order.created", serde_json::json!({"id": "o-17"})).owner("c-42").idempotency_key("o-17"),
    /// )?;
    /// PostgresStore::publish_in(&tx, &[event]).await?;
    /// tx.commit().await?; // the order and its event, or neither
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A [`Client`](tokio_postgres::Client) must be in a transaction the
    /// host began (`BEGIN`); outside one the publish fails and stores
    /// nothing.
    pub async fn publish_in<S: Session>(
        transaction: &S,
        events: &[Prepared],
    ) -> StoreResult<Vec<Publication>> {
        const OPERATION: &str = "publish in the host's transaction";
        let events: Vec<(Event, Bytes)> =
            events.iter().map(|prepared| (prepared.event().clone(), prepared.body().clone())).collect();
        let fail = |abort: Abort| abort.into_store_error(OPERATION);
        transaction.run_batch("SAVEPOINT webhooks_publish").await.map_err(fail)?;
        match publish_all(transaction, &events).await {
            Ok(published) => {
                transaction.run_batch("RELEASE SAVEPOINT webhooks_publish").await.map_err(fail)?;
                Ok(published)
            }
            Err(abort) => {
                // Back to where the host was; its transaction goes on.
                let _ = transaction.run_batch("ROLLBACK TO SAVEPOINT webhooks_publish").await;
                Err(fail(abort))
            }
        }
    }

    /// Publishes `events` in one transaction, counting the deliveries made
    /// towards the first statistics of a new database.
    async fn publish_events(
        &self,
        operation: &'static str,
        events: &[(Event, Bytes)],
    ) -> StoreResult<Vec<Publication>> {
        let published =
            self.transaction(operation, events, |db, events| Box::pin(publish_all(db, events))).await?;
        let created = published.iter().filter(|p| !p.repeated).map(|p| p.deliveries.len() as u64).sum();
        self.first_statistics.published(&self.pool, created);
        Ok(published)
    }

    /// Runs `work` over `args` in one transaction: committed when it
    /// succeeds, rolled back when it fails. PostgreSQL's errors come out
    /// naming `operation`.
    pub(crate) async fn transaction<A, T>(
        &self,
        operation: &'static str,
        args: &A,
        work: impl for<'c> Fn(&'c Db<'c>, &'c A) -> Work<'c, T>,
    ) -> StoreResult<T>
    where
        A: Sync + ?Sized,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut client = self.pool.get().await.map_err(|source| Error::Pool { operation, source })?;
            let outcome = async {
                let transaction = client.transaction().await?;
                let value = work(&transaction, args).await?;
                // A connection lost during the commit leaves its outcome
                // unknown: never retried as if nothing had happened.
                transaction.commit().await.map_err(commit_failed)?;
                Ok(value)
            }
            .await;
            match outcome {
                Ok(value) => return Ok(value),
                Err(Abort::Postgres(error)) if tries < TRIES && retryable(&error) => continue,
                Err(abort) => return Err(abort.into_store_error(operation)),
            }
        }
    }
}

/// Why a commit failed: with the connection lost during it, whether it took
/// effect is unknown.
fn commit_failed(error: tokio_postgres::Error) -> Abort {
    if lost_connection(&error) { Abort::Unconfirmed(error) } else { Abort::Postgres(error) }
}

/// The error a failed commit of `operation` comes out as.
#[doc(hidden)]
pub fn commit_error(error: tokio_postgres::Error, operation: &'static str) -> StoreError {
    commit_failed(error).into_store_error(operation)
}

/// Whether PostgreSQL aborted the transaction only to break a deadlock or a
/// serialization conflict: running it again may succeed.
fn retryable(error: &tokio_postgres::Error) -> bool {
    matches!(error.code(), Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// Fails with `SubscriptionNotFound` unless `found`.
fn found_subscription<T>(found: Option<T>, id: SubscriptionId) -> Step<T> {
    found.ok_or_else(|| StoreError::SubscriptionNotFound(id).into())
}

/// Publishes each event in turn inside the caller's transaction, having
/// locked every listener of any of them first, in one go: a transaction
/// takes its subscription locks at once, in id order.
async fn publish_all<C: Connection>(db: &C, events: &[(Event, Bytes)]) -> Step<Vec<Publication>> {
    let all: Vec<&Event> = events.iter().map(|(event, _)| event).collect();
    let reached = queries::lock_listeners(db, &all).await?;
    queries::lock_ordered(db, &reached.ordered).await?;
    let mut published: Vec<Publication> = Vec::with_capacity(events.len());
    let mut batch = PublishBatch::default();
    for (event, body) in events {
        let to = reached.reached_by(event);
        if PublishBatch::fits(event, &to, &reached.ordered) {
            published.push(batch.add(event, body, &to, &reached.held));
            continue;
        }
        published.push(queries::publish(db, event, body, &to, &reached).await?);
    }
    batch.insert(db).await?;
    if published.iter().any(|p| !p.repeated && !p.deliveries.is_empty()) {
        listen::announce(db).await?;
    }
    Ok(published)
}

/// Leases due deliveries and pairs each with its subscription, read once
/// per claim batch.
async fn claim(db: &Db<'_>, request: &ClaimRequest<'_>) -> Step<Vec<Claim>> {
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let deliveries = queries::claim(db, request.now, limit, request.lease_until, request.skip).await?;
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<SubscriptionId> = deliveries.iter().map(|d| d.subscription_id).collect();
    let subscriptions: HashMap<SubscriptionId, Arc<Subscription>> = queries::subscriptions_by_id(db, &ids)
        .await?
        .into_iter()
        .map(|(id, subscription)| (id, Arc::new(subscription)))
        .collect();
    // Foreign keys keep every delivery's subscription; pass over rather than
    // fail should one be missing.
    Ok(deliveries
        .into_iter()
        .filter_map(|delivery| {
            let subscription = Arc::clone(subscriptions.get(&delivery.subscription_id)?);
            Some(Claim { delivery, subscription })
        })
        .collect())
}

#[async_trait]
impl SubscriptionStore for PostgresStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.transaction("insert a subscription", subscription, |db, subscription| {
            Box::pin(async move {
                if queries::insert_subscription(db, subscription).await? {
                    Ok(())
                } else {
                    Err(StoreError::DuplicateSubscription(subscription.id).into())
                }
            })
        })
        .await
    }

    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        self.transaction("update a subscription", subscription, |db, subscription| {
            Box::pin(async move {
                found_subscription(queries::lock_subscription(db, subscription.id).await?, subscription.id)?;
                queries::update_subscription(db, subscription).await
            })
        })
        .await
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        self.transaction("read a subscription", &id, |db, id| Box::pin(queries::subscription(db, *id))).await
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.transaction("list subscriptions", &(), |db, ()| Box::pin(queries::subscriptions(db))).await
    }

    async fn owned_subscription(
        &self,
        owner: &Owner,
        id: SubscriptionId,
    ) -> StoreResult<Option<Subscription>> {
        self.transaction("read an owner's subscription", &(owner, id), |db, (owner, id)| {
            Box::pin(queries::owned_subscription(db, owner, *id))
        })
        .await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        self.transaction("delete a subscription", &id, |db, id| {
            Box::pin(async move {
                if queries::lock_subscription(db, *id).await?.is_none() {
                    return Ok(false);
                }
                queries::delete_subscription(db, *id).await?;
                Ok(true)
            })
        })
        .await
    }

    async fn owner_subscriptions(&self, owner: &Owner) -> StoreResult<Vec<Subscription>> {
        self.transaction("list an owner's subscriptions", owner, |db, owner| {
            Box::pin(queries::owner_subscriptions(db, owner))
        })
        .await
    }

    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64> {
        self.transaction("delete an owner", owner, |db, owner| {
            Box::pin(async move {
                let theirs = queries::lock_owner(db, owner).await?;
                for id in &theirs {
                    queries::delete_subscription(db, *id).await?;
                }
                queries::delete_owner_keys(db, owner).await?;
                Ok(theirs.len() as u64)
            })
        })
        .await
    }

    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.transaction("disable a subscription", &(id, reason, now), |db, (id, reason, now)| {
            Box::pin(async move {
                let standing = found_subscription(queries::lock_subscription(db, *id).await?, *id)?;
                queries::disable_subscription(db, *id, &standing.disabling(reason, *now)).await
            })
        })
        .await
    }

    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()> {
        self.transaction("enable a subscription", &(id, now), |db, (id, now)| {
            Box::pin(async move {
                let standing = found_subscription(queries::lock_subscription(db, *id).await?, *id)?;
                queries::enable_subscription(db, *id, standing.enabling(*now)).await?;
                listen::announce(db).await
            })
        })
        .await
    }
}

#[async_trait]
impl DeliveryQueue for PostgresStore {
    /// All the events in one transaction: all published or none.
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>> {
        self.publish_events("publish events", events).await
    }

    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Publication> {
        let events = [(event.clone(), body)];
        let mut published = self.publish_events("publish an event", &events).await?;
        published.pop().ok_or_else(|| StoreError::backend("nothing was published"))
    }

    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId> {
        self.transaction("publish a test event", &(event, body, subscription), |db, (event, body, id)| {
            Box::pin(async move {
                let published = found_subscription(queries::publish_to(db, event, body, *id).await?, *id)?;
                listen::announce(db).await?;
                Ok(published)
            })
        })
        .await
    }

    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>> {
        self.transaction("claim due deliveries", request, |db, request| Box::pin(claim(db, request))).await
    }

    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()> {
        self.transaction("release claims", &(ids, claimable_at), |db, (ids, at)| {
            Box::pin(queries::release(db, ids, *at))
        })
        .await
    }

    /// All the records in one transaction, one commit for the batch. A
    /// record whose delivery is gone fails alone, having written nothing.
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        self.transaction("record attempts", records, |db, records| Box::pin(record::record_all(db, records)))
            .await
    }

    /// One transaction, one commit, for the batch.
    fn prefers_batches(&self) -> bool {
        true
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.transaction("read a delivery", &id, |db, id| Box::pin(queries::delivery(db, *id))).await
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        self.transaction("count pending deliveries", &(), |db, ()| Box::pin(queries::pending_count(db))).await
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.transaction("find the next due time", &(), |db, ()| Box::pin(queries::next_claimable(db))).await
    }

    /// Listens for other instances' publishes from the first call; `None`
    /// for a store made by [`PostgresStore::from_pool`].
    fn wake_ups(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.wake_ups.get()
    }
}

#[async_trait]
impl Admin for PostgresStore {
    async fn owned_delivery(&self, owner: &Owner, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.transaction("read an owner's delivery", &(owner, id), |db, (owner, id)| {
            Box::pin(queries::owned_delivery(db, owner, *id))
        })
        .await
    }

    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        self.transaction("read an attempt log", &id, |db, id| Box::pin(queries::attempts(db, *id))).await
    }

    /// One statement for the whole page.
    async fn attempts_of(&self, ids: &[DeliveryId]) -> StoreResult<Vec<(DeliveryId, Vec<Attempt>)>> {
        self.transaction("read attempt logs", ids, |db, ids| Box::pin(queries::attempts_of(db, ids))).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        self.transaction("list deliveries", query, |db, query| Box::pin(queries::list_deliveries(db, query)))
            .await
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        self.transaction("resend a delivery", &(id, now), |db, (id, now)| {
            Box::pin(async move {
                if queries::resend(db, *id, *now).await? {
                    listen::announce(db).await
                } else {
                    Err(StoreError::DeliveryNotFound(*id).into())
                }
            })
        })
        .await
    }

    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.transaction("recover a subscription", &(subscription, since, now), |db, (id, since, now)| {
            Box::pin(async move {
                let standing = found_subscription(queries::lock_subscription(db, *id).await?, *id)?;
                let restarted = queries::recover(db, *id, &standing.recovery(*since, *now)).await?;
                listen::announce(db).await?;
                Ok(restarted)
            })
        })
        .await
    }

    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts> {
        self.transaction("count deliveries", &subscription, |db, id| {
            Box::pin(queries::delivery_counts(db, *id))
        })
        .await
    }

    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats> {
        self.transaction("add up a subscription's attempts", &id, |db, id| {
            Box::pin(async move { found_subscription(queries::subscription_stats(db, *id).await?, *id) })
        })
        .await
    }
}

#[async_trait]
impl Retention for PostgresStore {
    /// Rows another instance is purging at the same time are passed over;
    /// the event bodies no other delivery needs go too.
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.transaction("purge finished deliveries", &(older_than, limit), |db, (older_than, limit)| {
            Box::pin(queries::purge_finished(db, *older_than, *limit))
        })
        .await
    }

    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.transaction("forget expired idempotency keys", &(now, limit), |db, (now, limit)| {
            Box::pin(queries::forget_keys(db, *now, *limit))
        })
        .await
    }
}
