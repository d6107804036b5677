use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use http::{HeaderMap, HeaderName};
use rand::Rng;

use super::{
    HmacSha256, Message, SignatureScheme, VerifyError, fresh_timestamp, header, header_value, request_headers,
};
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
        let encoded = secret.expose().strip_prefix(Secret::PREFIX).unwrap_or(secret.expose());
        BASE64.decode(encoded).ok().filter(|key| (24..=64).contains(&key.len()))
    }

    fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
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
        let key = Self::key(secret)?;
        let digest = Self::mac(&key, id, timestamp.timestamp(), body).finalize().into_bytes();
        Some(format!("v1,{}", BASE64.encode(digest)))
    }

    /// Verifies the three headers' values against the raw body with any of
    /// `secrets`. Signatures of other versions in the list are skipped;
    /// comparison is constant time.
    pub fn verify_values(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let malformed = |name, reason| VerifyError::MalformedHeader { name, reason };
        if id.is_empty() {
            return Err(malformed(Self::ID, "empty"));
        }
        let seconds = fresh_timestamp(timestamp, Self::TIMESTAMP, self.tolerance, now)?;
        let mut candidates = Vec::new();
        for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
            let (version, encoded) = entry
                .split_once(',')
                .ok_or(malformed(Self::SIGNATURE, "an entry is not version,signature"))?;
            if version == "v1" {
                let digest = BASE64.decode(encoded).map_err(|_| malformed(Self::SIGNATURE, "not base64"))?;
                candidates.push(digest);
            }
        }
        if candidates.is_empty() {
            return Err(malformed(Self::SIGNATURE, "no v1 signature"));
        }
        let keys: Vec<Vec<u8>> = secrets.iter().filter_map(Self::key).collect();
        if keys.is_empty() {
            return Err(VerifyError::NoSecret);
        }
        let mut matched = false;
        for key in &keys {
            let expected = Self::mac(key, id, seconds, body);
            for candidate in &candidates {
                matched |= expected.clone().verify_slice(candidate).is_ok();
            }
        }
        if matched { Ok(()) } else { Err(VerifyError::SignatureMismatch) }
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
