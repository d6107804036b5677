//! An embeddable webhook portal: the pages where each of the host's
//! customers manages its endpoints and reads its delivery log, and the JSON
//! admin API behind the same actions, as one [`axum::Router`] the host
//! mounts inside its own app, behind its own login, on its own store.
//!
//! ```no_run
//! use axum::Router;
//! use axum::http::request::Parts;
//! use webhooks_core::{Owner, Preset, Webhooks};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let webhooks = Webhooks::builder()
//!     .store(webhooks_memory::MemoryStore::new())
//!     .preset(Preset::deepsmith())
//!     .build()?;
//! // The host's login decides who is signed in; here its middleware has put
//! // the account in the request's extensions.
//! #[derive(Clone)]
//! struct Account(String);
//! let who = |parts: &Parts| parts.extensions.get::<Account>().and_then(|a| Owner::new(a.0.clone()).ok());
//! let app: Router = Router::new().nest("/webhooks", webhooks_axum::portal(webhooks, who));
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! Every page and route acts for the owner `who` returns, and for nobody
//! when it returns `None` (401). Another owner's endpoint or delivery
//! answers 404 exactly like an id that never existed.
//!
//! The pages are rendered on the server with [`maud`], which escapes every
//! value it interpolates, and served with a content security policy that
//! allows no script at all. Every form that changes something carries a
//! CSRF token: an HMAC, under a key of the portal's ([`CsrfKey`]), of the
//! owner, the host's session ([`Portal::session`]) and the token's expiry
//! ([`DEFAULT_CSRF_LIFETIME`] after its page was rendered), so a token
//! passes only for the owner and the session it was rendered for, and not
//! for long. The JSON API takes state-changing requests only as
//! `application/json`, which a browser does not send across sites without
//! the host's CORS consent.
//! Secrets are shown once, on the page or in the answer that creates or
//! rotates them, and never again.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod csrf;
mod health;
mod pages;
mod policy;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::request::Parts;
use webhooks_core::{
    DEFAULT_HELD_LIMIT, Delivery, DeliveryId, Error, Owner, Subscription, SubscriptionId, Webhooks,
};

use crate::csrf::Session;
pub use crate::csrf::{CsrfKey, CsrfKeyTooShort, DEFAULT_CSRF_LIFETIME};

/// How the host tells the portal whose request this is: the owner the
/// signed-in user acts for, or `None` when nobody is signed in (401).
pub type Who = dyn Fn(&Parts) -> Option<Owner> + Send + Sync;

/// How the host tells the portal which of its sessions a request is in.
type SessionOf = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// The portal's router for `webhooks`, acting for the owner `who` names;
/// nest it under any path. A shortcut for [`Portal::new`] with a random
/// CSRF key and tokens bound to the owner only: a host with sessions binds
/// them to the session too with [`Portal::session`].
pub fn portal<W>(webhooks: Webhooks, who: W) -> Router
where
    W: Fn(&Parts) -> Option<Owner> + Send + Sync + 'static,
{
    Portal::new(webhooks, who).into_router()
}

/// The portal's settings; [`Portal::into_router`] builds the router.
///
/// ```
/// # use std::time::Duration;
/// # use webhooks_core::{Owner, Preset, Webhooks};
/// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
/// use axum::http::request::Parts;
///
/// // The host's session middleware has put the session in the request's
/// // extensions.
/// #[derive(Clone)]
/// struct SessionId(String);
/// let key = webhooks_axum::CsrfKey::new(b"the same 32 or more bytes on every instance of the host").unwrap();
/// let router = webhooks_axum::Portal::new(webhooks, |_: &Parts| Owner::new("acct_42").ok())
///     .session(|parts: &Parts| parts.extensions.get::<SessionId>().map(|session| session.0.clone()))
///     .csrf_key(key)
///     .csrf_lifetime(Duration::from_secs(2 * 60 * 60))
///     .title("Acme webhooks")
///     .into_router();
/// # let _: axum::Router = router;
/// ```
#[must_use = "a portal does nothing until `into_router` or `nest_in`"]
pub struct Portal {
    webhooks: Webhooks,
    who: Arc<Who>,
    session_of: Option<Arc<SessionOf>>,
    csrf_key: CsrfKey,
    csrf_lifetime: Duration,
    title: String,
    offered: Vec<String>,
    held_limit_at_most: u32,
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("webhooks", &self.webhooks)
            .field("binds_sessions", &self.session_of.is_some())
            .field("csrf_lifetime", &self.csrf_lifetime)
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// A portal over `webhooks`, acting for the owner `who` returns.
    pub fn new<W>(webhooks: Webhooks, who: W) -> Self
    where
        W: Fn(&Parts) -> Option<Owner> + Send + Sync + 'static,
    {
        Self {
            webhooks,
            who: Arc::new(who),
            session_of: None,
            csrf_key: CsrfKey::random(),
            csrf_lifetime: DEFAULT_CSRF_LIFETIME,
            title: "Webhooks".to_owned(),
            offered: Vec::new(),
            held_limit_at_most: DEFAULT_HELD_LIMIT,
        }
    }

    /// The host's session a request is in (its session id, or the value of
    /// its session cookie), or `None` when it is in none. Each form's CSRF
    /// token is then bound to the session as well as to the owner, so a
    /// token rendered in one session does not pass in another, and a form
    /// posted from no session (`None`, or an empty value) is refused (403).
    ///
    /// Without it tokens are bound to the owner only, and one copied out of
    /// a page passes in any of that owner's sessions until it expires: a
    /// host with sessions gives this.
    ///
    /// ```
    /// # use webhooks_core::{Owner, Preset, Webhooks};
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// use axum::http::header::COOKIE;
    /// use axum::http::request::Parts;
    ///
    /// /// The value of the host's `session` cookie.
    /// fn session_cookie(parts: &Parts) -> Option<String> {
    ///     let cookies = parts.headers.get(COOKIE)?.to_str().ok()?;
    ///     let value = cookies.split(';').find_map(|cookie| cookie.trim().strip_prefix("session="))?;
    ///     Some(value.to_owned())
    /// }
    ///
    /// let router = webhooks_axum::Portal::new(webhooks, |_: &Parts| Owner::new("acct_42").ok())
    ///     .session(session_cookie)
    ///     .into_router();
    /// # let _: axum::Router = router;
    /// ```
    pub fn session<S>(mut self, session_of: S) -> Self
    where
        S: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.session_of = Some(Arc::new(session_of));
        self
    }

    /// The key CSRF tokens are signed with; random per process by default.
    /// A host running several instances behind one address gives them all
    /// the same key, so a form rendered by one is accepted by another.
    ///
    /// ```
    /// # use webhooks_core::{Owner, Preset, Webhooks};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build()?;
    /// # let configured = "0123456789abcdef0123456789abcdef";
    /// // `configured`: the same 32 or more bytes on every instance, from
    /// // the host's secret store.
    /// let key = webhooks_axum::CsrfKey::new(configured)?;
    /// let router = webhooks_axum::Portal::new(webhooks, |_: &axum::http::request::Parts| Owner::new("acct_42").ok())
    ///     .csrf_key(key)
    ///     .into_router();
    /// # let _: axum::Router = router;
    /// # Ok(())
    /// # }
    /// ```
    pub fn csrf_key(mut self, key: CsrfKey) -> Self {
        self.csrf_key = key;
        self
    }

    /// How long a form's CSRF token is accepted after its page was
    /// rendered, in whole seconds, by the clock of `webhooks`;
    /// [`DEFAULT_CSRF_LIFETIME`] (12 hours) by default. A form posted later
    /// is refused (403) and its page must be reloaded.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use webhooks_core::{Owner, Preset, Webhooks};
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// let router = webhooks_axum::Portal::new(webhooks, |_: &axum::http::request::Parts| Owner::new("acct_42").ok())
    ///     .csrf_lifetime(Duration::from_secs(60 * 60))
    ///     .into_router();
    /// # let _: axum::Router = router;
    /// ```
    pub fn csrf_lifetime(mut self, lifetime: Duration) -> Self {
        self.csrf_lifetime = lifetime;
        self
    }

    /// The heading of every page; `Webhooks` by default.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The retry policies (registered with
    /// `WebhooksBuilder::retry_policy`, or a preset's name) an owner may
    /// pick for an endpoint, on its page or through the API's
    /// `retry_policy`; none by default, so only the host changes policies.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use webhooks_core::{Owner, Preset, Schedule, Webhooks};
    /// # let premium = Schedule::new([Duration::from_secs(5)]).unwrap();
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).retry_policy("premium", premium).build().unwrap();
    /// let router = webhooks_axum::Portal::new(webhooks, |_: &axum::http::request::Parts| Owner::new("acct_42").ok())
    ///     .offer_retry_policies(["DeepSmith", "premium"])
    ///     .into_router();
    /// # let _: axum::Router = router;
    /// ```
    pub fn offer_retry_policies<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.offered = names.into_iter().map(Into::into).collect();
        self
    }

    /// The most deliveries an owner may have an endpoint keep while it is
    /// disabled ([`EndpointSettings::held_limit`](webhooks_core::EndpointSettings::held_limit));
    /// [`DEFAULT_HELD_LIMIT`] by default, so a customer cannot make a dead
    /// endpoint's queue grow past what the host planned for.
    ///
    /// ```
    /// # use webhooks_core::{Owner, Preset, Webhooks};
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// let router = webhooks_axum::Portal::new(webhooks, |_: &axum::http::request::Parts| Owner::new("acct_42").ok())
    ///     .held_limit_at_most(50_000)
    ///     .into_router();
    /// # let _: axum::Router = router;
    /// ```
    pub fn held_limit_at_most(mut self, deliveries: u32) -> Self {
        self.held_limit_at_most = deliveries;
        self
    }

    /// The router: the pages at its root, the JSON API under `/api`.
    pub fn into_router(self) -> Router {
        self.router()
    }

    /// Nests the portal in the host's `router` at `path` (`/webhooks`,
    /// say), whatever the router's state, and answers `path/` with a
    /// permanent redirect to `path`, which `Router::nest` alone leaves
    /// unanswered.
    ///
    /// ```
    /// # use webhooks_core::{Owner, Preset, Webhooks};
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// #[derive(Clone)]
    /// struct AppState {/* the host's own */}
    /// let app: axum::Router<AppState> = axum::Router::new();
    /// let app = webhooks_axum::Portal::new(webhooks, |_: &axum::http::request::Parts| Owner::new("acct_42").ok())
    ///     .nest_in(app, "/webhooks")
    ///     .with_state(AppState {});
    /// # let _: axum::Router = app;
    /// ```
    pub fn nest_in<S>(self, router: Router<S>, path: &str) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return router.merge(self.router());
        }
        let canonical = path.to_owned();
        router.nest(path, self.router()).route(
            &format!("{path}/"),
            axum::routing::get(move || async move { axum::response::Redirect::permanent(&canonical) }),
        )
    }

    fn router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            webhooks: self.webhooks,
            who: self.who,
            session_of: self.session_of,
            csrf_key: self.csrf_key,
            csrf_lifetime: self.csrf_lifetime,
            title: self.title,
            offered: self.offered,
            held_limit_at_most: self.held_limit_at_most,
        });
        pages::routes().nest("/api", api::routes()).with_state(shared)
    }
}

/// How far back an endpoint's dropped deliveries are listed among its
/// operational events unless the request says.
pub(crate) const OPERATIONAL_EVENTS_WINDOW: chrono::Duration = chrono::Duration::days(7);

/// What every handler shares.
pub(crate) struct Shared {
    pub(crate) webhooks: Webhooks,
    who: Arc<Who>,
    session_of: Option<Arc<SessionOf>>,
    csrf_key: CsrfKey,
    csrf_lifetime: Duration,
    pub(crate) title: String,
    /// The retry policies an owner may pick.
    pub(crate) offered: Vec<String>,
    /// The most held deliveries an owner may choose.
    pub(crate) held_limit_at_most: u32,
}

pub(crate) type AppState = Arc<Shared>;

impl Shared {
    /// The owner of this request, if the host says anyone is signed in.
    pub(crate) fn owner(&self, parts: &Parts) -> Option<Owner> {
        (self.who)(parts)
    }

    /// The session this request's forms are bound to, or `None` when the
    /// host names sessions and this request is in none, so no form of it
    /// can be posted. An empty session id is none: it would bind every
    /// session-less request of an owner together.
    pub(crate) fn session(&self, parts: &Parts) -> Option<Session> {
        match &self.session_of {
            None => Some(Session::Unnamed),
            Some(session_of) => session_of(parts).filter(|id| !id.is_empty()).map(Session::Named),
        }
    }

    /// Now by the library's clock, in Unix seconds, so tests move tokens'
    /// time with the dispatcher's.
    fn now(&self) -> u64 {
        u64::try_from(self.webhooks.clock().now().timestamp()).unwrap_or(0)
    }

    /// The CSRF token of `owner`'s forms in `session`: only this portal's
    /// key makes it, and only a page of the portal shows it.
    pub(crate) fn csrf_token(&self, owner: &Owner, session: &Session) -> String {
        let expires = self.now().saturating_add(self.csrf_lifetime.as_secs());
        self.csrf_key.token(owner, session, expires)
    }

    /// Whether `token` is `owner`'s in `session` and unexpired; never
    /// without a session when the host names them.
    pub(crate) fn csrf_ok(&self, owner: &Owner, session: Option<&Session>, token: &str) -> bool {
        session.is_some_and(|session| self.csrf_key.accepts(token, owner, session, self.now()))
    }
}

/// Where the portal is mounted: the request's full path less the part the
/// portal routed on, so links work under whatever path the host nests it.
pub(crate) fn mount_path(parts: &Parts) -> String {
    let inner = parts.uri.path();
    let full = parts.extensions.get::<OriginalUri>().map_or(inner, |original| original.0.path());
    let base = full.strip_suffix(inner).unwrap_or_else(|| full.trim_end_matches('/'));
    base.trim_end_matches('/').to_owned()
}

/// Why a request failed, before it is shown as JSON or as a page.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library refused or failed.
    Core(Error),
    /// No such endpoint or delivery for this owner.
    NotFound(&'static str),
    /// Nobody is signed in.
    Unauthorized,
    /// A form without this owner's CSRF token.
    Csrf,
    /// A state-changing API request that is not JSON.
    JsonRequired,
    /// The request itself is malformed.
    BadRequest(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::SubscriptionNotFound { .. } => Self::NotFound("endpoint"),
            Error::DeliveryNotFound { .. } => Self::NotFound("delivery"),
            other => Self::Core(other),
        }
    }
}

impl Failure {
    /// The HTTP status, the stable code and the message.
    pub(crate) fn parts(&self) -> (u16, &'static str, String) {
        match self {
            Self::NotFound(what) => (404, "not_found", format!("no such {what}")),
            Self::Unauthorized => (401, "unauthorized", "sign in first".to_owned()),
            Self::Csrf => {
                (403, "csrf", "the form has expired or did not come from this site; reload it".to_owned())
            }
            Self::JsonRequired => (
                415,
                "json_required",
                "send state-changing requests as content-type: application/json".to_owned(),
            ),
            Self::BadRequest(message) => (400, "invalid_request", message.clone()),
            Self::Core(error) => {
                let code = match error {
                    Error::InsecureUrl { .. } => "insecure_url",
                    Error::InvalidUrl { .. } => "invalid_url",
                    Error::UnknownEventType { .. } => "unknown_event_type",
                    Error::Invalid { .. } => "invalid",
                    Error::BodyTooLarge { .. } => "body_too_large",
                    Error::Render(_) => "render",
                    // A store's failure says nothing a customer should read.
                    Error::Store(_) => {
                        return (500, "store", "the webhook store failed; try again".to_owned());
                    }
                    _ => return (500, "internal", "the request failed".to_owned()),
                };
                (400, code, error.to_string())
            }
        }
    }
}

/// `owner`'s subscription with this id, or not found: another owner's is as
/// unknown as one that never existed ([`Webhooks::owner`]), and so is a
/// malformed id.
pub(crate) async fn owned_subscription(
    webhooks: &Webhooks,
    owner: &Owner,
    id: &str,
) -> Result<Subscription, Failure> {
    let Ok(id) = id.parse::<SubscriptionId>() else { return Err(Failure::NotFound("endpoint")) };
    Ok(webhooks.owner(owner.clone()).subscription(id).await?)
}

/// `owner`'s delivery with this id (with its subscription), or not found,
/// as [`owned_subscription`].
pub(crate) async fn owned_delivery(
    webhooks: &Webhooks,
    owner: &Owner,
    id: &str,
) -> Result<(Delivery, Subscription), Failure> {
    let Ok(id) = id.parse::<DeliveryId>() else { return Err(Failure::NotFound("delivery")) };
    Ok(webhooks.owner(owner.clone()).delivery(id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use webhooks_core::ManualClock;

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    /// A portal's shared state on `clock`, signing with `key`, naming
    /// sessions by the `session` header when `sessions` says so.
    fn shared(key: &[u8], clock: &ManualClock, sessions: bool) -> Shared {
        let webhooks = Webhooks::builder()
            .store(webhooks_memory::MemoryStore::new())
            .preset(webhooks_core::Preset::deepsmith())
            .clock(clock.clone())
            .build()
            .unwrap();
        let session_of: Arc<SessionOf> = Arc::new(|parts: &Parts| {
            parts.headers.get("session").and_then(|value| value.to_str().ok()).map(str::to_owned)
        });
        Shared {
            webhooks,
            who: Arc::new(|_: &Parts| None),
            session_of: sessions.then_some(session_of),
            csrf_key: CsrfKey::new(key).unwrap(),
            csrf_lifetime: DEFAULT_CSRF_LIFETIME,
            title: String::new(),
            offered: Vec::new(),
            held_limit_at_most: DEFAULT_HELD_LIMIT,
        }
    }

    fn clock() -> ManualClock {
        ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap())
    }

    /// A request in the host's session `id`, or in none.
    fn request(session: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder().uri("/");
        if let Some(id) = session {
            request = request.header("session", id);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_csrf_token_passes_for_its_owner_session_and_key_until_it_expires() {
        let (alice, bob) = (Owner::new("alice").unwrap(), Owner::new("bob").unwrap());
        let clock = clock();
        let portal = shared(KEY, &clock, true);
        let in_s1 = portal.session(&request(Some("s1")));
        let token = portal.csrf_token(&alice, in_s1.as_ref().unwrap());
        assert!(portal.csrf_ok(&alice, in_s1.as_ref(), &token));
        assert!(!portal.csrf_ok(&bob, in_s1.as_ref(), &token), "Alice's token does not pass for Bob");
        let in_s2 = portal.session(&request(Some("s2")));
        assert!(!portal.csrf_ok(&alice, in_s2.as_ref(), &token), "nor in another session");
        let other_key = shared(b"another key of 32 bytes, or more", &clock, true);
        assert!(!other_key.csrf_ok(&alice, in_s1.as_ref(), &token), "another key makes other tokens");

        clock.advance(DEFAULT_CSRF_LIFETIME - Duration::from_secs(1));
        assert!(portal.csrf_ok(&alice, in_s1.as_ref(), &token), "the last second of its lifetime");
        clock.advance(Duration::from_secs(1));
        assert!(!portal.csrf_ok(&alice, in_s1.as_ref(), &token), "expired");
    }

    #[test]
    fn a_host_that_names_sessions_has_no_form_posted_from_none() {
        let alice = Owner::new("alice").unwrap();
        let portal = shared(KEY, &clock(), true);
        assert!(portal.session(&request(None)).is_none());
        assert!(portal.session(&request(Some(""))).is_none(), "an empty session id is none");
        // Nor does a token made for no session pass where sessions are named.
        let unbound = portal.csrf_key.token(&alice, &Session::Unnamed, u64::MAX);
        assert!(!portal.csrf_ok(&alice, None, &unbound));
        assert!(!portal.csrf_ok(&alice, portal.session(&request(Some("s1"))).as_ref(), &unbound));
    }

    #[test]
    fn without_sessions_a_token_is_bound_to_the_owner() {
        let (alice, bob) = (Owner::new("alice").unwrap(), Owner::new("bob").unwrap());
        let portal = shared(KEY, &clock(), false);
        let session = portal.session(&request(Some("ignored")));
        assert!(matches!(session, Some(Session::Unnamed)));
        let token = portal.csrf_token(&alice, session.as_ref().unwrap());
        assert!(portal.csrf_ok(&alice, portal.session(&request(None)).as_ref(), &token));
        assert!(!portal.csrf_ok(&bob, session.as_ref(), &token));
    }

    #[test]
    fn the_host_sets_the_tokens_lifetime() {
        let alice = Owner::new("alice").unwrap();
        let clock = clock();
        let mut portal = shared(KEY, &clock, true);
        portal.csrf_lifetime = Duration::from_secs(60);
        let session = portal.session(&request(Some("s1")));
        let token = portal.csrf_token(&alice, session.as_ref().unwrap());
        clock.advance(Duration::from_secs(59));
        assert!(portal.csrf_ok(&alice, session.as_ref(), &token));
        clock.advance(Duration::from_secs(1));
        assert!(!portal.csrf_ok(&alice, session.as_ref(), &token));
    }

    #[test]
    fn a_tampered_or_malformed_token_is_refused() {
        let alice = Owner::new("alice").unwrap();
        let portal = shared(KEY, &clock(), true);
        let session = portal.session(&request(Some("s1")));
        let token = portal.csrf_token(&alice, session.as_ref().unwrap());
        let (expires, mac) = token.split_once('.').unwrap();
        let later = format!("{}.{mac}", expires.parse::<u64>().unwrap() + 3600);
        assert!(!portal.csrf_ok(&alice, session.as_ref(), &later), "a later expiry breaks the MAC");
        for malformed in ["", "not a token", mac, &token[..token.len() - 2]] {
            assert!(!portal.csrf_ok(&alice, session.as_ref(), malformed), "{malformed:?}");
        }
    }

    #[test]
    fn the_mount_path_is_what_the_host_nested_the_portal_under() {
        let parts = |full: &str, inner: &str| {
            let (mut parts, ()) = axum::http::Request::builder().uri(inner).body(()).unwrap().into_parts();
            parts.extensions.insert(OriginalUri(full.parse().unwrap()));
            parts
        };
        assert_eq!(mount_path(&parts("/portal/endpoints/1", "/endpoints/1")), "/portal");
        assert_eq!(mount_path(&parts("/portal", "/")), "/portal");
        assert_eq!(mount_path(&parts("/portal/", "/")), "/portal");
        assert_eq!(mount_path(&parts("/", "/")), "");
        assert_eq!(mount_path(&parts("/a/b/deliveries", "/deliveries")), "/a/b");
    }
}
