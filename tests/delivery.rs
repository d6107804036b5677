//! End to end: a real dispatcher POSTing to a real local HTTP server.

mod common;

use std::time::Duration;

use common::{Running, delivered, listening, recorded, start, webhooks};
use serde_json::json;
use webhooks_core::{
    AttemptResult, Clock, DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_BATCHING, DeepSmithScheme, DeliveryState,
    Error, Preset, SmartlyQScheme, Subscription, SubscriptionStatus, Webhooks,
};
use webhooks_examples::{Outcomes, Receiver, Reply};
use webhooks_memory::MemoryStore;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn smartlyq_requests_carry_its_headers_and_a_verifiable_signature() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, clock) = webhooks(Preset::smartlyq());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type("job.completed")).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());

    let published =
        webhooks.publish("job.completed", json!({"job_id": "job_abc123", "words": 1200})).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    recorded(&webhooks, published.deliveries[0], 1).await;

    assert_eq!(
        &request.body[..],
        br#"{"event":"job.completed","timestamp":"2026-03-02T14:30:00Z","data":{"job_id":"job_abc123","words":1200}}"#
    );
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-smartlyq-event"), "job.completed");
    assert_eq!(request.header("x-smartlyq-delivery"), published.deliveries[0].to_string());
    assert!(request.header("x-smartlyq-signature").starts_with("t=1772461800,v1="));
    request
        .verify(&SmartlyQScheme::default(), std::slice::from_ref(&subscription.secret), clock.now())
        .unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hooks"));

    let delivery = webhooks.delivery(published.deliveries[0]).await.unwrap().unwrap();
    assert_eq!(delivery.body, request.body, "the stored bytes are the bytes sent");
    assert_eq!(delivery.state, DeliveryState::Delivered);
    running.stop().await;
}

#[tokio::test]
async fn deepsmith_requests_carry_its_headers_and_a_verifiable_signature() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, clock) = webhooks(Preset::deepsmith());
    let subscription = webhooks
        .subscribe(
            Subscription::builder(receiver.url())
                .event_types(["content.status_updated", "topic.status_updated"])
                .secret("s3crét-with-unicode-☃"),
        )
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());

    let published =
        webhooks.publish("topic.status_updated", json!({"topic": 9, "status": "ready"})).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);

    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event"], "topic.status_updated");
    assert_eq!(body["data"], json!({"topic": 9, "status": "ready"}));
    assert_eq!(request.header("x-webhook-id"), published.deliveries[0].to_string());
    assert_eq!(request.header("x-webhook-event"), "topic.status_updated");
    assert_eq!(
        request.header("x-webhook-signature"),
        DeepSmithScheme.signature(&request.body, &subscription.secret)
    );
    request.verify(&DeepSmithScheme, std::slice::from_ref(&subscription.secret), clock.now()).unwrap();
    running.stop().await;
}

#[tokio::test]
async fn smartlyq_makes_six_attempts_doubling_from_two_minutes_then_drops() {
    let receiver = Receiver::scripted(|_, _| Reply::status(500).with_body("down")).await.unwrap();
    let (webhooks, clock) = webhooks(Preset::smartlyq());
    webhooks.subscribe(Subscription::builder(receiver.url()).event_type("wallet.low")).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("wallet.low", json!({"balance": "4.99"})).await.unwrap().deliveries[0];

    running.settle().await;
    for (attempt, wait_minutes) in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32)] {
        // Settled: every attempt due is made and recorded, nothing more.
        assert_eq!(webhooks.attempts(id).await.unwrap().len(), attempt);
        // One second short of the wait, nothing happens.
        running.advance(&clock, Duration::from_secs(wait_minutes * 60 - 1)).await;
        assert_eq!(receiver.received().len(), attempt, "no early retry before {wait_minutes} min");
        running.advance(&clock, Duration::from_secs(1)).await;
    }
    assert_eq!(webhooks.attempts(id).await.unwrap().len(), 6);
    running.advance(&clock, Duration::from_secs(24 * 3600)).await;

    assert_eq!(receiver.received().len(), 6);
    let delivery = webhooks.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Dropped);
    let attempts = webhooks.attempts(id).await.unwrap();
    let offsets: Vec<i64> = attempts.iter().map(|a| (a.started_at - start()).num_seconds()).collect();
    assert_eq!(offsets, vec![0, 120, 360, 840, 1800, 3720]);
    assert!(
        attempts.iter().all(|a| a.result == AttemptResult::Response { status: 500, body: "down".into() })
    );
    running.stop().await;
}

#[tokio::test]
async fn deepsmith_makes_four_attempts_at_10_s_60_s_and_5_min() {
    let receiver = Receiver::scripted(|_, _| Reply::status(503)).await.unwrap();
    let (webhooks, clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];

    running.settle().await;
    for (attempt, wait) in [(1, 10), (2, 60), (3, 300)] {
        assert_eq!(webhooks.attempts(id).await.unwrap().len(), attempt);
        running.advance(&clock, Duration::from_secs(wait - 1)).await;
        assert_eq!(receiver.received().len(), attempt, "no early retry before {wait} s");
        running.advance(&clock, Duration::from_secs(1)).await;
    }
    running.advance(&clock, Duration::from_secs(3600)).await;

    let attempts = webhooks.attempts(id).await.unwrap();
    let offsets: Vec<i64> = attempts.iter().map(|a| (a.started_at - start()).num_seconds()).collect();
    assert_eq!(offsets, vec![0, 10, 70, 370]);
    assert_eq!(receiver.received().len(), 4);
    assert_eq!(webhooks.delivery(id).await.unwrap().unwrap().state, DeliveryState::Dropped);
    running.stop().await;
}

#[tokio::test]
async fn a_2xx_after_failures_stops_the_retries() {
    let receiver = Receiver::scripted(|n, _| Reply::status(if n < 2 { 500 } else { 202 })).await.unwrap();
    let (webhooks, clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];

    running.settle().await;
    for wait in [10, 60] {
        running.advance(&clock, Duration::from_secs(wait)).await;
    }
    running.advance(&clock, Duration::from_secs(3600)).await;

    assert_eq!(receiver.received().len(), 3);
    let delivery = webhooks.delivery(id).await.unwrap().unwrap();
    assert_eq!(
        (delivery.state, delivery.attempts, delivery.next_attempt_at),
        (DeliveryState::Delivered, 3, None)
    );
    running.stop().await;
}

/// Publishes one event to `url` and returns its first attempt's result.
async fn first_attempt(url: &str, timeout: Duration) -> AttemptResult {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    webhooks.subscribe(Subscription::builder(url).event_type("iq.status_updated")).await.unwrap();
    let running = Running::start(
        webhooks.dispatcher().allow_private_networks(true).request_timeout(timeout).build().unwrap(),
    );
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    let delivery = webhooks.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Pending, "the failure is retried");
    assert_eq!(delivery.attempts, 1);
    webhooks.attempts(id).await.unwrap().remove(0).result
}

#[tokio::test]
async fn a_redirect_is_a_failed_attempt_and_is_not_followed() {
    let elsewhere = Receiver::start().await.unwrap();
    let location = elsewhere.url().to_owned();
    let receiver = Receiver::scripted(move |_, _| Reply::status(307).to(location.clone())).await.unwrap();
    let result = first_attempt(receiver.url(), Duration::from_secs(5)).await;
    assert!(matches!(result, AttemptResult::Response { status: 307, .. }), "{result:?}");
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_a_failed_attempt() {
    let receiver = Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_secs(5))).await.unwrap();
    let result = first_attempt(receiver.url(), Duration::from_millis(200)).await;
    assert!(matches!(&result, AttemptResult::Error(e) if e.contains("timed out")), "{result:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_failed_attempt() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", closed.local_addr().unwrap());
    drop(closed);
    let result = first_attempt(&url, Duration::from_secs(5)).await;
    assert!(matches!(&result, AttemptResult::Error(e) if e.contains("connection")), "{result:?}");
}

#[tokio::test]
async fn the_response_body_is_read_only_up_to_the_cap() {
    let receiver =
        Receiver::scripted(|_, _| Reply::status(500).with_body("x".repeat(200_000))).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(
        webhooks.dispatcher().allow_private_networks(true).response_body_limit(100).build().unwrap(),
    );
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    let attempt = webhooks.attempts(id).await.unwrap().remove(0);
    assert_eq!(attempt.result, AttemptResult::Response { status: 500, body: "x".repeat(100) });
}

#[tokio::test]
async fn smartlyq_refuses_an_http_url_when_subscribing() {
    let webhooks = Webhooks::builder().store(MemoryStore::new()).preset(Preset::smartlyq()).build().unwrap();
    let error = webhooks
        .subscribe(Subscription::builder("http://example.com/hooks").event_type("job.completed"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InsecureUrl { .. }), "{error:?}");
    assert!(error.to_string().contains("https"), "{error}");
}

#[tokio::test]
async fn unknown_event_types_are_refused_when_subscribing_and_publishing() {
    let (webhooks, _clock) = webhooks(Preset::smartlyq());
    let error = webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("content.status_updated"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownEventType { ref name, .. } if name == "content.status_updated"));
    let error = webhooks.publish("job.exploded", json!({})).await.unwrap_err();
    assert!(matches!(error, Error::UnknownEventType { ref name, .. } if name == "job.exploded"));
}

#[tokio::test]
async fn an_extended_catalogue_accepts_the_hosts_own_event_types() {
    let (webhooks, _clock) = webhooks(Preset::smartlyq().with_event_types(["invoice.paid"]));
    webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("invoice.paid"))
        .await
        .unwrap();
    assert_eq!(webhooks.publish("invoice.paid", json!({})).await.unwrap().deliveries.len(), 1);
}

#[tokio::test]
async fn deepsmith_disables_after_ten_failures_and_holds_the_rest_until_enabled() {
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith().with_retry_scale(0.0).unwrap());
    let subscription = listening(&webhooks, receiver.url()).await;
    let running =
        Running::start(webhooks.dispatcher().allow_private_networks(true).concurrency(1).build().unwrap());
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.extend(webhooks.publish("iq.status_updated", json!({"n": n})).await.unwrap().deliveries);
    }
    // Retries are due at once: settled, the endpoint has failed its last.
    running.settle().await;
    assert!(!webhooks.subscription(subscription.id).await.unwrap().is_enabled());
    assert_eq!(receiver.received().len(), 10, "no attempt after the tenth failure");
    let status = webhooks.subscription(subscription.id).await.unwrap().status;
    assert!(
        matches!(status, SubscriptionStatus::Disabled { ref reason, .. } if reason.contains("10 consecutive"))
    );
    let held = webhooks.delivery_counts(subscription.id).await.unwrap();
    assert_eq!(held.pending + held.dropped, 3, "nothing is lost");
    assert!(held.pending >= 1 && held.dropped <= 2, "{held:?}");

    receiver.rescript(|_, _| Reply::status(200));
    webhooks.enable(subscription.id).await.unwrap();
    delivered(&webhooks, subscription.id, held.pending).await;
    assert_eq!(receiver.received().len(), 10 + held.pending as usize);
    running.stop().await;
}

#[tokio::test]
async fn an_idle_dispatcher_is_woken_by_a_publish() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    // An hour-long poll interval: only the wake-up can bring the request.
    let running = Running::start(
        webhooks
            .dispatcher()
            .allow_private_networks(true)
            .poll_interval(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    // Settled: the dispatcher has looked and is waiting.
    running.settle().await;
    webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1);
    running.stop().await;
}

#[tokio::test]
async fn shutdown_lets_the_attempt_in_flight_finish_and_be_recorded() {
    let receiver =
        Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_millis(300))).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    listening(&webhooks, receiver.url()).await;
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    receiver.wait_for(1, WAIT).await;
    running.stop().await;
    let delivery = webhooks.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(webhooks.attempts(id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn outcomes_reach_the_hosts_hook() {
    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 200 })).await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith().with_retry_scale(0.0).unwrap());
    listening(&webhooks, receiver.url()).await;
    let (dispatcher, mut outcomes) = Outcomes::collect(webhooks.dispatcher().allow_private_networks(true));
    let running = Running::start(dispatcher.build().unwrap());
    webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    let mut next = async || outcomes.next(WAIT).await.map(|o| (o.attempt.number, o.verdict.as_str()));
    assert_eq!(next().await, Some((1, "retrying")));
    assert_eq!(next().await, Some((2, "delivered")));
    running.stop().await;
}

#[tokio::test]
async fn a_panicking_outcome_hook_does_not_stall_its_endpoint() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let subscription = listening(&webhooks, receiver.url()).await;
    let panicked = std::sync::atomic::AtomicBool::new(false);
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .concurrency(2)
        .per_endpoint_concurrency(1)
        .on_outcome(move |_| {
            if !panicked.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("the host's hook fails once");
            }
        });
    let running = Running::start(dispatcher.build().unwrap());
    for n in 0..3 {
        webhooks.publish("iq.status_updated", json!({ "n": n })).await.unwrap();
    }
    delivered(&webhooks, subscription.id, 3).await;
    running.stop().await;
    assert_eq!(receiver.received().len(), 3);
}

/// A hook that blocks: delivery goes on, the queue holds what fits, the rest
/// is missed (and counted), and nothing waits for the hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_outcome_hook_misses_what_its_queue_cannot_hold_and_delivery_goes_on() {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let subscription = listening(&webhooks, receiver.url()).await;
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = std::sync::Mutex::new(Some(blocked));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let dispatcher = webhooks.dispatcher().allow_private_networks(true).outcome_queue(4).on_outcome({
        let calls = std::sync::Arc::clone(&calls);
        move |_| {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // The first call blocks its thread until the test lets go.
            if let Some(blocked) = blocked.lock().unwrap().take() {
                let _ = blocked.recv();
            }
        }
    });
    let running = Running::start(dispatcher.build().unwrap());
    for n in 0..20 {
        webhooks.publish("iq.status_updated", json!({ "n": n })).await.unwrap();
    }
    delivered(&webhooks, subscription.id, 20).await;
    release.send(()).unwrap();
    // Stopping waits for the hook to finish what its queue held.
    running.stop().await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        1 + 4,
        "the blocked outcome and the 4 queued"
    );
}

#[tokio::test]
async fn the_default_workers_follow_the_store() {
    let (memory, _clock) = webhooks(Preset::deepsmith());
    let (sqlite, _dir) = common::sqlite_store().await;
    let sqlite = Webhooks::builder().shared_store(sqlite).preset(Preset::deepsmith()).build().unwrap();
    let workers = |webhooks: &Webhooks| format!("{:?}", webhooks.dispatcher());
    assert!(
        workers(&memory).contains(&format!("concurrency: {DEFAULT_CONCURRENCY},")),
        "{}",
        workers(&memory)
    );
    assert!(
        workers(&sqlite).contains(&format!("concurrency: {DEFAULT_CONCURRENCY_BATCHING},")),
        "a store that commits gets more workers: {}",
        workers(&sqlite)
    );
}

/// Current-thread runtimes, each driven by a thread of its own until dropped.
struct Runtimes {
    handles: Vec<tokio::runtime::Handle>,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Runtimes {
    fn start(count: usize) -> Self {
        let (mut handles, mut stop) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            handles.push(runtime.handle().clone());
            let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
            stop.push(stopping);
            std::thread::spawn(move || runtime.block_on(stopped));
        }
        Self { handles, stop }
    }

    /// Tasks alive on each runtime.
    fn alive(&self) -> Vec<usize> {
        self.handles.iter().map(|handle| handle.metrics().num_alive_tasks()).collect()
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        for stopping in self.stop.drain(..) {
            let _ = stopping.send(());
        }
    }
}

#[tokio::test]
async fn a_dispatcher_spread_over_two_runtimes_delivers_every_event_once_from_both() {
    let receivers = [Receiver::start().await.unwrap(), Receiver::start().await.unwrap()];
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let mut subscriptions = Vec::new();
    for receiver in &receivers {
        subscriptions.push(listening(&webhooks, receiver.url()).await.id);
    }
    let runtimes = Runtimes::start(2);
    let running = Running::start(
        webhooks
            .dispatcher()
            .allow_private_networks(true)
            .concurrency(8)
            .spread_over(runtimes.handles.clone())
            .build()
            .unwrap(),
    );
    // Four workers on each runtime, waiting for work there.
    common::eventually("four workers on each runtime", || async {
        runtimes.alive().iter().all(|&tasks| tasks >= 4)
    })
    .await;

    let events: Vec<_> = (0..400).map(|n| ("iq.status_updated", json!({"n": n}))).collect();
    webhooks.publish_many(events).await.unwrap();
    for subscription in &subscriptions {
        delivered(&webhooks, *subscription, 400).await;
    }
    running.settle().await;
    for receiver in &receivers {
        let mut ids: Vec<u64> = receiver
            .received()
            .iter()
            .map(|request| {
                serde_json::from_slice::<serde_json::Value>(&request.body).unwrap()["data"]["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!((receiver.received().len(), ids.len()), (400, 400), "each event once");
    }
    running.stop().await;
    common::eventually("the runtimes' tasks end with the dispatcher", || async {
        runtimes.alive().iter().all(|&tasks| tasks == 0)
    })
    .await;
}

#[tokio::test]
async fn more_runtimes_than_workers_is_refused() {
    let (webhooks, _clock) = webhooks(Preset::deepsmith());
    let runtimes = Runtimes::start(3);
    let refused = webhooks.dispatcher().concurrency(2).spread_over(runtimes.handles.clone()).build();
    assert!(matches!(&refused, Err(Error::Invalid { field: "runtimes", .. })), "{:?}", refused.map(|_| ()));
}
