//! The facade a host holds: subscribe, publish, manage.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::clock::{Clock, SystemClock};
#[cfg(feature = "dispatch")]
use crate::dispatch::DispatcherBuilder;
use crate::error::Error;
use crate::model::{
    Attempt, Delivery, DeliveryId, DeliveryState, Event, EventId, PreviousSecret, Subscription,
    SubscriptionId, SubscriptionStatus,
};
use crate::preset::Preset;
use crate::secret::Secret;
use crate::store::{DeliveryCounts, DeliveryQuery, Store, StoreError, SubscriptionStats};

/// The event type of [`Webhooks::send_test`].
pub const TEST_EVENT: &str = "webhook.test";

/// A page of [`Webhooks::deliveries`].
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryPage {
    /// The deliveries, in creation order.
    pub deliveries: Vec<Delivery>,
    /// The cursor of the next page, when this one was full.
    pub next: Option<DeliveryId>,
}

/// A delivery with its attempt log.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryLog {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, first first.
    pub attempts: Vec<Attempt>,
}

/// The longest grace period of a rotated-out secret.
const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The default largest body accepted at publish: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The library's entry point: a store, a preset and a clock. Cheap to clone;
/// every clone shares the same parts.
///
/// ```
/// use webhooks_core::{Preset, Subscription, Webhooks};
/// use webhooks_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// let webhooks = Webhooks::builder()
///     .store(MemoryStore::new())
///     .preset(Preset::smartlyq())
///     .build()?;
///
/// let subscription = webhooks
///     .subscribe(Subscription::builder("https://example.com/hooks").event_type("job.completed"))
///     .await?;
/// println!("signing secret, shown once: {}", subscription.secret.expose());
///
/// let published = webhooks
///     .publish("job.completed", serde_json::json!({"job_id": "job_abc123"}))
///     .await?;
/// assert_eq!(published.deliveries.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    preset: Preset,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
    /// Wakes idle dispatchers of this process when there is new work.
    work: Notify,
    /// Wakes outcome waits when an attempt is recorded.
    settled: Notify,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("store", &self.inner.store)
            .field("preset", &self.inner.preset.name())
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Webhooks`]; see [`Webhooks::builder`].
#[derive(Debug)]
pub struct WebhooksBuilder {
    store: Option<Arc<dyn Store>>,
    preset: Option<Preset>,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
}

impl WebhooksBuilder {
    /// Where subscriptions and deliveries live. Required.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store already shared behind an `Arc`.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The preset: envelope, scheme, retries, rules. Required.
    pub fn preset(mut self, preset: Preset) -> Self {
        self.preset = Some(preset);
        self
    }

    /// The clock; the system clock by default. Tests pass a
    /// [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The largest rendered body [`Webhooks::publish`] accepts; 1 MiB by default.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Checks the settings and builds.
    pub fn build(self) -> Result<Webhooks, Error> {
        let store = self.store.ok_or_else(|| Error::invalid("store", "no store was given"))?;
        let preset = self.preset.ok_or_else(|| Error::invalid("preset", "no preset was given"))?;
        if self.max_body_bytes == 0 {
            return Err(Error::invalid("max body bytes", "must be more than zero"));
        }
        Ok(Webhooks {
            inner: Arc::new(Inner {
                store,
                preset,
                clock: self.clock,
                max_body_bytes: self.max_body_bytes,
                work: Notify::new(),
                settled: Notify::new(),
            }),
        })
    }
}

/// A subscription to create; see [`Subscription::builder`].
#[derive(Clone, Debug)]
pub struct NewSubscription {
    url: String,
    event_types: BTreeSet<String>,
    secret: Option<Secret>,
}

impl Subscription {
    /// Starts a subscription for the endpoint `url`.
    pub fn builder(url: impl Into<String>) -> NewSubscription {
        NewSubscription { url: url.into(), event_types: BTreeSet::new(), secret: None }
    }
}

impl NewSubscription {
    /// Listens to one more event type.
    pub fn event_type(mut self, name: impl Into<String>) -> Self {
        self.event_types.insert(name.into());
        self
    }

    /// Listens to these event types too.
    pub fn event_types<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types.extend(names.into_iter().map(Into::into));
        self
    }

    /// Uses this secret instead of generating one.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secret = Some(secret.into());
        self
    }
}

/// What [`Webhooks::publish`] created: a handle the caller may keep and
/// await for the final outcome of each delivery.
///
/// ```no_run
/// use std::time::Duration;
/// use webhooks_core::{Outcome, Webhooks};
///
/// # async fn run(webhooks: Webhooks) -> Result<(), Box<dyn std::error::Error>> {
/// let published = webhooks.publish("job.completed", serde_json::json!({"job_id": "j1"})).await?;
/// let outcomes = tokio::time::timeout(Duration::from_secs(60), published.outcomes()).await??;
/// for (delivery, outcome) in outcomes {
///     if outcome != Outcome::Delivered {
///         eprintln!("delivery {delivery} ended {outcome:?}");
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Published {
    /// The event's id.
    pub event_id: EventId,
    /// One delivery per subscription that listens to the event.
    pub deliveries: Vec<DeliveryId>,
    webhooks: Webhooks,
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("event_id", &self.event_id)
            .field("deliveries", &self.deliveries)
            .finish()
    }
}

/// How a delivery ended, as [`Published::outcomes`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A receiver acknowledged it.
    Delivered,
    /// Every attempt the retry policy allows failed.
    Dropped,
    /// Its endpoint was disabled; it waits, kept, until the endpoint is
    /// enabled again.
    Held,
}

/// How often an outcome wait looks at the store for progress made by
/// dispatchers in other processes.
const OUTCOME_POLL: Duration = Duration::from_secs(1);

impl Published {
    /// Waits until every delivery is delivered, dropped or held, and returns
    /// each one's outcome in the order of [`Published::deliveries`]. Wrap it
    /// in `tokio::time::timeout` to bound the wait: a SmartlyQ schedule runs
    /// for an hour.
    pub async fn outcomes(&self) -> Result<Vec<(DeliveryId, Outcome)>, Error> {
        let store = &self.webhooks.inner.store;
        loop {
            // Registered before looking, so an attempt recorded meanwhile
            // still wakes us.
            let settled = self.webhooks.inner.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let mut outcomes = Vec::with_capacity(self.deliveries.len());
            for id in &self.deliveries {
                let delivery = store.delivery(*id).await?.ok_or(StoreError::DeliveryNotFound(*id))?;
                let outcome = match delivery.state {
                    DeliveryState::Delivered => Outcome::Delivered,
                    DeliveryState::Dropped => Outcome::Dropped,
                    DeliveryState::Pending => match store.subscription(delivery.subscription_id).await? {
                        Some(subscription) if !subscription.is_enabled() => Outcome::Held,
                        _ => break,
                    },
                };
                outcomes.push((*id, outcome));
            }
            if outcomes.len() == self.deliveries.len() {
                return Ok(outcomes);
            }
            let _ = tokio::time::timeout(OUTCOME_POLL, settled).await;
        }
    }
}

impl Webhooks {
    /// Starts building: `.store(..)` and `.preset(..)` are required.
    pub fn builder() -> WebhooksBuilder {
        WebhooksBuilder {
            store: None,
            preset: None,
            clock: Arc::new(SystemClock),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }

    /// Creates a subscription after checking its URL against the preset's
    /// rule and its event types against the catalogue. Without a secret one is
    /// generated; the returned subscription holds it, for the caller to hand
    /// to the receiver.
    pub async fn subscribe(&self, new: NewSubscription) -> Result<Subscription, Error> {
        let preset = &self.inner.preset;
        let url = preset.url_rule().check(&new.url, preset.name())?;
        if new.event_types.is_empty() {
            return Err(Error::invalid("event types", "a subscription must listen to at least one"));
        }
        for name in &new.event_types {
            preset.check_event_type(name)?;
        }
        let secret = match new.secret {
            Some(secret) => {
                preset.scheme().check_secret(&secret).map_err(|reason| Error::invalid("secret", reason))?;
                secret
            }
            None => preset.scheme().new_secret(),
        };
        let subscription = Subscription {
            id: SubscriptionId::new(),
            url,
            event_types: new.event_types,
            secret,
            previous_secret: None,
            status: SubscriptionStatus::Enabled,
            consecutive_failures: 0,
            created_at: self.inner.clock.now(),
        };
        self.inner.store.insert_subscription(&subscription).await?;
        tracing::info!(subscription_id = %subscription.id, url = %subscription.url, "subscription created");
        Ok(subscription)
    }

    /// Publishes an event now: renders its body once and queues one delivery
    /// for every enabled subscription that listens to `name`.
    pub async fn publish(&self, name: &str, data: serde_json::Value) -> Result<Published, Error> {
        let span =
            tracing::info_span!("webhooks.publish", event_type = name, event_id = tracing::field::Empty);
        async move {
            let event = self.event(name.to_owned(), data)?;
            tracing::Span::current().record("event_id", tracing::field::display(event.id));
            let body = self.render(&event)?;
            let deliveries = self.inner.store.publish(&event, body).await?;
            if !deliveries.is_empty() {
                self.inner.work.notify_waiters();
            }
            metrics::counter!("webhooks_deliveries_created_total").increment(deliveries.len() as u64);
            tracing::debug!(deliveries = deliveries.len(), "event published");
            Ok(Published { event_id: event.id, deliveries, webhooks: self.clone() })
        }
        .instrument(span)
        .await
    }

    /// Replaces a subscription's secret with a new generated one and returns
    /// it. The old secret stays valid for `grace`: requests are signed with
    /// both where the scheme allows several signatures, so receivers can
    /// switch over at their pace.
    pub async fn rotate_secret(&self, id: SubscriptionId, grace: Duration) -> Result<Secret, Error> {
        if grace > MAX_GRACE {
            return Err(Error::invalid("grace period", "must be at most 30 days"));
        }
        let mut subscription = self.subscription(id).await?;
        let valid_until = self.inner.clock.now() + chrono::Duration::from_std(grace).unwrap_or_default();
        let secret = self.inner.preset.scheme().new_secret();
        let old = std::mem::replace(&mut subscription.secret, secret.clone());
        subscription.previous_secret = Some(PreviousSecret { secret: old, valid_until });
        self.inner.store.update_subscription(&subscription).await?;
        tracing::info!(subscription_id = %id, "secret rotated");
        Ok(secret)
    }

    /// Publishes several events now, in one store step where the store can
    /// (one transaction, one commit): the way to take a burst. Each is
    /// checked and rendered as [`Webhooks::publish`] does; one bad event
    /// fails the call before anything is stored.
    pub async fn publish_many<I, S>(&self, events: I) -> Result<Vec<Published>, Error>
    where
        I: IntoIterator<Item = (S, serde_json::Value)>,
        S: Into<String>,
    {
        let mut rendered = Vec::new();
        for (name, data) in events {
            let event = self.event(name.into(), data)?;
            let body = self.render(&event)?;
            rendered.push((event, body));
        }
        let published = self.inner.store.publish_many(&rendered).await?;
        if published.iter().any(|deliveries| !deliveries.is_empty()) {
            self.inner.work.notify_waiters();
        }
        let created: usize = published.iter().map(Vec::len).sum();
        metrics::counter!("webhooks_deliveries_created_total").increment(created as u64);
        Ok(rendered
            .into_iter()
            .zip(published)
            .map(|((event, _), deliveries)| Published {
                event_id: event.id,
                deliveries,
                webhooks: self.clone(),
            })
            .collect())
    }

    /// Checks an event and stamps it with an id and the time.
    fn event(&self, name: String, data: serde_json::Value) -> Result<Event, Error> {
        self.inner.preset.check_event_type(&name)?;
        if data.is_null() {
            return Err(Error::invalid("data", "an event needs data; send {} for none"));
        }
        Ok(Event { id: EventId::new(), name, occurred_at: self.inner.clock.now(), data })
    }

    /// Renders an event's body once, within the size limit.
    fn render(&self, event: &Event) -> Result<bytes::Bytes, Error> {
        let body = self.inner.preset.envelope().render(event)?;
        if body.len() > self.inner.max_body_bytes {
            return Err(Error::BodyTooLarge { size: body.len(), limit: self.inner.max_body_bytes });
        }
        Ok(body)
    }

    /// Enables a subscription again; its held deliveries are attempted at once.
    pub async fn enable(&self, id: SubscriptionId) -> Result<(), Error> {
        self.inner.store.enable_subscription(id, self.inner.clock.now()).await?;
        self.inner.work.notify_waiters();
        Ok(())
    }

    /// Disables a subscription; its deliveries are held, not lost.
    pub async fn disable(&self, id: SubscriptionId, reason: &str) -> Result<(), Error> {
        Ok(self.inner.store.disable_subscription(id, reason, self.inner.clock.now()).await?)
    }

    /// One subscription.
    pub async fn subscription(&self, id: SubscriptionId) -> Result<Subscription, Error> {
        self.inner.store.subscription(id).await?.ok_or(Error::SubscriptionNotFound { id })
    }

    /// One delivery, if it exists.
    pub async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, Error> {
        Ok(self.inner.store.delivery(id).await?)
    }

    /// A delivery's attempt log, first first.
    pub async fn attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>, Error> {
        Ok(self.inner.store.attempts(id).await?)
    }

    /// A subscription's deliveries counted by state.
    pub async fn delivery_counts(&self, id: SubscriptionId) -> Result<DeliveryCounts, Error> {
        Ok(self.inner.store.delivery_counts(id).await?)
    }

    /// A page of deliveries matching `query`, in creation order; pass
    /// `page.next` as `query.after` for the page after. A `limit` of 0 means
    /// 100; more than 1000 is refused.
    pub async fn deliveries(&self, mut query: DeliveryQuery) -> Result<DeliveryPage, Error> {
        match query.limit {
            0 => query.limit = 100,
            1..=1000 => {}
            _ => return Err(Error::invalid("limit", "must be at most 1000")),
        }
        let deliveries = self.inner.store.list_deliveries(&query).await?;
        let next = (deliveries.len() == query.limit).then(|| deliveries.last().map(|d| d.id)).flatten();
        Ok(DeliveryPage { deliveries, next })
    }

    /// One delivery with its whole attempt log.
    pub async fn delivery_log(&self, id: DeliveryId) -> Result<DeliveryLog, Error> {
        let delivery = self.inner.store.delivery(id).await?.ok_or(StoreError::DeliveryNotFound(id))?;
        let attempts = self.inner.store.attempts(id).await?;
        Ok(DeliveryLog { delivery, attempts })
    }

    /// Sends a delivery again: a new attempt cycle with the same id and body,
    /// due now (held instead while its subscription is disabled).
    pub async fn resend(&self, id: DeliveryId) -> Result<(), Error> {
        self.inner.store.resend(id, self.inner.clock.now()).await?;
        self.inner.work.notify_waiters();
        tracing::info!(delivery_id = %id, "delivery resent");
        Ok(())
    }

    /// Recovers a subscription after an outage: enables it and re-queues its
    /// held deliveries and every delivery dropped since `since`, in one step.
    /// Returns how many deliveries were re-queued.
    pub async fn recover(&self, id: SubscriptionId, since: DateTime<Utc>) -> Result<u64, Error> {
        let recovered = self.inner.store.recover(id, since, self.inner.clock.now()).await?;
        self.inner.work.notify_waiters();
        tracing::info!(subscription_id = %id, recovered, "subscription recovered");
        Ok(recovered)
    }

    /// Sends a `webhook.test` event to one subscription, whatever event types
    /// it listens to, so an endpoint can be checked end to end.
    pub async fn send_test(&self, id: SubscriptionId) -> Result<DeliveryId, Error> {
        let event = Event {
            id: EventId::new(),
            name: TEST_EVENT.to_owned(),
            occurred_at: self.inner.clock.now(),
            data: serde_json::json!({ "test": true }),
        };
        let body = self.inner.preset.envelope().render(&event)?;
        let delivery = self.inner.store.publish_to(&event, body, id).await?;
        self.inner.work.notify_waiters();
        Ok(delivery)
    }

    /// What a subscription's attempts add up to: attempts, success rate,
    /// last success and failure, consecutive failures.
    pub async fn stats(&self, id: SubscriptionId) -> Result<SubscriptionStats, Error> {
        Ok(self.inner.store.subscription_stats(id).await?)
    }

    /// Starts configuring a dispatcher that delivers this facade's queue.
    #[cfg(feature = "dispatch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dispatch")))]
    pub fn dispatcher(&self) -> DispatcherBuilder {
        DispatcherBuilder::new(self.clone())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The preset.
    pub fn preset(&self) -> &Preset {
        &self.inner.preset
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub(crate) fn work(&self) -> &Notify {
        &self.inner.work
    }

    pub(crate) fn settled(&self) -> &Notify {
        &self.inner.settled
    }
}
