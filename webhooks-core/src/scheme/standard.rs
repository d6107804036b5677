use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName};
use rand::Rng;

use super::{Message, SignatureScheme, VerifyError, header, header_value, request_headers};
use crate::secret::Secret;

/// The [Standard Webhooks](https://www.standardwebhooks.com) scheme:
/// `webhook-id`, `webhook-timestamp`, and `webhook-signature: v1,<base64>`,
/// the HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the base64 key
/// after a secret's `whsec_` prefix. Several signatures, space separated,
/// carry a secret rotation. Receivers can use any of that specification's
/// libraries.
///
/// ```
/// use webhooks_core::{Secret, StandardScheme};
///
/// let secret = Secret::from("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
/// let body = br#"{"email":"test@example.com","username":"test_user"}"#;
/// let at = chrono::DateTime::from_timestamp(1_649_367_553, 0).unwrap();
/// let signature = StandardScheme::default().signature("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", at, body, &secret);
/// assert_eq!(signature.unwrap(), "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StandardScheme {
    tolerance: Duration,
}

impl Default for StandardScheme {
    fn default() -> Self {
        Self { tolerance: Duration::from_secs(5 * 60) }
    }
}

/// Why a secret cannot key this scheme.
const NOT_BASE64: &str = "a Standard Webhooks secret is whsec_ followed by base64 of 24 to 64 bytes";

impl StandardScheme {
    /// The message id header: the delivery id.
    pub const ID: &'static str = "webhook-id";
    /// The timestamp header (unix seconds).
    pub const TIMESTAMP: &'static str = "webhook-timestamp";
    /// The signature header.
    pub const SIGNATURE: &'static str = "webhook-signature";

    /// How far a signed timestamp may be from the receiver's clock, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// A new secret: `whsec_` and the base64 of 32 random bytes.
    pub fn generate_secret() -> Secret {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Secret::from(format!("{}{}", Secret::PREFIX, BASE64.encode(key)))
    }

    /// The key bytes of a `whsec_` secret.
    fn key(secret: &Secret) -> Option<Vec<u8>> {
        webhooks_verify::Standard::key(secret.expose())
    }

    /// One `v1,<base64>` signature, or `None` when the secret is not a
    /// Standard Webhooks secret.
    pub fn signature(
        &self,
        id: &str,
        timestamp: DateTime<Utc>,
        body: &[u8],
        secret: &Secret,
    ) -> Option<String> {
        webhooks_verify::Standard::sign(id, timestamp.into(), body, secret.expose())
    }

    /// Verifies the three headers' values against the raw body with any of
    /// `secrets`. Signatures of other versions in the list are skipped;
    /// comparison is constant time (with `webhooks-verify`).
    pub fn verify_values(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        webhooks_verify::Standard::default().with_tolerance(self.tolerance).verify(
            id,
            timestamp,
            signatures,
            body,
            &secrets,
            now.into(),
        )
    }
}

impl SignatureScheme for StandardScheme {
    fn headers(&self, message: &Message<'_>, secrets: &[&Secret]) -> HeaderMap {
        let id = message.delivery_id.to_string();
        let signatures: Vec<String> = secrets
            .iter()
            .filter_map(|secret| self.signature(&id, message.timestamp, message.body, secret))
            .collect();
        let mut headers = request_headers();
        headers.insert(HeaderName::from_static(Self::ID), header_value(&id));
        headers.insert(
            HeaderName::from_static(Self::TIMESTAMP),
            header_value(&message.timestamp.timestamp().to_string()),
        );
        headers.insert(HeaderName::from_static(Self::SIGNATURE), header_value(&signatures.join(" ")));
        headers
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        self.verify_values(
            header(headers, Self::ID)?,
            header(headers, Self::TIMESTAMP)?,
            header(headers, Self::SIGNATURE)?,
            body,
            secrets,
            now,
        )
    }

    fn new_secret(&self) -> Secret {
        Self::generate_secret()
    }

    fn check_secret(&self, secret: &Secret) -> Result<(), &'static str> {
        Self::key(secret).map(|_| ()).ok_or(NOT_BASE64)
    }
}
