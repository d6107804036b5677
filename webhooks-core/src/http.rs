//! The HTTP exchange of one attempt: POST, bounded in time and in how much of
//! the answer is read.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use url::Url;

use crate::model::AttemptResult;

/// The client the dispatcher uses unless given its own: redirects are not
/// followed (a 3xx is a failed attempt, and a redirect could lead anywhere).
pub(crate) fn default_client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .user_agent(concat!("webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
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
) -> AttemptResult {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let request = client.post(url.clone()).headers(headers).body(body);
    let exchange = async {
        let mut response = request.send().await.map_err(describe)?;
        let status = response.status().as_u16();
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
        Ok(AttemptResult::Response { status, body: String::from_utf8_lossy(&read).into_owned() })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => AttemptResult::Error(error),
        Err(_) => AttemptResult::Error(format!("timed out after {} ms", timeout.as_millis())),
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
