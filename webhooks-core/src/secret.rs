//! Signing secrets: generated with a CSPRNG, never printed.

use std::fmt;

use rand::RngExt;
use rand::distr::Alphanumeric;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The text shown in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// A subscription's signing secret, wiped from memory when dropped.
///
/// Its `Debug` output is redacted and it has no `Display`, so it cannot end up
/// in logs or error messages by accident; read it with [`Secret::expose`].
///
/// With the `serde` feature it serializes as `<redacted>`, always: admin data
/// never carries it unless the host asks with
/// [`Subscription::with_secrets`](crate::Subscription::with_secrets). Reading
/// `<redacted>` back is an error rather than a secret of that text, so
/// redacted data cannot turn into a subscription signing with a known key.
///
/// ```
/// use webhooks_core::Secret;
///
/// let secret = Secret::generate();
/// assert!(secret.expose().starts_with("whsec_"));
/// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The prefix of generated secrets.
    pub const PREFIX: &'static str = "whsec_";

    /// A new random secret: `whsec_` and 32 alphanumeric characters (190 bits)
    /// from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let random = Zeroizing::new(
            rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect::<String>(),
        );
        Self(Zeroizing::new(format!("{}{}", Self::PREFIX, *random)))
    }

    /// The secret as text; its UTF-8 bytes are the HMAC key.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Why a secret chosen for a subscription is refused: shorter than
    /// [`MIN_SECRET_BYTES`] (a `whsec_` key: [`MIN_WHSEC_SECRET_BYTES`] in
    /// all), or longer than [`MAX_SECRET_BYTES`]. Verifying accepts any.
    pub(crate) fn check_length(&self) -> Result<(), String> {
        let (length, min) = if self.0.starts_with(Self::PREFIX) {
            (self.0.len(), MIN_WHSEC_SECRET_BYTES)
        } else {
            (self.0.len(), MIN_SECRET_BYTES)
        };
        if length < min {
            let kind = if min == MIN_WHSEC_SECRET_BYTES { "a whsec_ key" } else { "a secret" };
            return Err(format!("{kind} must be at least {min} bytes; this one is {length}"));
        }
        if length > MAX_SECRET_BYTES {
            return Err(format!("must be at most {MAX_SECRET_BYTES} bytes; this one is {length}"));
        }
        Ok(())
    }
}

/// The shortest signing secret a subscription may be given, in bytes
/// (128 bits of key when random).
pub const MIN_SECRET_BYTES: usize = 16;
/// The shortest `whsec_` key a subscription may be given, prefix included.
pub const MIN_WHSEC_SECRET_BYTES: usize = 24;
/// The longest signing secret a subscription may be given, in bytes: an
/// HMAC key gains nothing past its block size, and every attempt pays for it.
pub const MAX_SECRET_BYTES: usize = 1024;

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(Zeroizing::new(secret))
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(Zeroizing::new(secret.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

/// Whether serialized output carries secrets: redacted unless the host asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Secrets {
    /// Every secret is written as [`REDACTED`].
    Redacted,
    /// Secrets are written as they are: for the host's own storage or a
    /// screen that shows a secret once.
    Revealed,
}

impl Secrets {
    /// What output shows of a secret `value`.
    pub(crate) fn show(self, value: &str) -> &str {
        match self {
            Self::Redacted => REDACTED,
            Self::Revealed => value,
        }
    }
}

/// A secret as serialized output writes it.
#[cfg(feature = "serde")]
pub(crate) struct SecretOut<'a>(pub &'a Secret, pub Secrets);

#[cfg(feature = "serde")]
impl Serialize for SecretOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.1.show(self.0.expose()))
    }
}

#[cfg(feature = "serde")]
impl Serialize for Secret {
    /// Writes `<redacted>`: see [`Secret`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SecretOut(self, Secrets::Redacted).serialize(serializer)
    }
}

#[cfg(feature = "serde")]
impl<'de> Deserialize<'de> for Secret {
    /// Reads the secret's text; `<redacted>` is refused: see [`Secret`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == REDACTED {
            return Err(serde::de::Error::custom(
                "a redacted secret cannot be read back: serialize with `with_secrets` to keep secrets",
            ));
        }
        Ok(Self(Zeroizing::new(text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_differ_and_have_the_prefix() {
        let a = Secret::generate();
        let b = Secret::generate();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), Secret::PREFIX.len() + 32);
        assert!(a.expose()[Secret::PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::from("hunter2");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serialized_secrets_are_redacted_and_redacted_ones_are_refused() {
        let secret = Secret::from("hunter2");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"<redacted>\"");
        let revealed = serde_json::to_string(&SecretOut(&secret, Secrets::Revealed)).unwrap();
        assert_eq!(serde_json::from_str::<Secret>(&revealed).unwrap(), secret);
        let error = serde_json::from_str::<Secret>("\"<redacted>\"").unwrap_err();
        assert!(error.to_string().contains("redacted"), "{error}");
    }
}
