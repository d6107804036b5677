//! Faults the dispatcher survives, each against a real local server: a
//! listener that never accepts, a receiver that never answers, trickles,
//! floods, resets, redirects inward, answers too late or drops keep-alive
//! connections, and a slow endpoint next to a fast one.
//!
//! Each time the attempt is logged with a clear error (or the status that
//! came), the schedule goes on, and no event is lost. Where axum is too
//! well-behaved to misbehave, the servers here speak raw HTTP/1.1 over
//! `tokio::net::TcpListener`.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::{Running, delivered, eventually, over_http, recorded, start, webhooks};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use webhooks_core::{
    Attempt, AttemptResult, Delivery, DeliveryId, DeliveryState, DisablePolicy, ManualClock, Preset, Publish,
    Store, Subscription, SubscriptionId, Webhooks,
};
use webhooks_examples::{Receiver, Reply};
use webhooks_memory::MemoryStore;

/// The short request timeout most tests use.
const TIMEOUT: Duration = Duration::from_millis(300);
const EVENT: &str = "iq.status_updated";

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 servers
// ---------------------------------------------------------------------------

/// Reads one request from `stream`: the head up to the blank line, then
/// `Content-Length` bytes of body. Bytes past it stay in `buffer` for the
/// next request on the connection. `Ok(false)` when the client closed the
/// connection between requests.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(Ok(0), |value| value.trim().parse::<usize>())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let total = end + 4 + length;
            while buffer.len() < total {
                let read = stream.read(&mut chunk).await?;
                if read == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            buffer.drain(..total);
            return Ok(true);
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return if buffer.is_empty() { Ok(false) } else { Err(std::io::ErrorKind::UnexpectedEof.into()) };
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Waits until the client closes the connection (or breaks it).
async fn until_client_leaves(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

/// A server that hands every accepted connection to `handle`; stops, with
/// every connection, when dropped.
struct Server {
    url: String,
    task: JoinHandle<()>,
}

impl Server {
    async fn start<F, Fut>(handle: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            // Owned by the accept loop: aborting it drops every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            connections.spawn(handle(stream));
                        }
                        Err(_) => return,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Self { url, task }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the keep-alive server does with one request.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// Answers this status at once and keeps the connection.
    Status(u16),
    /// Answers this status after a wait and keeps the connection.
    After(Duration, u16),
    /// Answers this status, then resets the connection.
    StatusThenReset(u16),
    /// Closes the connection (FIN) without answering.
    Close,
    /// Resets the connection (RST) without answering.
    Reset,
}

type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

#[derive(Default)]
struct Stats {
    connections: AtomicUsize,
    requests: AtomicUsize,
    ok_answers: AtomicUsize,
    dropped_connections: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// An HTTP/1.1 server that serves many requests per connection, answering
/// request number `n` (from 0, over all connections) as its script says.
struct KeepAlive {
    server: Server,
    stats: Arc<Stats>,
    script: Arc<Mutex<Script>>,
}

impl KeepAlive {
    async fn start(script: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Self {
        let stats = Arc::new(Stats::default());
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Arc::new(script)));
        let server = Server::start({
            let (stats, script) = (Arc::clone(&stats), Arc::clone(&script));
            move |stream| serve_keep_alive(stream, Arc::clone(&stats), Arc::clone(&script))
        })
        .await;
        Self { server, stats, script }
    }

    fn url(&self) -> &str {
        &self.server.url
    }

    fn rescript(&self, script: impl Fn(usize) -> Answer + Send + Sync + 'static) {
        *self.script.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(script);
    }

    fn stat(&self, pick: impl Fn(&Stats) -> &AtomicUsize) -> usize {
        pick(&self.stats).load(Ordering::SeqCst)
    }
}

async fn serve_keep_alive(mut stream: TcpStream, stats: Arc<Stats>, script: Arc<Mutex<Script>>) {
    stats.connections.fetch_add(1, Ordering::SeqCst);
    let mut buffer = Vec::new();
    while let Ok(true) = read_request(&mut stream, &mut buffer).await {
        let n = stats.requests.fetch_add(1, Ordering::SeqCst);
        let script = Arc::clone(&script.lock().unwrap_or_else(PoisonError::into_inner));
        let answer = script(n);
        let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let keep = answer_with(&mut stream, answer, &stats).await;
        stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !keep {
            stats.dropped_connections.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

/// Answers one request; whether the connection stays open.
async fn answer_with(stream: &mut TcpStream, answer: Answer, stats: &Stats) -> bool {
    let (status, delay, reset_after) = match answer {
        Answer::Status(status) => (status, Duration::ZERO, false),
        Answer::After(delay, status) => (status, delay, false),
        Answer::StatusThenReset(status) => (status, Duration::ZERO, true),
        Answer::Close => return false,
        Answer::Reset => {
            let _ = stream.set_zero_linger();
            return false;
        }
    };
    tokio::time::sleep(delay).await;
    let response = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
    if stream.write_all(response.as_bytes()).await.is_err() {
        return false;
    }
    if (200..300).contains(&status) {
        stats.ok_answers.fetch_add(1, Ordering::SeqCst);
    }
    if reset_after {
        let _ = stream.set_zero_linger();
        return false;
    }
    true
}

/// A tiny deterministic generator, so "random" failures repeat run to run.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

// ---------------------------------------------------------------------------
// One delivery on a manual clock
// ---------------------------------------------------------------------------

/// One event published to one endpoint, with a dispatcher running on a
/// manual clock (DeepSmith: retries after 10 s, 60 s and 5 min).
struct OneDelivery {
    webhooks: Webhooks,
    clock: ManualClock,
    running: Running,
    id: DeliveryId,
}

impl OneDelivery {
    async fn publish(url: &str, timeout: Duration) -> Self {
        Self::publish_with(url, |builder| builder.request_timeout(timeout)).await
    }

    async fn publish_with(
        url: &str,
        configure: impl FnOnce(webhooks_core::DispatcherBuilder) -> webhooks_core::DispatcherBuilder,
    ) -> Self {
        let (webhooks, clock) = webhooks(Preset::deepsmith());
        webhooks.subscribe(Subscription::builder(url).event_type(EVENT)).await.unwrap();
        let running =
            Running::start(configure(webhooks.dispatcher().allow_private_networks(true)).build().unwrap());
        let id = webhooks.publish(EVENT, json!({"id": 1})).await.unwrap().deliveries[0];
        Self { webhooks, clock, running, id }
    }

    /// Waits for attempt `number` (from 1) to be recorded and returns it.
    async fn attempt(&self, number: usize) -> Attempt {
        recorded(&self.webhooks, self.id, number).await;
        self.webhooks.attempts(self.id).await.unwrap().swap_remove(number - 1)
    }

    async fn delivery(&self) -> Delivery {
        self.webhooks.delivery(self.id).await.unwrap().unwrap()
    }

    /// Asserts the delivery is still pending after `attempts` failed
    /// attempts, its next one due at `next`.
    async fn assert_retrying(&self, attempts: u32, next: DateTime<Utc>) {
        let delivery = self.delivery().await;
        assert_eq!(
            (delivery.state, delivery.attempts, delivery.next_attempt_at),
            (DeliveryState::Pending, attempts, Some(next)),
            "the failure is retried on the schedule"
        );
    }

    /// Moves the clock to the next attempt and waits for it.
    async fn next_attempt(&self, wait: Duration, number: usize) -> Attempt {
        self.clock.advance(wait);
        self.attempt(number).await
    }

    async fn stop(self) {
        self.running.stop().await;
    }
}

fn after(seconds: i64) -> DateTime<Utc> {
    start() + chrono::Duration::seconds(seconds)
}

#[track_caller]
fn assert_timed_out(attempt: &Attempt, timeout: Duration) {
    let error = attempt.error().unwrap_or_else(|| panic!("expected a timeout, got {:?}", attempt.result));
    assert!(error.contains("timed out"), "expected a timeout, got {error:?}");
    assert!(
        attempt.duration >= timeout,
        "gave up after {:?}, before the {timeout:?} timeout",
        attempt.duration
    );
    assert!(
        attempt.duration < timeout + Duration::from_secs(1),
        "the timeout did not bound the attempt: {:?}",
        attempt.duration
    );
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_listener_that_never_accepts_times_out_and_is_retried() {
    // Bound and listening, never accepting: the kernel completes the
    // handshake and the request sits in the backlog, unanswered.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let one = OneDelivery::publish(&url, TIMEOUT).await;

    assert_timed_out(&one.attempt(1).await, TIMEOUT);
    one.assert_retrying(1, after(10)).await;

    assert_timed_out(&one.next_attempt(Duration::from_secs(10), 2).await, TIMEOUT);
    one.assert_retrying(2, after(70)).await;
    one.stop().await;
    drop(listener);
}

#[tokio::test]
async fn a_receiver_that_reads_the_request_and_never_answers_times_out() {
    let (requests_tx, mut requests) = mpsc::unbounded_channel();
    let server = Server::start(move |mut stream| {
        let requests = requests_tx.clone();
        async move {
            if let Ok(true) = read_request(&mut stream, &mut Vec::new()).await {
                let _ = requests.send(());
                until_client_leaves(&mut stream).await;
            }
        }
    })
    .await;
    let one = OneDelivery::publish(&server.url, TIMEOUT).await;

    assert_timed_out(&one.attempt(1).await, TIMEOUT);
    assert_eq!(requests.try_recv(), Ok(()), "the request reached the receiver");
    one.assert_retrying(1, after(10)).await;

    assert_timed_out(&one.next_attempt(Duration::from_secs(10), 2).await, TIMEOUT);
    one.assert_retrying(2, after(70)).await;
    one.stop().await;
}

/// Writes `response` one byte a second; counts the bytes written.
async fn trickle(response: &'static [u8], head_at_once: usize, written: Arc<AtomicUsize>) -> Server {
    Server::start(move |mut stream| {
        let written = Arc::clone(&written);
        async move {
            if !matches!(read_request(&mut stream, &mut Vec::new()).await, Ok(true)) {
                return;
            }
            if stream.write_all(&response[..head_at_once]).await.is_err() {
                return;
            }
            written.fetch_add(head_at_once, Ordering::SeqCst);
            for byte in &response[head_at_once..] {
                if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
                    return;
                }
                written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_response_trickled_a_byte_a_second_is_cut_off_by_the_whole_exchange_timeout() {
    // 41 bytes at one a second would take 41 s. Each byte comes well within
    // the timeout of the previous one, so only a bound on the whole exchange
    // (not an idle timeout per read) stops it.
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
    let timeout = Duration::from_millis(2500);
    let written = Arc::new(AtomicUsize::new(0));
    let server = trickle(RESPONSE, 0, Arc::clone(&written)).await;
    let one = OneDelivery::publish(&server.url, timeout).await;

    let attempt = one.attempt(1).await;
    assert_timed_out(&attempt, timeout);
    let sent = written.load(Ordering::SeqCst);
    assert!((1..=4).contains(&sent), "{sent} of {} bytes were trickled", RESPONSE.len());
    one.assert_retrying(1, after(10)).await;
    one.stop().await;
}

#[tokio::test]
async fn a_2xx_whose_body_trickles_past_the_timeout_is_not_a_delivery() {
    // The status line and headers come at once; the body never finishes in
    // time. The exchange, reading included, is bounded: the attempt fails.
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nthis body takes thirty seconds";
    let head = RESPONSE.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let timeout = Duration::from_millis(1500);
    let written = Arc::new(AtomicUsize::new(0));
    let server = trickle(RESPONSE, head, Arc::clone(&written)).await;
    let one = OneDelivery::publish(&server.url, timeout).await;

    assert_timed_out(&one.attempt(1).await, timeout);
    assert!(written.load(Ordering::SeqCst) < RESPONSE.len());
    one.assert_retrying(1, after(10)).await;
    one.stop().await;
}

#[tokio::test]
async fn a_one_gib_response_is_read_only_up_to_the_cap_and_the_connection_dropped() {
    const GIB: u64 = 1 << 30;
    const CHUNK: usize = 64 * 1024;
    let (written_tx, mut written) = mpsc::unbounded_channel();
    let server = Server::start(move |mut stream| {
        let written_tx = written_tx.clone();
        async move {
            if !matches!(read_request(&mut stream, &mut Vec::new()).await, Ok(true)) {
                return;
            }
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {GIB}\r\n\r\n");
            let mut sent = 0u64;
            if stream.write_all(head.as_bytes()).await.is_ok() {
                let chunk = vec![b'x'; CHUNK];
                while sent < GIB && stream.write_all(&chunk).await.is_ok() {
                    sent += CHUNK as u64;
                }
            }
            let _ = written_tx.send(sent);
        }
    })
    .await;
    let limit = 4096;
    let one = OneDelivery::publish_with(&server.url, |b| {
        b.request_timeout(Duration::from_secs(5)).response_body_limit(limit)
    })
    .await;

    let attempt = one.attempt(1).await;
    assert_eq!(attempt.result, AttemptResult::Response { status: 200, body: "x".repeat(limit) });
    assert!(attempt.duration < Duration::from_secs(2), "read more than it needed: {:?}", attempt.duration);
    // The server writes until its writes fail, which they do only once the
    // client has gone away.
    let sent = tokio::time::timeout(Duration::from_secs(10), written.recv())
        .await
        .expect("the client let go of the connection")
        .unwrap();
    println!("the server wrote {sent} bytes before the client went away");
    assert!(sent < 64 << 20, "{sent} bytes were taken off the wire");
    assert_eq!(one.delivery().await.state, DeliveryState::Delivered, "a 2xx is a 2xx, body cut or not");
    one.stop().await;
}

#[tokio::test]
async fn a_reset_connection_is_a_failed_attempt_and_is_retried() {
    let server = KeepAlive::start(|n| if n == 0 { Answer::Reset } else { Answer::Status(200) }).await;
    let one = OneDelivery::publish(server.url(), Duration::from_secs(5)).await;

    let first = one.attempt(1).await;
    let error = first.error().unwrap_or_else(|| panic!("expected an error, got {:?}", first.result));
    println!("a reset reads as: {error}");
    assert!(!error.is_empty() && !error.contains("timed out"), "{error:?}");
    assert!(first.duration < Duration::from_secs(1), "{:?}", first.duration);
    one.assert_retrying(1, after(10)).await;

    let second = one.next_attempt(Duration::from_secs(10), 2).await;
    assert_eq!(second.status(), Some(200));
    let delivery = one.delivery().await;
    assert_eq!((delivery.state, delivery.attempts), (DeliveryState::Delivered, 2));
    assert_eq!(server.stat(|s| &s.requests), 2);
    one.stop().await;
}

#[tokio::test]
async fn a_redirect_to_the_metadata_address_is_a_failed_attempt_and_not_followed() {
    let receiver =
        Receiver::scripted(|_, _| Reply::status(302).to("http://169.254.169.254/latest/meta-data/"))
            .await
            .unwrap();
    // Private targets are allowed here, so only the no-redirect rule stands
    // between the dispatcher and the metadata service.
    let one = OneDelivery::publish(receiver.url(), Duration::from_secs(3)).await;

    let attempt = one.attempt(1).await;
    assert_eq!(attempt.status(), Some(302), "{:?}", attempt.result);
    assert!(!attempt.succeeded());
    // Following would have meant a connection to 169.254.169.254: seconds
    // of timeout here, or an error; a 302 logged at once means no hop.
    assert!(attempt.duration < Duration::from_secs(1), "{:?}", attempt.duration);
    one.assert_retrying(1, after(10)).await;
    assert_eq!(receiver.received().len(), 1);
    one.stop().await;
}

#[tokio::test]
async fn a_2xx_after_the_timeout_is_a_failure_and_the_next_attempt_delivers() {
    let receiver = Receiver::scripted(|n, _| {
        let delay = if n == 0 { Duration::from_secs(2) } else { Duration::ZERO };
        Reply::status(200).after(delay)
    })
    .await
    .unwrap();
    let one = OneDelivery::publish(receiver.url(), TIMEOUT).await;

    assert_timed_out(&one.attempt(1).await, TIMEOUT);
    one.assert_retrying(1, after(10)).await;

    let second = one.next_attempt(Duration::from_secs(10), 2).await;
    assert_eq!(second.status(), Some(200));
    let delivery = one.delivery().await;
    assert_eq!(
        (delivery.state, delivery.attempts, delivery.next_attempt_at),
        (DeliveryState::Delivered, 2, None)
    );
    assert_eq!(receiver.received().len(), 2);
    one.stop().await;
}

// ---------------------------------------------------------------------------
// Many deliveries, real time
// ---------------------------------------------------------------------------

/// A facade on a fresh memory store with the system clock.
fn real_time(preset: Preset) -> Webhooks {
    Webhooks::builder().store(MemoryStore::new()).preset(over_http(preset)).build().unwrap()
}

fn fast_retries() -> Preset {
    Preset::deepsmith().with_retry_scale(0.0).unwrap().with_disable_policy(DisablePolicy::never())
}

async fn counts_done(webhooks: &Webhooks, subscription: SubscriptionId, total: u64) -> bool {
    let counts = webhooks.delivery_counts(subscription).await.unwrap();
    counts.delivered + counts.dropped == total && counts.pending == 0
}

#[tokio::test]
async fn keep_alive_connections_closed_at_random_lose_nothing() {
    const EVENTS: usize = 100;
    // Per request: 15% the connection is closed or reset before any answer,
    // 15% it is reset right after a 200; the rest are answered and kept.
    let server = KeepAlive::start(|n| {
        let mut rng = XorShift::new(0x5eed ^ n as u64);
        match rng.below(20) {
            0 | 1 => Answer::Close,
            2 => Answer::Reset,
            3..=5 => Answer::StatusThenReset(200),
            _ => Answer::Status(200),
        }
    })
    .await;
    let webhooks = real_time(fast_retries());
    let subscription =
        webhooks.subscribe(Subscription::builder(server.url()).event_type(EVENT)).await.unwrap();
    let running = Running::start(
        webhooks
            .dispatcher()
            .allow_private_networks(true)
            .concurrency(16)
            .per_endpoint_concurrency(16)
            .request_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        ids.extend(webhooks.publish(EVENT, json!({ "n": n })).await.unwrap().deliveries);
    }
    eventually("every delivery is delivered or dropped", || {
        counts_done(&webhooks, subscription.id, EVENTS as u64)
    })
    .await;
    running.stop().await;

    let (mut delivered, mut dropped, mut attempted, mut failed_attempts) = (0, 0, 0, 0);
    for id in &ids {
        let delivery = webhooks.delivery(*id).await.unwrap().unwrap();
        let attempts = webhooks.attempts(*id).await.unwrap();
        assert_eq!(attempts.len(), delivery.attempts as usize, "{id}: the log has every attempt");
        attempted += attempts.len();
        let (last, earlier) = attempts.split_last().expect("every delivery was attempted");
        for failed in earlier {
            assert!(!failed.succeeded(), "{id}: an attempt followed a 2xx");
        }
        for attempt in attempts.iter().filter(|a| !a.succeeded()) {
            failed_attempts += 1;
            let error = attempt.error().unwrap_or_else(|| panic!("{id}: {:?}", attempt.result));
            assert!(!error.trim().is_empty(), "{id}: a failed attempt without an error");
        }
        match delivery.state {
            DeliveryState::Delivered => {
                delivered += 1;
                assert!(last.succeeded(), "{id}: delivered, but its last attempt is {:?}", last.result);
            }
            DeliveryState::Dropped => {
                dropped += 1;
                assert_eq!(attempts.len(), 4, "{id}: dropped before DeepSmith's 4 attempts");
                assert!(!last.succeeded());
            }
            DeliveryState::Pending | DeliveryState::Held => panic!("{id} is still {:?}", delivery.state),
        }
    }
    println!(
        "{delivered} delivered, {dropped} dropped, {failed_attempts} failed attempts; server: {} connections, \
         {} requests, {} dropped connections",
        server.stat(|s| &s.connections),
        server.stat(|s| &s.requests),
        server.stat(|s| &s.dropped_connections),
    );
    assert_eq!(delivered + dropped, EVENTS);
    assert!(failed_attempts > 0, "the faults never showed: the test tested nothing");
    assert!(server.stat(|s| &s.dropped_connections) > 10);
    // Every 2xx the log shows is one the server really sent, and every
    // request the server read is in some delivery's log.
    assert!(delivered <= server.stat(|s| &s.ok_answers));
    assert!(server.stat(|s| &s.requests) <= attempted, "requests the log does not account for");
}

/// Endpoint A answers after 3 s, endpoint B at once; concurrency 8, 2 per
/// endpoint. A's events are published first, so they are due (and claimed)
/// first. All of B's must be delivered while A holds only its two slots and
/// its first answers are still seconds away; then A's go out too.
async fn slow_beside_fast(slow_events: u64, fast_events: u64) {
    let slow = KeepAlive::start(|_| Answer::After(Duration::from_secs(3), 200)).await;
    let fast = KeepAlive::start(|_| Answer::Status(200)).await;
    let webhooks = real_time(fast_retries());
    let a = webhooks
        .subscribe(Subscription::builder(slow.url()).event_type("content.status_updated"))
        .await
        .unwrap();
    let b = webhooks
        .subscribe(Subscription::builder(fast.url()).event_type("topic.status_updated"))
        .await
        .unwrap();
    let running = Running::start(
        webhooks
            .dispatcher()
            .allow_private_networks(true)
            .concurrency(8)
            .per_endpoint_concurrency(2)
            .request_timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
    );
    let started = Instant::now();
    for n in 0..slow_events {
        webhooks.publish("content.status_updated", json!({ "n": n })).await.unwrap();
    }
    for n in 0..fast_events {
        webhooks.publish("topic.status_updated", json!({ "n": n })).await.unwrap();
    }

    delivered(&webhooks, b.id, fast_events).await;
    let fast_done = started.elapsed();
    println!("the fast endpoint had all {fast_events} after {fast_done:?}");
    assert!(fast_done < Duration::from_secs(2), "the fast endpoint took {fast_done:?}");
    assert!(slow.stat(|s| &s.requests) <= 2, "the slow endpoint got {} requests", slow.stat(|s| &s.requests));
    assert_eq!(webhooks.delivery_counts(a.id).await.unwrap().delivered, 0, "its first answers are 3 s away");
    assert_eq!(fast.stat(|s| &s.requests), fast_events as usize);

    slow.rescript(|_| Answer::Status(200));
    let deadline = Instant::now() + Duration::from_secs(25);
    while !counts_done(&webhooks, a.id, slow_events).await {
        assert!(Instant::now() < deadline, "the slow endpoint's deliveries never all went out");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("the slow endpoint had all {slow_events} after {:?}", started.elapsed());
    running.stop().await;
    assert_eq!(webhooks.delivery_counts(a.id).await.unwrap().delivered, slow_events);
    assert_eq!(slow.stat(|s| &s.requests), slow_events as usize, "one request per delivery");
    assert!(slow.stat(|s| &s.max_in_flight) <= 2, "{} requests at once", slow.stat(|s| &s.max_in_flight));
}

#[tokio::test]
async fn a_slow_endpoint_does_not_starve_the_others() {
    slow_beside_fast(20, 20).await;
}

#[tokio::test]
async fn a_slow_endpoint_holds_no_more_than_its_share_of_the_slots() {
    // The fast endpoint's backlog fits within its share of 2 slots.
    slow_beside_fast(6, 2).await;
}

/// Healthy endpoint's 200 deliveries at the dispatcher's defaults (64
/// workers, 512 waiting requests, 15 s timeout) beside `hanging` endpoints
/// that accept connections and never answer, each with 20 deliveries
/// published first (so due, and claimed, first), on a dispatcher that has
/// heard from none of them (as after a restart). Returns how long the
/// healthy endpoint's deliveries took; fails if any waited for a hanging
/// request's timeout.
async fn healthy_beside_hanging(hanging: usize) -> Duration {
    const HEALTHY: u64 = 200;
    let webhooks = real_time(fast_retries());
    let mut hangers = Vec::new();
    // Every hanging endpoint on one server: its own subscription each.
    let server = Arc::new(KeepAlive::start(|_| Answer::After(Duration::from_secs(3600), 200)).await);
    for _ in 0..hanging {
        let subscription = webhooks
            .subscribe(Subscription::builder(server.url()).event_type("content.status_updated"))
            .await
            .unwrap();
        hangers.push((Arc::clone(&server), subscription));
    }
    let healthy = KeepAlive::start(|_| Answer::Status(200)).await;
    let b = webhooks
        .subscribe(Subscription::builder(healthy.url()).event_type("topic.status_updated"))
        .await
        .unwrap();
    webhooks
        .publish_many((0..20).map(|n| Publish::new("content.status_updated", json!({ "n": n }))))
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let started = Instant::now();
    webhooks
        .publish_many((0..HEALTHY).map(|n| Publish::new("topic.status_updated", json!({ "n": n }))))
        .await
        .unwrap();
    delivered(&webhooks, b.id, HEALTHY).await;
    let took = started.elapsed();
    // Every hanging request is still open: none has reached its 15 s
    // timeout, so nothing the healthy endpoint got waited for one.
    for (_, subscription) in &hangers {
        assert_eq!(webhooks.stats(subscription.id).await.unwrap().attempts, 0);
    }
    // Every hanging endpoint gets its first try, one request each, well
    // before the first of them times out.
    eventually("every hanging endpoint tried", || async { server.stat(|s| &s.requests) == hanging }).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(healthy.stat(|s| &s.requests), HEALTHY as usize);
    // The hanging requests would hold a graceful stop for 15 s.
    running.abort();
    took
}

#[tokio::test]
async fn hanging_endpoints_leave_a_healthy_one_its_slots() {
    let alone = healthy_beside_hanging(0).await;
    for hanging in [1, 2, 10, 50, 200] {
        let took = healthy_beside_hanging(hanging).await;
        println!(
            "{hanging:>2} hanging: healthy endpoint's 200 deliveries in {took:?}, {:.2} x its {alone:?} alone",
            took.as_secs_f64() / alone.as_secs_f64()
        );
    }
}

/// 400 endpoints that answer in 3 s, each with two deliveries published
/// first, beside 50 quick endpoints with four each: the quick endpoints'
/// deliveries all go out while every slow endpoint has a request waiting
/// (off the workers: there are 64 of those) and none has answered yet.
#[tokio::test]
async fn quick_endpoints_are_served_while_400_slow_ones_wait() {
    let slow = KeepAlive::start(|_| Answer::After(Duration::from_secs(3), 200)).await;
    let quick = KeepAlive::start(|_| Answer::Status(200)).await;
    let webhooks = real_time(fast_retries());
    let mut slow_ones = Vec::new();
    for _ in 0..400 {
        let subscription =
            webhooks.subscribe(Subscription::builder(slow.url()).event_type("content.status_updated")).await;
        slow_ones.push(subscription.unwrap().id);
    }
    let mut quick_ones = Vec::new();
    for n in 0..50 {
        let subscription = webhooks
            .subscribe(Subscription::builder(quick.url()).owner(format!("quick-{n}")).event_type(EVENT))
            .await;
        quick_ones.push(subscription.unwrap().id);
    }
    webhooks
        .publish_many((0..2).map(|n| Publish::new("content.status_updated", json!({ "n": n }))))
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    eventually("every slow endpoint has a request waiting", || async { slow.stat(|s| &s.in_flight) == 400 })
        .await;
    let started = Instant::now();
    webhooks
        .publish_many(
            (0..200).map(|n| Publish::new(EVENT, json!({ "n": n })).owner(format!("quick-{}", n % 50))),
        )
        .await
        .unwrap();
    for id in &quick_ones {
        delivered(&webhooks, *id, 4).await;
    }
    let took = started.elapsed();
    println!("quick endpoints' 200 deliveries beside 400 waiting slow requests: {took:?}");
    // None of the slow answers has come: the quick deliveries waited for none.
    assert_eq!(slow.stat(|s| &s.ok_answers), 0, "a slow answer came first: {took:?}");
    assert_eq!(quick.stat(|s| &s.requests), 200);
    assert_eq!(slow.stat(|s| &s.max_in_flight), 400, "one request per slow endpoint, no more yet");
    // The slow endpoints' deliveries go out too.
    for id in &slow_ones {
        delivered(&webhooks, *id, 2).await;
    }
    running.stop().await;
}

/// The cap, as each store keeps it, holds.
async fn an_endpoint_never_has_more_requests_in_flight_than_its_cap(store: Arc<dyn Store>) {
    let capped = KeepAlive::start(|_| Answer::After(Duration::from_millis(20), 200)).await;
    let webhooks = Webhooks::builder().shared_store(store).preset(over_http(fast_retries())).build().unwrap();
    let subscription = webhooks
        .subscribe(Subscription::builder(capped.url()).event_type("topic.status_updated").max_in_flight(3))
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    webhooks
        .publish_many((0..60).map(|n| Publish::new("topic.status_updated", json!({ "n": n }))))
        .await
        .unwrap();
    delivered(&webhooks, subscription.id, 60).await;
    running.stop().await;
    // Without the cap its share would grow to every one of the workers.
    assert_eq!(capped.stat(|s| &s.max_in_flight), 3, "the cap is reached and never passed");
}

on_every_store!(an_endpoint_never_has_more_requests_in_flight_than_its_cap);
