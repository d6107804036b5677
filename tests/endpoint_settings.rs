//! Per-endpoint settings as the dispatcher applies them: headers, rate
//! limits, ordered delivery, on every store. (In-flight caps are in
//! `faults.rs`, beside the server that counts requests in flight.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, over_http, start, webhooks};
use serde_json::json;
use webhooks_core::{
    CustomHeader, EndpointSettings, Error, ManualClock, Preset, Schedule, Store, Subscription,
    SubscriptionUpdate, Webhooks,
};
use webhooks_examples::{Received, Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);

/// Custom headers, as each store keeps them, reach the endpoint.
async fn custom_headers_go_with_every_request_after_the_signature(store: Arc<dyn Store>) {
    let receiver = Receiver::start().await.unwrap();
    let webhooks = on(store, &ManualClock::new(start()));
    webhooks
        .subscribe(
            Subscription::builder(receiver.url())
                .event_type("invoice.paid")
                .header("X-Route", "eu-1")
                .secret_header("Authorization", "Bearer gateway-token"),
        )
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    webhooks.publish("invoice.paid", json!({"id": 1})).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    running.stop().await;

    assert_eq!(request.header("x-route"), "eu-1");
    assert_eq!(request.header("authorization"), "Bearer gateway-token");
    assert!(!request.header("webhook-signature").is_empty(), "the scheme's headers are still there");
    assert_eq!(request.header("content-type"), "application/json");
}

#[tokio::test]
async fn headers_the_scheme_or_the_transport_set_are_refused() {
    let (webhooks, _clock) = webhooks(Preset::standard());
    for (name, refused) in [
        ("webhook-signature", "set by the library"),
        ("Webhook-Id", "set by the library"),
        ("Host", "set by the library"),
        ("Content-Length", "set by the library"),
        ("Transfer-Encoding", "set by the library"),
        ("bad header", "not a valid header name"),
    ] {
        let error = webhooks
            .subscribe(
                Subscription::builder("https://example.com/").event_type("invoice.paid").header(name, "x"),
            )
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Invalid { field: "header", .. }), "{name}: {error}");
        assert!(error.to_string().contains(refused), "{name}: {error}");
    }
    let twice = webhooks
        .subscribe(
            Subscription::builder("https://example.com/")
                .event_type("invoice.paid")
                .header("x-a", "1")
                .header("X-A", "2"),
        )
        .await
        .unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
    let zero = webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("invoice.paid").rate_limit(0, 1))
        .await
        .unwrap_err();
    assert!(matches!(zero, Error::Invalid { field: "rate_limit", .. }), "{zero}");
    let none_in_flight = webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("invoice.paid").max_in_flight(0))
        .await
        .unwrap_err();
    assert!(matches!(none_in_flight, Error::Invalid { field: "max_in_flight", .. }), "{none_in_flight}");

    // An update is checked the same way.
    let subscription = webhooks
        .subscribe(Subscription::builder("https://example.com/").event_type("invoice.paid"))
        .await
        .unwrap();
    let mut settings = EndpointSettings::default();
    settings.headers = vec![CustomHeader::new("webhook-timestamp", "0").unwrap()];
    let error = webhooks
        .update_subscription(subscription.id, SubscriptionUpdate::new().settings(settings))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("webhook-timestamp"), "{error}");
}

/// A limit of 2 per second with a burst of 2, on the manual clock: two go
/// at once, then one each half second; an unlimited endpoint beside it gets
/// everything at once. Settling (not sleeping) shows what did not happen.
#[tokio::test]
async fn a_rate_limit_spaces_attempts_while_an_unlimited_endpoint_runs_free() {
    let limited = Receiver::start().await.unwrap();
    let free = Receiver::start().await.unwrap();
    let (webhooks, clock) = webhooks(Preset::standard());
    webhooks
        .subscribe(Subscription::builder(limited.url()).event_type("invoice.paid").rate_limit(2, 2))
        .await
        .unwrap();
    webhooks.subscribe(Subscription::builder(free.url()).event_type("invoice.paid")).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());

    for n in 0..6 {
        webhooks.publish("invoice.paid", json!({ "n": n })).await.unwrap();
    }
    running.settle().await;
    assert_eq!(free.received().len(), 6, "the unlimited endpoint gets everything at once");
    assert_eq!(limited.received().len(), 2, "the burst");
    running.advance(&clock, Duration::from_millis(499)).await;
    assert_eq!(limited.received().len(), 2, "no token before half a second");
    for expected in 3..=6 {
        running.advance(&clock, Duration::from_millis(if expected == 3 { 1 } else { 500 })).await;
        assert_eq!(limited.received().len(), expected);
    }
    running.stop().await;
}

/// A facade on `store` with `clock`, retrying after 10 s then 20 s.
fn on(store: Arc<dyn Store>, clock: &ManualClock) -> Webhooks {
    let retries = Schedule::new([Duration::from_secs(10), Duration::from_secs(20)]).unwrap();
    Webhooks::builder()
        .shared_store(store)
        .preset(over_http(Preset::standard()).with_retry(retries))
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn number(request: &Received) -> u64 {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    body["data"]["n"].as_u64().unwrap()
}

/// An ordered endpoint that fails the first event twice still sees the
/// events in publish order: the later ones wait, not retried around it;
/// an unordered endpoint beside it gets them at once.
async fn ordered_delivery_waits_for_the_earlier_event(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let webhooks = on(store, &clock);
    let ordered = Receiver::scripted(|n, _| Reply::status(if n < 2 { 500 } else { 200 })).await.unwrap();
    let free = Receiver::start().await.unwrap();
    webhooks
        .subscribe(Subscription::builder(ordered.url()).event_type("job.updated").ordered(true))
        .await
        .unwrap();
    webhooks.subscribe(Subscription::builder(free.url()).event_type("job.updated")).await.unwrap();
    let dispatcher = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    for n in 0..3 {
        webhooks.publish("job.updated", json!({ "n": n })).await.unwrap();
    }
    dispatcher.settle().await;
    // All three at once, in no promised order: the free endpoint's
    // attempts run side by side.
    let mut free_got: Vec<_> = free.received().iter().map(number).collect();
    free_got.sort_unstable();
    assert_eq!(free_got, [0, 1, 2]);
    assert_eq!(ordered.received().iter().map(number).collect::<Vec<_>>(), [0], "1 and 2 wait behind 0");
    dispatcher.advance(&clock, Duration::from_secs(10)).await;
    assert_eq!(ordered.received().iter().map(number).collect::<Vec<_>>(), [0, 0]);
    dispatcher.advance(&clock, Duration::from_secs(20)).await;
    assert_eq!(ordered.received().iter().map(number).collect::<Vec<_>>(), [0, 0, 0, 1, 2]);
    dispatcher.stop().await;
}

/// A dropped delivery lets the next one go.
async fn a_dropped_delivery_unblocks_the_next(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let webhooks = on(store, &clock);
    // Event 0 fails all three attempts; the rest are acknowledged.
    let ordered = Receiver::scripted(|n, _| Reply::status(if n < 3 { 500 } else { 200 })).await.unwrap();
    webhooks
        .subscribe(Subscription::builder(ordered.url()).event_type("job.updated").ordered(true))
        .await
        .unwrap();
    let dispatcher = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    for n in 0..2 {
        webhooks.publish("job.updated", json!({ "n": n })).await.unwrap();
    }
    dispatcher.settle().await;
    dispatcher.advance(&clock, Duration::from_secs(10)).await;
    dispatcher.advance(&clock, Duration::from_secs(20)).await;
    assert_eq!(ordered.received().iter().map(number).collect::<Vec<_>>(), [0, 0, 0, 1]);
    dispatcher.stop().await;
}

/// A rate limit is each dispatcher's own: two instances on one store each
/// send their burst, so the endpoint sees up to twice the limit.
async fn a_rate_limit_holds_per_dispatcher(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let first = on(Arc::clone(&store), &clock);
    let second = on(store, &clock);
    let limited = Receiver::start().await.unwrap();
    first
        .subscribe(Subscription::builder(limited.url()).event_type("job.updated").rate_limit(1, 2))
        .await
        .unwrap();
    let instances: Vec<Running> = [&first, &second]
        .into_iter()
        .map(|webhooks| Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap()))
        .collect();
    for n in 0..10 {
        first.publish("job.updated", json!({ "n": n })).await.unwrap();
    }
    for _ in 0..2 {
        // The first instance settles with its burst spent; the second then
        // spends its own on what is left.
        for instance in &instances {
            instance.settle().await;
        }
    }
    assert_eq!(limited.received().len(), 4, "a burst of 2 from each of the 2 dispatchers");
    clock.advance(Duration::from_secs(1));
    for _ in 0..2 {
        for instance in &instances {
            instance.settle().await;
        }
    }
    assert_eq!(limited.received().len(), 6, "one token each per second");
    for instance in instances {
        instance.stop().await;
    }
}

on_every_store!(
    custom_headers_go_with_every_request_after_the_signature,
    ordered_delivery_waits_for_the_earlier_event,
    a_dropped_delivery_unblocks_the_next,
    a_rate_limit_holds_per_dispatcher,
);
