//! Per-endpoint settings: extra headers, a rate limit, a cap on requests in
//! flight, ordered delivery, and a description and metadata for the host's
//! own screens.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::secret::{REDACTED, Secrets};

/// What a subscription asks of the dispatcher besides its URL and secret.
/// Set with [`NewSubscription`](crate::NewSubscription)'s methods, changed with
/// [`SubscriptionUpdate`](crate::SubscriptionUpdate); every store keeps it.
///
/// ```
/// use webhooks_core::{EndpointSettings, RateLimit};
///
/// let settings = EndpointSettings::default();
/// assert!(settings.headers.is_empty());
/// assert_eq!(settings.rate_limit, None);
/// assert!(!settings.ordered);
/// assert_eq!(RateLimit::new(10, 20).unwrap().per_second(), 10);
/// ```
///
/// Serialized, a secret header's value reads `<redacted>`;
/// [`EndpointSettings::with_secrets`] writes it (what a store keeps).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct EndpointSettings {
    /// Headers sent with every request, after the scheme's own.
    pub headers: Vec<CustomHeader>,
    /// At most this many requests per second, with a burst; none by default.
    pub rate_limit: Option<RateLimit>,
    /// At most this many requests in flight to it at once (each dispatcher
    /// also caps an endpoint at its fair share of requests).
    pub max_in_flight: Option<u32>,
    /// Deliveries are attempted one at a time in publish order: a delivery
    /// waits while an earlier one of the same subscription is pending. A
    /// dropped delivery lets the next one go. Publish order is delivery id
    /// order: the order of publishing within one process, and of the
    /// publishing instances' clocks between processes.
    pub ordered: bool,
    /// Free text for the host's screens.
    pub description: String,
    /// Free-form key/value pairs for the host's use; never sent.
    pub metadata: BTreeMap<String, String>,
    /// The retry policy its failed attempts follow, whichever instance
    /// makes them. Set at subscribe (the instance's preset's policy, by
    /// name, unless chosen); `None` only on subscriptions stored before
    /// this setting existed, which follow the preset of the instance that
    /// attempts them.
    pub retry: Option<RetryChoice>,
    /// When failures disable it: after how many in a row, and whether a
    /// `410 Gone` does; `None`: the preset's rule.
    pub disable: Option<crate::DisablePolicy>,
    /// The most deliveries kept held while it is disabled; past it the
    /// oldest are dropped, unsent, with the reason in their logs.
    /// [`DEFAULT_HELD_LIMIT`] unless set.
    pub held_limit: Option<u32>,
}

/// How many deliveries a disabled subscription keeps held unless its
/// settings say otherwise: a dead endpoint's queue stays bounded.
pub const DEFAULT_HELD_LIMIT: u32 = 10_000;

/// Which retry policy a subscription follows.
///
/// ```
/// use webhooks_core::RetryChoice;
///
/// let own = RetryChoice::waits_ms([1_000, 60_000]).unwrap();
/// assert_eq!(serde_json::to_string(&own).unwrap(), r#"{"waits_ms":[1000,60000]}"#);
/// let named = RetryChoice::named("premium");
/// assert_eq!(serde_json::to_string(&named).unwrap(), r#"{"named":"premium"}"#);
/// assert!(RetryChoice::waits_ms([31 * 24 * 3_600_000]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryChoice {
    /// A policy registered with
    /// [`WebhooksBuilder::retry_policy`](crate::WebhooksBuilder::retry_policy),
    /// or a preset's (`"SmartlyQ"`, `"DeepSmith"`, `"Standard Webhooks"`),
    /// which every instance knows.
    Named(String),
    /// Its own waits, in milliseconds, one per retry: at most
    /// [`MAX_OWN_WAITS`], each at most [`MAX_OWN_WAIT`].
    WaitsMs(Vec<u64>),
}

/// The most waits a subscription's own retry schedule may have.
pub const MAX_OWN_WAITS: usize = 100;
/// The longest wait in a subscription's own retry schedule.
pub const MAX_OWN_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

impl RetryChoice {
    /// The registered policy `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self::Named(name.into())
    }

    /// Its own waits, in milliseconds; checked against the bounds.
    pub fn waits_ms(waits: impl IntoIterator<Item = u64>) -> Result<Self, crate::Error> {
        let choice = Self::WaitsMs(waits.into_iter().collect());
        choice.check()?;
        Ok(choice)
    }

    /// Whether its own waits are within the bounds (a named one is checked
    /// against the instance's policies when subscribing).
    pub(crate) fn check(&self) -> Result<(), crate::Error> {
        let Self::WaitsMs(waits) = self else { return Ok(()) };
        if waits.len() > MAX_OWN_WAITS {
            return Err(crate::Error::invalid("retry", format!("at most {MAX_OWN_WAITS} waits")));
        }
        if waits.iter().any(|wait| u128::from(*wait) > MAX_OWN_WAIT.as_millis()) {
            return Err(crate::Error::invalid("retry", "every wait must be at most 30 days"));
        }
        Ok(())
    }
}

impl EndpointSettings {
    /// How many deliveries it keeps held while disabled: its own
    /// [`held_limit`](Self::held_limit), or [`DEFAULT_HELD_LIMIT`].
    pub fn held_limit_or_default(&self) -> u32 {
        self.held_limit.unwrap_or(DEFAULT_HELD_LIMIT)
    }

    /// The most requests in flight the dispatcher allows it: 1 when ordered.
    pub fn in_flight_cap(&self) -> Option<u32> {
        if self.ordered { Some(1) } else { self.max_in_flight }
    }

    /// The settings to serialize with secret header values as they are: for
    /// a store to keep, never for a screen.
    ///
    /// ```
    /// use webhooks_core::{CustomHeader, EndpointSettings};
    ///
    /// let mut settings = EndpointSettings::default();
    /// settings.headers = vec![CustomHeader::secret("authorization", "Bearer s3cr3t").unwrap()];
    /// assert!(!serde_json::to_string(&settings).unwrap().contains("s3cr3t"));
    /// let kept = serde_json::to_string(&settings.with_secrets()).unwrap();
    /// assert_eq!(serde_json::from_str::<EndpointSettings>(&kept).unwrap(), settings);
    /// ```
    pub fn with_secrets(&self) -> impl Serialize + '_ {
        SettingsOut::new(self, Secrets::Revealed)
    }
}

/// How settings are written, secret header values redacted or not. The
/// fields are `EndpointSettings`' own, which `Deserialize` reads back.
#[derive(Serialize)]
pub(crate) struct SettingsOut<'a> {
    headers: Vec<HeaderOut<'a>>,
    rate_limit: Option<RateLimit>,
    max_in_flight: Option<u32>,
    ordered: bool,
    description: &'a str,
    metadata: &'a BTreeMap<String, String>,
    retry: &'a Option<RetryChoice>,
    disable: Option<crate::DisablePolicy>,
    held_limit: Option<u32>,
}

impl<'a> SettingsOut<'a> {
    pub(crate) fn new(settings: &'a EndpointSettings, secrets: Secrets) -> Self {
        Self {
            headers: settings.headers.iter().map(|header| HeaderOut(header, secrets)).collect(),
            rate_limit: settings.rate_limit,
            max_in_flight: settings.max_in_flight,
            ordered: settings.ordered,
            description: &settings.description,
            metadata: &settings.metadata,
            retry: &settings.retry,
            disable: settings.disable,
            held_limit: settings.held_limit,
        }
    }
}

impl Serialize for EndpointSettings {
    /// Secret header values are written as `<redacted>`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SettingsOut::new(self, Secrets::Redacted).serialize(serializer)
    }
}

/// A header a subscription adds to every request, e.g. an
/// `Authorization: Bearer …` its gateway wants. A secret header's value is
/// never shown in `Debug`, logs or serialized admin data.
///
/// ```
/// use webhooks_core::CustomHeader;
///
/// let header = CustomHeader::secret("Authorization", "Bearer s3cr3t").unwrap();
/// assert_eq!(header.name(), "authorization");
/// assert!(!format!("{header:?}").contains("s3cr3t"));
/// assert!(CustomHeader::new("Host", "elsewhere.example").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CustomHeader {
    name: HeaderName,
    value: HeaderValue,
    secret: bool,
}

/// Headers no subscription may set: the transport's (hop-by-hop ones,
/// `Host`, `Content-Length`) and the body's type. The scheme's own signed
/// headers are refused when subscribing, against the preset.
const RESERVED: [&str; 12] = [
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl CustomHeader {
    /// A header shown as is in admin data.
    pub fn new(name: impl AsRef<str>, value: impl AsRef<str>) -> Result<Self, InvalidHeader> {
        Self::checked(name.as_ref(), value.as_ref(), false)
    }

    /// A header whose value is a secret (a token, a password): redacted
    /// everywhere it could be shown.
    pub fn secret(name: impl AsRef<str>, value: impl AsRef<str>) -> Result<Self, InvalidHeader> {
        Self::checked(name.as_ref(), value.as_ref(), true)
    }

    fn checked(name: &str, value: &str, secret: bool) -> Result<Self, InvalidHeader> {
        let shown: String = name.chars().take(64).collect();
        let parsed = HeaderName::try_from(name).map_err(|_| InvalidHeader::Name(shown.clone()))?;
        if RESERVED.contains(&parsed.as_str()) {
            return Err(InvalidHeader::Reserved(parsed.as_str().to_owned()));
        }
        // Visible ASCII and spaces only: what `to_str` reads back, so the
        // value a store keeps is the value sent.
        if !value.bytes().all(|byte| byte == b' ' || byte == b'\t' || byte.is_ascii_graphic()) {
            return Err(InvalidHeader::Value(parsed.as_str().to_owned()));
        }
        let mut value =
            HeaderValue::try_from(value).map_err(|_| InvalidHeader::Value(parsed.as_str().to_owned()))?;
        value.set_sensitive(secret);
        Ok(Self { name: parsed, value, secret })
    }

    /// Its name, lowercase.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Its value as sent; handle with care when [`CustomHeader::is_secret`].
    pub fn expose_value(&self) -> &str {
        // Checked to be visible ASCII when made.
        self.value.to_str().unwrap_or_default()
    }

    /// Whether its value is a secret.
    pub fn is_secret(&self) -> bool {
        self.secret
    }

    /// The name for an HTTP request.
    pub fn header_name(&self) -> &HeaderName {
        &self.name
    }

    /// The value for an HTTP request (marked sensitive when secret).
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }
}

impl fmt::Debug for CustomHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.secret { REDACTED } else { self.expose_value() };
        write!(f, "CustomHeader({}: {value})", self.name)
    }
}

/// How a header is read.
#[derive(Deserialize)]
struct HeaderData {
    name: String,
    value: String,
    #[serde(default)]
    secret: bool,
}

/// How a header is written: a secret value as `<redacted>` unless revealed.
#[derive(Serialize)]
struct HeaderOutData<'a> {
    name: &'a str,
    value: &'a str,
    secret: bool,
}

/// A header as serialized output writes it.
pub(crate) struct HeaderOut<'a>(&'a CustomHeader, Secrets);

impl Serialize for HeaderOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Self(header, secrets) = self;
        let value = if header.secret { secrets.show(header.expose_value()) } else { header.expose_value() };
        HeaderOutData { name: header.name(), value, secret: header.secret }.serialize(serializer)
    }
}

impl Serialize for CustomHeader {
    /// A secret header's value is written as `<redacted>`: admin data never
    /// carries it. [`EndpointSettings::with_secrets`] writes it.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HeaderOut(self, Secrets::Redacted).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CustomHeader {
    /// Checks the header as [`CustomHeader::new`] does, and refuses a secret
    /// header whose value was redacted: it would send `<redacted>`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let data = HeaderData::deserialize(deserializer)?;
        if data.secret && data.value == REDACTED {
            return Err(serde::de::Error::custom(format!(
                "the value of secret header {} was redacted and cannot be read back",
                data.name.chars().take(64).collect::<String>()
            )));
        }
        Self::checked(&data.name, &data.value, data.secret).map_err(serde::de::Error::custom)
    }
}

/// A header a subscription may not have.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidHeader {
    /// Not a valid header name.
    #[error("{0:?} is not a valid header name")]
    Name(String),
    /// Its value has characters a header cannot carry.
    #[error("the value of header {0} is not visible ASCII")]
    Value(String),
    /// A header the transport or the signature scheme sets.
    #[error("header {0} is set by the library and cannot be overridden")]
    Reserved(String),
}

/// The longest value a subscription's own header may have, in bytes.
pub const MAX_HEADER_VALUE_BYTES: usize = 4096;

/// At most `per_second` requests a second, with bursts of up to `burst`
/// after a quiet spell: a token bucket each dispatcher keeps per endpoint.
///
/// ```
/// use webhooks_core::RateLimit;
///
/// let limit = RateLimit::new(5, 10).unwrap();
/// assert_eq!((limit.per_second(), limit.burst()), (5, 10));
/// assert!(RateLimit::new(0, 1).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RateLimitData", into = "RateLimitData")]
pub struct RateLimit {
    per_second: u32,
    burst: u32,
}

impl RateLimit {
    /// `per_second` and `burst` must both be at least 1.
    pub fn new(per_second: u32, burst: u32) -> Result<Self, InvalidRateLimit> {
        if per_second == 0 || burst == 0 {
            return Err(InvalidRateLimit { per_second, burst });
        }
        Ok(Self { per_second, burst })
    }

    /// Requests per second, sustained.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Requests that may go at once after a quiet spell.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[derive(Serialize, Deserialize)]
struct RateLimitData {
    per_second: u32,
    burst: u32,
}

impl TryFrom<RateLimitData> for RateLimit {
    type Error = InvalidRateLimit;

    fn try_from(data: RateLimitData) -> Result<Self, Self::Error> {
        Self::new(data.per_second, data.burst)
    }
}

impl From<RateLimit> for RateLimitData {
    fn from(limit: RateLimit) -> Self {
        Self { per_second: limit.per_second, burst: limit.burst }
    }
}

/// A rate limit of zero.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a rate limit needs at least 1 request per second and a burst of at least 1, got {per_second}/s burst {burst}"
)]
pub struct InvalidRateLimit {
    /// The rate asked for.
    pub per_second: u32,
    /// The burst asked for.
    pub burst: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_malformed_headers_are_refused() {
        for name in ["Host", "content-length", "Connection", "Transfer-Encoding", "Content-Type"] {
            assert!(matches!(CustomHeader::new(name, "x"), Err(InvalidHeader::Reserved(_))), "{name}");
        }
        assert!(matches!(CustomHeader::new("bad name", "x"), Err(InvalidHeader::Name(_))));
        assert!(matches!(CustomHeader::new("x-ok", "line\nbreak"), Err(InvalidHeader::Value(_))));
        // Bytes a header may carry but not read back as text.
        assert!(matches!(
            CustomHeader::secret("authorization", "Bearer tökén"),
            Err(InvalidHeader::Value(_))
        ));
        assert_eq!(CustomHeader::new("X-Route", "eu-1").unwrap().name(), "x-route");
    }

    #[test]
    fn secret_values_never_serialize_or_debug() {
        let header = CustomHeader::secret("authorization", "Bearer hunter2").unwrap();
        let json = serde_json::to_string(&header).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(json.contains(REDACTED));
        assert!(!format!("{header:?}").contains("hunter2"));
        let plain = CustomHeader::new("x-route", "eu-1").unwrap();
        let back: CustomHeader = serde_json::from_str(&serde_json::to_string(&plain).unwrap()).unwrap();
        assert_eq!(back, plain);
        let error = serde_json::from_str::<CustomHeader>(&json).unwrap_err();
        assert!(error.to_string().contains("redacted"), "{error}");
    }

    #[test]
    fn settings_keep_secret_values_only_when_revealed() {
        let settings = EndpointSettings {
            headers: vec![
                CustomHeader::secret("authorization", "Bearer hunter2").unwrap(),
                CustomHeader::new("x-route", "eu-1").unwrap(),
            ],
            rate_limit: Some(RateLimit::new(5, 10).unwrap()),
            max_in_flight: Some(3),
            ordered: true,
            description: "billing".into(),
            metadata: BTreeMap::from([("team".into(), "payments".into())]),
            retry: Some(crate::RetryChoice::named("premium")),
            disable: Some(crate::DisablePolicy::after_consecutive_failures(3).disable_on_gone(false)),
            held_limit: Some(500),
        };
        let shown = serde_json::to_string(&settings).unwrap();
        assert!(!shown.contains("hunter2") && shown.contains("eu-1"), "{shown}");
        assert!(serde_json::from_str::<EndpointSettings>(&shown).is_err(), "a redacted header is refused");
        let kept = serde_json::to_string(&settings.with_secrets()).unwrap();
        assert_eq!(serde_json::from_str::<EndpointSettings>(&kept).unwrap(), settings);
        assert_eq!(serde_json::from_str::<EndpointSettings>("{}").unwrap(), EndpointSettings::default());
    }

    #[test]
    fn ordered_means_one_in_flight() {
        let mut settings = EndpointSettings { max_in_flight: Some(8), ..EndpointSettings::default() };
        assert_eq!(settings.in_flight_cap(), Some(8));
        settings.ordered = true;
        assert_eq!(settings.in_flight_cap(), Some(1));
    }

    #[test]
    fn zero_rates_are_refused_also_when_deserialized() {
        assert!(RateLimit::new(1, 0).is_err());
        assert!(serde_json::from_str::<RateLimit>(r#"{"per_second":0,"burst":3}"#).is_err());
    }
}
