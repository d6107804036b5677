//! The tokens that show a form came from one of the portal's own pages,
//! rendered for the owner who posts it, in the host's session it is posted
//! from, not long ago.
//!
//! A token is `<expiry>.<mac>`: when it stops being accepted, in Unix
//! seconds, and the hex HMAC-SHA256 under the portal's [`CsrfKey`] of that
//! expiry, the owner and the session, each length-prefixed so that no field
//! can be shifted into the next.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use webhooks_core::Owner;

/// How long a form's token is accepted after its page was rendered, unless
/// the host says otherwise with
/// [`Portal::csrf_lifetime`](crate::Portal::csrf_lifetime): a working day,
/// so a page left open still posts while a token copied out of one soon
/// stops working.
///
/// ```
/// assert_eq!(webhooks_axum::DEFAULT_CSRF_LIFETIME.as_secs(), 12 * 60 * 60);
/// ```
pub const DEFAULT_CSRF_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Sets the tokens of one scheme apart from any other MAC under the same key.
const DOMAIN: &[u8] = b"webhooks-axum csrf v2\0";

/// The key the portal's CSRF tokens are signed with: at least
/// [`CsrfKey::MIN_LEN`] bytes, and random per process unless the host gives
/// one ([`Portal::csrf_key`](crate::Portal::csrf_key)). Its `Debug` does not
/// show it.
///
/// ```
/// use webhooks_axum::CsrfKey;
///
/// let key = CsrfKey::new(b"the same 32 or more bytes on every instance").unwrap();
/// assert_eq!(format!("{key:?}"), "CsrfKey(<redacted>)");
/// assert!(CsrfKey::new(b"too short").is_err());
/// ```
#[derive(Clone)]
pub struct CsrfKey(Vec<u8>);

impl CsrfKey {
    /// The shortest key accepted, in bytes: the output size of SHA-256, so
    /// the key is no weaker than the MAC it makes.
    pub const MIN_LEN: usize = 32;

    /// The key made of `bytes`.
    ///
    /// # Errors
    ///
    /// [`CsrfKeyTooShort`] when `bytes` are fewer than [`CsrfKey::MIN_LEN`].
    ///
    /// ```
    /// # fn main() -> Result<(), webhooks_axum::CsrfKeyTooShort> {
    /// // In a real host, from its configuration or secret store.
    /// let key = webhooks_axum::CsrfKey::new("0123456789abcdef0123456789abcdef")?;
    /// # let _ = key;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, CsrfKeyTooShort> {
        let bytes = bytes.as_ref();
        if bytes.len() < Self::MIN_LEN {
            return Err(CsrfKeyTooShort { found: bytes.len() });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// A key of [`CsrfKey::MIN_LEN`] bytes from the thread-local CSPRNG.
    pub(crate) fn random() -> Self {
        Self(rand::rng().random::<[u8; Self::MIN_LEN]>().to_vec())
    }

    /// A token for `owner` in `session`, accepted until `expires` (Unix
    /// seconds).
    pub(crate) fn token(&self, owner: &Owner, session: &Session, expires: u64) -> String {
        let expires = expires.to_string();
        let mac = self.mac(&expires, owner, session).finalize().into_bytes();
        format!("{expires}.{}", hex::encode(mac))
    }

    /// Whether `token` is one of this key's for `owner` in `session` and
    /// has not expired at `now` (Unix seconds); the MAC is compared in
    /// constant time.
    pub(crate) fn accepts(&self, token: &str, owner: &Owner, session: &Session, now: u64) -> bool {
        let Some((expires, mac)) = token.split_once('.') else { return false };
        let Some(expires_at) = unix_seconds(expires) else { return false };
        now < expires_at
            && hex::decode(mac).is_ok_and(|mac| self.mac(expires, owner, session).verify_slice(&mac).is_ok())
    }

    /// The MAC over the expiry as the token spells it, so no other spelling
    /// of the same time passes.
    fn mac(&self, expires: &str, owner: &Owner, session: &Session) -> Hmac<Sha256> {
        // HMAC takes a key of any length; `new` made sure it is long enough.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!());
        mac.update(DOMAIN);
        update_field(&mut mac, expires.as_bytes());
        update_field(&mut mac, owner.as_str().as_bytes());
        match session {
            Session::Unnamed => mac.update(&[0]),
            Session::Named(id) => {
                mac.update(&[1]);
                update_field(&mut mac, id.as_bytes());
            }
        }
        mac
    }
}

impl fmt::Debug for CsrfKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CsrfKey(<redacted>)")
    }
}

/// `field` with its length before it.
fn update_field(mac: &mut Hmac<Sha256>, field: &[u8]) {
    mac.update(&(field.len() as u64).to_be_bytes());
    mac.update(field);
}

/// A token's expiry: ASCII digits only (`u64`'s parser also takes a `+`).
fn unix_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Why [`CsrfKey::new`] refused a key: it is shorter than
/// [`CsrfKey::MIN_LEN`] bytes.
///
/// ```
/// let error = webhooks_axum::CsrfKey::new(b"short").unwrap_err();
/// assert_eq!(error.found(), 5);
/// assert_eq!(error.to_string(), "a CSRF key must be at least 32 bytes; this one is 5");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsrfKeyTooShort {
    found: usize,
}

impl CsrfKeyTooShort {
    /// The length of the key refused, in bytes.
    #[must_use]
    pub fn found(&self) -> usize {
        self.found
    }
}

impl fmt::Display for CsrfKeyTooShort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a CSRF key must be at least {} bytes; this one is {}", CsrfKey::MIN_LEN, self.found)
    }
}

impl std::error::Error for CsrfKeyTooShort {}

/// What a token is bound to besides its owner.
#[derive(Clone, Debug)]
pub(crate) enum Session {
    /// The host names no sessions: tokens are bound to the owner only.
    Unnamed,
    /// The host's session id or cookie value.
    Named(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_772_461_800;

    fn key(fill: u8) -> CsrfKey {
        CsrfKey::new([fill; CsrfKey::MIN_LEN]).unwrap()
    }

    fn session(id: &str) -> Session {
        Session::Named(id.to_owned())
    }

    #[test]
    fn a_token_passes_for_its_owner_session_and_key_until_it_expires() {
        let alice = Owner::new("alice").unwrap();
        let token = key(1).token(&alice, &session("s1"), NOW + 60);
        assert!(key(1).accepts(&token, &alice, &session("s1"), NOW));
        assert!(key(1).accepts(&token, &alice, &session("s1"), NOW + 59));
        assert!(!key(1).accepts(&token, &alice, &session("s1"), NOW + 60), "expired at its expiry");
        assert!(!key(1).accepts(&token, &alice, &session("s1"), NOW + 3600));
    }

    #[test]
    fn a_token_is_one_owners_in_one_session_under_one_key() {
        let (alice, bob) = (Owner::new("alice").unwrap(), Owner::new("bob").unwrap());
        let token = key(1).token(&alice, &session("s1"), NOW + 60);
        assert!(!key(1).accepts(&token, &bob, &session("s1"), NOW), "Alice's token does not pass for Bob");
        assert!(!key(1).accepts(&token, &alice, &session("s2"), NOW), "nor in another session");
        assert!(!key(1).accepts(&token, &alice, &Session::Unnamed, NOW), "nor without a session");
        assert!(!key(1).accepts(&token, &alice, &session(""), NOW));
        assert!(!key(2).accepts(&token, &alice, &session("s1"), NOW), "another key makes other tokens");

        let unbound = key(1).token(&alice, &Session::Unnamed, NOW + 60);
        assert!(key(1).accepts(&unbound, &alice, &Session::Unnamed, NOW));
        assert!(
            !key(1).accepts(&unbound, &alice, &session(""), NOW),
            "a token without a session is not one with an empty one"
        );
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let owner = Owner::new("ab").unwrap();
        let token = key(1).token(&owner, &session("c"), NOW + 60);
        assert!(!key(1).accepts(&token, &Owner::new("a").unwrap(), &session("bc"), NOW));
    }

    #[test]
    fn a_tampered_or_malformed_token_is_refused() {
        let alice = Owner::new("alice").unwrap();
        let s1 = session("s1");
        let token = key(1).token(&alice, &s1, NOW + 60);
        let (expires, mac) = token.split_once('.').unwrap();
        let later = format!("{}.{mac}", NOW + 3600);
        assert!(!key(1).accepts(&later, &alice, &s1, NOW), "a later expiry breaks the MAC");
        assert!(!key(1).accepts(&later, &alice, &s1, NOW + 120));
        for respelled in [format!("+{expires}.{mac}"), format!("0{expires}.{mac}")] {
            assert!(!key(1).accepts(&respelled, &alice, &s1, NOW), "{respelled}");
        }
        let mut flipped = mac.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = format!("{expires}.{}", String::from_utf8(flipped).unwrap());
        assert!(!key(1).accepts(&flipped, &alice, &s1, NOW));
        let malformed = [
            String::new(),
            ".".to_owned(),
            expires.to_owned(),
            mac.to_owned(),
            format!("{expires}."),
            format!(".{mac}"),
            format!("{expires}.{}", &mac[..10]),
            format!("{expires}.{mac}00"),
            format!("{expires}.not hex"),
            format!("-1.{mac}"),
            format!("99999999999999999999999.{mac}"),
            format!("{expires}.{mac}.{mac}"),
        ];
        for token in malformed {
            assert!(!key(1).accepts(&token, &alice, &s1, NOW), "{token:?}");
        }
    }

    #[test]
    fn a_key_is_at_least_32_bytes_and_never_shown() {
        assert_eq!(CsrfKey::new([7; 31]).unwrap_err(), CsrfKeyTooShort { found: 31 });
        assert_eq!(CsrfKey::new("").unwrap_err().found(), 0);
        let key = CsrfKey::new("k".repeat(32)).unwrap();
        assert_eq!(format!("{key:?}"), "CsrfKey(<redacted>)");
        assert_eq!(format!("{:?}", CsrfKey::random()), "CsrfKey(<redacted>)");
        assert_eq!(
            CsrfKey::new([0; 3]).unwrap_err().to_string(),
            "a CSRF key must be at least 32 bytes; this one is 3"
        );
    }
}
