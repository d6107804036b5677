//! The facade a host holds: subscribe, publish, manage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use chrono::{DateTime, Utc};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
#[cfg(feature = "dispatch")]
use crate::dispatch::DispatcherBuilder;
use crate::error::{Error, ErrorChain};
use crate::model::{
    Attempt, AttemptResult, Audience, Delivery, DeliveryId, DeliveryState, Event, EventId, Owner,
    PreviousSecret, Subscription, SubscriptionId, SubscriptionStatus,
};
use crate::operational::{OPERATIONAL_EVENT_TYPES, OperationalEvent, OperationalHook};
use crate::preset::{DisablePolicy, Preset};
use crate::publish::Publish;
use crate::retry::{RetryPolicy, Schedule};
use crate::scheme::Message;
use crate::sealing::SecretKeys;
use crate::secret::Secret;
use crate::settings::{
    CustomHeader, EndpointSettings, InvalidHeader, MAX_HEADER_VALUE_BYTES, RateLimit, RetryChoice,
};
use crate::store::{
    AttemptRecord, DeliveryCounts, DeliveryQuery, Sealed, StateFilter, Store, StoreError, SubscriptionStats,
    Verdict,
};

/// The event type of [`Webhooks::send_test`].
pub const TEST_EVENT: &str = "webhook.test";

/// A page of [`Webhooks::deliveries`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DeliveryPage {
    /// The deliveries, in creation order.
    pub deliveries: Vec<Delivery>,
    /// The cursor of the next page, when this one was full.
    pub next: Option<DeliveryId>,
}

/// A delivery with its attempt log.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct DeliveryLog {
    /// The delivery.
    pub delivery: Delivery,
    /// Its attempts, first first.
    pub attempts: Vec<Attempt>,
}

/// A page of [`Webhooks::delivery_logs`]: deliveries with their attempts.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct LogPage {
    /// The deliveries with their logs, in creation order.
    pub logs: Vec<DeliveryLog>,
    /// The cursor of the next page, when this one was full.
    pub next: Option<DeliveryId>,
}

/// The longest grace period of a rotated-out secret.
const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long publishing retries an unavailable store by default.
pub const DEFAULT_PUBLISH_RETRY: Duration = Duration::from_secs(30);

/// The longest idempotency window: ten years.
const MAX_IDEMPOTENCY_WINDOW: chrono::Duration = chrono::Duration::days(3650);

/// How long an idempotency key is held unless the builder says otherwise:
/// a day, longer than any handler's retries.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The host's store, its secrets sealed on the way in ([`Sealed`]).
    pub(crate) store: Arc<dyn Store>,
    /// The same, for resealing.
    sealed: Arc<Sealed>,
    pub(crate) preset: Preset,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_body_bytes: usize,
    /// How long publishing retries a store that is unavailable.
    pub(crate) publish_retry: Duration,
    pub(crate) idempotency_window: chrono::Duration,
    /// The headers the preset's scheme sets, which no subscription may.
    scheme_headers: http::HeaderMap,
    /// Retry policies by name: the presets', then the host's.
    policies: BTreeMap<String, Arc<dyn RetryPolicy>>,
    /// The host's hook for operational events.
    operational: Option<OperationalHook>,
    /// The owner whose subscriptions get operational events as webhooks.
    operational_owner: Option<Owner>,
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
#[must_use = "a builder does nothing until `build`"]
pub struct WebhooksBuilder {
    store: Option<Arc<dyn Store>>,
    preset: Option<Preset>,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
    publish_retry: Duration,
    idempotency_window: Duration,
    policies: BTreeMap<String, Arc<dyn RetryPolicy>>,
    operational: Option<OperationalHook>,
    operational_owner: Option<String>,
    secret_keys: Option<SecretKeys>,
}

impl WebhooksBuilder {
    /// Seals signing secrets and secret header values at rest with `keys`:
    /// encrypted before they reach the store, opened as they are read, so
    /// a copy of the database signs nothing. Every instance on one store
    /// takes the same keys. Secrets stored in the clear, or sealed with an
    /// older key of the ring, are sealed with the current one by
    /// [`Webhooks::reseal_secrets`], which every dispatcher runs as it
    /// starts. Without keys secrets are kept as given, and a store whose
    /// secrets are sealed answers with
    /// [`SealError::NoKeys`](crate::SealError::NoKeys) rather than sign
    /// with what it holds.
    ///
    /// ```
    /// use webhooks_core::{Preset, SecretKeys, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// // In production the key comes from a secrets manager or the environment.
    /// let keys = SecretKeys::from_base64(&SecretKeys::generate_key())?;
    /// let webhooks = Webhooks::builder()
    ///     .store(webhooks_memory::MemoryStore::new())
    ///     .preset(Preset::deepsmith())
    ///     .secret_keys(keys)
    ///     .build()?;
    /// let endpoint = webhooks
    ///     .subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated"))
    ///     .await?;
    /// // Read through the facade, the secret is the one the customer was given.
    /// assert_eq!(webhooks.subscription(endpoint.id).await?.secret, endpoint.secret);
    /// # Ok(())
    /// # }
    /// ```
    pub fn secret_keys(mut self, keys: SecretKeys) -> Self {
        self.secret_keys = Some(keys);
        self
    }

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

    /// How long a publish keeps retrying while the store is unavailable (a
    /// lost database connection, a restarting server, a file another
    /// process holds locked) before it returns the error; 30 s by default,
    /// zero for never. Only what the store calls transient is retried:
    /// nothing of a failed call was done, so a retry publishes once (a
    /// connection lost after a commit may still publish twice: give events
    /// an idempotency key to rule that out).
    pub fn publish_retry(mut self, patience: Duration) -> Self {
        self.publish_retry = patience;
        self
    }

    /// How long an idempotency key is held
    /// ([`Publish::idempotency_key`](crate::Publish::idempotency_key)):
    /// a repeat within it returns the first publication, one after it
    /// publishes anew; [`DEFAULT_IDEMPOTENCY_WINDOW`] (24 hours) by default,
    /// at most ten years. Keys are held whatever happens to their
    /// deliveries (purged, their endpoint deleted), and forgotten once the
    /// window ends by [`Webhooks::forget_expired_keys`], which dispatchers
    /// run every minute.
    pub fn idempotency_window(mut self, window: Duration) -> Self {
        self.idempotency_window = window;
        self
    }

    /// Registers a retry policy under `name`, for subscriptions to choose
    /// ([`NewSubscription::retry`]). Every instance on one store should
    /// register the same names: a subscription naming a policy an instance
    /// does not know is not attempted by it (the delivery stays pending;
    /// the error is logged and counted in
    /// `webhooks_unknown_retry_policy_total`). The presets' policies are
    /// known by their names (`"SmartlyQ"`, `"DeepSmith"`, `"Standard
    /// Webhooks"`) without registering; the instance's own preset's name
    /// names its policy as built.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webhooks_core::{Preset, Schedule, Webhooks};
    ///
    /// let premium = Schedule::new([1, 5, 30, 120].map(Duration::from_secs)).unwrap();
    /// let webhooks = Webhooks::builder()
    ///     .store(webhooks_memory::MemoryStore::new())
    ///     .preset(Preset::deepsmith())
    ///     .retry_policy("premium", premium)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn retry_policy(mut self, name: impl Into<String>, policy: impl RetryPolicy + 'static) -> Self {
        self.policies.insert(name.into(), Arc::new(policy));
        self
    }

    /// Calls `hook` with every [`OperationalEvent`] this instance makes
    /// happen: an endpoint disabled, enabled or failing, a delivery dropped
    /// after its last retry, held deliveries dropped past their limit. The
    /// hook runs on the task that made it happen: keep it quick (send to a
    /// channel).
    ///
    /// ```
    /// use webhooks_core::{OperationalEvent, Preset, Webhooks};
    ///
    /// let (tell, mut heard) = tokio::sync::mpsc::unbounded_channel::<OperationalEvent>();
    /// let webhooks = Webhooks::builder()
    ///     .store(webhooks_memory::MemoryStore::new())
    ///     .preset(Preset::deepsmith())
    ///     .on_operational_event(move |event| {
    ///         let _ = tell.send(event.clone());
    ///     })
    ///     .build()
    ///     .unwrap();
    /// # let _ = (webhooks, heard.try_recv());
    /// ```
    pub fn on_operational_event(mut self, hook: impl Fn(&OperationalEvent) + Send + Sync + 'static) -> Self {
        self.operational = Some(OperationalHook(Arc::new(hook)));
        self
    }

    /// Publishes every [`OperationalEvent`] as a signed webhook to the
    /// subscriptions of `owner`: an owner the host keeps for its own
    /// endpoints, subscribed like any other (its event types are
    /// [`OPERATIONAL_EVENT_TYPES`](crate::OPERATIONAL_EVENT_TYPES), which
    /// the catalogue need not name), with its own retry policy and disable
    /// rule. Nothing is published about the operational owner's own
    /// endpoints, so a failing operational endpoint does not report on
    /// itself. The data says which endpoint (`subscription_id`, `owner`),
    /// when (`at`) and what the kind adds; see [`OperationalEvent::data`].
    ///
    /// An operational webhook is published after its fact is recorded, by
    /// the instance that recorded it: a process killed between the two
    /// loses the webhook, not the fact (the delivery log and the endpoint's
    /// status still say it).
    ///
    /// ```
    /// use webhooks_core::{OPERATIONAL_EVENT_TYPES, Preset, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// let webhooks = Webhooks::builder()
    ///     .store(webhooks_memory::MemoryStore::new())
    ///     .preset(Preset::standard())
    ///     .operational_webhooks("operations")
    ///     .build()?;
    /// webhooks
    ///     .subscribe(
    ///         Subscription::builder("https://ops.example/webhooks")
    ///             .owner("operations")
    ///             .event_types(OPERATIONAL_EVENT_TYPES),
    ///     )
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn operational_webhooks(mut self, owner: impl Into<String>) -> Self {
        self.operational_owner = Some(owner.into());
        self
    }

    /// Checks the settings and builds.
    pub fn build(self) -> Result<Webhooks, Error> {
        let store = self.store.ok_or_else(|| Error::invalid("store", "no store was given"))?;
        let preset = self.preset.ok_or_else(|| Error::invalid("preset", "no preset was given"))?;
        if self.max_body_bytes == 0 {
            return Err(Error::invalid("max body bytes", "must be more than zero"));
        }
        // Found by signing a sample, so a custom scheme's are known too.
        let sample = Message {
            delivery_id: DeliveryId::new(),
            event_type: "",
            body: b"",
            timestamp: self.clock.now(),
        };
        let scheme_headers = preset.scheme().headers(&sample, &[&preset.scheme().new_secret()]);
        let mut policies: BTreeMap<String, Arc<dyn RetryPolicy>> =
            [Preset::smartlyq(), Preset::deepsmith(), Preset::standard(), preset.clone()]
                .into_iter()
                .map(|preset| (preset.name().to_owned(), preset.shared_retry()))
                .collect();
        policies.extend(self.policies);
        let operational_owner = self
            .operational_owner
            .map(|owner| {
                Owner::new(owner).map_err(|error| Error::invalid("operational owner", error.to_string()))
            })
            .transpose()?;
        let idempotency_window = chrono::Duration::from_std(self.idempotency_window)
            .ok()
            .filter(|window| *window > chrono::Duration::zero() && *window <= MAX_IDEMPOTENCY_WINDOW)
            .ok_or_else(|| {
                Error::invalid("idempotency window", "must be more than zero and at most ten years")
            })?;
        let sealed = Arc::new(Sealed::new(store, self.secret_keys));
        Ok(Webhooks {
            inner: Arc::new(Inner {
                store: Arc::clone(&sealed) as Arc<dyn Store>,
                sealed,
                preset,
                clock: self.clock,
                max_body_bytes: self.max_body_bytes,
                publish_retry: self.publish_retry,
                idempotency_window,
                scheme_headers,
                policies,
                operational: self.operational,
                operational_owner,
                work: Notify::new(),
                settled: Notify::new(),
            }),
        })
    }
}

/// What an owner's subscriptions add up to; from [`Webhooks::owner_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct OwnerStats {
    /// Its subscriptions.
    pub subscriptions: u64,
    /// Those disabled.
    pub disabled: u64,
    /// Their deliveries by state.
    pub deliveries: DeliveryCounts,
    /// Attempts made to them, kept in the logs.
    pub attempts: u64,
    /// Those a 2xx acknowledged.
    pub succeeded: u64,
    /// When the last acknowledged attempt started.
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the last failed attempt started.
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// Changes to a subscription; see [`Webhooks::update_subscription`]. What is
/// not set stays.
///
/// ```
/// use webhooks_core::SubscriptionUpdate;
///
/// let update = SubscriptionUpdate::new().url("https://new.example/hooks").event_types(["job.completed"]);
/// # let _ = update;
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a change is made only when passed to `update_subscription`"]
pub struct SubscriptionUpdate {
    url: Option<String>,
    event_types: Option<BTreeSet<String>>,
    channels: Option<BTreeSet<String>>,
    settings: Option<EndpointSettings>,
}

impl SubscriptionUpdate {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new endpoint URL.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// New event types, replacing the old ones.
    pub fn event_types<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// New channels, replacing the old ones (none: it hears every channel).
    pub fn channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels = Some(channels.into_iter().map(Into::into).collect());
        self
    }

    /// New settings, replacing the old ones whole: start from the
    /// subscription's own to change one.
    pub fn settings(mut self, settings: EndpointSettings) -> Self {
        self.settings = Some(settings);
        self
    }
}

/// A subscription to create; see [`Subscription::builder`].
#[derive(Clone, Debug)]
#[must_use = "a subscription is made only when passed to `subscribe`"]
pub struct NewSubscription {
    url: String,
    owner: Option<String>,
    event_types: BTreeSet<String>,
    channels: BTreeSet<String>,
    secret: Option<Secret>,
    settings: EndpointSettings,
    /// The first header or rate limit that was not valid, reported by
    /// [`Webhooks::subscribe`] so the builder chain stays unbroken.
    invalid: Option<(&'static str, String)>,
}

impl Subscription {
    /// Starts a subscription for the endpoint `url`, of the default owner
    /// unless [`NewSubscription::owner`] names one.
    pub fn builder(url: impl Into<String>) -> NewSubscription {
        NewSubscription {
            url: url.into(),
            owner: None,
            event_types: BTreeSet::new(),
            channels: BTreeSet::new(),
            secret: None,
            settings: EndpointSettings::default(),
            invalid: None,
        }
    }
}

impl NewSubscription {
    /// Whose it is: the host's account, tenant or customer id. Events reach
    /// it only when published for this owner (or for every owner).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

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

    /// Listens on one more channel: only events published on one of its
    /// channels reach it (see [`Publish::channel`](crate::Publish::channel)).
    /// Without channels it hears events on any channel and on none.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channels.insert(channel.into());
        self
    }

    /// Listens on these channels too; see [`NewSubscription::channel`].
    pub fn channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels.extend(channels.into_iter().map(Into::into));
        self
    }

    /// Uses this secret instead of generating one.
    pub fn secret(mut self, secret: impl Into<Secret>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Sends this header with every request (a routing header, say).
    pub fn header(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let header = CustomHeader::new(name, value);
        self.with_header(header)
    }

    /// Sends this header with every request, its value a secret (an
    /// `Authorization` token): never logged, never in serialized admin data.
    pub fn secret_header(self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let header = CustomHeader::secret(name, value);
        self.with_header(header)
    }

    fn with_header(mut self, header: Result<CustomHeader, InvalidHeader>) -> Self {
        match header {
            Ok(header) => self.settings.headers.push(header),
            Err(error) => self.invalid = self.invalid.or(Some(("header", error.to_string()))),
        }
        self
    }

    /// At most `per_second` requests a second to it, in bursts of up to
    /// `burst` (both at least 1). Each dispatcher enforces it on its own.
    pub fn rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        match RateLimit::new(per_second, burst) {
            Ok(limit) => self.settings.rate_limit = Some(limit),
            Err(error) => self.invalid = self.invalid.or(Some(("rate_limit", error.to_string()))),
        }
        self
    }

    /// At most `requests` (at least 1) in flight to it at once.
    pub fn max_in_flight(mut self, requests: u32) -> Self {
        self.settings.max_in_flight = Some(requests);
        self
    }

    /// Delivers in publish order, one at a time: see
    /// [`EndpointSettings::ordered`].
    pub fn ordered(mut self, ordered: bool) -> Self {
        self.settings.ordered = ordered;
        self
    }

    /// A description for the host's screens.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.settings.description = text.into();
        self
    }

    /// One metadata entry for the host's use.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.metadata.insert(key.into(), value.into());
        self
    }

    /// The retry policy its failed attempts follow, on every instance: a
    /// registered one by name ([`WebhooksBuilder::retry_policy`]) or its
    /// own waits ([`RetryChoice::waits_ms`]). Without it, the preset's, by
    /// name.
    pub fn retry(mut self, choice: RetryChoice) -> Self {
        self.settings.retry = Some(choice);
        self
    }

    /// When failures disable it, instead of the preset's rule: e.g.
    /// `DisablePolicy::after_consecutive_failures(50)` for a customer whose
    /// endpoint has long maintenance windows.
    pub fn disable_policy(mut self, policy: DisablePolicy) -> Self {
        self.settings.disable = Some(policy);
        self
    }

    /// Keeps at most `deliveries` held while it is disabled (past that the
    /// oldest are dropped, unsent); [`DEFAULT_HELD_LIMIT`](crate::DEFAULT_HELD_LIMIT) unless set.
    pub fn held_limit(mut self, deliveries: u32) -> Self {
        self.settings.held_limit = Some(deliveries);
        self
    }

    /// All settings at once, replacing what was set before.
    pub fn settings(mut self, settings: EndpointSettings) -> Self {
        self.settings = settings;
        self
    }
}

/// The longest description a subscription may have, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;
/// The longest reason a subscription may be disabled with, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// The most headers of its own a subscription may send.
pub const MAX_HEADERS: usize = 32;
/// The most metadata entries a subscription may have.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// The longest metadata key or value, in bytes.
pub const MAX_METADATA_BYTES: usize = 1024;

impl Webhooks {
    /// Starts building: `.store(..)` and `.preset(..)` are required.
    pub fn builder() -> WebhooksBuilder {
        WebhooksBuilder {
            store: None,
            preset: None,
            clock: Arc::new(SystemClock),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            publish_retry: DEFAULT_PUBLISH_RETRY,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            policies: BTreeMap::new(),
            operational: None,
            operational_owner: None,
            secret_keys: None,
        }
    }

    /// Creates a subscription after checking its URL against the preset's
    /// rule and its event types against the catalogue. Without a secret one is
    /// generated; the returned subscription holds it, for the caller to hand
    /// to the receiver.
    pub async fn subscribe(&self, new: NewSubscription) -> Result<Subscription, Error> {
        if let Some((field, reason)) = new.invalid {
            return Err(Error::invalid(field, reason));
        }
        let mut settings = new.settings;
        settings.retry = settings.retry.or_else(|| Some(self.default_retry()));
        self.check_settings(&settings)?;
        let preset = &self.inner.preset;
        let url = preset.url_rule().check(&new.url, preset.name())?;
        let owner = match new.owner {
            Some(owner) => Owner::new(owner).map_err(|error| Error::invalid("owner", error.to_string()))?,
            None => Owner::default(),
        };
        self.check_event_types(&owner, &new.event_types)?;
        crate::channels::check_channels(&new.channels)?;
        let secret = match new.secret {
            Some(secret) => {
                secret.check_length().map_err(|reason| Error::invalid("secret", reason))?;
                preset.scheme().check_secret(&secret).map_err(|reason| Error::invalid("secret", reason))?;
                secret
            }
            None => preset.scheme().new_secret(),
        };
        // To the microsecond, as every store keeps times: the subscription
        // returned is the one read back.
        let now = crate::micros::to_time(crate::micros::from_time(self.inner.clock.now()));
        let subscription = Subscription {
            id: SubscriptionId::at(now),
            owner,
            url,
            event_types: new.event_types,
            channels: new.channels,
            secret,
            previous_secret: None,
            status: SubscriptionStatus::Enabled,
            consecutive_failures: 0,
            settings,
            created_at: now,
        };
        self.inner.store.insert_subscription(&subscription).await?;
        // The host alone: a path or a query may carry a token.
        let host = subscription.url.host_str().unwrap_or_default();
        tracing::info!(subscription_id = %subscription.id, %host, "subscription created");
        Ok(subscription)
    }

    /// Replaces a subscription's secret with a new generated one and returns
    /// it. The old secret stays valid for `grace`. Where the scheme carries
    /// a signature per secret ([`SignatureScheme::signs_with_every_secret`](crate::SignatureScheme::signs_with_every_secret):
    /// SmartlyQ, Standard Webhooks) requests are signed with both, so
    /// receivers switch over at their pace. DeepSmith's header carries one
    /// signature: requests are signed with the new secret at once, and its
    /// receivers must accept either secret during the grace
    /// ([`DeepSmithScheme::verify_header_any`](crate::DeepSmithScheme::verify_header_any)).
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
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

    /// Enables a subscription again; its held deliveries are attempted at once.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn enable(&self, id: SubscriptionId) -> Result<(), Error> {
        let at = self.inner.clock.now();
        self.inner.store.enable_subscription(id, at).await?;
        self.inner.work.notify_waiters();
        self.tell(OperationalEvent::EndpointEnabled { subscription_id: id, at }).await;
        Ok(())
    }

    /// Disables a subscription; its deliveries are held, not lost.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn disable(&self, id: SubscriptionId, reason: &str) -> Result<(), Error> {
        if reason.len() > MAX_REASON_BYTES {
            return Err(Error::invalid("reason", format!("over {MAX_REASON_BYTES} bytes")));
        }
        let at = self.inner.clock.now();
        self.inner.store.disable_subscription(id, reason, at).await?;
        self.tell(OperationalEvent::EndpointDisabled { subscription_id: id, reason: reason.to_owned(), at })
            .await;
        Ok(())
    }

    /// Tells the host about `event`: its hook, then its operational webhooks.
    pub(crate) async fn tell(&self, event: OperationalEvent) {
        self.hear(&event);
        self.publish_operational(event).await;
    }

    /// Hands `event` to the host's hook, if it gave one.
    pub(crate) fn hear(&self, event: &OperationalEvent) {
        if let Some(hook) = &self.inner.operational {
            (hook.0)(event);
        }
    }

    /// Whether operational events are published as webhooks.
    pub(crate) fn publishes_operational(&self) -> bool {
        self.inner.operational_owner.is_some()
    }

    /// Publishes `event` to the operational owner's subscriptions, unless it
    /// is about one of them. A failure is logged: the fact itself is
    /// already recorded.
    pub(crate) async fn publish_operational(&self, event: OperationalEvent) {
        let Some(operational) = &self.inner.operational_owner else { return };
        let owner = match self.inner.store.subscription(event.subscription_id()).await {
            Ok(subscription) => subscription.map(|subscription| subscription.owner),
            Err(error) => {
                tracing::error!(error = %ErrorChain(&error), kind = event.kind(), "operational webhook not published");
                return;
            }
        };
        if owner.as_ref() == Some(operational) {
            return;
        }
        let publish = Publish::new(event.kind(), event.data(owner.as_ref()))
            .owner(operational.as_str())
            .idempotency_key(event.idempotency_key());
        if let Err(error) = self.publish_event(publish).await {
            tracing::error!(error = %ErrorChain(&error), kind = event.kind(), "operational webhook not published");
        }
    }

    /// Whether `owner` may listen to or be sent `event_type`: a type of the
    /// catalogue, or an operational one for the operational owner.
    pub(crate) fn check_event_type(&self, owner: &Owner, event_type: &str) -> Result<(), Error> {
        let operational = self.inner.operational_owner.as_ref() == Some(owner)
            && OPERATIONAL_EVENT_TYPES.contains(&event_type);
        if operational { Ok(()) } else { self.inner.preset.check_event_type(event_type) }
    }

    /// One subscription.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn subscription(&self, id: SubscriptionId) -> Result<Subscription, Error> {
        self.inner.store.subscription(id).await?.ok_or(Error::SubscriptionNotFound { id })
    }

    /// One owner's subscriptions, oldest first.
    pub async fn subscriptions(&self, owner: &Owner) -> Result<Vec<Subscription>, Error> {
        Ok(self.inner.store.owner_subscriptions(owner).await?)
    }

    /// Every owner's subscriptions, oldest first: for operators.
    pub async fn all_subscriptions(&self) -> Result<Vec<Subscription>, Error> {
        Ok(self.inner.store.subscriptions().await?)
    }

    /// Changes a subscription's URL, event types, channels or settings, checked as
    /// [`Webhooks::subscribe`] checks them; its owner, secrets, status and
    /// deliveries stay. Returns it as it is now.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn update_subscription(
        &self,
        id: SubscriptionId,
        update: SubscriptionUpdate,
    ) -> Result<Subscription, Error> {
        let mut subscription = self.subscription(id).await?;
        if let Some(url) = update.url {
            let preset = &self.inner.preset;
            subscription.url = preset.url_rule().check(&url, preset.name())?;
        }
        if let Some(event_types) = update.event_types {
            self.check_event_types(&subscription.owner, &event_types)?;
            subscription.event_types = event_types;
        }
        if let Some(channels) = update.channels {
            crate::channels::check_channels(&channels)?;
            subscription.channels = channels;
        }
        if let Some(mut settings) = update.settings {
            settings.retry = settings.retry.or_else(|| Some(self.default_retry()));
            self.check_settings(&settings)?;
            subscription.settings = settings;
        }
        self.inner.store.update_subscription(&subscription).await?;
        tracing::info!(subscription_id = %id, "subscription updated");
        Ok(subscription)
    }

    /// Deletes a subscription with its deliveries and their logs.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delete_subscription(&self, id: SubscriptionId) -> Result<(), Error> {
        if !self.inner.store.delete_subscription(id).await? {
            return Err(Error::SubscriptionNotFound { id });
        }
        tracing::info!(subscription_id = %id, "subscription deleted");
        Ok(())
    }

    /// Deletes everything of an owner in one step (an account deleted): its
    /// subscriptions, their deliveries and logs. Returns how many
    /// subscriptions went.
    pub async fn delete_owner(&self, owner: &Owner) -> Result<u64, Error> {
        let deleted = self.inner.store.delete_owner(owner).await?;
        tracing::info!(%owner, subscriptions = deleted, "owner deleted");
        Ok(deleted)
    }

    /// Forgets the idempotency keys whose window has ended, a thousand per
    /// store step; returns how many. Dispatchers run it every minute; a
    /// host without one runs it itself now and then. A key whose window has
    /// ended publishes anew whether or not it was forgotten yet.
    pub async fn forget_expired_keys(&self) -> Result<u64, Error> {
        let forgotten = self.inner.store.forget_expired_keys(self.inner.clock.now(), 1000).await?;
        if forgotten > 0 {
            tracing::debug!(forgotten, "expired idempotency keys forgotten");
        }
        Ok(forgotten)
    }

    /// What an owner's subscriptions add up to: how many, how many disabled,
    /// their deliveries by state and their attempts.
    pub async fn owner_stats(&self, owner: &Owner) -> Result<OwnerStats, Error> {
        let mut stats = OwnerStats::default();
        for subscription in self.subscriptions(owner).await? {
            stats.subscriptions += 1;
            stats.disabled += u64::from(!subscription.is_enabled());
            let counts = self.inner.store.delivery_counts(subscription.id).await?;
            stats.deliveries.pending += counts.pending;
            stats.deliveries.delivered += counts.delivered;
            stats.deliveries.dropped += counts.dropped;
            let attempts = self.inner.store.subscription_stats(subscription.id).await?;
            stats.attempts += attempts.attempts;
            stats.succeeded += attempts.succeeded;
            stats.last_success_at = stats.last_success_at.max(attempts.last_success_at);
            stats.last_failure_at = stats.last_failure_at.max(attempts.last_failure_at);
        }
        Ok(stats)
    }

    /// Checks settings against the limits and the preset: no header the
    /// signature scheme sets, a cap of at least 1, bounded text.
    fn check_settings(&self, settings: &EndpointSettings) -> Result<(), Error> {
        for header in &settings.headers {
            if self.inner.scheme_headers.contains_key(header.header_name()) {
                let reason = InvalidHeader::Reserved(header.name().to_owned());
                return Err(Error::invalid("header", reason.to_string()));
            }
        }
        let mut names = BTreeSet::new();
        if let Some(twice) = settings.headers.iter().find(|header| !names.insert(header.name())) {
            return Err(Error::invalid("header", format!("header {} is set twice", twice.name())));
        }
        if let Some(choice) = &settings.retry {
            choice.check()?;
            if let RetryChoice::Named(name) = choice
                && !self.inner.policies.contains_key(name)
            {
                return Err(Error::invalid("retry", format!("no retry policy is registered as {name:?}")));
            }
        }
        if settings.disable.is_some_and(|rule| rule.threshold() == Some(0)) {
            return Err(Error::invalid("disable", "a failure threshold must be at least 1"));
        }
        if settings.max_in_flight == Some(0) {
            return Err(Error::invalid("max_in_flight", "at least 1 request must be allowed in flight"));
        }
        if settings.description.len() > MAX_DESCRIPTION_BYTES {
            return Err(Error::invalid("description", format!("over {MAX_DESCRIPTION_BYTES} bytes")));
        }
        if settings.headers.len() > MAX_HEADERS {
            return Err(Error::invalid("headers", format!("over {MAX_HEADERS} headers")));
        }
        if let Some(header) =
            settings.headers.iter().find(|h| h.expose_value().len() > MAX_HEADER_VALUE_BYTES)
        {
            return Err(Error::invalid(
                "headers",
                format!("the value of header {} is over {MAX_HEADER_VALUE_BYTES} bytes", header.name()),
            ));
        }
        if settings.metadata.len() > MAX_METADATA_ENTRIES {
            return Err(Error::invalid("metadata", format!("over {MAX_METADATA_ENTRIES} entries")));
        }
        if let Some((key, _)) = settings.metadata.iter().find(|(key, value)| {
            key.is_empty() || key.len() > MAX_METADATA_BYTES || value.len() > MAX_METADATA_BYTES
        }) {
            let key: String = key.chars().take(64).collect();
            return Err(Error::invalid(
                "metadata",
                format!(
                    "key {key:?}: keys are 1 to {MAX_METADATA_BYTES} bytes, values at most {MAX_METADATA_BYTES}"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a subscription's event types against the catalogue.
    fn check_event_types(&self, owner: &Owner, event_types: &BTreeSet<String>) -> Result<(), Error> {
        if event_types.is_empty() {
            return Err(Error::invalid("event types", "a subscription must listen to at least one"));
        }
        for name in event_types {
            self.check_event_type(owner, name)?;
        }
        Ok(())
    }

    /// One delivery, if it exists; held when pending while its subscription
    /// is disabled.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, Error> {
        let Some(delivery) = self.inner.store.delivery(id).await? else { return Ok(None) };
        let mut one = [delivery];
        self.report_held(&mut one, None).await?;
        let [delivery] = one;
        Ok(Some(delivery))
    }

    /// Marks pending deliveries whose subscription is disabled as
    /// [`DeliveryState::Held`], the state a store never keeps: one
    /// subscription lookup per distinct subscription, none when the store
    /// already filtered by `filter`.
    pub(crate) async fn report_held(
        &self,
        deliveries: &mut [Delivery],
        filter: Option<StateFilter>,
    ) -> Result<(), Error> {
        let pending = deliveries.iter_mut().filter(|d| d.state == DeliveryState::Pending);
        match filter {
            // The store found exactly the held ones.
            Some(StateFilter::Held) => pending.for_each(|d| d.state = DeliveryState::Held),
            Some(StateFilter::Pending | StateFilter::Delivered | StateFilter::Dropped) => {}
            None => {
                let mut disabled = HashMap::new();
                for delivery in pending {
                    let held = match disabled.get(&delivery.subscription_id) {
                        Some(held) => *held,
                        None => {
                            let subscription =
                                self.inner.store.subscription(delivery.subscription_id).await?;
                            let held = subscription.is_some_and(|s| !s.is_enabled());
                            disabled.insert(delivery.subscription_id, held);
                            held
                        }
                    };
                    if held {
                        delivery.state = DeliveryState::Held;
                    }
                }
            }
        }
        Ok(())
    }

    /// A delivery's attempt log, first first.
    pub async fn attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>, Error> {
        Ok(self.inner.store.attempts(id).await?)
    }

    /// A subscription's deliveries counted by state.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delivery_counts(&self, id: SubscriptionId) -> Result<DeliveryCounts, Error> {
        Ok(self.inner.store.delivery_counts(id).await?)
    }

    /// Seals again, with the key that seals now, every subscription's
    /// secrets that are in the clear (stored before
    /// [`WebhooksBuilder::secret_keys`] was given) or sealed with an older
    /// key of the ring, one subscription at a time; returns how many. Every
    /// dispatcher runs it as it starts; run it as a deploy step after
    /// adding a key, then drop the older key once it returns 0. Without
    /// keys it does nothing.
    ///
    /// # Errors
    ///
    /// A store error, or [`SealError`](crate::SealError) (as a store error) for a secret
    /// sealed with a key the ring does not hold.
    pub async fn reseal_secrets(&self) -> Result<u64, Error> {
        let resealed = self.inner.sealed.reseal().await?;
        if resealed > 0 {
            tracing::info!(resealed, "secrets sealed with the current key");
        }
        Ok(resealed)
    }

    /// Drops, unsent, the oldest held deliveries of every disabled
    /// subscription past its held limit ([`EndpointSettings::held_limit`],
    /// [`DEFAULT_HELD_LIMIT`](crate::DEFAULT_HELD_LIMIT) unless set), each with a log entry saying
    /// why; returns how many. Dispatchers call it every minute; a host may
    /// call it too.
    pub async fn trim_held(&self) -> Result<u64, Error> {
        let store = &self.inner.store;
        // From the subscriptions, not the deliveries: no store indexes held
        // deliveries across subscriptions, and there are far fewer
        // subscriptions than deliveries.
        let mut dropped = 0;
        for subscription in store.subscriptions().await? {
            if subscription.is_enabled() {
                continue;
            }
            let limit = subscription.settings.held_limit_or_default();
            let mut excess =
                store.delivery_counts(subscription.id).await?.pending.saturating_sub(u64::from(limit));
            while excess > 0 {
                let trimmed = self.drop_oldest_held(&subscription, limit, excess).await?;
                if trimmed == 0 {
                    break;
                }
                dropped += trimmed;
                excess = excess.saturating_sub(trimmed);
            }
        }
        Ok(dropped)
    }

    /// Drops up to `count` (at most a thousand) of `subscription`'s oldest
    /// held deliveries, saying why in each log; how many it dropped.
    async fn drop_oldest_held(
        &self,
        subscription: &Subscription,
        limit: u32,
        count: u64,
    ) -> Result<u64, Error> {
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        // Oldest first: a page in creation order.
        let query = DeliveryQuery {
            subscription: Some(subscription.id),
            state: Some(StateFilter::Held),
            limit: usize::try_from(count).unwrap_or(usize::MAX).min(1000),
            ..DeliveryQuery::default()
        };
        let reason = crate::operational::held_drop_reason(limit);
        let records: Vec<AttemptRecord> = store
            .list_deliveries(&query)
            .await?
            .iter()
            .map(|delivery| AttemptRecord {
                attempt: Attempt {
                    delivery_id: delivery.id,
                    cycle: delivery.cycle,
                    number: delivery.attempts + 1,
                    started_at: now,
                    duration: Duration::ZERO,
                    result: AttemptResult::Error(reason.clone()),
                },
                verdict: Verdict::Dropped,
                disable_after: None,
                disable_now: None,
                now,
            })
            .collect();
        let dropped =
            store.record_attempts(&records).await?.iter().filter(|recorded| recorded.is_ok()).count();
        tracing::warn!(subscription_id = %subscription.id, dropped, limit, "held deliveries dropped");
        let dropped = dropped as u64;
        if dropped > 0 {
            self.tell(OperationalEvent::HeldDropped {
                subscription_id: subscription.id,
                dropped,
                limit,
                at: now,
            })
            .await;
        }
        Ok(dropped)
    }

    /// A page of deliveries matching `query`, in creation order; pass
    /// `page.next` as `query.after` for the page after. A `limit` of 0 means
    /// 100; more than 1000 is refused. Pending deliveries of a disabled
    /// subscription are reported held.
    pub async fn deliveries(&self, mut query: DeliveryQuery) -> Result<DeliveryPage, Error> {
        match query.limit {
            0 => query.limit = 100,
            1..=1000 => {}
            _ => return Err(Error::invalid("limit", "must be at most 1000")),
        }
        let mut deliveries = self.inner.store.list_deliveries(&query).await?;
        self.report_held(&mut deliveries, query.state).await?;
        let next = (deliveries.len() == query.limit).then(|| deliveries.last().map(|d| d.id)).flatten();
        Ok(DeliveryPage { deliveries, next })
    }

    /// One delivery with its whole attempt log; held when pending while its
    /// subscription is disabled.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn delivery_log(&self, id: DeliveryId) -> Result<DeliveryLog, Error> {
        let delivery = self.delivery(id).await?.ok_or(StoreError::DeliveryNotFound(id))?;
        let attempts = self.inner.store.attempts(id).await?;
        Ok(DeliveryLog { delivery, attempts })
    }

    /// A page of deliveries matching `query`, as [`Webhooks::deliveries`]
    /// lists them, each with its whole attempt log: the attempts of the
    /// whole page in one store call ([`Admin::attempts_of`](crate::Admin::attempts_of)),
    /// besides the listing's own.
    ///
    /// ```
    /// use webhooks_core::{DeliveryQuery, Preset, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), webhooks_core::Error> {
    /// let webhooks = Webhooks::builder()
    ///     .store(webhooks_memory::MemoryStore::new())
    ///     .preset(Preset::deepsmith())
    ///     .build()?;
    /// webhooks
    ///     .subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated"))
    ///     .await?;
    /// for n in 0..3 {
    ///     webhooks.publish("iq.status_updated", serde_json::json!({ "n": n })).await?;
    /// }
    /// let page = webhooks.delivery_logs(DeliveryQuery::new().limit(2)).await?;
    /// assert_eq!(page.logs.len(), 2);
    /// assert!(page.logs.iter().all(|log| log.attempts.is_empty()), "nothing attempted yet");
    /// let rest = webhooks.delivery_logs(DeliveryQuery::new().after(page.next)).await?;
    /// assert_eq!(rest.logs.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delivery_logs(&self, query: DeliveryQuery) -> Result<LogPage, Error> {
        let page = self.deliveries(query).await?;
        let ids: Vec<DeliveryId> = page.deliveries.iter().map(|delivery| delivery.id).collect();
        let mut attempts: std::collections::HashMap<DeliveryId, Vec<Attempt>> =
            self.inner.store.attempts_of(&ids).await?.into_iter().collect();
        let logs = page
            .deliveries
            .into_iter()
            .map(|delivery| DeliveryLog {
                attempts: attempts.remove(&delivery.id).unwrap_or_default(),
                delivery,
            })
            .collect();
        Ok(LogPage { logs, next: page.next })
    }

    /// Sends a delivery again: a new attempt cycle with the same id and body,
    /// due now (held instead while its subscription is disabled).
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn resend(&self, id: DeliveryId) -> Result<(), Error> {
        self.inner.store.resend(id, self.inner.clock.now()).await?;
        self.inner.work.notify_waiters();
        tracing::info!(delivery_id = %id, "delivery resent");
        Ok(())
    }

    /// Recovers a subscription after an outage: enables it and re-queues its
    /// held deliveries and every delivery dropped since `since`, in one step.
    /// Returns how many deliveries were re-queued.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn recover(&self, id: SubscriptionId, since: DateTime<Utc>) -> Result<u64, Error> {
        let at = self.inner.clock.now();
        let recovered = self.inner.store.recover(id, since, at).await?;
        self.inner.work.notify_waiters();
        self.tell(OperationalEvent::EndpointEnabled { subscription_id: id, at }).await;
        tracing::info!(subscription_id = %id, recovered, "subscription recovered");
        Ok(recovered)
    }

    /// Sends a `webhook.test` event to one subscription, whatever event types
    /// it listens to, so an endpoint can be checked end to end.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn send_test(&self, id: SubscriptionId) -> Result<DeliveryId, Error> {
        let subscription = self.subscription(id).await?;
        let now = self.inner.clock.now();
        let event = Event {
            id: EventId::at(now),
            audience: Audience::Owner(subscription.owner),
            idempotency_key: None,
            name: TEST_EVENT.to_owned(),
            channels: Default::default(),
            occurred_at: now,
            data: serde_json::json!({ "test": true }).into(),
        };
        let body = self.inner.preset.envelope().render(&event)?;
        let delivery = self.inner.store.publish_to(&event, body, id).await?;
        self.inner.work.notify_waiters();
        Ok(delivery)
    }

    /// What a subscription's attempts add up to: attempts, success rate,
    /// last success and failure, consecutive failures.
    ///
    /// Any owner's: for operators. A customer-facing route takes
    /// [`Webhooks::owner`], where another owner's ids are not found.
    pub async fn stats(&self, id: SubscriptionId) -> Result<SubscriptionStats, Error> {
        Ok(self.inner.store.subscription_stats(id).await?)
    }

    /// Starts configuring a dispatcher that delivers this facade's queue.
    #[cfg(feature = "dispatch")]
    #[cfg_attr(docsrs, doc(cfg(feature = "dispatch")))]
    pub fn dispatcher(&self) -> DispatcherBuilder {
        DispatcherBuilder::new(self.clone())
    }

    /// The store as the facade uses it: with
    /// [`WebhooksBuilder::secret_keys`], secrets are sealed on the way in
    /// and opened on the way out.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The preset.
    pub fn preset(&self) -> &Preset {
        &self.inner.preset
    }

    /// What a subscription that chooses no retry policy follows: this
    /// instance's preset's, by name, so every instance follows the same
    /// schedule whatever preset it was built with.
    fn default_retry(&self) -> RetryChoice {
        RetryChoice::named(self.inner.preset.name())
    }

    /// The retry policy `subscription` follows: the one it names or its own
    /// waits; the preset's when it has none. An error naming the policy
    /// when this instance does not know it.
    pub(crate) fn retry_for(&self, subscription: &Subscription) -> Result<Arc<dyn RetryPolicy>, Error> {
        match &subscription.settings.retry {
            None => Ok(self.inner.preset.shared_retry()),
            Some(RetryChoice::Named(name)) => {
                self.inner.policies.get(name).cloned().ok_or_else(|| {
                    Error::invalid("retry", format!("no retry policy is registered as {name:?}"))
                })
            }
            Some(RetryChoice::WaitsMs(waits)) => {
                Ok(Arc::new(Schedule::new(waits.iter().map(|ms| Duration::from_millis(*ms)))?))
            }
        }
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
