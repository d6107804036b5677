//! The host hears what happened to its endpoints and deliveries, once per
//! fact: failing, disabled by failures, a delivery dropped after its last
//! retry, enabled and disabled by calls, held deliveries dropped past
//! their limit. With operational webhooks, the same facts reach the host's
//! operational endpoint signed, retried by its own policy, and never about
//! the operational endpoint itself.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, over_http, start};
use serde_json::{Value, json};
use webhooks_core::{
    Clock, DisablePolicy, FAILING_AFTER, ManualClock, OPERATIONAL_EVENT_TYPES, OperationalEvent, Preset,
    RetryChoice, Store, Subscription, Webhooks,
};
use webhooks_memory::MemoryStore;
use webhooks_testkit::{Receiver, Reply};

async fn each_fact_is_told_once(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let heard: Arc<Mutex<Vec<OperationalEvent>>> = Arc::default();
    let webhooks = {
        let heard = Arc::clone(&heard);
        Webhooks::builder()
            .shared_store(store)
            .preset(over_http(Preset::deepsmith()))
            .clock(clock.clone())
            .on_operational_event(move |event| heard.lock().unwrap().push(event.clone()))
            .build()
            .unwrap()
    };
    let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
    let subscription = webhooks
        .subscribe(
            Subscription::builder(receiver.url())
                .event_type("iq.status_updated")
                .retry(RetryChoice::waits_ms([1_000; 3]).unwrap())
                .disable_policy(DisablePolicy::after_consecutive_failures(5))
                .held_limit(1),
        )
        .await
        .unwrap();
    let id = subscription.id;
    let kinds = || heard.lock().unwrap().iter().map(OperationalEvent::kind).collect::<Vec<_>>();

    // Four failed attempts: failing at the third, dropped at the fourth.
    let first = webhooks.publish("iq.status_updated", json!({"n": 1})).await.unwrap().deliveries[0];
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    running.settle().await;
    for _ in 0..3 {
        running.advance(&clock, Duration::from_secs(1)).await;
    }
    assert_eq!(kinds(), vec!["endpoint.failing", "delivery.dropped"]);
    assert!(matches!(
        &heard.lock().unwrap()[..],
        [
            OperationalEvent::EndpointFailing { subscription_id, consecutive_failures, .. },
            OperationalEvent::DeliveryDropped { delivery_id, .. },
        ] if *subscription_id == id && *consecutive_failures == FAILING_AFTER && *delivery_id == first
    ));

    // What the store shows of it: failing, and the drop.
    let since = start() - chrono::Duration::days(1);
    let stored = || async { webhooks.operational_events(id, since).await.unwrap() };
    let dropped_at = clock.now();
    assert_eq!(
        stored().await,
        [
            OperationalEvent::EndpointFailing {
                subscription_id: id,
                consecutive_failures: 4,
                at: dropped_at
            },
            OperationalEvent::DeliveryDropped { subscription_id: id, delivery_id: first, at: dropped_at },
        ]
    );

    // The fifth failure in a row disables it.
    clock.advance(Duration::from_secs(1));
    webhooks.publish("iq.status_updated", json!({"n": 2})).await.unwrap();
    running.settle().await;
    running.stop().await;
    assert_eq!(kinds()[2..], ["endpoint.disabled"]);
    assert!(matches!(
        &heard.lock().unwrap()[2],
        OperationalEvent::EndpointDisabled { reason, .. } if reason == "5 consecutive failed attempts"
    ));

    // Held past its limit of one, then enabled and disabled by calls.
    let disabled_at = clock.now();
    clock.advance(Duration::from_secs(1));
    webhooks.publish("iq.status_updated", json!({"n": 3})).await.unwrap();
    assert_eq!(webhooks.trim_held().await.unwrap(), 1);
    let trimmed_at = clock.now();
    assert_eq!(
        stored().await,
        [
            OperationalEvent::HeldDropped { subscription_id: id, dropped: 1, limit: 1, at: trimmed_at },
            OperationalEvent::EndpointDisabled {
                subscription_id: id,
                reason: "5 consecutive failed attempts".into(),
                at: disabled_at
            },
            OperationalEvent::DeliveryDropped { subscription_id: id, delivery_id: first, at: dropped_at },
        ],
        "newest first; the store shows the disabling while it lasts"
    );
    clock.advance(Duration::from_secs(1));
    webhooks.enable(id).await.unwrap();
    webhooks.disable(id, "paused by the host").await.unwrap();
    assert!(matches!(
        &stored().await[..],
        [OperationalEvent::EndpointDisabled { reason, .. }, OperationalEvent::HeldDropped { .. }, OperationalEvent::DeliveryDropped { .. }]
            if reason == "paused by the host"
    ));
    assert_eq!(kinds()[3..], ["held.dropped", "endpoint.enabled", "endpoint.disabled"]);
    assert!(matches!(
        &heard.lock().unwrap()[5],
        OperationalEvent::EndpointDisabled { reason, .. } if reason == "paused by the host"
    ));
    assert_eq!(heard.lock().unwrap().len(), 6, "each fact once");
}

async fn operational_webhooks_reach_the_hosts_endpoint(store: Arc<dyn Store>) {
    let clock = ManualClock::new(start());
    let heard: Arc<Mutex<Vec<OperationalEvent>>> = Arc::default();
    let preset = over_http(Preset::standard());
    let webhooks = {
        let heard = Arc::clone(&heard);
        Webhooks::builder()
            .shared_store(store)
            .preset(preset.clone())
            .clock(clock.clone())
            .on_operational_event(move |event| heard.lock().unwrap().push(event.clone()))
            .operational_webhooks("operations")
            .build()
            .unwrap()
    };
    // The customer's endpoint fails once (disabled), then takes its delivery.
    let customer = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 204 })).await.unwrap();
    let customer = webhooks
        .subscribe(
            Subscription::builder(customer.url())
                .owner("alice")
                .event_type("order.created")
                .disable_policy(DisablePolicy::after_consecutive_failures(1)),
        )
        .await
        .unwrap();
    // The host's endpoint fails once, then takes them: its own retry applies.
    let operations = Receiver::scripted(|n, _| Reply::status(if n == 0 { 500 } else { 204 })).await.unwrap();
    let ops = webhooks
        .subscribe(
            Subscription::builder(operations.url())
                .owner("operations")
                .event_types(OPERATIONAL_EVENT_TYPES)
                .retry(RetryChoice::waits_ms([1_000]).unwrap()),
        )
        .await
        .unwrap();
    operations.verify_with(&preset, [ops.secret.clone()], clock.clone());

    webhooks.publish_for("alice", "order.created", json!({"order": "A-1"})).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    operations.wait_for(1, Duration::from_secs(10)).await;
    running.settle().await;
    running.advance(&clock, Duration::from_secs(1)).await;
    let received = operations.wait_for(2, Duration::from_secs(10)).await;
    running.settle().await;
    assert_eq!(received.len(), 2, "one failure, one retry");
    assert_eq!(received[0].body, received[1].body, "the retry sends the same webhook");
    assert!(received.iter().all(|request| request.verified == Some(Ok(()))), "signed with its own secret");
    let body: Value = serde_json::from_slice(&received[1].body).unwrap();
    assert_eq!(body["type"], "endpoint.disabled");
    assert_eq!(body["data"]["subscription_id"], customer.id.to_string());
    assert_eq!(body["data"]["owner"], "alice");
    assert_eq!(body["data"]["reason"], "1 consecutive failed attempts");

    // About the operational endpoint itself: heard, never published.
    webhooks.disable(ops.id, "maintenance").await.unwrap();
    webhooks.enable(customer.id).await.unwrap();
    webhooks.enable(ops.id).await.unwrap();
    let received = operations.wait_for(3, Duration::from_secs(10)).await;
    running.settle().await;
    running.stop().await;
    let kinds: Vec<Value> =
        received.iter().map(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["type"].clone()).collect();
    assert_eq!(kinds, ["endpoint.disabled", "endpoint.disabled", "endpoint.enabled"]);
    let counts = webhooks.delivery_counts(ops.id).await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dropped), (0, 2, 0), "nothing about itself");
    let about_ops = heard.lock().unwrap().iter().filter(|event| event.subscription_id() == ops.id).count();
    assert_eq!(about_ops, 2, "the hook still hears the operational endpoint disabled and enabled");
}

#[tokio::test]
async fn operational_event_types_are_the_operational_owners_alone() {
    let webhooks = Webhooks::builder()
        .store(MemoryStore::new())
        .preset(Preset::smartlyq())
        .operational_webhooks("operations")
        .build()
        .unwrap();
    let ops = Subscription::builder("https://ops.example/hooks").owner("operations");
    webhooks.subscribe(ops.event_types(OPERATIONAL_EVENT_TYPES)).await.unwrap();
    let customer = Subscription::builder("https://alice.example/hooks").owner("alice");
    let refused = webhooks.subscribe(customer.event_type("endpoint.disabled")).await.unwrap_err();
    assert!(refused.to_string().contains("endpoint.disabled"), "{refused}");
    assert!(webhooks.publish_for("alice", "endpoint.disabled", json!({})).await.is_err());
    let bad =
        Webhooks::builder().store(MemoryStore::new()).preset(Preset::smartlyq()).operational_webhooks("");
    assert!(bad.build().unwrap_err().to_string().contains("operational owner"));
}

on_every_store!(each_fact_is_told_once, operational_webhooks_reach_the_hosts_endpoint);
