//! Publishing: an event for an owner, checked, rendered once and queued.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use tracing::Instrument;

use super::Webhooks;
use crate::channels::check_channels;
use crate::error::Error;
use crate::model::{
    Audience, DeliveryId, DeliveryState, Event, EventData, EventId, IdempotencyKey, Owner, check_key,
};
use crate::store::{Publication, StoreError};

/// An event to publish: its type and data, whose subscriptions it may reach
/// (the default owner's unless [`Publish::owner`] or
/// [`Publish::to_every_owner`] says), and an optional idempotency key.
///
/// ```
/// use webhooks_core::{Preset, Publish, Subscription, Webhooks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// let webhooks = Webhooks::builder()
///     .store(webhooks_memory::MemoryStore::new())
///     .preset(Preset::smartlyq())
///     .build()?;
/// webhooks
///     .subscribe(Subscription::builder("https://alice.example/hooks").owner("alice").event_type("job.completed"))
///     .await?;
/// webhooks
///     .subscribe(Subscription::builder("https://bob.example/hooks").owner("bob").event_type("job.completed"))
///     .await?;
///
/// // Alice's job: only Alice's endpoint hears of it, once however often the
/// // handler retries.
/// let first = webhooks
///     .publish_event(Publish::new("job.completed", serde_json::json!({"job_id": "j1"})).owner("alice").idempotency_key("j1"))
///     .await?;
/// let again = webhooks
///     .publish_event(Publish::new("job.completed", serde_json::json!({"job_id": "j1"})).owner("alice").idempotency_key("j1"))
///     .await?;
/// assert_eq!(first.deliveries.len(), 1);
/// assert_eq!((again.event_id, again.deliveries.clone(), again.repeated), (first.event_id, first.deliveries, true));
///
/// // A platform-wide announcement reaches every owner, only when asked.
/// let everyone = webhooks
///     .publish_event(Publish::new("job.completed", serde_json::json!({"notice": "maintenance"})).to_every_owner())
///     .await?;
/// assert_eq!(everyone.deliveries.len(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "an event is published only when passed to `publish_event` or `prepare`"]
pub struct Publish {
    event_type: String,
    /// The data, or why it is not JSON (kept for `prepare` to report).
    data: Result<EventData, Arc<serde_json::Error>>,
    audience: Target,
    idempotency_key: Option<String>,
    channels: BTreeSet<String>,
}

/// Whose subscriptions, as the caller said it (checked at publish).
#[derive(Clone, Debug)]
enum Target {
    Owner(String),
    EveryOwner,
}

impl Publish {
    /// An event of `event_type` with `data` (any JSON object, array or
    /// value but `null`), for the default owner.
    pub fn new(event_type: impl Into<String>, data: impl Serialize) -> Self {
        let data = serde_json::to_value(data).map(EventData::Value).map_err(Arc::new);
        Self::with_data(event_type.into(), data)
    }

    /// An event of `event_type` whose data is JSON text the host already
    /// holds (a stored payload, a request body): checked to be one JSON
    /// value but `null`, then copied into the body byte for byte, so large
    /// numbers, key order and duplicate keys go out as written, and nothing
    /// is parsed into a value to be serialized again. See [`EventData`].
    ///
    /// ```
    /// use webhooks_core::{Preset, Publish, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build()?;
    /// webhooks.subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated")).await?;
    /// let text = r#"{"amount":12345678901234567890.10,"currency":"EUR"}"#;
    /// let published = webhooks.publish_event(Publish::json("iq.status_updated", text)).await?;
    /// let body = webhooks.delivery(published.deliveries[0]).await?.unwrap().body;
    /// assert!(String::from_utf8_lossy(&body).ends_with(r#""data":{"amount":12345678901234567890.10,"currency":"EUR"}}"#));
    /// assert!(webhooks.publish_event(Publish::json("iq.status_updated", "{oops")).await.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn json(event_type: impl Into<String>, text: impl Into<String>) -> Self {
        let data = EventData::json(text).map_err(Arc::new);
        Self::with_data(event_type.into(), data)
    }

    fn with_data(event_type: String, data: Result<EventData, Arc<serde_json::Error>>) -> Self {
        Self {
            event_type,
            data,
            audience: Target::Owner(Owner::default().into()),
            idempotency_key: None,
            channels: BTreeSet::new(),
        }
    }

    /// For this owner's subscriptions only.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.audience = Target::Owner(owner.into());
        self
    }

    /// For every owner's subscriptions that listen to it: a platform-wide
    /// announcement. Never the default; say it to mean it.
    pub fn to_every_owner(mut self) -> Self {
        self.audience = Target::EveryOwner;
        self
    }

    /// Publishes it on one more channel (a store, a region, a project of
    /// the owner's): a subscription that names channels hears it only on
    /// one of them; one that names none hears it on any. At most
    /// [`MAX_CHANNELS`](crate::MAX_CHANNELS), each 1 to 128 ASCII letters,
    /// digits, `_`, `-`, `.` and `:`.
    ///
    /// ```
    /// use webhooks_core::{Preset, Publish, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build()?;
    /// let eu = Subscription::builder("https://shop.example/eu").event_type("iq.status_updated").channel("store-eu");
    /// let all = Subscription::builder("https://shop.example/all").event_type("iq.status_updated");
    /// let (eu, all) = (webhooks.subscribe(eu).await?, webhooks.subscribe(all).await?);
    /// let us_order = webhooks.publish_event(Publish::new("iq.status_updated", serde_json::json!({})).channel("store-us")).await?;
    /// let reached = webhooks.delivery(us_order.deliveries[0]).await?.unwrap().subscription_id;
    /// assert_eq!((us_order.deliveries.len(), reached), (1, all.id), "the EU endpoint does not hear the US store");
    /// let eu_order = webhooks.publish_event(Publish::new("iq.status_updated", serde_json::json!({})).channel("store-eu")).await?;
    /// assert_eq!(eu_order.deliveries.len(), 2);
    /// # let _ = eu;
    /// # Ok(())
    /// # }
    /// ```
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.insert(channel.into());
        self
    }

    /// Publishes it on these channels too; see [`Publish::channel`].
    pub fn channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels.extend(channels.into_iter().map(Into::into));
        self
    }

    /// A key of the host's (an order id, a request id): publishing the same
    /// key again for the same owner within the idempotency window (24 hours
    /// unless [`WebhooksBuilder::idempotency_window`](crate::WebhooksBuilder::idempotency_window)
    /// says otherwise) creates nothing and returns the first publication, so
    /// a retried handler does not send twice and receivers see the same
    /// delivery ids (those not purged yet). The window runs whatever happens
    /// to the deliveries; after it the key publishes anew.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// An event of a type and a JSON value, for the default owner: the value is
/// taken as it is, where [`Publish::new`] would serialize it into a copy.
impl<S: Into<String>> From<(S, serde_json::Value)> for Publish {
    fn from((event_type, data): (S, serde_json::Value)) -> Self {
        Self::with_data(event_type.into(), Ok(EventData::Value(data)))
    }
}

/// An event checked against the preset and rendered into the exact body
/// every attempt will send, not yet stored: what a store's transactional
/// publish (inside the host's own database transaction) takes. From
/// [`Webhooks::prepare`].
#[derive(Clone, Debug)]
pub struct Prepared {
    event: Event,
    body: Bytes,
}

impl Prepared {
    /// The event, stamped with its id and time.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The rendered body.
    pub fn body(&self) -> &Bytes {
        &self.body
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
    /// The event's id (the first publication's, for a repeated key).
    pub event_id: EventId,
    /// One delivery per subscription that listens to the event.
    pub deliveries: Vec<DeliveryId>,
    /// Whether the idempotency key was held already: nothing new was created.
    pub repeated: bool,
    webhooks: Webhooks,
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("event_id", &self.event_id)
            .field("deliveries", &self.deliveries)
            .field("repeated", &self.repeated)
            .finish()
    }
}

/// Written as its event id, deliveries and `repeated`, for a route that
/// answers a publish.
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for Published {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut published = serializer.serialize_struct("Published", 3)?;
        published.serialize_field("event_id", &self.event_id)?;
        published.serialize_field("deliveries", &self.deliveries)?;
        published.serialize_field("repeated", &self.repeated)?;
        published.end()
    }
}

/// How a delivery ended, as [`Published::outcomes`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(rename_all = "snake_case"))]
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
        let store = self.webhooks.store();
        loop {
            // Registered before looking, so an attempt recorded meanwhile
            // still wakes us.
            let settled = self.webhooks.settled().notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            // In order, stopping at the first still going: this runs at
            // every recorded attempt, so it reads no more than it must.
            let mut outcomes = Vec::with_capacity(self.deliveries.len());
            for id in &self.deliveries {
                let mut delivery = [store.delivery(*id).await?.ok_or(StoreError::DeliveryNotFound(*id))?];
                self.webhooks.report_held(&mut delivery, None).await?;
                let outcome = match delivery[0].state {
                    DeliveryState::Delivered => Outcome::Delivered,
                    DeliveryState::Dropped => Outcome::Dropped,
                    DeliveryState::Held => Outcome::Held,
                    DeliveryState::Pending => break,
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
    /// Publishes an event for the default owner: the call of a host with one
    /// customer. Renders its body once and queues one delivery for every
    /// subscription of the default owner that listens to `event_type`
    /// (held while the subscription is disabled). A multi-customer host names the owner with
    /// [`Webhooks::publish_for`].
    pub async fn publish(&self, event_type: &str, data: impl Serialize) -> Result<Published, Error> {
        self.publish_event(Publish::new(event_type, data)).await
    }

    /// Publishes an event for one owner: only its subscriptions that listen
    /// to `event_type` get a delivery.
    pub async fn publish_for(
        &self,
        owner: impl Into<String>,
        event_type: &str,
        data: impl Serialize,
    ) -> Result<Published, Error> {
        self.publish_event(Publish::new(event_type, data).owner(owner)).await
    }

    /// Publishes an event as `publish` describes it: its owner (or every
    /// owner), its idempotency key.
    pub async fn publish_event(&self, publish: Publish) -> Result<Published, Error> {
        let span = tracing::info_span!(
            "webhooks.publish",
            event_type = publish.event_type.as_str(),
            event_id = tracing::field::Empty
        );
        async move {
            let prepared = self.prepare(publish)?;
            tracing::Span::current().record("event_id", tracing::field::display(prepared.event.id));
            let store = &self.inner.store;
            let publication =
                self.patiently(|| store.publish(&prepared.event, prepared.body.clone())).await?;
            self.published(std::slice::from_ref(&publication));
            tracing::debug!(
                deliveries = publication.deliveries.len(),
                repeated = publication.repeated,
                "event published"
            );
            Ok(self.handle(publication))
        }
        .instrument(span)
        .await
    }

    /// Publishes several events in one store step where the store can (one
    /// transaction, one commit): the way to take a burst. Each is checked and
    /// rendered as [`Webhooks::publish_event`] does; one bad event fails the
    /// call before anything is stored. Items are [`Publish`] values, or
    /// `(event_type, data)` pairs for the default owner.
    pub async fn publish_many<I, P>(&self, events: I) -> Result<Vec<Published>, Error>
    where
        I: IntoIterator<Item = P>,
        P: Into<Publish>,
    {
        let prepared = events
            .into_iter()
            .map(|publish| self.prepare(publish.into()).map(|p| (p.event, p.body)))
            .collect::<Result<Vec<_>, Error>>()?;
        let store = &self.inner.store;
        let publications = self.patiently(|| store.publish_many(&prepared)).await?;
        self.published(&publications);
        Ok(publications.into_iter().map(|publication| self.handle(publication)).collect())
    }

    /// Checks an event (type, data, owner, key) and renders its body within
    /// the size limit, without storing it: for publishing inside the host's
    /// own database transaction through the store's transactional publish.
    /// After that transaction commits, call [`Webhooks::wake_dispatchers`]
    /// (PostgreSQL's dispatchers wake by themselves).
    pub fn prepare(&self, publish: Publish) -> Result<Prepared, Error> {
        let preset = &self.inner.preset;
        let audience = match publish.audience {
            Target::Owner(owner) => Audience::Owner(
                Owner::new(owner).map_err(|error| Error::invalid("owner", error.to_string()))?,
            ),
            Target::EveryOwner => Audience::EveryOwner,
        };
        match audience.owner() {
            Some(owner) => self.check_event_type(owner, &publish.event_type)?,
            None => preset.check_event_type(&publish.event_type)?,
        }
        let data = publish.data.map_err(Error::InvalidData)?;
        if data.is_null() {
            return Err(Error::invalid("data", "an event needs data; send {} for none"));
        }
        preset.catalogue().check_data(&publish.event_type, &data)?;
        if let Some(key) = &publish.idempotency_key {
            check_key(key).map_err(|error| Error::invalid("idempotency key", error.to_string()))?;
        }
        check_channels(&publish.channels)?;
        let now = self.inner.clock.now();
        let held_until = now + self.inner.idempotency_window;
        let event = Event {
            id: EventId::at(now),
            audience,
            idempotency_key: publish.idempotency_key.map(|key| IdempotencyKey { key, held_until }),
            name: publish.event_type,
            channels: publish.channels,
            occurred_at: now,
            data,
        };
        let body = preset.envelope().render(&event)?;
        if body.len() > self.inner.max_body_bytes {
            return Err(Error::BodyTooLarge { size: body.len(), limit: self.inner.max_body_bytes });
        }
        Ok(Prepared { event, body })
    }

    /// Wakes this process's idle dispatchers to look for new work at once:
    /// after a host transaction that published through a store's
    /// transactional publish has committed. Without it they find the work at
    /// their next poll.
    pub fn wake_dispatchers(&self) {
        self.work().notify_waiters();
    }

    /// Runs a store call, again and again while the store is unavailable,
    /// for as long as the facade's publish retry allows, backing off from
    /// 50 ms to 2 s between tries.
    async fn patiently<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        crate::patience::while_unavailable(self.inner.publish_retry, "publishing", call).await
    }

    /// Counts and wakes after publications were stored.
    fn published(&self, publications: &[Publication]) {
        let created: usize = publications.iter().filter(|p| !p.repeated).map(|p| p.deliveries.len()).sum();
        if created > 0 {
            self.work().notify_waiters();
        }
        metrics::counter!("webhooks_deliveries_created_total").increment(created as u64);
    }

    fn handle(&self, publication: Publication) -> Published {
        Published {
            event_id: publication.event_id,
            deliveries: publication.deliveries,
            repeated: publication.repeated,
            webhooks: self.clone(),
        }
    }
}
