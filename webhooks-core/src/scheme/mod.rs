//! Signature schemes: the headers that sign a body, and their verification
//! on the receiving side.

mod deepsmith;
mod smartlyq;
mod standard;

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName};

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

/// Why a received webhook failed verification: `webhooks-verify`'s, which
/// does the verifying.
pub use webhooks_verify::VerifyError;

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

/// The headers of a scheme that sends the signature, the event type and the
/// delivery id each in a header of its own, `names` in that order.
fn signed_headers(names: [&'static str; 3], signature: &str, message: &Message<'_>) -> HeaderMap {
    let [signature_name, event_name, delivery_name] = names.map(HeaderName::from_static);
    let mut headers = request_headers();
    headers.insert(signature_name, header_value(signature));
    headers.insert(event_name, header_value(message.event_type));
    headers.insert(delivery_name, id_value(message.delivery_id));
    headers
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
