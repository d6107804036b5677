//! [`Store`] for [`SqliteStore`]: each operation is one transaction on the
//! connection thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use webhooks_core::{
    Admin, Attempt, AttemptRecord, Claim, ClaimRequest, Delivery, DeliveryCounts, DeliveryId, DeliveryQuery,
    DeliveryQueue, Event, Owner, Prepared, Publication, Recorded, Retention, StoreError, StoreResult,
    Subscription, SubscriptionId, SubscriptionStats, SubscriptionStore,
};

use crate::error::{Error, is_disk_full};
use crate::{SqliteStore, in_transaction, queries};

/// What a failed transactional publish names.
const PUBLISH_IN: &str = "publish in the host's transaction";

/// Why a transaction was abandoned: SQLite failed, or the operation hit one
/// of the store's typed errors (a missing subscription, say).
pub(crate) enum Abort {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl Abort {
    /// The public error, naming `operation`.
    pub(crate) fn into_store_error(self, operation: &'static str) -> StoreError {
        match self {
            Self::Sqlite(source) => Error::Sqlite { operation, source }.into(),
            Self::Store(error) => error,
        }
    }
}

impl From<rusqlite::Error> for Abort {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(error)
    }
}

impl From<StoreError> for Abort {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// What a store step returns inside its transaction.
type Step<T> = Result<T, Abort>;

impl SqliteStore {
    /// Publishes prepared events inside the host's own transaction on this
    /// store's database file, so they commit or roll back with the host's
    /// rows (the outbox pattern, without an outbox to drain). `connection`
    /// is the host's `rusqlite` transaction (or a connection inside one) on
    /// the same file, opened with this crate's [`rusqlite`]
    /// after [`SqliteStore::open`] has migrated it. A failure leaves the
    /// host's transaction as it was (the publish runs in a savepoint).
    /// After the host commits, [`Webhooks::wake_dispatchers`] has this
    /// process's dispatchers look at once.
    ///
    /// Prepare the events with [`Webhooks::prepare`]: it checks and renders
    /// them exactly as publishing does.
    ///
    /// [`Webhooks::wake_dispatchers`]: webhooks_core::Webhooks::wake_dispatchers
    /// [`Webhooks::prepare`]: webhooks_core::Webhooks::prepare
    ///
    /// ```
    /// use webhooks_core::{Preset, Publish, Subscription, Webhooks};
    /// use webhooks_sqlite::{SqliteStore, rusqlite};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("app.db");
    /// let webhooks = Webhooks::builder().store(SqliteStore::open(&path).await?).preset(Preset::deepsmith()).build()?;
    /// webhooks
    ///     .subscribe(Subscription::builder("https://shop.example/hooks").owner("shop-7").event_type("content.status_updated"))
    ///     .await?;
    ///
    /// let mut db = rusqlite::Connection::open(&path)?;
    /// db.execute_batch("CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY)")?;
    /// let tx = db.transaction()?;
    /// tx.execute("INSERT INTO posts (id) VALUES ('p1')", [])?;
    /// let event = webhooks.prepare(Publish::new("content.status_updated", serde_json::json!({"id": "p1"})).owner("shop-7"))?;
    /// let published = SqliteStore::publish_in(&tx, &[event])?;
    /// tx.commit()?;
    /// webhooks.wake_dispatchers();
    /// assert_eq!(published[0].deliveries.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # From an async handler
    ///
    /// SQLite calls block, so an async handler (axum's, say) runs its
    /// transaction on tokio's blocking pool, over a connection the handlers
    /// share behind a mutex, and wakes the dispatchers once it committed:
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    ///
    /// use webhooks_core::{Preset, Publish, Webhooks};
    /// use webhooks_sqlite::{SqliteStore, rusqlite};
    ///
    /// type Failure = Box<dyn std::error::Error + Send + Sync>;
    ///
    /// #[derive(Clone)]
    /// struct App {
    ///     db: Arc<Mutex<rusqlite::Connection>>,
    ///     webhooks: Webhooks,
    /// }
    ///
    /// async fn create_post(app: App, id: String) -> Result<(), Failure> {
    ///     // Checked and rendered before the transaction, which only writes.
    ///     let event = app.webhooks.prepare(Publish::new("content.status_updated", serde_json::json!({"id": id})))?;
    ///     let db = Arc::clone(&app.db);
    ///     tokio::task::spawn_blocking(move || -> Result<(), Failure> {
    ///         let mut db = db.lock().map_err(|_| "the connection's mutex is poisoned")?;
    ///         let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    ///         tx.execute("INSERT INTO posts (id) VALUES (?1)", [&id])?;
    ///         SqliteStore::publish_in(&tx, &[event])?;
    ///         Ok(tx.commit()?)
    ///     })
    ///     .await??;
    ///     app.webhooks.wake_dispatchers();
    ///     Ok(())
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Failure> {
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("app.db");
    /// let webhooks = Webhooks::builder().store(SqliteStore::open(&path).await?).preset(Preset::deepsmith()).build()?;
    /// let db = rusqlite::Connection::open(&path)?;
    /// db.execute_batch("CREATE TABLE IF NOT EXISTS posts (id TEXT PRIMARY KEY)")?;
    /// let app = App { db: Arc::new(Mutex::new(db)), webhooks };
    /// create_post(app.clone(), "p1".to_owned()).await?;
    /// # let posts: i64 = app.db.lock().unwrap().query_row("SELECT count(*) FROM posts", [], |row| row.get(0))?;
    /// # assert_eq!(posts, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Use `BEGIN IMMEDIATE` (as above): a deferred transaction that reads
    /// first and then writes can fail with "database is locked" when the
    /// store wrote in between, where an immediate one waits its turn.
    pub fn publish_in(connection: &Connection, events: &[Prepared]) -> StoreResult<Vec<Publication>> {
        let events: Vec<ToPublish> =
            events.iter().map(|prepared| ToPublish::new(prepared.event(), prepared.body().clone())).collect();
        let fail = |source| Abort::Sqlite(source).into_store_error(PUBLISH_IN);
        connection.execute_batch("SAVEPOINT webhooks_publish").map_err(fail)?;
        match publish_all(connection, &events) {
            Ok(published) => {
                connection.execute_batch("RELEASE webhooks_publish").map_err(fail)?;
                Ok(published)
            }
            Err(abort) => {
                // Back to where the host was; its transaction goes on.
                let _ = connection.execute_batch("ROLLBACK TO webhooks_publish; RELEASE webhooks_publish");
                Err(abort.into_store_error(PUBLISH_IN))
            }
        }
    }

    /// Runs `work` in one transaction on the connection thread; SQLite's
    /// errors come out naming `operation`.
    async fn transaction<T: Send + 'static>(
        &self,
        behavior: TransactionBehavior,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Step<T> + Send + 'static,
    ) -> StoreResult<T> {
        let result = self
            .worker
            .call(move |connection| {
                let before = connection.total_changes();
                in_transaction(connection, behavior, work)
                    .map(|value| (value, connection.total_changes() > before))
                    .map_err(|abort| abort.into_store_error(operation))
            })
            .await;
        self.watch_disk(result).await
    }

    /// Says once when writes start finding the disk full, and once when the
    /// first write that changed rows succeeds again, after a checkpoint that
    /// gives the WAL (grown while the disk filled) back to the file system.
    /// A commit that changed nothing needs no space, so it proves nothing.
    pub(crate) async fn watch_disk<T>(&self, result: StoreResult<(T, bool)>) -> StoreResult<T> {
        use std::sync::atomic::Ordering::SeqCst;
        match &result {
            Err(error) if is_disk_full(error) && !self.disk_full.swap(true, SeqCst) => {
                tracing::warn!(
                    path = %self.path().display(),
                    "the disk is full: writes fail, and nothing of them is kept, until space is freed"
                );
            }
            Ok((_, true)) if self.disk_full.swap(false, SeqCst) => {
                let truncated = self
                    .worker
                    .call(|connection| {
                        connection
                            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                            .map_err(|source| Error::Sqlite { operation: "checkpoint the WAL", source })
                    })
                    .await;
                tracing::info!(path = %self.path().display(), wal_truncated = truncated.is_ok(), "disk space is back: writes resume");
            }
            _ => {}
        }
        result.map(|(value, _)| value)
    }

    /// A write of leases only (claims and releases), committed without
    /// waiting for the disk: a power cut may undo it, which only makes the
    /// deliveries claimable again, the at-least-once promise kept. The next
    /// durable commit syncs it along with its own. Claims are the most
    /// frequent write; a sync each would bound delivery by the disk.
    async fn lease_write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Step<T> + Send + 'static,
    ) -> StoreResult<T> {
        let result = self
            .worker
            .call(move |connection| {
                let before = connection.total_changes();
                let relaxed =
                    connection.prepare_cached("PRAGMA synchronous = NORMAL").and_then(|mut s| s.execute([]));
                let result = relaxed
                    .map_err(Abort::Sqlite)
                    .and_then(|_| in_transaction(connection, TransactionBehavior::Immediate, work));
                // Whatever happened, every other write stays durable.
                let restored =
                    connection.prepare_cached("PRAGMA synchronous = FULL").and_then(|mut s| s.execute([]));
                let result = result.and_then(|value| restored.map(|_| value).map_err(Abort::Sqlite));
                result
                    .map(|value| (value, connection.total_changes() > before))
                    .map_err(|abort| abort.into_store_error(operation))
            })
            .await;
        self.watch_disk(result).await
    }

    /// A read: a snapshot that waits for no writer (WAL).
    async fn read<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Step<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.transaction(TransactionBehavior::Deferred, operation, work).await
    }

    /// A write: takes the write lock at `BEGIN`, before reading anything, so
    /// what it reads cannot change under it in another connection (two
    /// processes never claim the same delivery), and it waits for the lock
    /// up to the busy timeout instead of failing when it upgrades.
    async fn write<T: Send + 'static>(
        &self,
        operation: &'static str,
        work: impl FnOnce(&Transaction<'_>) -> Step<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.transaction(TransactionBehavior::Immediate, operation, work).await
    }
}

/// Fails with `SubscriptionNotFound` unless `found`.
fn found_subscription(found: bool, id: SubscriptionId) -> Step<()> {
    if found { Ok(()) } else { Err(StoreError::SubscriptionNotFound(id).into()) }
}

/// What publishing needs of an event: all but its data, which the body
/// holds already (and which would be a deep copy to send to the connection
/// thread).
struct ToPublish {
    event: Event,
    body: Bytes,
}

impl ToPublish {
    fn new(event: &Event, body: Bytes) -> Self {
        // The body is rendered already: the data is not kept twice.
        let event = event.clone().with_data(serde_json::Value::Null);
        Self { event, body }
    }
}

/// Publishes each event in turn inside the caller's transaction, looking the
/// listeners of each event type and audience up once. A key the audience
/// holds at the event's time (from before, or earlier in the batch)
/// publishes nothing.
fn publish_all(db: &Connection, events: &[ToPublish]) -> Step<Vec<Publication>> {
    let mut listeners = HashMap::new();
    let mut published = Vec::with_capacity(events.len());
    for ToPublish { event, body } in events {
        let audience = event.audience.stored_key();
        if let Some(key) = &event.idempotency_key
            && let Some(first) = queries::held_key(db, audience, key, event.occurred_at)?
        {
            published.push(first);
            continue;
        }
        let targets = match listeners.entry((event.name.as_str(), audience)) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(queries::listeners(db, &event.name, &event.audience)?),
        };
        let (publication, seq) = queries::insert_event(db, event, body, &targets.reached_by(event))?;
        if let Some(key) = &event.idempotency_key {
            queries::take_key(db, audience, key, event.id, seq)?;
        }
        published.push(publication);
    }
    Ok(published)
}

/// Applies one attempt record inside the caller's transaction: logs it
/// and writes the changes core's rules make of the state read here.
fn record(db: &Transaction<'_>, record: &AttemptRecord) -> Step<Recorded> {
    let id = record.attempt.delivery_id;
    let (subscription, current) = queries::current(db, id)?.ok_or(StoreError::DeliveryNotFound(id))?;
    let changes = record.changes(current);
    queries::insert_attempt(db, &record.attempt)?;
    if let Some(next) = &changes.delivery {
        queries::write_next_state(db, id, next)?;
    }
    if changes.consecutive_failures != current.consecutive_failures {
        queries::set_failures(db, subscription, changes.consecutive_failures)?;
    }
    if let Some(reason) = &changes.disable {
        queries::disable_subscription(db, subscription, reason, record.now)?;
    }
    if changes.release_next {
        queries::release_next(db, subscription, record.now)?;
    }
    Ok(changes.recorded())
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let subscription = subscription.clone();
        self.write("insert a subscription", move |db| {
            if queries::subscription_exists(db, subscription.id)? {
                return Err(StoreError::DuplicateSubscription(subscription.id).into());
            }
            Ok(queries::insert_subscription(db, &subscription)?)
        })
        .await
    }

    async fn update_subscription(&self, subscription: &Subscription) -> StoreResult<()> {
        let subscription = subscription.clone();
        self.write("update a subscription", move |db| {
            found_subscription(queries::update_subscription(db, &subscription)?, subscription.id)
        })
        .await
    }

    async fn subscription(&self, id: SubscriptionId) -> StoreResult<Option<Subscription>> {
        self.read("read a subscription", move |db| Ok(queries::subscription(db, id)?)).await
    }

    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
        self.read("list subscriptions", |db| Ok(queries::subscriptions(db)?)).await
    }

    async fn owned_subscription(
        &self,
        owner: &Owner,
        id: SubscriptionId,
    ) -> StoreResult<Option<Subscription>> {
        let owner = owner.clone();
        self.read("read an owner's subscription", move |db| Ok(queries::owned_subscription(db, &owner, id)?))
            .await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> StoreResult<bool> {
        self.write("delete a subscription", move |db| Ok(queries::delete_subscription(db, id)?)).await
    }

    async fn owner_subscriptions(&self, owner: &Owner) -> StoreResult<Vec<Subscription>> {
        let owner = owner.clone();
        self.read("list an owner's subscriptions", move |db| Ok(queries::owner_subscriptions(db, &owner)?))
            .await
    }

    async fn delete_owner(&self, owner: &Owner) -> StoreResult<u64> {
        let owner = owner.clone();
        self.write("delete an owner", move |db| Ok(queries::delete_owner(db, &owner)? as u64)).await
    }

    async fn disable_subscription(
        &self,
        id: SubscriptionId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let reason = reason.to_owned();
        self.write("disable a subscription", move |db| {
            found_subscription(queries::disable_subscription(db, id, &reason, now)?, id)
        })
        .await
    }

    async fn enable_subscription(&self, id: SubscriptionId, now: DateTime<Utc>) -> StoreResult<()> {
        self.write("enable a subscription", move |db| {
            found_subscription(queries::enable_subscription(db, id, now)?, id)
        })
        .await
    }
}

#[async_trait]
impl DeliveryQueue for SqliteStore {
    /// All the events in one transaction: all published or none.
    async fn publish_many(&self, events: &[(Event, Bytes)]) -> StoreResult<Vec<Publication>> {
        let events: Vec<ToPublish> =
            events.iter().map(|(event, body)| ToPublish::new(event, body.clone())).collect();
        self.grouped_write("publish events", move |db| publish_all(db, &events)).await
    }

    async fn publish(&self, event: &Event, body: Bytes) -> StoreResult<Publication> {
        let event = ToPublish::new(event, body);
        self.grouped_write("publish an event", move |db| {
            let mut published = publish_all(db, std::slice::from_ref(&event))?;
            published.pop().ok_or_else(|| StoreError::backend("nothing was published").into())
        })
        .await
    }

    async fn publish_to(
        &self,
        event: &Event,
        body: Bytes,
        subscription: SubscriptionId,
    ) -> StoreResult<DeliveryId> {
        let event = event.clone();
        self.write("publish a test event", move |db| {
            Ok(queries::publish_to(db, &event, &body, subscription)?
                .ok_or(StoreError::SubscriptionNotFound(subscription))?)
        })
        .await
    }

    async fn claim_due(&self, request: &ClaimRequest<'_>) -> StoreResult<Vec<Claim>> {
        let ClaimRequest { now, limit, lease_until, skip } = *request;
        let skip = skip.to_vec();
        let walked = Arc::clone(&self.walked);
        self.grouped_lease_write("claim due deliveries", move |db| {
            let mut subscriptions = HashMap::new();
            let mut claims = Vec::new();
            let mut walked = walked.lock().unwrap_or_else(PoisonError::into_inner);
            for delivery in queries::claimable(db, now, limit, &skip, &mut walked)? {
                queries::lease(db, delivery.id, lease_until)?;
                let subscription = match subscriptions.entry(delivery.subscription_id) {
                    Entry::Occupied(known) => known.into_mut(),
                    Entry::Vacant(new) => {
                        new.insert(queries::subscription(db, delivery.subscription_id)?.map(Arc::new))
                    }
                };
                // Foreign keys keep every delivery's subscription; skip
                // rather than fail should one be missing.
                if let Some(subscription) = subscription {
                    claims.push(Claim { delivery, subscription: Arc::clone(subscription) });
                }
            }
            Ok(claims)
        })
        .await
    }

    async fn release(&self, ids: &[DeliveryId], claimable_at: DateTime<Utc>) -> StoreResult<()> {
        let ids = ids.to_vec();
        self.lease_write("release claims", move |db| {
            for id in ids {
                queries::lease(db, id, claimable_at)?;
            }
            Ok(())
        })
        .await
    }

    /// All the records in one transaction, one commit for the batch. A
    /// record whose delivery is gone fails alone, having written nothing.
    async fn record_attempts(&self, records: &[AttemptRecord]) -> StoreResult<Vec<StoreResult<Recorded>>> {
        let records = records.to_vec();
        self.grouped_write("record attempts", move |db| {
            records
                .iter()
                .map(|r| match record(db, r) {
                    Ok(recorded) => Ok(Ok(recorded)),
                    Err(Abort::Store(error)) => Ok(Err(error)),
                    Err(Abort::Sqlite(error)) => Err(Abort::Sqlite(error)),
                })
                .collect()
        })
        .await
    }

    /// One commit per call: batches are much cheaper.
    fn prefers_batches(&self) -> bool {
        true
    }

    async fn delivery(&self, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        self.read("read a delivery", move |db| Ok(queries::delivery(db, id)?)).await
    }

    async fn pending_count(&self) -> StoreResult<u64> {
        self.read("count pending deliveries", |db| Ok(queries::pending_count(db)?)).await
    }

    async fn next_due_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
        self.read("find the next due time", |db| Ok(queries::next_claimable(db)?)).await
    }
}

#[async_trait]
impl Admin for SqliteStore {
    async fn owned_delivery(&self, owner: &Owner, id: DeliveryId) -> StoreResult<Option<Delivery>> {
        let owner = owner.clone();
        self.read("read an owner's delivery", move |db| Ok(queries::owned_delivery(db, &owner, id)?)).await
    }

    async fn attempts(&self, id: DeliveryId) -> StoreResult<Vec<Attempt>> {
        self.read("read an attempt log", move |db| Ok(queries::attempts(db, id)?)).await
    }

    /// One statement for the whole page.
    async fn attempts_of(&self, ids: &[DeliveryId]) -> StoreResult<Vec<(DeliveryId, Vec<Attempt>)>> {
        let ids = ids.to_vec();
        self.read("read attempt logs", move |db| Ok(queries::attempts_of(db, &ids)?)).await
    }

    async fn list_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<Delivery>> {
        let query = query.clone();
        self.read("list deliveries", move |db| Ok(queries::list_deliveries(db, &query)?)).await
    }

    async fn resend(&self, id: DeliveryId, now: DateTime<Utc>) -> StoreResult<()> {
        self.write("resend a delivery", move |db| {
            if queries::resend(db, id, now)? { Ok(()) } else { Err(StoreError::DeliveryNotFound(id).into()) }
        })
        .await
    }

    async fn recover(
        &self,
        subscription: SubscriptionId,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        self.write("recover a subscription", move |db| {
            let recovered = queries::recover(db, subscription, since, now)?
                .ok_or(StoreError::SubscriptionNotFound(subscription))?;
            Ok(recovered as u64)
        })
        .await
    }

    async fn delivery_counts(&self, subscription: SubscriptionId) -> StoreResult<DeliveryCounts> {
        self.read("count deliveries", move |db| Ok(queries::delivery_counts(db, subscription)?)).await
    }

    async fn subscription_stats(&self, id: SubscriptionId) -> StoreResult<SubscriptionStats> {
        self.read("add up a subscription's attempts", move |db| {
            Ok(queries::subscription_stats(db, id)?.ok_or(StoreError::SubscriptionNotFound(id))?)
        })
        .await
    }
}

#[async_trait]
impl Retention for SqliteStore {
    async fn purge_batch(&self, older_than: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.write("purge finished deliveries", move |db| {
            Ok(queries::purge_finished(db, older_than, limit)? as u64)
        })
        .await
    }

    async fn forget_keys(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        self.write("forget expired idempotency keys", move |db| {
            Ok(queries::forget_keys(db, now, limit)? as u64)
        })
        .await
    }
}
