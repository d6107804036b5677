//! The host hears what happened to its endpoints and deliveries, once per
//! fact: failing, disabled by failures, a delivery dropped after its last
//! retry, enabled and disabled by calls, held deliveries dropped past
//! their limit.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, over_http, start};
use serde_json::json;
use webhooks_core::{
    DisablePolicy, FAILING_AFTER, ManualClock, OperationalEvent, Preset, RetryChoice, Subscription, Webhooks,
};
use webhooks_memory::MemoryStore;
use webhooks_testkit::{Receiver, Reply};

#[tokio::test]
async fn each_fact_is_told_once() {
    let clock = ManualClock::new(start());
    let heard: Arc<Mutex<Vec<OperationalEvent>>> = Arc::default();
    let webhooks = {
        let heard = Arc::clone(&heard);
        Webhooks::builder()
            .store(MemoryStore::new())
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

    // The fifth failure in a row disables it.
    webhooks.publish("iq.status_updated", json!({"n": 2})).await.unwrap();
    running.settle().await;
    running.stop().await;
    assert_eq!(kinds()[2..], ["endpoint.disabled"]);
    assert!(matches!(
        &heard.lock().unwrap()[2],
        OperationalEvent::EndpointDisabled { reason, .. } if reason == "5 consecutive failed attempts"
    ));

    // Held past its limit of one, then enabled and disabled by calls.
    webhooks.publish("iq.status_updated", json!({"n": 3})).await.unwrap();
    assert_eq!(webhooks.trim_held().await.unwrap(), 1);
    webhooks.enable(id).await.unwrap();
    webhooks.disable(id, "paused by the host").await.unwrap();
    assert_eq!(kinds()[3..], ["held.dropped", "endpoint.enabled", "endpoint.disabled"]);
    assert!(matches!(
        &heard.lock().unwrap()[5],
        OperationalEvent::EndpointDisabled { reason, .. } if reason == "paused by the host"
    ));
    assert_eq!(heard.lock().unwrap().len(), 6, "each fact once");
}
