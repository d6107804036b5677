//! The facade a host holds: [`Webhooks`], built by [`WebhooksBuilder`].
//! Its calls are arranged by concern, one `impl Webhooks` per module:
//! `subscriptions` (subscribe, read, change, delete, and the checks a
//! subscription passes), `publish`, `operations` (enable, disable, resend,
//! recover, test), `secrets` (rotate, reseal), `deliveries` (deliveries and
//! their logs), `stats`, `housekeeping` (trim held deliveries, forget
//! expired keys), `operational` (operational events told and read back),
//! `owner` (one owner's view) and `dispatcher` (the parts a dispatcher is
//! handed).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::model::{DeliveryId, Owner};
use crate::operational::{OperationalEvent, OperationalHook};
use crate::preset::Preset;
use crate::retry::RetryPolicy;
use crate::scheme::Message;
use crate::sealing::SecretKeys;
use crate::store::{Sealed, Store};

pub(crate) mod deliveries;
#[cfg(feature = "dispatch")]
mod dispatcher;
mod housekeeping;
mod operational;
pub(crate) mod operations;
pub(crate) mod owner;
pub(crate) mod publish;
mod secrets;
pub(crate) mod stats;
pub(crate) mod subscriptions;

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
    inner: Arc<Inner>,
}

/// What every clone of a [`Webhooks`] shares; read by the facade's modules.
struct Inner {
    /// The host's store, its secrets sealed on the way in ([`Sealed`]).
    store: Arc<dyn Store>,
    /// The same, for resealing.
    sealed: Arc<Sealed>,
    preset: Preset,
    clock: Arc<dyn Clock>,
    max_body_bytes: usize,
    /// How long publishing retries a store that is unavailable.
    publish_retry: Duration,
    idempotency_window: chrono::Duration,
    /// The headers the preset's scheme sets, which no subscription may.
    scheme_headers: http::HeaderMap,
    /// Retry policies by name: the presets', then the host's.
    policies: BTreeMap<String, Arc<dyn RetryPolicy>>,
    /// The host's hook for operational events.
    operational: Option<OperationalHook>,
    /// The owner whose subscriptions get operational events as webhooks.
    operational_owner: Option<Owner>,
    /// Wakes idle dispatchers of this process when there is new work.
    work: Arc<Notify>,
    /// Wakes outcome waits when an attempt is recorded.
    settled: Arc<Notify>,
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
    /// ([`NewSubscription::retry`](crate::NewSubscription::retry)). Every instance on one store should
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
                work: Arc::new(Notify::new()),
                settled: Arc::new(Notify::new()),
            }),
        })
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
            publish_retry: DEFAULT_PUBLISH_RETRY,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            policies: BTreeMap::new(),
            operational: None,
            operational_owner: None,
            secret_keys: None,
        }
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

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Wakes idle dispatchers of this process when there is new work.
    fn work(&self) -> &Notify {
        &self.inner.work
    }

    /// Wakes outcome waits when an attempt is recorded.
    fn settled(&self) -> &Notify {
        &self.inner.settled
    }
}
