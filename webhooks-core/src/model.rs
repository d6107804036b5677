//! The data model: subscriptions, events, deliveries and attempts.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use url::Url;
use uuid::Uuid;

use crate::secret::Secret;
#[cfg(feature = "serde")]
use crate::secret::{SecretOut, Secrets};
use crate::settings::EndpointSettings;
#[cfg(feature = "serde")]
use crate::settings::SettingsOut;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, unique id made now by the system clock. Ids are UUIDv7,
            /// so they sort by creation time.
            pub fn new() -> Self {
                Self::at(Utc::now())
            }

            /// A new, unique id made at `time` (the facade passes its clock's
            /// now, so ids and times agree under a manual clock). Ids made in
            /// one process in the same millisecond sort in the order made.
            pub fn at(time: DateTime<Utc>) -> Self {
                Self(v7_at(time))
            }

            /// The id as a UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::from_str(s).map(Self)
            }
        }
    };
}

/// A UUIDv7 for `time`: its millisecond, then a process-wide counter (42
/// bits, randomly seeded) so ids of one millisecond keep the order they were
/// made in, then 32 random bits. Unlike `Uuid::now_v7` it follows the time
/// given, backwards too (a manual clock).
fn v7_at(time: DateTime<Utc>) -> Uuid {
    static NEXT: LazyLock<AtomicU64> = LazyLock::new(|| AtomicU64::new(rand::random::<u64>() >> 23));
    let millis = u64::try_from(time.timestamp_millis()).unwrap_or(0) & ((1 << 48) - 1);
    let count = NEXT.fetch_add(1, Ordering::Relaxed) & ((1 << 42) - 1);
    let high = (millis << 16) | 0x7000 | (count >> 30);
    let low = (0b10 << 62) | ((count & ((1 << 30) - 1)) << 32) | u64::from(rand::random::<u32>());
    Uuid::from_u64_pair(high, low)
}

id_type!(
    /// Identifies a [`Subscription`].
    SubscriptionId
);
id_type!(
    /// Identifies an [`Event`].
    EventId
);
id_type!(
    /// Identifies a [`Delivery`]: one event to one subscription. Sent with
    /// every attempt so receivers can drop duplicates.
    DeliveryId
);

/// Whose subscriptions an event may reach: a key the host chooses, such as
/// its account, tenant or customer id. Every subscription has one; an event
/// published for an owner reaches only that owner's subscriptions.
///
/// 1 to 255 bytes of visible text (no control characters). A host with one
/// customer never names one: [`Owner::default`] is `default`, the owner of
/// every subscription and event that does not say.
///
/// ```
/// use webhooks_core::Owner;
///
/// let alice = Owner::new("account-42").unwrap();
/// assert_eq!(alice.as_str(), "account-42");
/// assert!(Owner::new("").is_err());
/// assert_eq!(Owner::default().as_str(), "default");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Owner(String);

impl Owner {
    /// The owner named `key`, checked.
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidKey> {
        let key = key.into();
        check_key(&key)?;
        Ok(Self(key))
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Owner {
    fn default() -> Self {
        Self("default".to_owned())
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({:?})", self.0)
    }
}

impl TryFrom<String> for Owner {
    type Error = InvalidKey;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl TryFrom<&str> for Owner {
    type Error = InvalidKey;

    fn try_from(key: &str) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl From<Owner> for String {
    fn from(owner: Owner) -> Self {
        owner.0
    }
}

impl FromStr for Owner {
    type Err = InvalidKey;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        Self::new(key)
    }
}

/// A key (an owner, an idempotency key) that is empty, longer than 255
/// bytes, or holds a control character.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a key must be 1 to 255 bytes of visible text, got {0:?}")]
pub struct InvalidKey(pub String);

/// Checks an owner or idempotency key.
pub(crate) fn check_key(key: &str) -> Result<(), InvalidKey> {
    if key.is_empty() || key.len() > 255 || key.chars().any(char::is_control) {
        let shown: String = key.chars().take(64).collect();
        return Err(InvalidKey(shown));
    }
    Ok(())
}

/// Which owners an event is for. Serialized as `{"owner": "account-42"}` or
/// `"every_owner"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(rename_all = "snake_case"))]
pub enum Audience {
    /// One owner's subscriptions.
    Owner(Owner),
    /// Every owner's: a platform-wide announcement, only when the host asks
    /// for it by name.
    EveryOwner,
}

impl Audience {
    /// Whether a subscription of `owner` is in it.
    pub fn includes(&self, owner: &Owner) -> bool {
        match self {
            Self::Owner(only) => only == owner,
            Self::EveryOwner => true,
        }
    }

    /// The one owner, unless it is every owner.
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Self::Owner(owner) => Some(owner),
            Self::EveryOwner => None,
        }
    }

    /// The text stores keep for it and scope idempotency keys by: the
    /// owner's key, or the empty string (never an owner's) for every owner.
    pub fn stored_key(&self) -> &str {
        self.owner().map_or("", Owner::as_str)
    }

    /// The audience a store kept as [`Audience::stored_key`].
    pub fn from_stored_key(key: &str) -> Result<Self, InvalidKey> {
        if key.is_empty() { Ok(Self::EveryOwner) } else { Owner::new(key).map(Self::Owner) }
    }
}

/// An endpoint that wants some event types, and the secret its payloads are
/// signed with. Create one with [`Subscription::builder`] and
/// [`Webhooks::subscribe`](crate::Webhooks::subscribe), which checks it
/// against the preset.
///
/// ```
/// use webhooks_core::{Preset, Subscription, Webhooks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// let webhooks = Webhooks::builder()
///     .store(webhooks_memory::MemoryStore::new())
///     .preset(Preset::deepsmith())
///     .build()?;
/// let subscription = webhooks
///     .subscribe(
///         Subscription::builder("https://customer.example/hooks")
///             .event_types(["content.status_updated", "topic.status_updated"])
///             .secret("a secret the customer chose"),
///     )
///     .await?;
/// assert!(subscription.listens_to("topic.status_updated"));
/// assert!(subscription.is_enabled());
/// # Ok(())
/// # }
/// ```
///
/// With the `serde` feature it serializes for an admin API with every secret
/// written as `<redacted>`: its secret, its previous secret and the values of
/// its secret headers. [`Subscription::with_secrets`] writes them, for the
/// host's own storage or a screen that shows a new secret once. Reading
/// redacted data back fails (see [`Secret`]): only what `with_secrets` wrote
/// makes a subscription again.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Deserialize))]
#[non_exhaustive]
pub struct Subscription {
    /// Its id.
    pub id: SubscriptionId,
    /// Whose it is: events reach it only when published for this owner (or
    /// for every owner).
    pub owner: Owner,
    /// Where payloads are POSTed.
    pub url: Url,
    /// The event types it listens to.
    pub event_types: BTreeSet<String>,
    /// The channels it listens on: when it names any, only events published
    /// on one of them reach it (see [`channels_meet`](crate::channels_meet)).
    #[cfg_attr(feature = "serde", serde(default))]
    pub channels: BTreeSet<String>,
    /// The signing secret (redacted in `Debug`).
    pub secret: Secret,
    /// The secret it replaced, still signed with until its grace period ends.
    pub previous_secret: Option<PreviousSecret>,
    /// Enabled, or disabled with the reason and when.
    pub status: SubscriptionStatus,
    /// Failed attempts in a row; a success resets it to zero.
    pub consecutive_failures: u32,
    /// Headers, rate limit, in-flight cap, ordering, description, metadata.
    pub settings: EndpointSettings,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The secrets a subscription signs with at one time, current first; from
/// [`Subscription::signing_secrets`]. Reads as a slice.
///
/// ```
/// use std::time::Duration;
///
/// use chrono::Utc;
/// # use webhooks_core::{Preset, Subscription, Webhooks};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build()?;
/// let subscription = webhooks
///     .subscribe(Subscription::builder("https://shop.example/hooks").event_type("content.status_updated"))
///     .await?;
/// let secrets = subscription.signing_secrets(Utc::now());
/// assert_eq!(secrets.len(), 1);
/// assert_eq!(secrets[0], &subscription.secret);
///
/// // Mid-rotation: the new secret first, then the previous one.
/// let new_secret = webhooks.rotate_secret(subscription.id, Duration::from_secs(3600)).await?;
/// let rotated = webhooks.subscription(subscription.id).await?;
/// let secrets: Vec<_> = rotated.signing_secrets(Utc::now()).into_iter().collect();
/// assert_eq!(secrets, [&new_secret, &subscription.secret]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SigningSecrets<'a> {
    secrets: [&'a Secret; 2],
    len: usize,
}

impl<'a> std::ops::Deref for SigningSecrets<'a> {
    type Target = [&'a Secret];

    fn deref(&self) -> &Self::Target {
        &self.secrets[..self.len]
    }
}

impl<'a> IntoIterator for SigningSecrets<'a> {
    type Item = &'a Secret;
    type IntoIter = std::iter::Take<std::array::IntoIter<&'a Secret, 2>>;

    fn into_iter(self) -> Self::IntoIter {
        self.secrets.into_iter().take(self.len)
    }
}

impl Subscription {
    /// Whether it listens to `event_type`, on any channel.
    pub fn listens_to(&self, event_type: &str) -> bool {
        self.event_types.contains(event_type)
    }

    /// Whether `event` reaches it, its owner aside: it listens to the
    /// event's type and, when it names channels, the event is on one.
    pub fn hears(&self, event: &Event) -> bool {
        self.listens_to(&event.name) && crate::channels_meet(&self.channels, &event.channels)
    }

    /// The secrets to sign with at `now`: the current one first, then the
    /// previous one while its grace period lasts. A slice borrowed from the
    /// subscription: every attempt asks, so nothing is allocated.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> SigningSecrets<'_> {
        match self.previous_secret.as_ref().filter(|p| p.valid_until > now) {
            Some(previous) => SigningSecrets { secrets: [&self.secret, &previous.secret], len: 2 },
            None => SigningSecrets { secrets: [&self.secret, &self.secret], len: 1 },
        }
    }

    /// Whether it is enabled (receives attempts).
    pub fn is_enabled(&self) -> bool {
        matches!(self.status, SubscriptionStatus::Enabled)
    }

    /// The subscription to serialize with its secrets as they are (the
    /// secret, the previous secret, secret header values): for the host's own
    /// storage or a screen that shows a new secret once, never for a list.
    ///
    /// ```
    /// use webhooks_core::{Preset, Subscription, Webhooks};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let webhooks = Webhooks::builder()
    /// #     .store(webhooks_memory::MemoryStore::new())
    /// #     .preset(Preset::deepsmith())
    /// #     .build()?;
    /// let subscription = webhooks
    ///     .subscribe(Subscription::builder("https://customer.example/").event_type("iq.status_updated"))
    ///     .await?;
    /// let listed = serde_json::to_value(&subscription)?;
    /// assert_eq!(listed["secret"], "<redacted>");
    /// let kept = serde_json::to_string(&subscription.with_secrets())?;
    /// assert!(kept.contains(subscription.secret.expose()));
    /// assert_eq!(serde_json::from_str::<Subscription>(&kept)?, subscription);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "serde")]
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn with_secrets(&self) -> impl Serialize + '_ {
        SubscriptionOut::new(self, Secrets::Revealed)
    }
}

/// How a subscription is written, secrets redacted or not. The fields are
/// `Subscription`'s own, which `Deserialize` reads back.
#[cfg(feature = "serde")]
#[derive(Serialize)]
struct SubscriptionOut<'a> {
    id: SubscriptionId,
    owner: &'a Owner,
    url: &'a Url,
    event_types: &'a BTreeSet<String>,
    channels: &'a BTreeSet<String>,
    secret: SecretOut<'a>,
    previous_secret: Option<PreviousSecretOut<'a>>,
    status: &'a SubscriptionStatus,
    consecutive_failures: u32,
    settings: SettingsOut<'a>,
    created_at: DateTime<Utc>,
}

#[cfg(feature = "serde")]
impl<'a> SubscriptionOut<'a> {
    fn new(subscription: &'a Subscription, secrets: Secrets) -> Self {
        Self {
            id: subscription.id,
            owner: &subscription.owner,
            url: &subscription.url,
            event_types: &subscription.event_types,
            channels: &subscription.channels,
            secret: SecretOut(&subscription.secret, secrets),
            previous_secret: subscription
                .previous_secret
                .as_ref()
                .map(|p| PreviousSecretOut::new(p, secrets)),
            status: &subscription.status,
            consecutive_failures: subscription.consecutive_failures,
            settings: SettingsOut::new(&subscription.settings, secrets),
            created_at: subscription.created_at,
        }
    }
}

#[cfg(feature = "serde")]
impl Serialize for Subscription {
    /// Every secret is written as `<redacted>`; see [`Subscription::with_secrets`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SubscriptionOut::new(self, Secrets::Redacted).serialize(serializer)
    }
}

/// A rotated-out secret, still valid for a grace period. Serialized with the
/// secret redacted, as [`Subscription`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Deserialize))]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: Secret,
    /// When it stops being used.
    pub valid_until: DateTime<Utc>,
}

/// How a previous secret is written.
#[cfg(feature = "serde")]
#[derive(Serialize)]
struct PreviousSecretOut<'a> {
    secret: SecretOut<'a>,
    valid_until: DateTime<Utc>,
}

#[cfg(feature = "serde")]
impl<'a> PreviousSecretOut<'a> {
    fn new(previous: &'a PreviousSecret, secrets: Secrets) -> Self {
        Self { secret: SecretOut(&previous.secret, secrets), valid_until: previous.valid_until }
    }
}

#[cfg(feature = "serde")]
impl Serialize for PreviousSecret {
    /// The secret is written as `<redacted>`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PreviousSecretOut::new(self, Secrets::Redacted).serialize(serializer)
    }
}

/// Whether a subscription receives attempts. Serialized as
/// `{"state": "enabled"}` or `{"state": "disabled", "reason": "...", "at": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(tag = "state", rename_all = "snake_case")
)]
pub enum SubscriptionStatus {
    /// Attempts are made.
    Enabled,
    /// No attempts are made; its pending deliveries, and those published
    /// meanwhile, are held until it is enabled again.
    Disabled {
        /// Why, e.g. "10 consecutive failed attempts".
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Something that happened in the host application, published to every
/// subscription of its audience that listens to its name.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[non_exhaustive]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// Whose subscriptions it may reach.
    pub audience: Audience,
    /// The host's key for it: a repeat of the key within the same audience
    /// while the key is held publishes nothing and returns the first
    /// publication.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The event type, e.g. `job.completed`.
    pub name: String,
    /// The channels it is published on: a subscription that names channels
    /// hears it only on one of them. Routing alone: not kept with the event
    /// nor sent.
    #[cfg_attr(feature = "serde", serde(default))]
    pub channels: BTreeSet<String>,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Its JSON data.
    pub data: EventData,
}

impl Event {
    /// An event named `name` with `data` that happened at `occurred_at`:
    /// a new id, for every owner, on no channel, without a key. The
    /// facade makes events from a [`Publish`](crate::Publish); this is for
    /// stores and their tests, which take events as they are.
    ///
    /// ```
    /// use webhooks_core::{Audience, Event, Owner};
    ///
    /// let event = Event::new("order.created", serde_json::json!({"id": 7}), chrono::Utc::now())
    ///     .with_audience(Audience::Owner(Owner::new("acme").unwrap()));
    /// assert_eq!(event.name, "order.created");
    /// ```
    pub fn new(name: impl Into<String>, data: impl Into<EventData>, occurred_at: DateTime<Utc>) -> Self {
        Self {
            id: EventId::new(),
            audience: Audience::EveryOwner,
            idempotency_key: None,
            name: name.into(),
            channels: BTreeSet::new(),
            occurred_at,
            data: data.into(),
        }
    }

    /// The same event with this id.
    #[must_use]
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// The same event for this audience.
    #[must_use]
    pub fn with_audience(mut self, audience: Audience) -> Self {
        self.audience = audience;
        self
    }

    /// The same event holding this idempotency key.
    #[must_use]
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The same event on these channels.
    #[must_use]
    pub fn with_channels(mut self, channels: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.channels = channels.into_iter().map(Into::into).collect();
        self
    }

    /// The same event with this data.
    #[must_use]
    pub fn with_data(mut self, data: impl Into<EventData>) -> Self {
        self.data = data.into();
        self
    }
}

/// An event's idempotency key and until when it is held: a later event of
/// the same audience with the same key that occurs before `held_until` is a
/// repeat; one at or after it publishes anew. Keys are held for the
/// facade's [idempotency window](crate::WebhooksBuilder::idempotency_window)
/// whatever happens to the event's deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[non_exhaustive]
pub struct IdempotencyKey {
    /// The host's key (an order id, a request id).
    pub key: String,
    /// When the key is no longer held.
    pub held_until: DateTime<Utc>,
}

impl IdempotencyKey {
    /// `key`, held until `held_until`.
    pub fn new(key: impl Into<String>, held_until: DateTime<Utc>) -> Self {
        Self { key: key.into(), held_until }
    }

    /// Whether the key, taken by an event, is still held at `at`.
    pub fn is_held_at(&self, at: DateTime<Utc>) -> bool {
        at < self.held_until
    }
}

/// An event's data: a JSON value, or JSON text the host already holds,
/// copied into the body byte for byte.
///
/// Text keeps what a [`serde_json::Value`] cannot: numbers of any size and
/// precision as written (`12345678901234567890123`, `1E2`, `-0`), the
/// order of keys, and duplicate keys. Nothing is parsed out of it but its
/// syntax, so duplicate keys reach the receiver as written; receivers
/// differ in which one they read, so send each key once.
///
/// ```
/// use webhooks_core::EventData;
///
/// let text = EventData::json(r#"{"id":12345678901234567890123,"b":1,"a":2}"#).unwrap();
/// assert_eq!(serde_json::to_string(&text).unwrap(), r#"{"id":12345678901234567890123,"b":1,"a":2}"#);
/// assert!(EventData::json("{not json").is_err());
/// let value = EventData::from(serde_json::json!({"b": 1, "a": 2}));
/// assert_eq!(serde_json::to_string(&value).unwrap(), r#"{"a":2,"b":1}"#);
/// ```
#[derive(Clone, Debug)]
pub enum EventData {
    /// A value, serialized into the body.
    Value(serde_json::Value),
    /// JSON text, copied into the body untouched.
    Json(Box<serde_json::value::RawValue>),
}

impl EventData {
    /// `text`, checked to be exactly one JSON value (whitespace around it
    /// is dropped).
    ///
    /// # Errors
    ///
    /// When it is not one JSON value; the error says where.
    pub fn json(text: impl Into<String>) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text.into()).map(Self::Json)
    }

    /// Whether it is JSON `null`.
    pub fn is_null(&self) -> bool {
        match self {
            Self::Value(value) => value.is_null(),
            Self::Json(text) => text.get() == "null",
        }
    }
}

impl From<serde_json::Value> for EventData {
    fn from(value: serde_json::Value) -> Self {
        Self::Value(value)
    }
}

impl PartialEq for EventData {
    /// Values compare as values, text as text: the same data given both
    /// ways is not equal, since its bodies may differ.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Value(a), Self::Value(b)) => a == b,
            (Self::Json(a), Self::Json(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Serialize for EventData {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(value) => value.serialize(serializer),
            Self::Json(text) => text.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for EventData {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::Value)
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or held while its subscription is
    /// disabled).
    Pending,
    /// A receiver acknowledged it with a 2xx.
    Delivered,
    /// Every attempt the retry policy allows failed; it is kept with its log.
    Dropped,
    /// Pending, but its subscription is disabled: no attempt is made until
    /// it is enabled again. Reported, never stored: a store keeps it pending.
    Held,
}

/// A name that is not a [`DeliveryState`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown delivery state {0:?}")]
pub struct UnknownState(pub String);

impl FromStr for DeliveryState {
    type Err = UnknownState;

    /// The state named `pending`, `delivered`, `dropped` or `held`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dropped" => Ok(Self::Dropped),
            "held" => Ok(Self::Held),
            other => Err(UnknownState(other.to_owned())),
        }
    }
}

impl DeliveryState {
    /// Its name: `pending`, `delivered`, `dropped` or `held`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dropped => "dropped",
            Self::Held => "held",
        }
    }
}

/// One event on its way to one subscription.
///
/// With the `serde` feature its `body` is written as the JSON it is, the
/// exact bytes sent embedded as a value (`"body": {"type": ...}`), so an
/// admin screen shows it without parsing a string. A body that is not JSON,
/// or is a JSON string, is written as a string of its text instead. Read
/// back from JSON text it is the same bytes (through a `serde_json::Value`,
/// the same JSON with the value's spacing); a body that is not UTF-8, which
/// no built-in envelope makes, is written with replacement characters.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Delivery {
    /// Its id, sent with every attempt.
    pub id: DeliveryId,
    /// The event it carries.
    pub event_id: EventId,
    /// The event type.
    pub event_type: String,
    /// Where it goes.
    pub subscription_id: SubscriptionId,
    /// The exact bytes signed and sent on every attempt, rendered once.
    #[cfg_attr(feature = "serde", serde(with = "json_body"))]
    pub body: Bytes,
    /// Pending, delivered or dropped, as stored; the facade reports a pending
    /// delivery of a disabled subscription as held.
    pub state: DeliveryState,
    /// Its delivery cycle: 1, and one more for each
    /// [`resend`](crate::Webhooks::resend).
    pub cycle: u32,
    /// Attempts made so far in this cycle.
    pub attempts: u32,
    /// When the next attempt is due; `None` once delivered or dropped, and
    /// while an ordered subscription's earlier delivery is pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// How one attempt ended. In a serialized [`Attempt`] it is a field
/// `"response": {"status": 200, "body": "..."}` or `"error": "..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(rename_all = "snake_case"))]
pub enum AttemptResult {
    /// The receiver answered.
    Response {
        /// The HTTP status.
        status: u16,
        /// The start of the response body, cut at the dispatcher's cap.
        body: String,
    },
    /// No response came: timeout, refused connection, reset, TLS failure...
    Error(String),
}

/// One HTTP request made for a delivery, as kept in its log. Serialized
/// with its duration as `duration_ms` (fractional milliseconds, to the
/// nanosecond) and its result as a `response` or an `error` field.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Attempt {
    /// The delivery it was made for.
    pub delivery_id: DeliveryId,
    /// The delivery cycle it belongs to: 1, then one more per resend.
    pub cycle: u32,
    /// 1 for the first attempt of its cycle.
    pub number: u32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long the whole exchange took.
    #[cfg_attr(feature = "serde", serde(rename = "duration_ms", with = "millis"))]
    pub duration: Duration,
    /// The response or the error.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub result: AttemptResult,
}

impl Attempt {
    /// The response status, if a response came.
    pub fn status(&self) -> Option<u16> {
        match self.result {
            AttemptResult::Response { status, .. } => Some(status),
            AttemptResult::Error(_) => None,
        }
    }

    /// Why no response came, if none did.
    pub fn error(&self) -> Option<String> {
        match &self.result {
            AttemptResult::Error(error) => Some(error.clone()),
            AttemptResult::Response { .. } => None,
        }
    }

    /// Whether the receiver acknowledged it (any 2xx).
    pub fn succeeded(&self) -> bool {
        matches!(self.status(), Some(200..=299))
    }
}

/// A body in admin data: the JSON it is, or its text.
#[cfg(feature = "serde")]
mod json_body {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    /// The body as a JSON value when it is exactly one (no surrounding
    /// space, which a raw value drops) and not a string, which would read
    /// back as text.
    fn embeddable(body: &[u8]) -> Option<&RawValue> {
        let text = std::str::from_utf8(body).ok()?;
        let raw: &RawValue = serde_json::from_str(text).ok()?;
        (raw.get().len() == text.len() && !text.starts_with('"')).then_some(raw)
    }

    pub(super) fn serialize<S: Serializer>(body: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        match embeddable(body) {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_str(&String::from_utf8_lossy(body)),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if raw.get().starts_with('"') {
            let text: String = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
            return Ok(Bytes::from(text));
        }
        Ok(Bytes::copy_from_slice(raw.get().as_bytes()))
    }
}

/// A duration in admin data: fractional milliseconds. Below 100 days (far
/// beyond any attempt's) it reads back to the nanosecond.
#[cfg(feature = "serde")]
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_nanos() as f64 / 1e6)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let millis = f64::deserialize(deserializer)?;
        if !millis.is_finite() || millis < 0.0 {
            return Err(serde::de::Error::custom(format!("{millis} is not a duration in milliseconds")));
        }
        // Saturates past 584 years.
        Ok(Duration::from_nanos((millis * 1e6).round() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_time_given_and_sort_in_the_order_made() {
        let at = DateTime::parse_from_rfc3339("2020-01-02T03:04:05.678Z").unwrap().with_timezone(&Utc);
        let ids: Vec<DeliveryId> = (0..1000).map(|_| DeliveryId::at(at)).collect();
        for id in &ids {
            let uuid = id.as_uuid();
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
            let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
            assert_eq!((seconds, nanos), (1_577_934_245, 678_000_000));
        }
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids of one millisecond out of order");
        let earlier = DeliveryId::at(at - chrono::Duration::milliseconds(1));
        assert!(earlier < ids[0], "an earlier time sorts first even when made later");
    }

    #[cfg(feature = "serde")]
    mod serialized {
        use super::*;
        use crate::settings::{CustomHeader, RateLimit};
        use serde_json::json;

        fn at(text: &str) -> DateTime<Utc> {
            DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
        }

        fn subscription() -> Subscription {
            let mut settings = EndpointSettings {
                headers: vec![
                    CustomHeader::secret("authorization", "Bearer header-hunter2").unwrap(),
                    CustomHeader::new("x-route", "eu-1").unwrap(),
                ],
                rate_limit: Some(RateLimit::new(10, 20).unwrap()),
                description: "billing".into(),
                ..EndpointSettings::default()
            };
            settings.metadata.insert("team".into(), "payments".into());
            Subscription {
                id: SubscriptionId::new(),
                owner: Owner::new("account-42").unwrap(),
                url: Url::parse("https://customer.example/hooks").unwrap(),
                event_types: BTreeSet::from(["job.completed".to_owned()]),
                channels: Default::default(),
                secret: Secret::from("whsec_current-hunter2"),
                previous_secret: Some(PreviousSecret {
                    secret: Secret::from("whsec_previous-hunter2"),
                    valid_until: at("2026-03-02T15:00:00Z"),
                }),
                status: SubscriptionStatus::Disabled {
                    reason: "10 consecutive failed attempts".into(),
                    at: at("2026-03-02T14:00:00.123456Z"),
                },
                consecutive_failures: 10,
                settings,
                created_at: at("2026-03-01T09:00:00Z"),
            }
        }

        #[test]
        fn a_subscription_serializes_without_any_secret() {
            let subscription = subscription();
            let json = serde_json::to_string(&subscription).unwrap();
            assert!(!json.contains("hunter2"), "{json}");
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!(value["secret"], REDACTED_TEXT);
            assert_eq!(value["previous_secret"]["secret"], REDACTED_TEXT);
            assert_eq!(
                value["settings"]["headers"][0],
                json!({"name": "authorization", "value": REDACTED_TEXT, "secret": true})
            );
            assert_eq!(value["settings"]["headers"][1]["value"], "eu-1");
            assert_eq!(
                value["status"],
                json!({"state": "disabled", "reason": "10 consecutive failed attempts", "at": "2026-03-02T14:00:00.123456Z"})
            );
            assert_eq!(value["owner"], "account-42");
            let error = serde_json::from_str::<Subscription>(&json).unwrap_err();
            assert!(error.to_string().contains("redacted"), "redacted data is not a subscription: {error}");
        }

        #[test]
        fn with_secrets_writes_them_and_reads_back_whole() {
            let subscription = subscription();
            let json = serde_json::to_string(&subscription.with_secrets()).unwrap();
            for secret in ["whsec_current-hunter2", "whsec_previous-hunter2", "Bearer header-hunter2"] {
                assert!(json.contains(secret), "{secret} in {json}");
            }
            assert_eq!(serde_json::from_str::<Subscription>(&json).unwrap(), subscription);
            let enabled =
                Subscription { status: SubscriptionStatus::Enabled, previous_secret: None, ..subscription };
            let json = serde_json::to_value(enabled.with_secrets()).unwrap();
            assert_eq!(json["status"], json!({"state": "enabled"}));
            assert_eq!(serde_json::from_value::<Subscription>(json).unwrap(), enabled);
        }

        const REDACTED_TEXT: &str = crate::secret::REDACTED;

        fn delivery(body: &'static [u8]) -> Delivery {
            Delivery {
                id: DeliveryId::new(),
                event_id: EventId::new(),
                event_type: "job.completed".into(),
                subscription_id: SubscriptionId::new(),
                body: Bytes::from_static(body),
                state: DeliveryState::Held,
                cycle: 2,
                attempts: 1,
                next_attempt_at: Some(at("2026-03-02T14:00:05Z")),
                created_at: at("2026-03-02T14:00:00Z"),
            }
        }

        #[test]
        fn a_json_body_is_embedded_with_its_exact_bytes() {
            let body = br#"{"type":"job.completed","data":{"z":1,  "a":[1.50,2]}}"#;
            let original = delivery(body);
            let json = serde_json::to_string(&original).unwrap();
            assert!(
                json.contains(r#""body":{"type":"job.completed","data":{"z":1,  "a":[1.50,2]}}"#),
                "{json}"
            );
            let value: serde_json::Value = serde_json::from_str(&json).unwrap();
            assert_eq!((value["state"].clone(), value["cycle"].clone()), (json!("held"), json!(2)));
            let back: Delivery = serde_json::from_str(&json).unwrap();
            assert_eq!(back, original, "the same bytes, key order and spacing included");
            // Through a `serde_json::Value` the JSON is the same, its spacing not.
            let through_value = serde_json::from_value::<Delivery>(value).unwrap().body;
            let same = serde_json::from_slice::<serde_json::Value>(&through_value).unwrap();
            assert_eq!(same, serde_json::from_slice::<serde_json::Value>(body).unwrap());
        }

        #[test]
        fn other_bodies_are_text_and_read_back_the_same() {
            for body in [&b"plain=text&not=json"[..], b"\"a json string\"", b" {\"spaced\":true}\n", b""] {
                let original = delivery(body);
                let value = serde_json::to_value(&original).unwrap();
                assert_eq!(value["body"], json!(std::str::from_utf8(body).unwrap()), "written as its text");
                let back: Delivery =
                    serde_json::from_str(&serde_json::to_string(&original).unwrap()).unwrap();
                assert_eq!(back.body, original.body);
            }
        }

        #[test]
        fn attempts_write_milliseconds_and_a_response_or_an_error() {
            let answered = Attempt {
                delivery_id: DeliveryId::new(),
                cycle: 2,
                number: 1,
                started_at: at("2026-03-02T14:00:00Z"),
                duration: Duration::from_nanos(1_500_000),
                result: AttemptResult::Response { status: 503, body: "busy".into() },
            };
            let value = serde_json::to_value(&answered).unwrap();
            assert_eq!(value["duration_ms"], json!(1.5));
            assert_eq!(value["response"], json!({"status": 503, "body": "busy"}));
            assert_eq!(value.get("duration"), None);
            assert_eq!(serde_json::from_value::<Attempt>(value).unwrap(), answered);
            for nanos in [0, 1, 2_205_413, 4_646_512_999, 86_400_000_000_123] {
                let attempt = Attempt { duration: Duration::from_nanos(nanos), ..answered.clone() };
                let back: Attempt = serde_json::from_str(&serde_json::to_string(&attempt).unwrap()).unwrap();
                assert_eq!(back.duration, attempt.duration);
            }
            let failed = Attempt {
                result: AttemptResult::Error("connection refused".into()),
                duration: Duration::from_secs(30),
                ..answered
            };
            let value = serde_json::to_value(&failed).unwrap();
            assert_eq!(
                (value["error"].clone(), value["duration_ms"].clone()),
                (json!("connection refused"), json!(30000.0))
            );
            assert_eq!(serde_json::from_value::<Attempt>(value.clone()).unwrap(), failed);
            let mut negative = value;
            negative["duration_ms"] = json!(-1);
            assert!(serde_json::from_value::<Attempt>(negative).is_err());
        }

        #[test]
        fn events_and_audiences_round_trip() {
            for audience in [Audience::Owner(Owner::new("alice").unwrap()), Audience::EveryOwner] {
                let event = Event {
                    id: EventId::new(),
                    audience,
                    idempotency_key: Some(IdempotencyKey {
                        key: "order-1".into(),
                        held_until: at("2026-03-03T14:00:00Z"),
                    }),
                    name: "order.created".into(),
                    channels: Default::default(),
                    occurred_at: at("2026-03-02T14:00:00Z"),
                    data: json!({"total": 1200}).into(),
                };
                let value = serde_json::to_value(&event).unwrap();
                assert_eq!(serde_json::from_value::<Event>(value).unwrap(), event);
            }
            let owner = serde_json::to_value(Audience::Owner(Owner::new("alice").unwrap())).unwrap();
            assert_eq!(owner, json!({"owner": "alice"}));
            assert_eq!(serde_json::to_value(Audience::EveryOwner).unwrap(), json!("every_owner"));
            assert!(serde_json::from_value::<Audience>(json!({"owner": ""})).is_err(), "owners are checked");
        }
    }
}
