//! The operations API, on every store: list and page through deliveries,
//! read one with its log, resend, recover a subscription, send a test event,
//! disable and enable, and per-subscription stats.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, eventually, over_http, recorded, start};
use serde_json::json;
use webhooks_core::{
    AttemptResult, DeliveryLog, DeliveryPage, DeliveryQuery, DeliveryState, ManualClock, Preset, StateFilter,
    Subscription, SubscriptionId, TEST_EVENT, Webhooks, prelude::*,
};
use webhooks_examples::{Receiver, Reply};

const WAIT: Duration = Duration::from_secs(10);

fn facade(store: Arc<dyn Store>, preset: Preset) -> (Webhooks, ManualClock) {
    let clock = ManualClock::new(start());
    let webhooks = Webhooks::builder()
        .shared_store(store)
        .preset(over_http(preset))
        .clock(clock.clone())
        .build()
        .unwrap();
    (webhooks, clock)
}

async fn subscribe(webhooks: &Webhooks, url: &str) -> SubscriptionId {
    webhooks.subscribe(Subscription::builder(url).event_type("iq.status_updated")).await.unwrap().id
}

fn running(webhooks: &Webhooks) -> Running {
    Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap())
}

async fn deliveries_page_in_creation_order(store: Arc<dyn Store>) {
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    let a = subscribe(&webhooks, "https://a.example/").await;
    subscribe(&webhooks, "https://b.example/").await;
    let mut to_a = Vec::new();
    for n in 0..5 {
        clock.advance(Duration::from_secs(1));
        let published = webhooks.publish("iq.status_updated", json!({"n": n})).await.unwrap();
        for id in published.deliveries {
            if webhooks.delivery(id).await.unwrap().unwrap().subscription_id == a {
                to_a.push(id);
            }
        }
    }
    let mut query = DeliveryQuery::new().subscription(a).limit(2);
    let mut seen = Vec::new();
    loop {
        let page = webhooks.deliveries(query.clone()).await.unwrap();
        assert!(page.deliveries.len() <= 2);
        seen.extend(page.deliveries.iter().map(|d| d.id));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, to_a);
    let all = webhooks.deliveries(DeliveryQuery::default()).await.unwrap();
    assert_eq!((all.deliveries.len(), all.next), (10, None));
    let error = webhooks.deliveries(DeliveryQuery::new().limit(5000)).await.unwrap_err();
    assert!(error.to_string().contains("limit"), "{error}");
}

async fn a_delivery_comes_with_its_whole_log(store: Arc<dyn Store>) {
    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 503 } else { 200 })).await.unwrap();
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    subscribe(&webhooks, receiver.url()).await;
    let running = running(&webhooks);
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    clock.advance(Duration::from_secs(10));
    recorded(&webhooks, id, 2).await;
    running.stop().await;
    let log = webhooks.delivery_log(id).await.unwrap();
    assert_eq!(log.delivery.state, DeliveryState::Delivered);
    let statuses: Vec<_> = log.attempts.iter().map(|a| a.status()).collect();
    assert_eq!(statuses, vec![Some(503), Some(200)]);
    assert!(webhooks.delivery_log(webhooks_core::DeliveryId::new()).await.is_err());
}

async fn a_page_of_deliveries_comes_with_each_ones_log(store: Arc<dyn Store>) {
    // The first attempt of each event fails at one endpoint; the other
    // endpoint takes everything at once.
    let failing = Receiver::scripted(|n, _| Reply::status(if n < 2 { 503 } else { 200 })).await.unwrap();
    let healthy = Receiver::start().await.unwrap();
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    let to_failing = subscribe(&webhooks, failing.url()).await;
    subscribe(&webhooks, healthy.url()).await;
    let running = running(&webhooks);
    for n in 0..2 {
        webhooks.publish("iq.status_updated", json!({ "n": n })).await.unwrap();
    }
    running.settle().await;
    running.advance(&clock, Duration::from_secs(10)).await;
    running.stop().await;

    let page = webhooks.delivery_logs(DeliveryQuery::default()).await.unwrap();
    assert_eq!(page.logs.len(), 4);
    for log in &page.logs {
        assert!(log.attempts.iter().all(|a| a.delivery_id == log.delivery.id), "{log:?}");
        let statuses: Vec<_> = log.attempts.iter().map(|a| a.status()).collect();
        if log.delivery.subscription_id == to_failing {
            assert_eq!(statuses, [Some(503), Some(200)]);
        } else {
            assert_eq!(statuses, [Some(204)]);
        }
    }
}

async fn resend_sends_the_same_delivery_again(store: Arc<dyn Store>) {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = facade(store, Preset::deepsmith());
    subscribe(&webhooks, receiver.url()).await;
    let running = running(&webhooks);
    let id = webhooks.publish("iq.status_updated", json!({"n": 1})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    webhooks.resend(id).await.unwrap();
    recorded(&webhooks, id, 2).await;
    running.stop().await;
    let received = receiver.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].header("x-webhook-id"), received[1].header("x-webhook-id"));
    assert_eq!(received[0].body, received[1].body);
    let log = webhooks.delivery_log(id).await.unwrap();
    assert_eq!(log.delivery.state, DeliveryState::Delivered);
    assert_eq!(log.attempts.iter().map(|a| a.number).collect::<Vec<_>>(), vec![1, 1], "a new cycle");
}

async fn recover_requeues_what_an_outage_dropped_or_held(store: Arc<dyn Store>) {
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let (webhooks, _clock) = facade(store, Preset::deepsmith().with_retry_scale(0.0).unwrap());
    let subscription = subscribe(&webhooks, receiver.url()).await;
    let running =
        Running::start(webhooks.dispatcher().allow_private_networks(true).concurrency(1).build().unwrap());
    for n in 0..3 {
        webhooks.publish("iq.status_updated", json!({"n": n})).await.unwrap();
    }
    eventually("the endpoint is disabled", || async {
        !webhooks.subscription(subscription).await.unwrap().is_enabled()
    })
    .await;
    // An attempt claimed before the disable may still be on its way.
    running.settle().await;
    let before = webhooks.delivery_counts(subscription).await.unwrap();
    assert_eq!(before.pending + before.dropped, 3);
    let held = webhooks.deliveries(DeliveryQuery::new().state(StateFilter::Held)).await.unwrap();
    assert_eq!(held.deliveries.len() as u64, before.pending);

    receiver.rescript(|_, _| Reply::status(200));
    let recovered = webhooks.recover(subscription, start()).await.unwrap();
    assert_eq!(recovered, 3);
    eventually("everything is delivered", || async {
        webhooks.delivery_counts(subscription).await.unwrap().delivered == 3
    })
    .await;
    running.stop().await;
}

async fn a_test_event_reaches_one_endpoint(store: Arc<dyn Store>) {
    let receiver = Receiver::start().await.unwrap();
    let other = Receiver::start().await.unwrap();
    let (webhooks, _clock) = facade(store, Preset::deepsmith());
    let subscription = subscribe(&webhooks, receiver.url()).await;
    subscribe(&webhooks, other.url()).await;
    let running = running(&webhooks);
    let id = webhooks.send_test(subscription).await.unwrap();
    let request = receiver.wait_for(1, WAIT).await.remove(0);
    recorded(&webhooks, id, 1).await;
    running.stop().await;
    assert_eq!(request.header("x-webhook-event"), TEST_EVENT);
    assert_eq!(request.header("x-webhook-id"), id.to_string());
    assert!(other.received().is_empty());
}

async fn disabled_endpoints_hold_until_enabled(store: Arc<dyn Store>) {
    let receiver = Receiver::start().await.unwrap();
    let (webhooks, _clock) = facade(store, Preset::deepsmith());
    let subscription = subscribe(&webhooks, receiver.url()).await;
    let queued = webhooks.publish("iq.status_updated", json!({"n": 1})).await.unwrap().deliveries[0];
    webhooks.disable(subscription, "customer asked for a pause").await.unwrap();
    let meanwhile = webhooks.publish("iq.status_updated", json!({"n": 2})).await.unwrap().deliveries;
    assert_eq!(meanwhile.len(), 1, "published while disabled, kept");
    let running = running(&webhooks);
    running.settle().await;
    assert!(receiver.received().is_empty(), "no attempt while disabled");
    webhooks.enable(subscription).await.unwrap();
    recorded(&webhooks, meanwhile[0], 1).await;
    running.stop().await;
    for id in [queued, meanwhile[0]] {
        assert_eq!(webhooks.delivery(id).await.unwrap().unwrap().state, DeliveryState::Delivered);
    }
    let bodies: Vec<String> =
        receiver.received().iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    assert_eq!(bodies.len(), 2);
    for n in [r#""n":1"#, r#""n":2"#] {
        assert!(bodies.iter().any(|body| body.contains(n)), "{n} went: {bodies:?}");
    }
}

async fn a_disabled_endpoints_oldest_held_deliveries_past_its_limit_are_dropped(store: Arc<dyn Store>) {
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    let new = Subscription::builder("https://paused.example/").event_type("iq.status_updated").held_limit(3);
    let paused = webhooks.subscribe(new).await.unwrap().id;
    let mut published = Vec::new();
    for n in 0..2 {
        clock.advance(Duration::from_secs(1));
        published.extend(webhooks.publish("iq.status_updated", json!({"n": n})).await.unwrap().deliveries);
    }
    assert_eq!(webhooks.trim_held().await.unwrap(), 0, "nothing is held while enabled");
    webhooks.disable(paused, "customer asked for a pause").await.unwrap();
    for n in 2..5 {
        clock.advance(Duration::from_secs(1));
        published.extend(webhooks.publish("iq.status_updated", json!({"n": n})).await.unwrap().deliveries);
    }
    assert_eq!(webhooks.trim_held().await.unwrap(), 2, "five held, three kept");
    assert_eq!(webhooks.trim_held().await.unwrap(), 0, "and no more");
    for (n, id) in published.iter().enumerate() {
        let delivery = webhooks.delivery(*id).await.unwrap().unwrap();
        let expected = if n < 2 { DeliveryState::Dropped } else { DeliveryState::Held };
        assert_eq!(delivery.state, expected, "delivery {n}");
    }
    let log = webhooks.attempts(published[0]).await.unwrap();
    assert_eq!(log.len(), 1);
    assert!(
        matches!(&log[0].result, AttemptResult::Error(reason) if reason.contains("over 3 deliveries held")),
        "{log:?}"
    );
    webhooks.enable(paused).await.unwrap();
    assert_eq!(webhooks.delivery_counts(paused).await.unwrap().pending, 3, "the newest three go out");
}

async fn pending_deliveries_of_a_disabled_endpoint_read_held(store: Arc<dyn Store>) {
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    let paused = subscribe(&webhooks, "https://paused.example/").await;
    let active = subscribe(&webhooks, "https://active.example/").await;
    for n in 0..3 {
        clock.advance(Duration::from_secs(1));
        webhooks.publish("iq.status_updated", json!({"n": n})).await.unwrap();
    }
    webhooks.disable(paused, "customer asked for a pause").await.unwrap();
    let states = |page: &DeliveryPage| -> Vec<(SubscriptionId, DeliveryState)> {
        page.deliveries.iter().map(|d| (d.subscription_id, d.state)).collect()
    };

    let all = webhooks.deliveries(DeliveryQuery::default()).await.unwrap();
    let mut expected = Vec::new();
    for _ in 0..3 {
        expected.extend([(paused, DeliveryState::Held), (active, DeliveryState::Pending)]);
    }
    let mut seen = states(&all);
    seen.sort_by_key(|(subscription, _)| *subscription != paused);
    expected.sort_by_key(|(subscription, _)| *subscription != paused);
    assert_eq!(seen, expected, "the paused endpoint's deliveries read held, the other's pending");
    let held = webhooks.deliveries(DeliveryQuery::new().state(StateFilter::Held)).await.unwrap();
    assert_eq!(states(&held), vec![(paused, DeliveryState::Held); 3]);
    let pending = webhooks.deliveries(DeliveryQuery::new().state(StateFilter::Pending)).await.unwrap();
    assert_eq!(states(&pending), vec![(active, DeliveryState::Pending); 3]);

    let one = held.deliveries[0].id;
    assert_eq!(webhooks.delivery(one).await.unwrap().unwrap().state, DeliveryState::Held);
    let log = webhooks.delivery_log(one).await.unwrap();
    assert_eq!(log.delivery.state, DeliveryState::Held);
    assert_eq!(serde_json::to_value(&log).unwrap()["delivery"]["state"], "held");
    assert_eq!(serde_json::to_value(&held).unwrap()["deliveries"][2]["state"], "held");

    webhooks.enable(paused).await.unwrap();
    assert_eq!(webhooks.delivery(one).await.unwrap().unwrap().state, DeliveryState::Pending);
    assert_eq!(webhooks.delivery_log(one).await.unwrap().delivery.state, DeliveryState::Pending);
}

async fn admin_data_serializes_without_secrets(store: Arc<dyn Store>) {
    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 503 } else { 200 })).await.unwrap();
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    let secret = "whsec_OperationsSecretNeverSerialized";
    let subscription = webhooks
        .subscribe(
            Subscription::builder(receiver.url())
                .event_type("iq.status_updated")
                .secret(secret)
                .secret_header("authorization", "Bearer header-token-never-serialized"),
        )
        .await
        .unwrap();
    let running = running(&webhooks);
    let id = webhooks.publish("iq.status_updated", json!({"job": "j1"})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 1).await;
    clock.advance(Duration::from_secs(10));
    recorded(&webhooks, id, 2).await;
    running.stop().await;
    let rotated = webhooks.rotate_secret(subscription.id, Duration::from_secs(60)).await.unwrap();

    let log = webhooks.delivery_log(id).await.unwrap();
    let page = webhooks.deliveries(DeliveryQuery::default()).await.unwrap();
    let stored = webhooks.subscription(subscription.id).await.unwrap();
    let stats = webhooks.stats(subscription.id).await.unwrap();
    let owner = webhooks.owner_stats(&stored.owner).await.unwrap();
    let written = [
        serde_json::to_string(&log).unwrap(),
        serde_json::to_string(&page).unwrap(),
        serde_json::to_string(&subscription).unwrap(),
        serde_json::to_string(&stored).unwrap(),
        serde_json::to_string(&webhooks.all_subscriptions().await.unwrap()).unwrap(),
        serde_json::to_string(&stats).unwrap(),
        serde_json::to_string(&owner).unwrap(),
    ];
    for text in &written {
        for secret in [secret, rotated.expose(), "header-token-never-serialized"] {
            assert!(!text.contains(secret), "{secret} serialized in {text}");
        }
    }
    let log: serde_json::Value = serde_json::from_str(&written[0]).unwrap();
    assert_eq!(log["delivery"]["body"]["data"], json!({"job": "j1"}), "the body as JSON: {log}");
    assert_eq!(log["attempts"][0]["response"]["status"], 503, "{log}");
    assert_eq!(log["attempts"][1]["response"]["status"], 200, "{log}");
    assert!(log["attempts"][1]["duration_ms"].as_f64().unwrap() >= 0.0, "{log}");
    let back: DeliveryLog = serde_json::from_str(&written[0]).unwrap();
    assert_eq!(back, webhooks.delivery_log(id).await.unwrap());

    // Asked for explicitly, the secrets are there and read back.
    let revealed = serde_json::to_string(&stored.with_secrets()).unwrap();
    assert!(revealed.contains(rotated.expose()) && revealed.contains(secret), "{revealed}");
    assert_eq!(serde_json::from_str::<Subscription>(&revealed).unwrap(), stored);
    assert!(serde_json::from_str::<Subscription>(&written[3]).is_err(), "redacted data is refused");
}

async fn stats_sum_up_an_endpoint(store: Arc<dyn Store>) {
    let receiver = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 204 })).await.unwrap();
    let (webhooks, _clock) = facade(store, Preset::deepsmith().with_retry_scale(0.0).unwrap());
    let subscription = subscribe(&webhooks, receiver.url()).await;
    let running = running(&webhooks);
    let id = webhooks.publish("iq.status_updated", json!({})).await.unwrap().deliveries[0];
    recorded(&webhooks, id, 2).await;
    running.stop().await;
    let stats = webhooks.stats(subscription).await.unwrap();
    assert_eq!((stats.attempts, stats.succeeded, stats.consecutive_failures), (2, 1, 0));
    assert_eq!(stats.success_rate(), Some(0.5));
    assert_eq!((stats.last_success_at, stats.last_failure_at), (Some(start()), Some(start())));
    let log = webhooks.delivery_log(id).await.unwrap();
    assert!(matches!(log.attempts[0].result, AttemptResult::Response { status: 500, .. }));
}

/// Ids and times come from the facade's one clock: under a manual clock set
/// years back, every id carries the clock's time, not the machine's.
async fn ids_and_times_come_from_one_clock(store: Arc<dyn Store>) {
    let (webhooks, clock) = facade(store, Preset::deepsmith());
    clock.advance(Duration::from_millis(1_234));
    let millis = |uuid: uuid::Uuid| {
        let (seconds, nanos) = uuid.get_timestamp().unwrap().to_unix();
        seconds as i64 * 1000 + i64::from(nanos / 1_000_000)
    };
    let subscription = webhooks
        .subscribe(Subscription::builder("https://example.com/hooks").event_type("iq.status_updated"))
        .await
        .unwrap();
    let published = webhooks.publish("iq.status_updated", json!({})).await.unwrap();
    let delivery = webhooks.delivery(published.deliveries[0]).await.unwrap().unwrap();
    let now = webhooks.clock().now().timestamp_millis();
    assert_eq!(subscription.created_at.timestamp_millis(), now);
    assert_eq!(delivery.created_at.timestamp_millis(), now);
    for uuid in [subscription.id.as_uuid(), published.event_id.as_uuid(), delivery.id.as_uuid()] {
        assert_eq!(millis(uuid), now, "{uuid}");
    }
}

on_every_store!(
    deliveries_page_in_creation_order,
    a_delivery_comes_with_its_whole_log,
    a_page_of_deliveries_comes_with_each_ones_log,
    resend_sends_the_same_delivery_again,
    recover_requeues_what_an_outage_dropped_or_held,
    a_test_event_reaches_one_endpoint,
    disabled_endpoints_hold_until_enabled,
    a_disabled_endpoints_oldest_held_deliveries_past_its_limit_are_dropped,
    pending_deliveries_of_a_disabled_endpoint_read_held,
    admin_data_serializes_without_secrets,
    stats_sum_up_an_endpoint,
    ids_and_times_come_from_one_clock,
);
