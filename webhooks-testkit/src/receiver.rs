//! [`Receiver`]: a real local HTTP server that answers as scripted and
//! records every request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use webhooks_core::{Clock, Preset, Secret, SignatureScheme, VerifyError};

/// One request the [`Receiver`] got, as it arrived.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Received {
    /// Its method.
    pub method: Method,
    /// Its path, without the query.
    pub path: String,
    /// Its query string, if any.
    pub query: Option<String>,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its raw body.
    pub body: Bytes,
    /// When it arrived (Tokio's clock, so paused test time applies).
    pub received_at: Instant,
    /// Whether its signature verified, when the receiver was told to verify
    /// ([`Receiver::verify_with`]); `None` otherwise.
    pub verified: Option<Result<(), VerifyError>>,
}

impl Received {
    /// A header as text (empty when absent or not visible ASCII).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::io::AsyncWriteExt;
    /// use webhooks_testkit::Receiver;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let receiver = Receiver::start().await?;
    /// let mut client = tokio::net::TcpStream::connect(receiver.local_addr()).await?;
    /// client.write_all(b"POST /hooks?v=1 HTTP/1.1\r\nhost: localhost\r\nx-event: ping\r\ncontent-length: 2\r\n\r\n{}").await?;
    /// let request = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    /// assert_eq!((request.method.as_str(), request.path.as_str(), request.query.as_deref()), ("POST", "/hooks", Some("v=1")));
    /// assert_eq!(request.header("x-event"), "ping");
    /// assert_eq!(request.header("x-absent"), "");
    /// assert_eq!(&request.body[..], b"{}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// Checks this request's signature with `scheme` (e.g. a
    /// [`Preset::scheme`]) against `secrets`, as a receiver would at `now`.
    /// With a [`ManualClock`](webhooks_core::ManualClock), pass its `now()`:
    /// the request was signed at that clock's time.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serde_json::json;
    /// # use webhooks_core::{Clock, ManualClock, Preset, Subscription, UrlRule, Webhooks};
    /// # use webhooks_testkit::{Receiver, TestDispatcher};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let receiver = Receiver::start().await.unwrap();
    /// # let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
    /// let preset = Preset::smartlyq().with_url_rule(UrlRule::allow_http());
    /// # let webhooks = Webhooks::builder()
    /// #     .store(webhooks_memory::MemoryStore::new())
    /// #     .preset(preset.clone())
    /// #     .clock(clock.clone())
    /// #     .build()
    /// #     .unwrap();
    /// let subscription =
    ///     webhooks.subscribe(Subscription::builder(receiver.url()).event_type("job.completed")).await.unwrap();
    /// # let dispatcher = TestDispatcher::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    /// webhooks.publish("job.completed", json!({"job_id": "j1"})).await.unwrap();
    /// let request = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    /// let secrets = [subscription.secret.clone()];
    /// assert_eq!(request.verify(preset.scheme(), &secrets, clock.now()), Ok(()));
    /// assert!(request.verify(preset.scheme(), &["whsec_other".into()], clock.now()).is_err());
    /// # dispatcher.stop().await;
    /// # }
    /// ```
    pub fn verify(
        &self,
        scheme: &dyn SignatureScheme,
        secrets: &[Secret],
        now: DateTime<Utc>,
    ) -> Result<(), VerifyError> {
        scheme.verify(&self.headers, &self.body, secrets, now)
    }
}

/// How the [`Receiver`] answers one request.
///
/// ```
/// use std::time::Duration;
/// use webhooks_testkit::Reply;
///
/// let reply = Reply::status(429).header("retry-after", "30").with_body("slow down").after(Duration::from_millis(10));
/// assert_eq!((reply.status, reply.body.as_str()), (429, "slow down"));
/// ```
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status; one that is not a valid HTTP status is answered as 500.
    pub status: u16,
    /// Wait this long before answering.
    pub delay: Duration,
    /// The body.
    pub body: String,
    /// Extra headers; a name or value that is not valid HTTP is left out.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    /// Answers `status` at once with an empty body.
    pub fn status(status: u16) -> Self {
        Self { status, delay: Duration::ZERO, body: String::new(), headers: Vec::new() }
    }

    /// Waits before answering.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers with this body.
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = body.into();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Adds a `Location` header, for redirects.
    pub fn to(self, location: impl Into<String>) -> Self {
        self.header("location", location)
    }
}

type Script = Arc<dyn Fn(usize, &Received) -> Reply + Send + Sync>;

/// What verifying requests on arrival takes.
struct Verification {
    preset: Preset,
    secrets: Vec<Secret>,
    clock: Arc<dyn Clock>,
}

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    script: Arc<Mutex<Script>>,
    verification: Arc<Mutex<Option<Arc<Verification>>>>,
}

/// A local webhook receiver: an HTTP server on `127.0.0.1` (a free port)
/// that records every request, whatever its method or path, and answers as
/// scripted. Stops when dropped.
///
/// ```
/// use std::time::Duration;
/// use webhooks_testkit::{Receiver, Reply};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// // Fails the first two requests, then accepts.
/// let receiver = Receiver::scripted(|n, _| Reply::status(if n < 2 { 500 } else { 204 })).await?;
/// assert!(receiver.url().starts_with("http://127.0.0.1:"));
/// assert!(receiver.wait_for(1, Duration::from_millis(10)).await.is_empty());
/// # Ok(())
/// # }
/// ```
pub struct Receiver {
    url: String,
    address: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Receiver {
    /// Starts a receiver that answers every request with `204 No Content`.
    pub async fn start() -> std::io::Result<Self> {
        Self::scripted(|_, _| Reply::status(204)).await
    }

    /// Starts a receiver that answers request number `n` (from 0, counting
    /// every request) with `script(n, request)`.
    pub async fn scripted(
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let url = format!("http://{address}/hooks");
        let shared = Shared {
            received: Arc::default(),
            arrived: Arc::default(),
            script: Arc::new(Mutex::new(Arc::new(script))),
            verification: Arc::default(),
        };
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, address, shared, server })
    }

    /// Where to send webhooks: `http://127.0.0.1:PORT/hooks`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Replaces the script from the next request on.
    pub fn rescript(&self, script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) {
        *lock(&self.shared.script) = Arc::new(script);
    }

    /// From the next request on, verifies each request's signature with
    /// `preset`'s scheme against `secrets` at `clock`'s now, as a receiver
    /// would: the result is in [`Received::verified`], and a request that
    /// fails is answered `401 Unauthorized` (the error as its body) instead
    /// of by the script.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use serde_json::json;
    /// # use webhooks_core::{ManualClock, Preset, Subscription, UrlRule, Webhooks};
    /// # use webhooks_testkit::{Receiver, TestDispatcher};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let receiver = Receiver::start().await.unwrap();
    /// let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
    /// let preset = Preset::standard().with_url_rule(UrlRule::allow_http());
    /// # let webhooks = Webhooks::builder()
    /// #     .store(webhooks_memory::MemoryStore::new())
    /// #     .preset(preset.clone())
    /// #     .clock(clock.clone())
    /// #     .build()
    /// #     .unwrap();
    /// let subscription =
    ///     webhooks.subscribe(Subscription::builder(receiver.url()).event_type("invoice.paid")).await.unwrap();
    /// receiver.verify_with(&preset, [subscription.secret.clone()], clock.clone());
    /// # let dispatcher = TestDispatcher::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    /// webhooks.publish("invoice.paid", json!({"id": 7})).await.unwrap();
    /// let request = receiver.wait_for(1, Duration::from_secs(10)).await.remove(0);
    /// assert_eq!(request.verified, Some(Ok(())));
    /// # dispatcher.stop().await;
    /// # }
    /// ```
    pub fn verify_with(
        &self,
        preset: &Preset,
        secrets: impl IntoIterator<Item = Secret>,
        clock: impl Clock + 'static,
    ) {
        *lock(&self.shared.verification) = Some(Arc::new(Verification {
            preset: preset.clone(),
            secrets: secrets.into_iter().collect(),
            clock: Arc::new(clock),
        }));
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// Waits until at least `count` requests have arrived, or `timeout`
    /// passes; returns every request so far either way.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let wait = async {
            loop {
                let arrived = self.shared.arrived.notified();
                tokio::pin!(arrived);
                // Registered before looking, so an arrival in between is not missed.
                arrived.as_mut().enable();
                if lock(&self.shared.received).len() >= count {
                    return;
                }
                arrived.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.received()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A poisoned lock only means a script panicked; the data is still whole.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn receive(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received_at = Instant::now();
    let verification = lock(&shared.verification).clone();
    let verified = verification.map(|v| v.preset.scheme().verify(&headers, &body, &v.secrets, v.clock.now()));
    let request = Received {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
        received_at,
        verified,
    };
    let index = {
        let mut received = lock(&shared.received);
        received.push(request.clone());
        received.len() - 1
    };
    shared.arrived.notify_waiters();
    if let Some(Err(error)) = &request.verified {
        return (StatusCode::UNAUTHORIZED, error.to_string()).into_response();
    }
    let script = Arc::clone(&lock(&shared.script));
    let reply = script(index, &request);
    tokio::time::sleep(reply.delay).await;
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
