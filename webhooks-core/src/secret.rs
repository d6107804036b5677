//! Signing secrets: generated with a CSPRNG, never printed.

use std::fmt;

use rand::RngExt;
use rand::distr::Alphanumeric;

/// A subscription's signing secret.
///
/// Its `Debug` output is redacted and it has no `Display`, so it cannot end up
/// in logs or error messages by accident; read it with [`Secret::expose`].
///
/// ```
/// use webhooks_core::Secret;
///
/// let secret = Secret::generate();
/// assert!(secret.expose().starts_with("whsec_"));
/// assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The prefix of generated secrets.
    pub const PREFIX: &'static str = "whsec_";

    /// A new random secret: `whsec_` and 32 alphanumeric characters (190 bits)
    /// from the thread-local CSPRNG.
    pub fn generate() -> Self {
        let random: String = rand::rng().sample_iter(&Alphanumeric).take(32).map(char::from).collect();
        Self(format!("{}{random}", Self::PREFIX))
    }

    /// The secret as text; its UTF-8 bytes are the HMAC key.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
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
}
