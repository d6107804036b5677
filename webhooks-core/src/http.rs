//! The HTTP exchange of one attempt: POST, bounded in time and in how much of
//! the answer is read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};
use url::Url;

use crate::guard::{Guard, GuardedResolver};
use crate::model::AttemptResult;

/// Completes the client the dispatcher uses: redirects are never followed (a
/// 3xx is a failed attempt, and a redirect could lead anywhere). Unless every
/// target is allowed, names resolve through the address guard and no proxy
/// is used (a proxy would resolve the names itself, past the guard), or,
/// given an egress proxy, every request goes through it and the proxy
/// filters the addresses names resolve to.
pub(crate) fn client(
    builder: reqwest::ClientBuilder,
    connect_timeout: Duration,
    guard: Arc<Guard>,
    egress_proxy: Option<reqwest::Proxy>,
) -> Result<reqwest::Client, reqwest::Error> {
    // With `rustls-ring` alone reqwest has no provider of its own: ring
    // becomes the process default, unless the host installed one.
    #[cfg(all(feature = "rustls-ring", not(feature = "rustls-aws-lc")))]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer leaves a provider in place too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let builder = builder
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .user_agent(concat!("webhooks/", env!("CARGO_PKG_VERSION")));
    match egress_proxy {
        Some(proxy) => builder.proxy(proxy),
        None if guard.allows_all() => builder,
        None => builder.no_proxy().dns_resolver(Arc::new(GuardedResolver(guard))),
    }
    .build()
}

/// When a receiver asked to be retried (`Retry-After` on a 429 or 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryAfter {
    /// After this long.
    Delay(Duration),
    /// At this time.
    At(DateTime<Utc>),
}

impl RetryAfter {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Self::Delay(Duration::from_secs(seconds)));
        }
        // An HTTP date in any of the three formats RFC 9110 (5.6.7) says a
        // recipient must accept: IMF-fixdate, RFC 850 and asctime.
        let at = httpdate::parse_http_date(value).ok()?;
        Some(Self::At(DateTime::<Utc>::from(at)))
    }

    /// The wait it asks for, seen from `now`.
    pub(crate) fn delay_from(self, now: DateTime<Utc>) -> Duration {
        match self {
            Self::Delay(delay) => delay,
            Self::At(at) => (at - now).to_std().unwrap_or_default(),
        }
    }
}

/// What one exchange produced.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) result: AttemptResult,
    pub(crate) retry_after: Option<RetryAfter>,
}

/// POSTs `body` and reads at most `body_limit` bytes of the answer, all within
/// `timeout`.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &Url,
    mut headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    body_limit: usize,
    guard: &Guard,
) -> Exchange {
    if let Err(refused) = guard.check_literal(url) {
        return Exchange { result: AttemptResult::Error(refused), retry_after: None };
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = client.post(url.clone()).headers(headers).body(body);
    let exchange = async {
        let mut response = request.send().await.map_err(describe)?;
        let status = response.status();
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(RetryAfter::parse)
            }
            _ => None,
        };
        let mut read = Vec::new();
        // Read chunk by chunk and stop at the cap: a huge answer costs no
        // more memory than the cap.
        while read.len() < body_limit {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let take = chunk.len().min(body_limit - read.len());
                    read.extend_from_slice(&chunk[..take]);
                }
                // The status is the receiver's answer; a broken body after it
                // does not change it.
                Ok(None) | Err(_) => break,
            }
        }
        let body = String::from_utf8_lossy(&read).into_owned();
        Ok(Exchange { result: AttemptResult::Response { status: status.as_u16(), body }, retry_after })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(exchange)) => exchange,
        Ok(Err(error)) => Exchange { result: AttemptResult::Error(error), retry_after: None },
        Err(_) => Exchange {
            result: AttemptResult::Error(format!("timed out after {} ms", timeout.as_millis())),
            retry_after: None,
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        assert_eq!(RetryAfter::parse("120"), Some(RetryAfter::Delay(Duration::from_secs(120))));
        let at = RetryAfter::parse("Mon, 02 Mar 2026 14:35:00 GMT").unwrap();
        let now = DateTime::from_timestamp(1_772_461_800, 0).unwrap(); // 14:30:00
        assert_eq!(at.delay_from(now), Duration::from_secs(300));
        assert_eq!(
            at.delay_from(now + chrono::Duration::hours(1)),
            Duration::ZERO,
            "a past date asks for no wait"
        );
        for obsolete in ["Monday, 02-Mar-26 14:35:00 GMT", "Mon Mar  2 14:35:00 2026"] {
            assert_eq!(RetryAfter::parse(obsolete), Some(at), "{obsolete}");
        }
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-5"), None);
    }
}
