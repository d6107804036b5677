//! Presets: a product's whole webhook behaviour as a value of swappable parts.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::catalogue::Catalogue;
use crate::envelope::{Envelope, JsonEnvelope, StandardEnvelope};
use crate::error::Error;
use crate::retry::{Exponential, RetryPolicy, Scaled, Schedule};
use crate::scheme::{DeepSmithScheme, SignatureScheme, SmartlyQScheme, StandardScheme};

/// Which endpoint URLs a preset accepts: `https://` only unless the host
/// allows plain `http://` (a local receiver in tests, say).
///
/// ```
/// use webhooks_core::UrlRule;
///
/// assert!(UrlRule::https_only().require_https);
/// assert!(UrlRule::allow_http().check("http://127.0.0.1:8080/hooks", "DeepSmith").is_ok());
/// assert!(UrlRule::https_only().check("http://127.0.0.1:8080/hooks", "DeepSmith").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UrlRule {
    /// Refuse plain `http://` endpoints.
    pub require_https: bool,
}

impl Default for UrlRule {
    /// `https://` only.
    fn default() -> Self {
        Self::https_only()
    }
}

/// The longest endpoint URL accepted, in bytes as parsed: far above any
/// real endpoint, and far below what an HTTP request line can carry.
pub const MAX_URL_BYTES: usize = 4096;

impl UrlRule {
    /// Only `https://` endpoints.
    pub const fn https_only() -> Self {
        Self { require_https: true }
    }

    /// `http://` endpoints too.
    pub const fn allow_http() -> Self {
        Self { require_https: false }
    }

    /// Parses `url` and checks it: at most [`MAX_URL_BYTES`], `http` or
    /// `https`, a host, no credentials, a URL an HTTP request can carry, and
    /// `https` where required.
    pub fn check(&self, url: &str, preset: &str) -> Result<Url, Error> {
        // A refused URL is shown cut: it may be megabytes long.
        let shown = |url: &str| {
            if url.chars().nth(200).is_some() {
                format!("{}...", url.chars().take(200).collect::<String>())
            } else {
                url.to_owned()
            }
        };
        let invalid =
            |reason: &str| Error::InvalidUrl { url: shown(&redact(url)), reason: reason.to_owned() };
        if url.len() > MAX_URL_BYTES {
            return Err(invalid(&format!(
                "it is {} bytes long, over the {MAX_URL_BYTES}-byte limit",
                url.len()
            )));
        }
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.as_str().len() > MAX_URL_BYTES {
            return Err(invalid(&format!("it is over the {MAX_URL_BYTES}-byte limit once encoded")));
        }
        if parsed.as_str().parse::<http::Uri>().is_err() {
            return Err(invalid("an HTTP request cannot carry it"));
        }
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if parsed.host().is_none() {
            return Err(invalid("it has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("credentials in the URL are not allowed"));
        }
        if self.require_https && parsed.scheme() != "https" {
            return Err(Error::InsecureUrl { url: parsed.to_string(), preset: preset.to_owned() });
        }
        Ok(parsed)
    }
}

/// Removes `user:password@` so a refused URL can be shown.
fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

/// When a failing endpoint is disabled.
///
/// ```
/// use webhooks_core::DisablePolicy;
///
/// let policy = DisablePolicy::after_consecutive_failures(20).disable_on_gone(false);
/// assert_eq!(policy.threshold(), Some(20));
/// assert!(!policy.on_gone());
/// ```
///
/// Serialized (a subscription's own rule, kept by every store) as
/// `{"after_consecutive_failures": 20, "on_gone": false}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DisablePolicy {
    #[serde(rename = "after_consecutive_failures")]
    after: Option<u32>,
    on_gone: bool,
}

impl DisablePolicy {
    /// Never disables on failures; a `410 Gone` still disables (see
    /// [`DisablePolicy::disable_on_gone`]).
    pub fn never() -> Self {
        Self { after: None, on_gone: true }
    }

    /// Disables after `failures` failed attempts in a row (a success resets
    /// the count), and on `410 Gone`.
    pub fn after_consecutive_failures(failures: u32) -> Self {
        Self { after: Some(failures.max(1)), on_gone: true }
    }

    /// Whether a `410 Gone` answer disables the endpoint at once (on by
    /// default: the receiver says the endpoint is gone for good).
    pub fn disable_on_gone(mut self, on: bool) -> Self {
        self.on_gone = on;
        self
    }

    /// The failure count that disables, if any.
    pub fn threshold(&self) -> Option<u32> {
        self.after
    }

    /// Whether `410 Gone` disables.
    pub fn on_gone(&self) -> bool {
        self.on_gone
    }
}

/// A product's webhook behaviour: envelope, signature scheme, retry policy,
/// URL rule, disable policy and event catalogue. Take one as it is, or
/// replace any part.
///
/// ```
/// use std::time::Duration;
/// use webhooks_core::{Preset, Schedule};
///
/// let preset = Preset::smartlyq()
///     .with_retry(Schedule::new([Duration::from_secs(30)]).unwrap())
///     .with_event_types(["invoice.paid"]);
/// assert!(preset.catalogue().contains("invoice.paid"));
/// assert!(!preset.catalogue().contains("job.completed"), "the host's catalogue replaces SmartlyQ's");
/// ```
#[derive(Clone, Debug)]
#[must_use = "a preset does nothing until given to `WebhooksBuilder::preset`"]
pub struct Preset {
    name: String,
    envelope: Arc<dyn Envelope>,
    scheme: Arc<dyn SignatureScheme>,
    retry: Arc<dyn RetryPolicy>,
    url_rule: UrlRule,
    disable: DisablePolicy,
    catalogue: Catalogue,
}

impl Preset {
    /// SmartlyQ: `t=..,v1=..` signatures over `<t>.<body>`, https only,
    /// 5 retries after 2, 4, 8, 16 and 32 minutes, then dropped.
    pub fn smartlyq() -> Self {
        let retry = Exponential::new(Duration::from_secs(120), 2.0, 5)
            .unwrap_or_else(|_| unreachable!("valid constants"));
        Self {
            name: "SmartlyQ".into(),
            envelope: Arc::new(JsonEnvelope),
            scheme: Arc::new(SmartlyQScheme::default()),
            retry: Arc::new(retry),
            url_rule: UrlRule::https_only(),
            disable: DisablePolicy::never(),
            catalogue: fixed([
                "job.completed",
                "job.failed",
                "social.posted",
                "social.failed",
                "chatbot.message",
                "wallet.low",
            ]),
        }
    }

    /// DeepSmith: `sha256=` signatures over the body, 3 retries after 10 s,
    /// 60 s and 5 min, the endpoint disabled after 10 failed attempts in a row.
    pub fn deepsmith() -> Self {
        let retry = Schedule::new([10, 60, 300].map(Duration::from_secs))
            .unwrap_or_else(|_| unreachable!("valid constants"));
        Self {
            name: "DeepSmith".into(),
            envelope: Arc::new(JsonEnvelope),
            scheme: Arc::new(DeepSmithScheme),
            retry: Arc::new(retry),
            url_rule: UrlRule::allow_http(),
            disable: DisablePolicy::after_consecutive_failures(10),
            catalogue: fixed([
                "content.status_updated",
                "research_batch.status_updated",
                "agent_task.status_updated",
                "topic.status_updated",
                "iq.status_updated",
                "sitemap_url.status_updated",
            ]),
        }
    }

    /// [Standard Webhooks](https://www.standardwebhooks.com): `webhook-id`,
    /// `webhook-timestamp` and `webhook-signature: v1,<base64>` over
    /// `<id>.<timestamp>.<body>`, `whsec_` base64 secrets, a
    /// `{"type","timestamp","data"}` body, https only, and the
    /// specification's example schedule: retries after 5 s, 5 min, 30 min,
    /// 2 h, 5 h, 10 h, 14 h, 20 h and 24 h. Any dotted event name is accepted.
    /// Endpoints are disabled on `410 Gone`, not on failures alone.
    pub fn standard() -> Self {
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let retry = Schedule::new([
            Duration::from_secs(5),
            Duration::from_secs(5 * 60),
            Duration::from_secs(30 * 60),
            hours(2),
            hours(5),
            hours(10),
            hours(14),
            hours(20),
            hours(24),
        ])
        .unwrap_or_else(|_| unreachable!("valid constants"));
        Self {
            name: "Standard Webhooks".into(),
            envelope: Arc::new(StandardEnvelope),
            scheme: Arc::new(StandardScheme::default()),
            retry: Arc::new(retry),
            url_rule: UrlRule::https_only(),
            disable: DisablePolicy::never(),
            catalogue: Catalogue::open(),
        }
    }

    /// The neutral preset, for a host with its own events: Standard
    /// Webhooks signing, headers and body (so any receiver library that
    /// speaks Standard Webhooks verifies it), its schedule (retries after
    /// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h), https only,
    /// endpoints disabled on `410 Gone`, and an empty catalogue: nothing can
    /// be published until the host declares its event types with
    /// [`Preset::with_catalogue`] (or names them with
    /// [`Preset::with_event_types`]).
    ///
    /// ```
    /// use serde_json::json;
    /// use webhooks_core::{Catalogue, EventType, Preset};
    ///
    /// let preset = Preset::neutral().with_catalogue(Catalogue::of([
    ///     EventType::new("order.created")
    ///         .with_description("A customer placed an order.")
    ///         .with_example(json!({"order_id": "A-1"})),
    /// ])?);
    /// assert!(preset.check_event_type("order.created").is_ok());
    /// let error = Preset::neutral().check_event_type("order.created").unwrap_err();
    /// assert!(error.to_string().contains("with_catalogue"), "{error}");
    /// # Ok::<(), webhooks_core::Error>(())
    /// ```
    pub fn neutral() -> Self {
        Self { name: "Webhooks".into(), catalogue: Catalogue::empty(), ..Self::standard() }
    }

    /// A built-in preset by its short name: `smartlyq`, `deepsmith` or
    /// `standard` (as command lines and configuration files spell them).
    /// [`Preset::neutral`] is not among them: it takes the host's catalogue
    /// in code.
    ///
    /// ```
    /// use webhooks_core::Preset;
    ///
    /// assert_eq!(Preset::by_name("deepsmith").unwrap().name(), "DeepSmith");
    /// assert!(Preset::by_name("unknown").is_none());
    /// ```
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "smartlyq" => Some(Self::smartlyq()),
            "deepsmith" => Some(Self::deepsmith()),
            "standard" => Some(Self::standard()),
            _ => None,
        }
    }

    /// Renames it (the name appears in errors).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the envelope.
    pub fn with_envelope(mut self, envelope: impl Envelope + 'static) -> Self {
        self.envelope = Arc::new(envelope);
        self
    }

    /// Replaces the signature scheme.
    pub fn with_scheme(mut self, scheme: impl SignatureScheme + 'static) -> Self {
        self.scheme = Arc::new(scheme);
        self
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: impl RetryPolicy + 'static) -> Self {
        self.retry = Arc::new(retry);
        self
    }

    /// Multiplies every wait of the retry policy by `factor` (0 or more).
    pub fn with_retry_scale(mut self, factor: f64) -> Result<Self, Error> {
        self.retry = Arc::new(Scaled::new(self.retry, factor)?);
        Ok(self)
    }

    /// Replaces the URL rule, e.g. to allow `http://` in development.
    pub fn with_url_rule(mut self, rule: UrlRule) -> Self {
        self.url_rule = rule;
        self
    }

    /// Replaces the disable policy.
    pub fn with_disable_policy(mut self, policy: DisablePolicy) -> Self {
        self.disable = policy;
        self
    }

    /// The host's own event types, replacing the preset's catalogue: a
    /// preset's events (SmartlyQ's `wallet.low`, DeepSmith's
    /// `iq.status_updated`) are that product's, not the host's, and are not
    /// offered beside them. The catalogue becomes fixed to exactly these
    /// names, so a typo such as `order.craeted` is refused instead of
    /// silently reaching no one. To keep a preset's events, name them too.
    ///
    /// ```
    /// use webhooks_core::Preset;
    ///
    /// let preset = Preset::deepsmith().with_event_types(["order.created", "order.paid"]);
    /// assert!(preset.check_event_type("order.created").is_ok());
    /// assert!(preset.check_event_type("order.craeted").is_err());
    /// assert!(preset.check_event_type("iq.status_updated").is_err(), "DeepSmith's own are gone");
    /// ```
    pub fn with_event_types<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.catalogue = Catalogue::from_names(names);
        self
    }

    /// Replaces the catalogue with the host's own: event types with a
    /// description, and optionally a JSON Schema their data must match and
    /// an example (see [`Catalogue::of`]).
    pub fn with_catalogue(mut self, catalogue: Catalogue) -> Self {
        self.catalogue = catalogue;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its envelope.
    pub fn envelope(&self) -> &dyn Envelope {
        &*self.envelope
    }

    /// Its signature scheme.
    pub fn scheme(&self) -> &dyn SignatureScheme {
        &*self.scheme
    }

    /// Its retry policy.
    pub fn retry(&self) -> &dyn RetryPolicy {
        &*self.retry
    }

    /// The rule that disables `subscription`: its own, or this preset's.
    pub fn disable_policy_for(&self, subscription: &crate::Subscription) -> DisablePolicy {
        subscription.settings.disable.unwrap_or(self.disable)
    }

    /// Its retry policy, shared.
    pub(crate) fn shared_retry(&self) -> Arc<dyn RetryPolicy> {
        Arc::clone(&self.retry)
    }

    /// Its URL rule.
    pub fn url_rule(&self) -> UrlRule {
        self.url_rule
    }

    /// Its disable policy.
    pub fn disable_policy(&self) -> DisablePolicy {
        self.disable
    }

    /// Its event catalogue.
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// Checks an event type against the catalogue. Names travel in headers,
    /// so even an extended catalogue accepts only visible ASCII.
    pub fn check_event_type(&self, name: &str) -> Result<(), Error> {
        if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(
                "event type",
                format!("{name:?} must be 1 to 255 visible ASCII characters"),
            ));
        }
        if self.catalogue.contains(name) {
            Ok(())
        } else {
            Err(Error::UnknownEventType { name: name.to_owned(), preset: self.name.clone() })
        }
    }
}

fn fixed<const N: usize>(names: [&str; N]) -> Catalogue {
    Catalogue::from_names(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smartlyq_refuses_http_and_says_why() {
        let error = Preset::smartlyq().url_rule().check("http://example.com/hook", "SmartlyQ").unwrap_err();
        assert!(matches!(error, Error::InsecureUrl { .. }));
        assert!(error.to_string().contains("https"), "{error}");
    }

    #[test]
    fn urls_with_credentials_or_odd_schemes_are_refused_without_echoing_passwords() {
        let rule = UrlRule::allow_http();
        let error = rule.check("https://user:hunter2@example.com/", "x").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(rule.check("ftp://example.com/", "x").is_err());
        assert!(rule.check("not a url", "x").is_err());
        assert!(rule.check("http://example.com/", "x").is_ok());
    }

    #[test]
    fn unknown_event_types_are_named_in_the_error() {
        let error = Preset::deepsmith().check_event_type("job.completed").unwrap_err();
        assert!(error.to_string().contains("job.completed"), "{error}");
        assert!(error.to_string().contains("DeepSmith"), "{error}");
    }
}
