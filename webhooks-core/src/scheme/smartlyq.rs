use std::time::Duration;

use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::{Message, SignatureScheme, VerifyError, header, signed_headers};
use crate::secret::Secret;

/// SmartlyQ's scheme: `X-SmartlyQ-Signature: t=<unix seconds>,v1=<hex>`, the
/// HMAC-SHA256 of `<t>.<body>`; plus `X-SmartlyQ-Event` and
/// `X-SmartlyQ-Delivery`.
///
/// Receivers check it with [`SmartlyQScheme::verify_header`] or
/// [`SignatureScheme::verify`]; a signature older or newer than the tolerance
/// (5 minutes by default) is refused, which stops replays.
///
/// ```
/// use webhooks_core::{Secret, SmartlyQScheme};
///
/// let secret = Secret::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
/// let body = br#"{"event":"wallet.low","data":{}}"#;
/// let now = "2026-03-02T14:30:00Z".parse().unwrap();
/// let scheme = SmartlyQScheme::default();
/// let header = scheme.signature(body, now, &secret);
/// assert!(header.starts_with("t=1772461800,v1="));
/// assert!(scheme.verify_header(&header, body, &secret, now).is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmartlyQScheme {
    tolerance: Duration,
}

impl Default for SmartlyQScheme {
    fn default() -> Self {
        Self { tolerance: Duration::from_secs(5 * 60) }
    }
}

impl SmartlyQScheme {
    /// The signature header.
    pub const SIGNATURE: &'static str = "x-smartlyq-signature";
    /// The event type header.
    pub const EVENT: &'static str = "x-smartlyq-event";
    /// The delivery id header.
    pub const DELIVERY: &'static str = "x-smartlyq-delivery";

    /// How far a signed timestamp may be from the receiver's clock, either way.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The `X-SmartlyQ-Signature` value for `body` sent at `timestamp`.
    pub fn signature(&self, body: &[u8], timestamp: DateTime<Utc>, secret: &Secret) -> String {
        self.signatures(body, timestamp, &[secret])
    }

    /// The `X-SmartlyQ-Signature` value with one `v1=` per secret, for the
    /// grace period of a rotation: receivers holding either secret verify.
    pub fn signatures(&self, body: &[u8], timestamp: DateTime<Utc>, secrets: &[&Secret]) -> String {
        let secrets: Vec<&str> = secrets.iter().map(|secret| secret.expose()).collect();
        webhooks_verify::SmartlyQ::sign(body, timestamp.into(), &secrets)
    }

    /// Verifies an `X-SmartlyQ-Signature` value against the raw body with
    /// one secret. See [`SmartlyQScheme::verify_header_any`].
    pub fn verify_header(
        &self,
        header: &str,
        body: &[u8],
        secret: &Secret,
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        self.verify_header_any(header, body, std::slice::from_ref(secret), now)
    }

    /// Verifies an `X-SmartlyQ-Signature` value against the raw body with any
    /// of `secrets` (a receiver mid-rotation holds two). The header may list
    /// several `v1=` signatures; one match is enough. Comparison is constant
    /// time. A receiver without the sender's crates uses `webhooks-verify`,
    /// which this calls.
    pub fn verify_header_any(
        &self,
        header: &str,
        body: &[u8],
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        webhooks_verify::SmartlyQ::default().with_tolerance(self.tolerance).verify(
            header,
            body,
            &secrets,
            now.into(),
        )
    }
}

impl SignatureScheme for SmartlyQScheme {
    fn headers(&self, message: &Message<'_>, secrets: &[&Secret]) -> HeaderMap {
        let signature = self.signatures(message.body, message.timestamp, secrets);
        signed_headers([Self::SIGNATURE, Self::EVENT, Self::DELIVERY], &signature, message)
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        self.verify_header_any(header(headers, Self::SIGNATURE)?, body, secrets, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event":"job.completed","data":{}}"#;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn check(header: &str) -> Result<(), VerifyError> {
        SmartlyQScheme::default().verify_header(header, BODY, &Secret::from("k"), at(1_772_461_800))
    }

    #[test]
    fn a_fresh_signature_verifies() {
        let header = SmartlyQScheme::default().signature(BODY, at(1_772_461_800), &Secret::from("k"));
        assert_eq!(check(&header), Ok(()));
    }

    #[test]
    fn a_changed_body_or_secret_does_not() {
        let scheme = SmartlyQScheme::default();
        let header = scheme.signature(BODY, at(1_772_461_800), &Secret::from("other"));
        assert_eq!(check(&header), Err(VerifyError::SignatureMismatch));
        let header = scheme.signature(b"{}", at(1_772_461_800), &Secret::from("k"));
        assert_eq!(check(&header), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_refused_both_ways() {
        let scheme = SmartlyQScheme::default();
        for t in [1_772_461_800 - 301, 1_772_461_800 + 301] {
            let header = scheme.signature(BODY, at(t), &Secret::from("k"));
            assert!(matches!(check(&header), Err(VerifyError::TimestampOutOfTolerance { .. })));
        }
        let header = scheme.signature(BODY, at(1_772_461_800 - 300), &Secret::from("k"));
        assert_eq!(check(&header), Ok(()));
    }

    #[test]
    fn any_listed_signature_may_match() {
        let good = SmartlyQScheme::default().signature(BODY, at(1_772_461_800), &Secret::from("k"));
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=1772461800,v1={},v1={v1}", "0".repeat(64));
        assert_eq!(check(&header), Ok(()));
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_and_either_verifies() {
        let (old, new) = (Secret::from("old"), Secret::from("new"));
        let scheme = SmartlyQScheme::default();
        let now = at(1_772_461_800);
        let header = scheme.signatures(BODY, now, &[&new, &old]);
        assert_eq!(header.matches("v1=").count(), 2);
        assert_eq!(scheme.verify_header(&header, BODY, &old, now), Ok(()));
        assert_eq!(scheme.verify_header(&header, BODY, &new, now), Ok(()));
        let receiver_mid_rotation = [Secret::from("newest"), old.clone()];
        assert_eq!(
            scheme.verify_header_any(&scheme.signature(BODY, now, &old), BODY, &receiver_mid_rotation, now),
            Ok(())
        );
        assert_eq!(
            scheme.verify_header(&header, BODY, &Secret::from("other"), now),
            Err(VerifyError::SignatureMismatch)
        );
        assert_eq!(scheme.verify_header_any(&header, BODY, &[], now), Err(VerifyError::NoSecret));
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        let sig = "a".repeat(64);
        for header in [
            "",
            "garbage",
            &format!("v1={sig}"),
            "t=1772461800",
            &format!("t=,v1={sig}"),
            &format!("t=abc,v1={sig}"),
            &format!("t=1772461800,t=1772461800,v1={sig}"),
            "t=1772461800,v1=zz",
            &format!("t=1772461800,v1={}", "g".repeat(64)),
            &format!("t=99999999999999999999999,v1={sig}"),
        ] {
            assert!(
                matches!(check(header), Err(VerifyError::MalformedHeader { .. })),
                "{header:?} gave {:?}",
                check(header)
            );
        }
    }
}
