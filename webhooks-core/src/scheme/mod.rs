//! Signature schemes: the headers that sign a body, and their verification
//! on the receiving side.

mod deepsmith;
mod smartlyq;
mod standard;

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::Sha256;

use crate::model::DeliveryId;
use crate::secret::Secret;

pub use deepsmith::DeepSmithScheme;
pub use smartlyq::SmartlyQScheme;
pub use standard::StandardScheme;

/// One request to sign: everything a scheme may put in its headers.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The delivery's stable id, for receivers to drop duplicates.
    pub delivery_id: DeliveryId,
    /// The event type.
    pub event_type: &'a str,
    /// The exact body bytes sent.
    pub body: &'a [u8],
    /// When the attempt is made.
    pub timestamp: DateTime<Utc>,
}

/// Signs outgoing bodies into headers and verifies incoming ones.
///
/// A scheme owns every header it adds besides `Content-Type`: the signature,
/// and the event type and delivery id headers of its product.
pub trait SignatureScheme: Send + Sync + Debug {
    /// The headers for `message`, signed with `secrets`: the current secret
    /// first, then any still valid after a rotation. A scheme that carries
    /// one signature signs with the first.
    fn headers(&self, message: &Message<'_>, secrets: &[&Secret]) -> HeaderMap;

    /// Checks that `headers` sign `body` with one of `secrets`, received at
    /// `now`.
    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError>;

    /// Whether a request carries a signature per valid secret, so a
    /// receiver still on a rotated-out secret verifies it until the grace
    /// period ends. A scheme whose header carries one signature (DeepSmith)
    /// signs with the new secret only: its receivers hold both secrets
    /// during the grace.
    ///
    /// ```
    /// use webhooks_core::{DeepSmithScheme, SignatureScheme, SmartlyQScheme};
    ///
    /// assert!(SmartlyQScheme::default().signs_with_every_secret());
    /// assert!(!DeepSmithScheme.signs_with_every_secret());
    /// ```
    fn signs_with_every_secret(&self) -> bool {
        true
    }

    /// A new secret for a subscription; `whsec_` and 32 random
    /// alphanumerics unless the scheme needs another form.
    fn new_secret(&self) -> Secret {
        Secret::generate()
    }

    /// Whether a host-supplied secret can key this scheme; the reason if not.
    fn check_secret(&self, secret: &Secret) -> Result<(), &'static str> {
        if secret.expose().is_empty() { Err("must not be empty") } else { Ok(()) }
    }
}

/// Why a received webhook failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature header is absent.
    #[error("missing header {name}")]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// The signature header is not of the scheme's form.
    #[error("malformed header {name}: {reason}")]
    MalformedHeader {
        /// The header's name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signed timestamp is too far from now (a replay, or a skewed clock).
    #[error("timestamp {timestamp} is outside the tolerance of {tolerance_secs} s")]
    TimestampOutOfTolerance {
        /// The signed timestamp (unix seconds).
        timestamp: i64,
        /// The tolerance in seconds.
        tolerance_secs: u64,
    },
    /// No signature matches the body and secret.
    #[error("signature does not match")]
    SignatureMismatch,
    /// No secret was given to verify with.
    #[error("no secret to verify with")]
    NoSecret,
}

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with the secret's UTF-8 bytes over `parts` in order.
fn hmac(secret: &Secret, parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Decodes a lowercase or uppercase hex SHA-256 digest.
fn decode_digest(hex_digest: &str, name: &'static str) -> Result<[u8; 32], VerifyError> {
    let mut digest = [0u8; 32];
    if hex_digest.len() != 64 {
        return Err(VerifyError::MalformedHeader { name, reason: "signature is not 64 hex digits" });
    }
    hex::decode_to_slice(hex_digest, &mut digest)
        .map_err(|_| VerifyError::MalformedHeader { name, reason: "signature is not hex" })?;
    Ok(digest)
}

/// Reads a signed unix-seconds timestamp (header `name`) and checks that it
/// is within `tolerance` of `now`, either way: older is a replay, newer a
/// forged or skewed clock.
fn fresh_timestamp(
    text: &str,
    name: &'static str,
    tolerance: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<i64, VerifyError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::MalformedHeader { name, reason: "the timestamp is not unix seconds" });
    }
    let seconds: i64 = text
        .parse()
        .map_err(|_| VerifyError::MalformedHeader { name, reason: "the timestamp is out of range" })?;
    let tolerance_secs = tolerance.as_secs();
    if now.timestamp().abs_diff(seconds) > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance { timestamp: seconds, tolerance_secs });
    }
    Ok(seconds)
}

fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    headers
        .get(name)
        .ok_or(VerifyError::MissingHeader { name })?
        .to_str()
        .map_err(|_| VerifyError::MalformedHeader { name, reason: "not visible ASCII" })
}

/// A map for one request's headers, with room for the scheme's own, the
/// `Content-Type` the dispatcher adds and a few of the endpoint's: filled
/// without growing.
fn request_headers() -> HeaderMap {
    HeaderMap::with_capacity(8)
}

/// A delivery id as a header value, formatted on the stack.
fn id_value(id: DeliveryId) -> http::HeaderValue {
    let mut buffer = uuid::Uuid::encode_buffer();
    header_value(id.as_uuid().hyphenated().encode_lower(&mut buffer))
}

fn header_value(value: &str) -> http::HeaderValue {
    // Every value built here is ASCII (hex, digits, ids, catalogue names);
    // an event name outside ASCII is refused when published.
    http::HeaderValue::from_str(value).unwrap_or_else(|_| http::HeaderValue::from_static(""))
}
