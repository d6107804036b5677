//! One owner's view of the facade answers for that owner's subscriptions
//! and deliveries only: another owner's ids are not found, exactly like ids
//! that never existed, for every read and every action, on every store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use webhooks_core::{
    DeliveryQuery, Error, Owner, Preset, Publish, Store, Subscription, SubscriptionUpdate, Webhooks,
};

fn not_found<T: std::fmt::Debug>(result: Result<T, Error>) {
    assert!(
        matches!(result, Err(Error::SubscriptionNotFound { .. } | Error::DeliveryNotFound { .. })),
        "{result:?}"
    );
}

async fn an_owner_sees_and_acts_on_its_own_only(store: Arc<dyn Store>) {
    let webhooks = Webhooks::builder().shared_store(store).preset(Preset::deepsmith()).build().unwrap();
    let subscribe = |owner: &str| {
        webhooks.subscribe(
            Subscription::builder(format!("https://{owner}.example/"))
                .owner(owner)
                .event_type("iq.status_updated"),
        )
    };
    let (alices, bobs) = (subscribe("alice").await.unwrap(), subscribe("bob").await.unwrap());
    let publish =
        |owner: &str| webhooks.publish_event(Publish::new("iq.status_updated", json!({})).owner(owner));
    let alices_delivery = publish("alice").await.unwrap().deliveries[0];
    let bobs_delivery = publish("bob").await.unwrap().deliveries[0];
    let alice = webhooks.owner(Owner::new("alice").unwrap());

    // Her own: found.
    assert_eq!(alice.subscriptions().await.unwrap(), vec![alices.clone()]);
    assert_eq!(alice.subscription(alices.id).await.unwrap().id, alices.id);
    assert_eq!(alice.delivery(alices_delivery).await.unwrap().0.id, alices_delivery);
    let page = alice.deliveries(DeliveryQuery::default()).await.unwrap();
    assert_eq!(page.deliveries.iter().map(|d| d.id).collect::<Vec<_>>(), vec![alices_delivery]);
    let asked_for_bob = DeliveryQuery::new().owner(Owner::new("bob").unwrap());
    let logs = alice.delivery_logs(asked_for_bob).await.unwrap();
    assert_eq!(logs.logs.len(), 1, "a query cannot name another owner");
    assert_eq!(logs.logs[0].delivery.id, alices_delivery);

    // Bob's: not found, for every read and action, and nothing changes.
    not_found(alice.subscription(bobs.id).await);
    not_found(alice.delivery(bobs_delivery).await);
    not_found(alice.delivery_log(bobs_delivery).await);
    not_found(alice.resend(bobs_delivery).await);
    not_found(alice.stats(bobs.id).await);
    not_found(alice.delivery_counts(bobs.id).await);
    not_found(alice.operational_events(bobs.id, chrono::Utc::now()).await);
    not_found(alice.disable(bobs.id, "not hers").await);
    not_found(alice.enable(bobs.id).await);
    not_found(alice.recover(bobs.id, chrono::Utc::now()).await);
    not_found(alice.send_test(bobs.id).await);
    not_found(alice.rotate_secret(bobs.id, Duration::from_secs(60)).await);
    not_found(
        alice.update_subscription(bobs.id, SubscriptionUpdate::new().url("https://alice.example/x")).await,
    );
    not_found(alice.delete_subscription(bobs.id).await);
    let untouched = webhooks.subscription(bobs.id).await.unwrap();
    assert_eq!(untouched, bobs, "Bob's subscription is as it was");
    assert_eq!(webhooks.delivery_counts(bobs.id).await.unwrap().pending, 1);

    // And her own actions work.
    alice.disable(alices.id, "paused").await.unwrap();
    assert!(!alice.subscription(alices.id).await.unwrap().is_enabled());
    alice.delete_subscription(alices.id).await.unwrap();
    assert!(alice.subscriptions().await.unwrap().is_empty());
}

on_every_store!(an_owner_sees_and_acts_on_its_own_only);
