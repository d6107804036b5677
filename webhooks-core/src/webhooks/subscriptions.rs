//! Subscriptions: created, read, changed and deleted through the facade,
//! and the checks every one passes (URL, event types, channels, settings).

use std::collections::BTreeSet;

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;

use super::Webhooks;
use crate::error::Error;
use crate::model::{Owner, Subscription, SubscriptionId, SubscriptionStatus};
use crate::operational::OPERATIONAL_EVENT_TYPES;
use crate::preset::DisablePolicy;
use crate::secret::Secret;
use crate::settings::{
    CustomHeader, EndpointSettings, InvalidHeader, MAX_HEADER_VALUE_BYTES, RateLimit, RetryChoice,
};

/// The longest description a subscription may have, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4096;

/// The most headers of its own a subscription may send.
pub const MAX_HEADERS: usize = 32;

/// The most metadata entries a subscription may have.
pub const MAX_METADATA_ENTRIES: usize = 64;

/// The longest metadata key or value, in bytes.
pub const MAX_METADATA_BYTES: usize = 1024;

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
    /// registered one by name ([`WebhooksBuilder::retry_policy`](crate::WebhooksBuilder::retry_policy)) or its
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

impl Webhooks {
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

    /// Whether `owner` may listen to or be sent `event_type`: a type of the
    /// catalogue, or an operational one for the operational owner.
    pub(super) fn check_event_type(&self, owner: &Owner, event_type: &str) -> Result<(), Error> {
        let operational = self.inner.operational_owner.as_ref() == Some(owner)
            && OPERATIONAL_EVENT_TYPES.contains(&event_type);
        if operational { Ok(()) } else { self.inner.preset.check_event_type(event_type) }
    }

    /// What a subscription that chooses no retry policy follows: this
    /// instance's preset's, by name, so every instance follows the same
    /// schedule whatever preset it was built with.
    fn default_retry(&self) -> RetryChoice {
        RetryChoice::named(self.inner.preset.name())
    }
}
