//! Every admin type the README lists serializes, so a host's admin route
//! is `Json(value)`; those a host may read back deserialize to what they
//! were.

mod common;

use common::{Running, over_http, webhooks};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use webhooks_core::{DeliveryQuery, Owner, Preset, Subscription};
use webhooks_examples::Receiver;

/// `value` as JSON text, checked to read back as itself (a delivery's body
/// byte for byte), then as a value to look into.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) -> Value {
    let text = serde_json::to_string(value).unwrap();
    assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value, "{text}");
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn admin_data_serializes_and_reads_back() {
    let (webhooks, _clock) = webhooks(over_http(Preset::deepsmith()));
    let receiver = Receiver::start().await.unwrap();
    let subscription = webhooks
        .subscribe(Subscription::builder(receiver.url()).owner("alice").event_type("iq.status_updated"))
        .await
        .unwrap();
    let published = webhooks
        .publish_event(webhooks_core::Publish::new("iq.status_updated", json!({"n": 1})).owner("alice"))
        .await
        .unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    running.settle().await;
    running.stop().await;
    let id = published.deliveries[0];

    let shown = serde_json::to_value(&subscription).unwrap();
    assert_eq!(shown["secret"], "<redacted>", "{shown}");
    let log = round_trip(&webhooks.delivery_log(id).await.unwrap());
    assert_eq!(log["delivery"]["state"], "delivered", "{log}");
    assert_eq!(log["attempts"][0]["response"]["status"], 204, "{log}");
    let page = round_trip(&webhooks.deliveries(DeliveryQuery::default()).await.unwrap());
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 1, "{page}");
    let logs = round_trip(&webhooks.delivery_logs(DeliveryQuery::default()).await.unwrap());
    assert_eq!(logs["logs"][0]["delivery"]["id"], id.to_string(), "{logs}");
    let owner = round_trip(&webhooks.owner_stats(&Owner::new("alice").unwrap()).await.unwrap());
    assert_eq!(owner["subscriptions"], 1, "{owner}");
    let stats = round_trip(&webhooks.stats(subscription.id).await.unwrap());
    assert_eq!(stats["succeeded"], 1, "{stats}");
    let counts = round_trip(&webhooks.delivery_counts(subscription.id).await.unwrap());
    assert_eq!(counts["delivered"], 1, "{counts}");
    let query: DeliveryQuery = serde_json::from_value(json!({"state": "dropped", "limit": 10})).unwrap();
    assert_eq!(query.limit, 10);
    let event = webhooks_core::OperationalEvent::EndpointEnabled {
        subscription_id: subscription.id,
        at: chrono::Utc::now(),
    };
    assert_eq!(serde_json::to_value(&event).unwrap()["type"], "endpoint_enabled");
}
