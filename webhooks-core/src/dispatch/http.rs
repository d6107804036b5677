//! The send stage: a [`Request`] POSTed, bounded in time and in how much of
//! the answer is read, comes back as [`Sent`]. Whatever happens, an answer
//! or none, is a `Sent`: judging it is the next stage's job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use url::Url;

use super::guard::{Guard, GuardedResolver};
use crate::model::AttemptResult;

/// A request ready to send: signed, its headers set, its time bounded.
#[derive(Debug)]
pub(super) struct Request<'a> {
    pub(super) url: &'a Url,
    /// The scheme's signature headers and the subscription's own.
    pub(super) headers: HeaderMap,
    /// The stored body: the same bytes, shared, not copied.
    pub(super) body: Bytes,
    /// The longest the exchange may take, connect to last byte read.
    pub(super) timeout: Duration,
}

/// What one request came to.
#[derive(Debug)]
pub(super) struct Sent {
    /// The answer's status and the start of its body, or why none came.
    pub(super) result: AttemptResult,
    /// The answer's headers; empty when none came.
    pub(super) headers: HeaderMap,
    /// How long the exchange took.
    pub(super) took: Duration,
}

impl Sent {
    /// The answer's status, if one came.
    pub(super) fn status(&self) -> Option<u16> {
        match self.result {
            AttemptResult::Response { status, .. } => Some(status),
            AttemptResult::Error(_) => None,
        }
    }
}

/// How requests go out: one client for every attempt, the address guard,
/// and how much of an answer is read.
#[derive(Clone)]
pub(super) struct Transport {
    client: reqwest::Client,
    guard: Arc<Guard>,
    body_limit: usize,
}

impl Transport {
    /// Completes the client the dispatcher uses: redirects are never followed
    /// (a 3xx is a failed attempt, and a redirect could lead anywhere).
    /// Unless every target is allowed, names resolve through the address
    /// guard and no proxy is used (a proxy would resolve the names itself,
    /// past the guard), or, given an egress proxy, every request goes through
    /// it and the proxy filters the addresses names resolve to. At most
    /// `body_limit` bytes of an answer are read.
    pub(super) fn new(
        builder: reqwest::ClientBuilder,
        connect_timeout: Duration,
        guard: Guard,
        egress_proxy: Option<reqwest::Proxy>,
        body_limit: usize,
    ) -> Result<Self, reqwest::Error> {
        // With `rustls-ring` alone reqwest has no provider of its own: ring
        // becomes the process default, unless the host installed one.
        #[cfg(all(feature = "rustls-ring", not(feature = "rustls-aws-lc")))]
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race to another installer leaves a provider in place too.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let guard = Arc::new(guard);
        let builder = builder
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .user_agent(concat!("webhooks/", env!("CARGO_PKG_VERSION")));
        let client = match egress_proxy {
            Some(proxy) => builder.proxy(proxy),
            None if guard.allows_all() => builder,
            None => builder.no_proxy().dns_resolver(Arc::new(GuardedResolver(Arc::clone(&guard)))),
        }
        .build()?;
        Ok(Self { client, guard, body_limit })
    }

    /// POSTs `request` and reads at most the body limit of the answer, all
    /// within the request's timeout. A URL whose host is an address the
    /// guard refuses is not sent at all.
    pub(super) async fn send(&self, request: Request<'_>) -> Sent {
        let started = Instant::now();
        let (result, headers) = match self.guard.check_literal(request.url) {
            Ok(()) => self.post(request).await,
            Err(refused) => (AttemptResult::Error(refused), HeaderMap::new()),
        };
        Sent { result, headers, took: started.elapsed() }
    }

    async fn post(&self, request: Request<'_>) -> (AttemptResult, HeaderMap) {
        let Request { url, mut headers, body, timeout } = request;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let request = self.client.post(url.clone()).headers(headers).body(body);
        let exchange = async {
            let mut response = request.send().await.map_err(describe)?;
            let status = response.status().as_u16();
            // Taken, not copied: the body is read without them.
            let headers = std::mem::take(response.headers_mut());
            let body = read_body(&mut response, self.body_limit).await;
            Ok((AttemptResult::Response { status, body }, headers))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => (AttemptResult::Error(error), HeaderMap::new()),
            Err(_) => {
                let error = format!("timed out after {} ms", timeout.as_millis());
                (AttemptResult::Error(error), HeaderMap::new())
            }
        }
    }
}

/// Reads the answer chunk by chunk and stops at `limit` bytes: a huge answer
/// costs no more memory than the limit.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> String {
    let mut read = Vec::new();
    while read.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - read.len());
                read.extend_from_slice(&chunk[..take]);
            }
            // The status is the receiver's answer; a broken body after it
            // does not change it.
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&read).into_owned()
}

/// Names what failed and its root cause, without the URL (it may carry
/// tokens) and without reqwest's nesting.
fn describe(error: reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_request() {
        "request failed"
    } else {
        "error"
    };
    let mut cause: &dyn std::error::Error = &error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    format!("{kind}: {cause}")
}
