//! Examples and end-to-end tests for the `webhooks` crates.
//!
//! [`Receiver`] is a real HTTP server on `127.0.0.1:0` that records every
//! request and answers as it is scripted to; the examples and the tests use
//! it as the other end of a webhook.

#![warn(missing_docs)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its raw body.
    pub body: Bytes,
}

impl Received {
    /// A header as text (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// Wait this long before answering.
    pub delay: Duration,
    /// The body.
    pub body: String,
    /// Extra headers.
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

#[derive(Clone)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    script: Arc<Mutex<Script>>,
}

/// A local webhook receiver that records requests; stops when dropped.
pub struct Receiver {
    url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver that answers every request with `204 No Content`.
    pub async fn start() -> std::io::Result<Self> {
        Self::scripted(|_, _| Reply::status(204)).await
    }

    /// Starts a receiver that answers request number `n` (from 0) with
    /// `script(n, request)`.
    pub async fn scripted(
        script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        let shared = Shared {
            received: Arc::default(),
            arrived: Arc::default(),
            script: Arc::new(Mutex::new(Arc::new(script))),
        };
        let app = Router::new().route("/hooks", post(receive)).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, server })
    }

    /// Where to send webhooks.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Replaces the script from the next request on.
    pub fn rescript(&self, script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) {
        *self.shared.script.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(script);
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until at least `count` requests have arrived, or `timeout` passes;
    /// returns every request so far.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Received> {
        let wait = async {
            loop {
                let arrived = self.shared.arrived.notified();
                tokio::pin!(arrived);
                arrived.as_mut().enable();
                if self.received().len() >= count {
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

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let request = Received { headers, body };
    let index = {
        let mut received = shared.received.lock().unwrap_or_else(PoisonError::into_inner);
        received.push(request.clone());
        received.len() - 1
    };
    shared.arrived.notify_waiters();
    let script = Arc::clone(&shared.script.lock().unwrap_or_else(PoisonError::into_inner));
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

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
