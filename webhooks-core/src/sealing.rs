//! Secrets sealed at rest: signing secrets and secret header values are
//! encrypted before they reach a store, with keys the host keeps outside
//! it, so a copy of the database (a backup, a replica, a dump) signs
//! nothing.
//!
//! XChaCha20-Poly1305 with a random 24-byte nonce per value, the
//! subscription's id and the field as associated data (a sealed value
//! moved to another subscription or field does not open). A sealed value
//! reads `sealed:v1:<key id>:<base64url of nonce and ciphertext>`; the key
//! id is the start of the key's SHA-256, so keys need no names.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngExt;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::model::{PreviousSecret, Subscription, SubscriptionId};
use crate::secret::Secret;
use crate::settings::CustomHeader;

const PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 24;

/// The keys secrets are sealed with: one seals, older ones still open what
/// they sealed until [`Webhooks::reseal_secrets`](crate::Webhooks::reseal_secrets)
/// has sealed it again with the new one. Keys are 32 random bytes the host
/// keeps outside the store (a secrets manager, an environment variable),
/// the same on every instance.
///
/// ```
/// use webhooks_core::SecretKeys;
///
/// let key = SecretKeys::generate_key();
/// let keys = SecretKeys::from_base64(&key).unwrap();
/// assert_eq!(keys.key_id().len(), 8);
/// assert_eq!(format!("{keys:?}"), format!("SecretKeys {{ sealing: {:?}, older: 0 }}", keys.key_id()));
/// assert!(SecretKeys::new(&[0; 16]).is_err(), "a key is 32 bytes");
/// ```
#[derive(Clone)]
pub struct SecretKeys {
    sealing: SealingKey,
    older: Vec<SealingKey>,
}

#[derive(Clone)]
struct SealingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SealingKey {
    fn new(key: &[u8]) -> Result<Self, Error> {
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| Error::invalid("secret key", format!("must be 32 bytes, not {}", key.len())))?;
        let key = Zeroizing::new(key);
        let id = hex::encode(&Sha256::digest(key.as_slice())[..4]);
        Ok(Self { id, cipher: XChaCha20Poly1305::new(&Key::from(*key)) })
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("sealing", &self.sealing.id)
            .field("older", &self.older.len())
            .finish()
    }
}

impl SecretKeys {
    /// Seals with `key` (32 bytes).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it is not 32 bytes.
    pub fn new(key: &[u8]) -> Result<Self, Error> {
        Ok(Self { sealing: SealingKey::new(key)?, older: Vec::new() })
    }

    /// Seals with a key written in base64 (standard or URL-safe, padded or
    /// not; whitespace around it is ignored), as a file or an environment
    /// variable holds it.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it is not base64 of 32 bytes.
    pub fn from_base64(key: &str) -> Result<Self, Error> {
        Self::new(&decode(key)?)
    }

    /// Also opens what `key` sealed: the key before a rotation.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when it is not 32 bytes.
    pub fn with_older(mut self, key: &[u8]) -> Result<Self, Error> {
        self.older.push(SealingKey::new(key)?);
        Ok(self)
    }

    /// A new random key, in base64, for [`SecretKeys::from_base64`].
    pub fn generate_key() -> String {
        let key = Zeroizing::new(rand::rng().random::<[u8; 32]>());
        URL_SAFE_NO_PAD.encode(key.as_slice())
    }

    /// The id of the key that seals, as sealed values name it.
    pub fn key_id(&self) -> &str {
        &self.sealing.id
    }

    fn seal(&self, plain: &str, subscription: SubscriptionId, field: &str) -> String {
        let nonce: [u8; NONCE_BYTES] = rand::rng().random();
        let aad = associated(subscription, field);
        // Encrypting into a `Vec` cannot fail for these sizes.
        let sealed = self
            .sealing
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plain.as_bytes(), aad: aad.as_bytes() })
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.sealing.id, URL_SAFE_NO_PAD.encode(bytes))
    }

    fn open(
        &self,
        text: &str,
        subscription: SubscriptionId,
        field: &str,
    ) -> Result<Zeroizing<String>, SealError> {
        let Some(rest) = text.strip_prefix(PREFIX) else { return Ok(Zeroizing::new(text.to_owned())) };
        let unreadable = || SealError::Unreadable { subscription, field: field.to_owned() };
        let (id, data) = rest.split_once(':').ok_or_else(unreadable)?;
        let key = std::iter::once(&self.sealing)
            .chain(&self.older)
            .find(|key| key.id == id)
            .ok_or_else(|| SealError::UnknownKey { subscription, key: id.to_owned() })?;
        let bytes = URL_SAFE_NO_PAD.decode(data).map_err(|_| unreadable())?;
        if bytes.len() < NONCE_BYTES {
            return Err(unreadable());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| unreadable())?;
        let aad = associated(subscription, field);
        let plain = key
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: aad.as_bytes() })
            .map_err(|_| unreadable())?;
        String::from_utf8(plain).map(Zeroizing::new).map_err(|_| unreadable())
    }

    /// Whether `text` is sealed with the key that seals now.
    fn is_current(&self, text: &str) -> bool {
        text.strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.sealing.id)
    }
}

fn decode(key: &str) -> Result<Vec<u8>, Error> {
    let key = key.trim();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|engine| engine.decode(key).ok())
        .ok_or_else(|| Error::invalid("secret key", "must be base64 of 32 bytes"))
}

fn associated(subscription: SubscriptionId, field: &str) -> String {
    format!("webhooks secret\0{subscription}\0{field}")
}

/// Whether `text` is a sealed value.
pub(crate) fn is_sealed(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// Why a subscription's sealed secrets could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Its secrets are sealed, and this instance was given no keys.
    #[error(
        "the secrets of subscription {subscription} are sealed; give this instance its keys \
         (WebhooksBuilder::secret_keys)"
    )]
    NoKeys {
        /// The subscription.
        subscription: SubscriptionId,
    },
    /// Sealed with a key the instance does not hold.
    #[error(
        "a secret of subscription {subscription} is sealed with key {key}, which this instance does not hold"
    )]
    UnknownKey {
        /// The subscription.
        subscription: SubscriptionId,
        /// The key's id.
        key: String,
    },
    /// Not a sealed value this library wrote, or tampered with.
    #[error("the sealed {field} of subscription {subscription} does not open: altered, or not sealed for it")]
    Unreadable {
        /// The subscription.
        subscription: SubscriptionId,
        /// Which secret.
        field: String,
    },
}

/// Each secret of a subscription, with the name it is sealed under.
fn each_secret(subscription: &mut Subscription, mut apply: impl FnMut(&str, &mut String)) {
    let mut text = subscription.secret.expose().to_owned();
    apply("secret", &mut text);
    subscription.secret = Secret::from(text);
    if let Some(PreviousSecret { secret, .. }) = &mut subscription.previous_secret {
        let mut text = secret.expose().to_owned();
        apply("previous_secret", &mut text);
        *secret = Secret::from(text);
    }
    for header in subscription.settings.headers.iter_mut().filter(|header| header.is_secret()) {
        let mut text = header.expose_value().to_owned();
        apply(&format!("header {}", header.name()), &mut text);
        if let Ok(changed) = CustomHeader::secret(header.name(), &text) {
            *header = changed;
        }
    }
}

/// `subscription` as a store keeps it: its secrets sealed with `keys`, or
/// as they are without keys.
pub(crate) fn seal(subscription: &Subscription, keys: Option<&SecretKeys>) -> Subscription {
    let mut sealed = subscription.clone();
    if let Some(keys) = keys {
        let id = subscription.id;
        each_secret(&mut sealed, |field, text| {
            if !is_sealed(text) {
                *text = keys.seal(text, id, field);
            }
        });
    }
    sealed
}

/// `subscription` as a store gave it, its secrets opened.
pub(crate) fn open(
    mut subscription: Subscription,
    keys: Option<&SecretKeys>,
) -> Result<Subscription, SealError> {
    let id = subscription.id;
    let mut failed = None;
    each_secret(&mut subscription, |field, text| {
        if failed.is_some() || !is_sealed(text) {
            return;
        }
        let opened = match keys {
            Some(keys) => keys.open(text, id, field),
            None => Err(SealError::NoKeys { subscription: id }),
        };
        match opened {
            Ok(plain) => text.clone_from(&plain),
            Err(error) => failed = Some(error),
        }
    });
    failed.map_or(Ok(subscription), Err)
}

/// Whether a stored subscription has a secret not sealed with the key that
/// seals now.
pub(crate) fn needs_resealing(subscription: &Subscription, keys: &SecretKeys) -> bool {
    let headers = subscription.settings.headers.iter().filter(|header| header.is_secret());
    std::iter::once(subscription.secret.expose())
        .chain(subscription.previous_secret.iter().map(|previous| previous.secret.expose()))
        .chain(headers.map(CustomHeader::expose_value))
        .any(|text| !keys.is_current(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Owner, SubscriptionStatus};

    fn subscription() -> Subscription {
        Subscription {
            id: SubscriptionId::new(),
            owner: Owner::default(),
            url: "https://example.com/".parse().unwrap(),
            event_types: ["a.b".to_owned()].into(),
            channels: Default::default(),
            secret: Secret::generate(),
            previous_secret: None,
            status: SubscriptionStatus::Enabled,
            consecutive_failures: 0,
            settings: Default::default(),
            created_at: chrono::Utc::now(),
        }
    }

    fn keys() -> SecretKeys {
        SecretKeys::new(&[7; 32]).unwrap()
    }

    #[test]
    fn a_sealed_subscription_opens_to_what_it_was_and_shows_no_secret() {
        let mut plain = subscription();
        plain.settings.headers.push(CustomHeader::secret("Authorization", "Bearer tok-123").unwrap());
        let sealed = seal(&plain, Some(&keys()));
        let shown = format!("{} {}", sealed.secret.expose(), sealed.settings.headers[0].expose_value());
        assert!(!shown.contains(plain.secret.expose()) && !shown.contains("tok-123"), "{shown}");
        assert!(is_sealed(sealed.secret.expose()));
        assert!(!needs_resealing(&sealed, &keys()));
        assert!(needs_resealing(&plain, &keys()));
        assert_eq!(open(sealed.clone(), Some(&keys())).unwrap(), plain);
        assert_eq!(seal(&sealed, Some(&keys())), sealed, "sealed once only");
        assert!(matches!(open(sealed.clone(), None), Err(SealError::NoKeys { .. })));
        let other = SecretKeys::new(&[8; 32]).unwrap();
        assert!(matches!(open(sealed.clone(), Some(&other)), Err(SealError::UnknownKey { .. })));
        let rotated = other.with_older(&[7; 32]).unwrap();
        assert_eq!(open(sealed.clone(), Some(&rotated)).unwrap(), plain, "an older key still opens");
        assert!(needs_resealing(&sealed, &rotated));
    }

    #[test]
    fn a_sealed_value_does_not_open_for_another_subscription_or_when_altered() {
        let keys = keys();
        let id = SubscriptionId::new();
        let sealed = keys.seal("whsec_abc", id, "secret");
        assert_eq!(keys.open(&sealed, id, "secret").unwrap().as_str(), "whsec_abc");
        assert!(keys.open(&sealed, SubscriptionId::new(), "secret").is_err());
        assert!(keys.open(&sealed, id, "previous_secret").is_err());
        let mut altered = sealed.clone();
        altered.pop();
        altered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(keys.open(&altered, id, "secret"), Err(SealError::Unreadable { .. })));
        assert_ne!(keys.seal("whsec_abc", id, "secret"), sealed, "a fresh nonce each time");
    }
}
