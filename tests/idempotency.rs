//! The idempotency window through the facade, on every store, with a
//! manual clock: a repeat inside the window is answered with the first
//! event whatever happened to its deliveries, one after it publishes anew,
//! and the dispatcher's housekeeping forgets what has expired.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use webhooks_core::prelude::*;
use webhooks_core::{ManualClock, Preset, Publish, Subscription, Webhooks};

const WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

fn facade(store: Arc<dyn Store>) -> (Webhooks, ManualClock) {
    let clock = ManualClock::new(common::start());
    let webhooks = Webhooks::builder()
        .shared_store(store)
        .preset(common::over_http(Preset::deepsmith()))
        .clock(clock.clone())
        .idempotency_window(WINDOW)
        .build()
        .unwrap();
    (webhooks, clock)
}

fn order(key: &str) -> Publish {
    Publish::new("iq.status_updated", json!({"order": key})).owner("shop").idempotency_key(key)
}

async fn a_repeat_inside_the_window_is_the_first_event_and_after_it_publishes_anew(store: Arc<dyn Store>) {
    let (webhooks, clock) = facade(store);
    let endpoint = webhooks
        .subscribe(Subscription::builder("http://127.0.0.1:9/").owner("shop").event_type("iq.status_updated"))
        .await
        .unwrap();
    let first = webhooks.publish_event(order("A-1")).await.unwrap();
    assert_eq!((first.deliveries.len(), first.repeated), (1, false));

    // The endpoint is deleted with its delivery; the key is still held.
    clock.advance(Duration::from_secs(60));
    webhooks.delete_subscription(endpoint.id).await.unwrap();
    webhooks
        .subscribe(Subscription::builder("http://127.0.0.1:9/").owner("shop").event_type("iq.status_updated"))
        .await
        .unwrap();
    clock.advance(WINDOW - Duration::from_secs(61));
    let repeat = webhooks.publish_event(order("A-1")).await.unwrap();
    assert_eq!((repeat.event_id, repeat.repeated), (first.event_id, true), "inside the window");
    assert!(repeat.deliveries.is_empty(), "its delivery went with its endpoint: {repeat:?}");
    assert_eq!(webhooks.store().pending_count().await.unwrap(), 0, "the repeat created nothing");

    // At the end of the window the key publishes anew, even before it is forgotten.
    clock.advance(Duration::from_secs(1));
    let anew = webhooks.publish_event(order("A-1")).await.unwrap();
    assert_eq!((anew.repeated, anew.deliveries.len()), (false, 1));
    assert_ne!(anew.event_id, first.event_id);

    // Housekeeping forgets keys whose window ended, and only those.
    webhooks.publish_event(order("B-2")).await.unwrap();
    clock.advance(WINDOW);
    webhooks.publish_event(order("C-3")).await.unwrap();
    assert_eq!(webhooks.forget_expired_keys().await.unwrap(), 2, "A-1 and B-2, not C-3");
    assert_eq!(webhooks.forget_expired_keys().await.unwrap(), 0);
    let still = webhooks.publish_event(order("C-3")).await.unwrap();
    assert!(still.repeated);
}

on_every_store!(a_repeat_inside_the_window_is_the_first_event_and_after_it_publishes_anew);

#[tokio::test]
async fn the_window_is_a_day_by_default_and_must_be_sensible() {
    assert_eq!(webhooks_core::DEFAULT_IDEMPOTENCY_WINDOW, Duration::from_secs(24 * 60 * 60));
    let (webhooks, clock) = common::webhooks(Preset::deepsmith());
    webhooks
        .subscribe(Subscription::builder("http://127.0.0.1:9/").event_type("iq.status_updated"))
        .await
        .unwrap();
    let keyed = || Publish::new("iq.status_updated", json!({})).idempotency_key("k");
    let first = webhooks.publish_event(keyed()).await.unwrap();
    clock.advance(Duration::from_secs(24 * 60 * 60 - 1));
    assert!(webhooks.publish_event(keyed()).await.unwrap().repeated);
    clock.advance(Duration::from_secs(1));
    let anew = webhooks.publish_event(keyed()).await.unwrap();
    assert!(!anew.repeated && anew.event_id != first.event_id);

    for window in [Duration::ZERO, Duration::from_secs(3651 * 24 * 60 * 60)] {
        let refused = Webhooks::builder()
            .store(webhooks_memory::MemoryStore::new())
            .preset(Preset::deepsmith())
            .idempotency_window(window)
            .build()
            .unwrap_err();
        assert!(refused.to_string().contains("idempotency window"), "{refused}");
    }
}
