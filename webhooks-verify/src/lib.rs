//! Verifies, in a receiver, webhooks signed by `webhooks-core`: the
//! SmartlyQ, DeepSmith and Standard Webhooks schemes, HMAC-SHA256 compared
//! in constant time, a timestamp tolerance against replays, and several
//! secrets at once for a rotation. No async runtime, no clock of its own:
//! the receiver passes `now`.
//!
//! Secrets are the strings the sender handed out (`whsec_...`). SmartlyQ
//! and DeepSmith key the HMAC with the secret's bytes; Standard Webhooks
//! with the base64 key after its `whsec_` prefix.
//!
//! ```
//! use std::time::SystemTime;
//! use webhooks_verify::{DeepSmith, SmartlyQ, Standard, VerifyError};
//!
//! let body = br#"{"event":"order.created","data":{"id":7}}"#;
//! let now = SystemTime::now();
//!
//! let header = SmartlyQ::sign(body, now, &["whsec_old", "whsec_new"]);
//! assert!(SmartlyQ::default().verify(&header, body, &["whsec_new"], now).is_ok());
//!
//! let header = DeepSmith::sign(body, "whsec_secret");
//! assert_eq!(DeepSmith::verify(&header, b"{}", &["whsec_secret"]), Err(VerifyError::SignatureMismatch));
//!
//! let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
//! let signature = Standard::sign("msg_1", now, body, secret).unwrap();
//! let seconds = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs().to_string();
//! assert!(Standard::default().verify("msg_1", &seconds, &signature, body, &[secret], now).is_ok());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// How far a signed timestamp may be from the receiver's clock, either
/// way, unless a scheme is given another: five minutes.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The prefix of a generated secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a received webhook failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature header is absent.
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header is not of the scheme's form.
    MalformedHeader {
        /// The header's name.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signed timestamp is too far from now (a replay, or a skewed clock).
    TimestampOutOfTolerance {
        /// The signed timestamp (unix seconds).
        timestamp: i64,
        /// The tolerance in seconds.
        tolerance_secs: u64,
    },
    /// No signature matches the body and secret.
    SignatureMismatch,
    /// No secret was given to verify with.
    NoSecret,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingHeader { name } => write!(f, "missing header {name}"),
            Self::MalformedHeader { name, reason } => write!(f, "malformed header {name}: {reason}"),
            Self::TimestampOutOfTolerance { timestamp, tolerance_secs } => {
                write!(f, "timestamp {timestamp} is outside the tolerance of {tolerance_secs} s")
            }
            Self::SignatureMismatch => f.write_str("signature does not match"),
            Self::NoSecret => f.write_str("no secret to verify with"),
        }
    }
}

impl std::error::Error for VerifyError {}

/// HMAC-SHA256 keyed with `key` over `parts` in order.
fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Whether any of `candidates` is the MAC of any of `secrets` (each keyed
/// by `key`): every pair is checked, so timing does not tell which matched.
fn any_matches<'s>(
    secrets: &[&'s str],
    key: impl Fn(&'s str) -> Option<Vec<u8>>,
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Result<(), VerifyError> {
    // A secret that cannot key the scheme is no secret to verify with.
    let keys: Vec<Vec<u8>> = secrets.iter().filter_map(|secret| key(secret)).collect();
    if keys.is_empty() {
        return Err(VerifyError::NoSecret);
    }
    let mut matched = false;
    for key in &keys {
        let expected = mac(key, parts);
        for candidate in candidates {
            matched |= expected.clone().verify_slice(candidate).is_ok();
        }
    }
    if matched { Ok(()) } else { Err(VerifyError::SignatureMismatch) }
}

/// Decodes a lowercase or uppercase hex SHA-256 digest.
fn decode_digest(hex_digest: &str, name: &'static str) -> Result<Vec<u8>, VerifyError> {
    if hex_digest.len() != 64 {
        return Err(VerifyError::MalformedHeader { name, reason: "signature is not 64 hex digits" });
    }
    hex::decode(hex_digest).map_err(|_| VerifyError::MalformedHeader { name, reason: "signature is not hex" })
}

/// Unix seconds of `time` (negative before 1970).
fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Reads a signed unix-seconds timestamp (header `name`) and checks that it
/// is within `tolerance` of `now`, either way: older is a replay, newer a
/// forged or skewed clock.
fn fresh_timestamp(
    text: &str,
    name: &'static str,
    tolerance: Duration,
    now: SystemTime,
) -> Result<i64, VerifyError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::MalformedHeader { name, reason: "the timestamp is not unix seconds" });
    }
    let seconds: i64 = text
        .parse()
        .map_err(|_| VerifyError::MalformedHeader { name, reason: "the timestamp is out of range" })?;
    let tolerance_secs = tolerance.as_secs();
    if unix_seconds(now).abs_diff(seconds) > tolerance_secs {
        return Err(VerifyError::TimestampOutOfTolerance { timestamp: seconds, tolerance_secs });
    }
    Ok(seconds)
}

/// The key of a SmartlyQ or DeepSmith secret: its bytes.
fn raw_key(secret: &str) -> Option<Vec<u8>> {
    Some(secret.as_bytes().to_vec())
}

/// SmartlyQ: `X-SmartlyQ-Signature: t=<unix seconds>,v1=<hex>`, the
/// HMAC-SHA256 of `<t>.<body>`, one `v1=` per secret during a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmartlyQ {
    tolerance: Duration,
}

impl Default for SmartlyQ {
    fn default() -> Self {
        Self { tolerance: DEFAULT_TOLERANCE }
    }
}

impl SmartlyQ {
    /// The signature header.
    pub const SIGNATURE: &'static str = "x-smartlyq-signature";

    /// How far a signed timestamp may be from `now`, either way.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The signature header's value for `body` sent at `at`, one `v1=` per
    /// secret.
    pub fn sign(body: &[u8], at: SystemTime, secrets: &[&str]) -> String {
        let t = unix_seconds(at).to_string();
        let mut header = format!("t={t}");
        for secret in secrets {
            header.push_str(",v1=");
            header.push_str(&hex::encode(
                mac(secret.as_bytes(), &[t.as_bytes(), b".", body]).finalize().into_bytes(),
            ));
        }
        header
    }

    /// Verifies a signature header's value against the raw body with any of
    /// `secrets`: its timestamp within the tolerance of `now`, and one of
    /// its `v1=` signatures made with one of the secrets. Other versions
    /// are skipped.
    pub fn verify(
        &self,
        header: &str,
        body: &[u8],
        secrets: &[&str],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let malformed = |reason| VerifyError::MalformedHeader { name: Self::SIGNATURE, reason };
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or(malformed("a part has no '='"))?;
            match key {
                "t" if timestamp.is_some() => return Err(malformed("t= appears twice")),
                "t" => timestamp = Some(value),
                "v1" => signatures.push(decode_digest(value, Self::SIGNATURE)?),
                _ => {} // other versions are for other receivers
            }
        }
        let t = timestamp.ok_or(malformed("no t= timestamp"))?;
        if signatures.is_empty() {
            return Err(malformed("no v1= signature"));
        }
        fresh_timestamp(t, Self::SIGNATURE, self.tolerance, now)?;
        any_matches(secrets, raw_key, &[t.as_bytes(), b".", body], &signatures)
    }
}

/// DeepSmith: `X-Webhook-Signature: sha256=<hex>`, the HMAC-SHA256 of the
/// body. No timestamp: a receiver drops repeats by the delivery id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeepSmith;

impl DeepSmith {
    /// The signature header.
    pub const SIGNATURE: &'static str = "x-webhook-signature";

    /// The length of a signature header's value: `sha256=` and 64 hex digits.
    pub const SIGNATURE_LEN: usize = 7 + 64;

    /// The signature header's value for `body`.
    pub fn sign(body: &[u8], secret: &str) -> String {
        let mut buffer = [0; Self::SIGNATURE_LEN];
        Self::sign_into(body, secret, &mut buffer).to_owned()
    }

    /// The signature header's value for `body`, written into `buffer`:
    /// signing allocates nothing.
    pub fn sign_into<'b>(body: &[u8], secret: &str, buffer: &'b mut [u8; Self::SIGNATURE_LEN]) -> &'b str {
        let digest = mac(secret.as_bytes(), &[body]).finalize().into_bytes();
        let (prefix, hex_digest) = buffer.split_at_mut(7);
        prefix.copy_from_slice(b"sha256=");
        hex::encode_to_slice(digest, hex_digest).unwrap_or_else(|_| unreachable!("64 hex digits fit"));
        std::str::from_utf8(buffer).unwrap_or_else(|_| unreachable!("ASCII"))
    }

    /// Verifies a signature header's value against the raw body with any of
    /// `secrets` (a receiver mid-rotation holds two).
    pub fn verify(header: &str, body: &[u8], secrets: &[&str]) -> Result<(), VerifyError> {
        let hex_digest = header.strip_prefix("sha256=").ok_or(VerifyError::MalformedHeader {
            name: Self::SIGNATURE,
            reason: "does not start with sha256=",
        })?;
        let candidate = decode_digest(hex_digest, Self::SIGNATURE)?;
        any_matches(secrets, raw_key, &[body], &[candidate])
    }
}

/// [Standard Webhooks](https://www.standardwebhooks.com): `webhook-id`,
/// `webhook-timestamp` and `webhook-signature: v1,<base64>`, the
/// HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the base64 key after
/// the secret's `whsec_` prefix; several signatures, space separated,
/// during a rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standard {
    tolerance: Duration,
}

impl Default for Standard {
    fn default() -> Self {
        Self { tolerance: DEFAULT_TOLERANCE }
    }
}

impl Standard {
    /// The message id header.
    pub const ID: &'static str = "webhook-id";
    /// The timestamp header (unix seconds).
    pub const TIMESTAMP: &'static str = "webhook-timestamp";
    /// The signature header.
    pub const SIGNATURE: &'static str = "webhook-signature";

    /// How far a signed timestamp may be from `now`, either way.
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The key of a `whsec_` secret: 24 to 64 bytes of base64 after the
    /// prefix (the prefix may be left out); `None` when it is not one.
    pub fn key(secret: &str) -> Option<Vec<u8>> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        BASE64.decode(encoded).ok().filter(|key| (24..=64).contains(&key.len()))
    }

    /// One `v1,<base64>` signature of message `id` sent at `at`, or `None`
    /// when the secret is not a Standard Webhooks secret.
    pub fn sign(id: &str, at: SystemTime, body: &[u8], secret: &str) -> Option<String> {
        let key = Self::key(secret)?;
        let timestamp = unix_seconds(at).to_string();
        let digest =
            mac(&key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]).finalize().into_bytes();
        Some(format!("v1,{}", BASE64.encode(digest)))
    }

    /// Verifies the three headers' values against the raw body with any of
    /// `secrets`: the timestamp within the tolerance of `now`, and one `v1`
    /// signature made with one of the secrets. Other versions are skipped.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        secrets: &[&str],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let malformed = |name, reason| VerifyError::MalformedHeader { name, reason };
        if id.is_empty() {
            return Err(malformed(Self::ID, "empty"));
        }
        fresh_timestamp(timestamp, Self::TIMESTAMP, self.tolerance, now)?;
        let mut candidates = Vec::new();
        for entry in signatures.split(' ').filter(|e| !e.is_empty()) {
            let (version, encoded) = entry
                .split_once(',')
                .ok_or(malformed(Self::SIGNATURE, "an entry is not version,signature"))?;
            if version == "v1" {
                candidates
                    .push(BASE64.decode(encoded).map_err(|_| malformed(Self::SIGNATURE, "not base64"))?);
            }
        }
        if candidates.is_empty() {
            return Err(malformed(Self::SIGNATURE, "no v1 signature"));
        }
        any_matches(secrets, Self::key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body], &candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn the_standard_webhooks_example_signs_and_verifies() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature =
            Standard::sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at(1_614_265_330), body, secret).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let verify = |now| {
            Standard::default().verify(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                &signature,
                body,
                &[secret],
                now,
            )
        };
        assert!(verify(at(1_614_265_330 + 300)).is_ok());
        assert!(matches!(verify(at(1_614_265_330 + 301)), Err(VerifyError::TimestampOutOfTolerance { .. })));
    }

    #[test]
    fn a_rotation_verifies_with_either_secret_and_a_stranger_with_neither() {
        let body = b"{}";
        let header = SmartlyQ::sign(body, at(1000), &["whsec_old", "whsec_new"]);
        for secret in ["whsec_old", "whsec_new"] {
            assert!(SmartlyQ::default().verify(&header, body, &[secret], at(1000)).is_ok());
        }
        let refused = SmartlyQ::default().verify(&header, body, &["whsec_other"], at(1000));
        assert_eq!(refused, Err(VerifyError::SignatureMismatch));
        let header = DeepSmith::sign(body, "whsec_new");
        assert!(DeepSmith::verify(&header, body, &["whsec_old", "whsec_new"]).is_ok());
        assert_eq!(DeepSmith::verify(&header, body, &[]), Err(VerifyError::NoSecret));
    }

    #[test]
    fn malformed_headers_are_typed_errors_that_name_the_header() {
        let now = at(1000);
        for header in ["", "t=1000", "v1=00", "t=1000,t=1000,v1=00", "t=x,v1=".to_owned().as_str()] {
            let error = SmartlyQ::default().verify(header, b"{}", &["s"], now).unwrap_err();
            assert!(
                matches!(error, VerifyError::MalformedHeader { name: SmartlyQ::SIGNATURE, .. }),
                "{header:?}: {error}"
            );
        }
        assert!(matches!(DeepSmith::verify("md5=00", b"", &["s"]), Err(VerifyError::MalformedHeader { .. })));
        let error = Standard::default().verify("id", "1000", "v2,abc", b"", &["whsec_x"], now).unwrap_err();
        assert_eq!(error.to_string(), "malformed header webhook-signature: no v1 signature");
    }
}
