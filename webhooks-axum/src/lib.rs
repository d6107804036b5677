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
//! CSRF token, an HMAC of the owner under a key of the portal's; the JSON
//! API takes state-changing requests only as `application/json`, which a
//! browser does not send across sites without the host's CORS consent.
//! Secrets are shown once, on the page or in the answer that creates or
//! rotates them, and never again.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod health;
mod pages;
mod policy;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::OriginalUri;
use axum::http::request::Parts;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use webhooks_core::{
    DEFAULT_HELD_LIMIT, Delivery, DeliveryId, Error, Owner, Subscription, SubscriptionId, Webhooks,
};

/// How the host tells the portal whose request this is: the owner the
/// signed-in user acts for, or `None` when nobody is signed in (401).
pub type Who = dyn Fn(&Parts) -> Option<Owner> + Send + Sync;

/// The portal's router for `webhooks`, acting for the owner `who` names;
/// nest it under any path. A shortcut for [`Portal::new`] with a random
/// CSRF key.
pub fn portal<W>(webhooks: Webhooks, who: W) -> Router
where
    W: Fn(&Parts) -> Option<Owner> + Send + Sync + 'static,
{
    Portal::new(webhooks, who).into_router()
}

/// The portal's settings; [`Portal::into_router`] builds the router.
///
/// ```
/// # use webhooks_core::{Owner, Preset, Webhooks};
/// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
/// let router = webhooks_axum::Portal::new(webhooks, |_: &axum::http::request::Parts| Owner::new("acct_42").ok())
///     .csrf_key(b"the same 32 or more bytes on every instance of the host")
///     .title("Acme webhooks")
///     .into_router();
/// # let _: axum::Router = router;
/// ```
#[must_use = "a portal does nothing until `into_router` or `nest_in`"]
pub struct Portal {
    webhooks: Webhooks,
    who: Arc<Who>,
    csrf_key: Vec<u8>,
    title: String,
    offered: Vec<String>,
    held_limit_at_most: u32,
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("webhooks", &self.webhooks)
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
        let csrf_key: Vec<u8> = (0..32).map(|_| rand::rng().random::<u8>()).collect();
        Self {
            webhooks,
            who: Arc::new(who),
            csrf_key,
            title: "Webhooks".to_owned(),
            offered: Vec::new(),
            held_limit_at_most: DEFAULT_HELD_LIMIT,
        }
    }

    /// The key CSRF tokens are signed with; random per process by default.
    /// A host running several instances behind one address gives them all
    /// the same key, so a form rendered by one is accepted by another.
    pub fn csrf_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.csrf_key = key.as_ref().to_vec();
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
            csrf_key: self.csrf_key,
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
    csrf_key: Vec<u8>,
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

    fn mac(&self, owner: &Owner) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.csrf_key).unwrap_or_else(|_| unreachable!());
        mac.update(b"webhooks-axum csrf\0");
        mac.update(owner.as_str().as_bytes());
        mac
    }

    /// The CSRF token of `owner`'s forms: only this portal's key makes it,
    /// and only a page of the portal shows it.
    pub(crate) fn csrf_token(&self, owner: &Owner) -> String {
        hex::encode(self.mac(owner).finalize().into_bytes())
    }

    /// Whether `token` is `owner`'s, compared in constant time.
    pub(crate) fn csrf_ok(&self, owner: &Owner, token: &str) -> bool {
        hex::decode(token).is_ok_and(|bytes| self.mac(owner).verify_slice(&bytes).is_ok())
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

    fn shared(key: &[u8]) -> Shared {
        let webhooks = Webhooks::builder()
            .store(webhooks_memory::MemoryStore::new())
            .preset(webhooks_core::Preset::deepsmith())
            .build()
            .unwrap();
        Shared {
            webhooks,
            who: Arc::new(|_: &Parts| None),
            csrf_key: key.to_vec(),
            title: String::new(),
            offered: Vec::new(),
            held_limit_at_most: DEFAULT_HELD_LIMIT,
        }
    }

    #[test]
    fn a_csrf_token_is_one_owners_under_one_key() {
        let (alice, bob) = (Owner::new("alice").unwrap(), Owner::new("bob").unwrap());
        let portal = shared(b"key one");
        let token = portal.csrf_token(&alice);
        assert!(portal.csrf_ok(&alice, &token));
        assert!(!portal.csrf_ok(&bob, &token), "Alice's token does not pass for Bob");
        assert!(!shared(b"key two").csrf_ok(&alice, &token), "another key makes other tokens");
        assert!(!portal.csrf_ok(&alice, ""));
        assert!(!portal.csrf_ok(&alice, "not hex"));
        assert!(!portal.csrf_ok(&alice, &token[..10]));
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
