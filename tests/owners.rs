//! What a multi-customer host does through the facade alone: owners on
//! subscriptions and events, managing subscriptions, per-owner stats, one
//! "not found" error, typed data, and catalogues that refuse typos.

mod common;

use serde::Serialize;
use webhooks_core::{
    DeliveryId, DeliveryQuery, Error, Owner, Preset, Publish, Subscription, SubscriptionId,
    SubscriptionUpdate,
};

#[derive(Serialize)]
struct Order {
    id: String,
    total_cents: u64,
}

#[tokio::test]
async fn subscriptions_are_listed_updated_and_deleted_through_the_facade() {
    let (webhooks, _clock) = common::webhooks(Preset::smartlyq());
    let alice = Owner::new("alice").unwrap();
    let first = webhooks
        .subscribe(
            Subscription::builder("https://alice.example/1").owner("alice").event_type("job.completed"),
        )
        .await
        .unwrap();
    webhooks
        .subscribe(Subscription::builder("https://bob.example/").owner("bob").event_type("job.completed"))
        .await
        .unwrap();
    let second = webhooks
        .subscribe(Subscription::builder("https://alice.example/2").owner("alice").event_type("job.failed"))
        .await
        .unwrap();
    let hers: Vec<SubscriptionId> =
        webhooks.subscriptions(&alice).await.unwrap().iter().map(|s| s.id).collect();
    assert_eq!(hers, vec![first.id, second.id]);
    assert_eq!(webhooks.all_subscriptions().await.unwrap().len(), 3);

    let update = SubscriptionUpdate::new().url("https://alice.example/new").event_types(["job.failed"]);
    let updated = webhooks.update_subscription(first.id, update).await.unwrap();
    assert_eq!(updated.url.as_str(), "https://alice.example/new");
    assert_eq!(updated.owner, alice, "the owner stays");
    assert_eq!(updated.secret, first.secret, "the secret stays");
    assert_eq!(webhooks.subscription(first.id).await.unwrap(), updated);
    let refused = webhooks
        .update_subscription(first.id, SubscriptionUpdate::new().event_types(["job.compleetd"]))
        .await;
    assert!(matches!(refused, Err(Error::UnknownEventType { .. })), "{refused:?}");
    let refused =
        webhooks.update_subscription(first.id, SubscriptionUpdate::new().url("ftp://files.example/")).await;
    assert!(matches!(refused, Err(Error::InvalidUrl { .. })), "{refused:?}");

    webhooks.delete_subscription(second.id).await.unwrap();
    assert_eq!(webhooks.subscriptions(&alice).await.unwrap().len(), 1);
}

#[tokio::test]
async fn not_found_is_one_error_whichever_layer_noticed() {
    let (webhooks, _clock) = common::webhooks(Preset::smartlyq());
    let (subscription, delivery) = (SubscriptionId::new(), DeliveryId::new());
    let is_subscription =
        |r: Result<(), Error>| matches!(r, Err(Error::SubscriptionNotFound { id }) if id == subscription);
    assert!(is_subscription(webhooks.subscription(subscription).await.map(|_| ())));
    assert!(is_subscription(webhooks.delete_subscription(subscription).await));
    assert!(is_subscription(webhooks.enable(subscription).await));
    assert!(is_subscription(webhooks.disable(subscription, "paused").await));
    assert!(is_subscription(webhooks.stats(subscription).await.map(|_| ())));
    assert!(is_subscription(webhooks.send_test(subscription).await.map(|_| ())));
    let is_delivery =
        |r: Result<(), Error>| matches!(r, Err(Error::DeliveryNotFound { id }) if id == delivery);
    assert!(is_delivery(webhooks.resend(delivery).await));
    assert!(is_delivery(webhooks.delivery_log(delivery).await.map(|_| ())));
}

#[tokio::test]
async fn any_serializable_data_is_published_for_its_owner_and_counted_per_owner() {
    let (webhooks, _clock) = common::webhooks(Preset::smartlyq());
    webhooks
        .subscribe(Subscription::builder("https://alice.example/").owner("alice").event_type("job.completed"))
        .await
        .unwrap();
    let order = Order { id: "o-1".into(), total_cents: 1200 };
    let published = webhooks.publish_for("alice", "job.completed", &order).await.unwrap();
    let delivery = webhooks.delivery(published.deliveries[0]).await.unwrap().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    assert_eq!(body["data"], serde_json::json!({"id": "o-1", "total_cents": 1200}));
    assert!(webhooks.publish_for("bob", "job.completed", &order).await.unwrap().deliveries.is_empty());

    let alice = Owner::new("alice").unwrap();
    let stats = webhooks.owner_stats(&alice).await.unwrap();
    assert_eq!((stats.subscriptions, stats.disabled, stats.deliveries.pending), (1, 0, 1));
    let listed = webhooks.deliveries(DeliveryQuery::new().owner(alice)).await.unwrap();
    assert_eq!(listed.deliveries.len(), 1);
    assert_eq!(webhooks.owner_stats(&Owner::new("bob").unwrap()).await.unwrap().subscriptions, 0);
}

#[tokio::test]
async fn owners_and_keys_are_checked() {
    let (webhooks, _clock) = common::webhooks(Preset::smartlyq());
    let bad_owner = webhooks
        .subscribe(Subscription::builder("https://x.example/").owner("").event_type("job.completed"))
        .await;
    assert!(matches!(bad_owner, Err(Error::Invalid { field: "owner", .. })), "{bad_owner:?}");
    let bad_owner = webhooks.publish_for("a\nb", "job.completed", serde_json::json!({})).await;
    assert!(matches!(bad_owner, Err(Error::Invalid { field: "owner", .. })), "{bad_owner:?}");
    let long_key = "k".repeat(256);
    let bad_key = webhooks
        .publish_event(Publish::new("job.completed", serde_json::json!({})).idempotency_key(long_key))
        .await;
    assert!(matches!(bad_key, Err(Error::Invalid { field: "idempotency key", .. })), "{bad_key:?}");
}

#[tokio::test]
async fn naming_event_types_fixes_an_open_catalogue() {
    let preset = common::over_http(Preset::standard().with_event_types(["order.created", "order.paid"]));
    let webhooks = webhooks_core::Webhooks::builder()
        .store(webhooks_memory::MemoryStore::new())
        .preset(preset)
        .build()
        .unwrap();
    let typo = webhooks
        .subscribe(
            Subscription::builder("https://shop.example/").event_types(["order.created", "order.craeted"]),
        )
        .await;
    assert!(
        matches!(typo, Err(Error::UnknownEventType { ref name, .. }) if name == "order.craeted"),
        "{typo:?}"
    );
    let typo = webhooks.publish("order.craeted", serde_json::json!({})).await;
    assert!(matches!(typo, Err(Error::UnknownEventType { .. })), "{typo:?}");
    assert!(webhooks.publish("order.paid", serde_json::json!({})).await.is_ok());
}
