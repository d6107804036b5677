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
use crate::settings::EndpointSettings;

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

/// Which owners an event is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
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

impl Subscription {
    /// Whether it listens to `event_type`.
    pub fn listens_to(&self, event_type: &str) -> bool {
        self.event_types.contains(event_type)
    }

    /// The secrets to sign with at `now`: the current one first, then the
    /// previous one while its grace period lasts.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&Secret> {
        let previous = self.previous_secret.as_ref().filter(|p| p.valid_until > now).map(|p| &p.secret);
        std::iter::once(&self.secret).chain(previous).collect()
    }

    /// Whether it is enabled (receives attempts).
    pub fn is_enabled(&self) -> bool {
        matches!(self.status, SubscriptionStatus::Enabled)
    }
}

/// A rotated-out secret, still valid for a grace period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: Secret,
    /// When it stops being used.
    pub valid_until: DateTime<Utc>,
}

/// Whether a subscription receives attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionStatus {
    /// Attempts are made.
    Enabled,
    /// No attempts are made; its pending deliveries are held until it is
    /// enabled again.
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
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// Whose subscriptions it may reach.
    pub audience: Audience,
    /// The host's key for it: a repeat of the key within the same audience
    /// publishes nothing and returns the first publication.
    pub idempotency_key: Option<String>,
    /// The event type, e.g. `job.completed`.
    pub name: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Its JSON data.
    pub data: serde_json::Value,
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
#[derive(Clone, Debug, PartialEq)]
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
    pub body: Bytes,
    /// Pending, delivered or dropped.
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

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// One HTTP request made for a delivery, as kept in its log.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub duration: Duration,
    /// The response or the error.
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
}
