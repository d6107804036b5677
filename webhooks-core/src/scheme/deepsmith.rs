use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::{Message, SignatureScheme, VerifyError, header, signed_headers};
use crate::secret::Secret;

/// DeepSmith's scheme: `X-Webhook-Signature: sha256=<hex>`, the HMAC-SHA256
/// of the body alone; plus `X-Webhook-Event` and `X-Webhook-Id`.
///
/// The signature carries no timestamp, so receivers should drop repeats by
/// the `X-Webhook-Id` delivery id.
///
/// ```
/// use webhooks_core::{DeepSmithScheme, Secret};
///
/// let secret = Secret::from("k");
/// let body = br#"{"event":"content.status_updated","data":{}}"#;
/// let header = DeepSmithScheme.signature(body, &secret);
/// assert!(header.starts_with("sha256="));
/// assert!(DeepSmithScheme.verify_header(&header, body, &secret).is_ok());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeepSmithScheme;

/// `sha256=` and 64 hex digits.
const SIGNATURE_LEN: usize = webhooks_verify::DeepSmith::SIGNATURE_LEN;

impl DeepSmithScheme {
    /// The signature header.
    pub const SIGNATURE: &'static str = "x-webhook-signature";
    /// The event type header.
    pub const EVENT: &'static str = "x-webhook-event";
    /// The delivery id header.
    pub const DELIVERY: &'static str = "x-webhook-id";

    /// The `X-Webhook-Signature` value for `body`.
    pub fn signature(&self, body: &[u8], secret: &Secret) -> String {
        let mut buffer = [0; SIGNATURE_LEN];
        Self::sign_into(body, secret, &mut buffer).to_owned()
    }

    /// `sha256=` and the hex digest, written into `buffer`: signing an
    /// attempt allocates nothing.
    fn sign_into<'b>(body: &[u8], secret: &Secret, buffer: &'b mut [u8; SIGNATURE_LEN]) -> &'b str {
        webhooks_verify::DeepSmith::sign_into(body, secret.expose(), buffer)
    }

    /// Verifies an `X-Webhook-Signature` value against the raw body, in
    /// constant time.
    pub fn verify_header(&self, header: &str, body: &[u8], secret: &Secret) -> Result<(), VerifyError> {
        self.verify_header_any(header, body, std::slice::from_ref(secret))
    }

    /// Verifies an `X-Webhook-Signature` value with any of `secrets` (a
    /// receiver mid-rotation holds two), in constant time, with
    /// `webhooks-verify`.
    pub fn verify_header_any(
        &self,
        header: &str,
        body: &[u8],
        secrets: &[Secret],
    ) -> Result<(), VerifyError> {
        let secrets: Vec<&str> = secrets.iter().map(Secret::expose).collect();
        webhooks_verify::DeepSmith::verify(header, body, &secrets)
    }
}

impl SignatureScheme for DeepSmithScheme {
    fn signs_with_every_secret(&self) -> bool {
        false
    }

    fn headers(&self, message: &Message<'_>, secrets: &[&Secret]) -> HeaderMap {
        // One signature fits the header: the current secret's. Receivers
        // mid-rotation verify with either secret they hold.
        let mut buffer = [0; SIGNATURE_LEN];
        let signature =
            secrets.first().map_or("", |secret| Self::sign_into(message.body, secret, &mut buffer));
        signed_headers([Self::SIGNATURE, Self::EVENT, Self::DELIVERY], signature, message)
    }

    fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[Secret],
        _now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        self.verify_header_any(header(headers, Self::SIGNATURE)?, body, secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_prefix_length_or_digits_are_malformed() {
        let secret = Secret::from("k");
        for header in
            ["", "sha1=abcd", &format!("sha256={}", "a".repeat(63)), &format!("sha256={}", "x".repeat(64))]
        {
            assert!(
                matches!(
                    DeepSmithScheme.verify_header(header, b"{}", &secret),
                    Err(VerifyError::MalformedHeader { .. })
                ),
                "{header:?}"
            );
        }
    }

    #[test]
    fn a_changed_body_does_not_verify() {
        let secret = Secret::from("k");
        let header = DeepSmithScheme.signature(b"{}", &secret);
        assert_eq!(
            DeepSmithScheme.verify_header(&header, b"{ }", &secret),
            Err(VerifyError::SignatureMismatch)
        );
    }
}
