//! Owners: one owner's events, subscriptions and ids never reach another's.

use super::*;

/// An event for one owner reaches that owner's listening subscriptions and
/// no other owner's, whatever they listen to.
pub async fn events_reach_only_their_owners_subscriptions<S: Store>(store: S) {
    let alice = owned_subscription("alice", "https://alice.example/", &["order.created"]);
    let alice_too = owned_subscription("alice", "https://alice.example/2", &["order.created"]);
    let bob = owned_subscription("bob", "https://bob.example/", &["order.created"]);
    let default = subscription("https://default.example/", &["order.created"]);
    for s in [&alice, &alice_too, &bob, &default] {
        store.insert_subscription(s).await.unwrap();
    }
    let published = store.publish(&owned_event("alice", "order.created", 0), body("{}")).await.unwrap();
    assert!(!published.repeated);
    let mut reached = BTreeSet::new();
    for id in &published.deliveries {
        reached.insert(subscription_of(&store, *id).await);
    }
    assert_eq!(reached, BTreeSet::from([alice.id, alice_too.id]));
    let for_bob = store.publish(&owned_event("bob", "order.created", 1), body("{}")).await.unwrap();
    assert_eq!(for_bob.deliveries.len(), 1);
    assert_eq!(subscription_of(&store, for_bob.deliveries[0]).await, bob.id);
    // No owner named: the default owner's alone.
    let unnamed = store.publish(&event("order.created", 2), body("{}")).await.unwrap();
    assert_eq!(unnamed.deliveries.len(), 1);
    assert_eq!(subscription_of(&store, unnamed.deliveries[0]).await, default.id);
    assert!(
        store
            .publish(&owned_event("carol", "order.created", 3), body("{}"))
            .await
            .unwrap()
            .deliveries
            .is_empty()
    );
}

/// An event for every owner reaches every owner's listening subscriptions.
pub async fn every_owner_only_when_asked<S: Store>(store: S) {
    let alice = owned_subscription("alice", "https://alice.example/", &["notice"]);
    let bob = owned_subscription("bob", "https://bob.example/", &["notice"]);
    let deaf = owned_subscription("bob", "https://bob.example/2", &["order.created"]);
    for s in [&alice, &bob, &deaf] {
        store.insert_subscription(s).await.unwrap();
    }
    let everyone = Event { audience: Audience::EveryOwner, ..event("notice", 0) };
    let published = store.publish(&everyone, body("{}")).await.unwrap();
    let mut reached = BTreeSet::new();
    for id in &published.deliveries {
        reached.insert(subscription_of(&store, *id).await);
    }
    assert_eq!(reached, BTreeSet::from([alice.id, bob.id]));
}

/// Deleting an owner removes its subscriptions, their deliveries and logs in
/// one step, and leaves other owners' alone.
pub async fn deleting_an_owner_removes_its_subscriptions_deliveries_and_logs_alone<S: Store>(store: S) {
    let alice = owned_subscription("alice", "https://alice.example/", &["order.created"]);
    let alice_too = owned_subscription("alice", "https://alice.example/2", &["order.created"]);
    let bob = owned_subscription("bob", "https://bob.example/", &["order.created"]);
    for s in [&alice, &alice_too, &bob] {
        store.insert_subscription(s).await.unwrap();
    }
    let hers = store.publish(&owned_event("alice", "order.created", 0), body("{}")).await.unwrap();
    let his = store.publish(&owned_event("bob", "order.created", 0), body("{}")).await.unwrap();
    store
        .record_attempt(&record(failure(hers.deliveries[0], 1, 1), Verdict::Retry { at: at(9) }, 1))
        .await
        .unwrap();
    store
        .record_attempt(&record(failure(his.deliveries[0], 1, 1), Verdict::Retry { at: at(9) }, 1))
        .await
        .unwrap();

    assert_eq!(store.delete_owner(&Owner::new("alice").unwrap()).await.unwrap(), 2);
    for id in &hers.deliveries {
        assert_eq!(store.delivery(*id).await.unwrap(), None);
        assert!(store.attempts(*id).await.unwrap().is_empty());
    }
    assert!(store.subscription(alice.id).await.unwrap().is_none());
    let left: Vec<_> = store.subscriptions().await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(left, vec![bob.id]);
    assert_eq!(store.attempts(his.deliveries[0]).await.unwrap().len(), 1);
    assert_eq!(store.pending_count().await.unwrap(), 1);
    assert_eq!(store.delete_owner(&Owner::new("alice").unwrap()).await.unwrap(), 0, "nothing left");
}

/// Subscriptions and deliveries list by owner.
pub async fn listing_by_owner<S: Store>(store: S) {
    let alice = owned_subscription("alice", "https://alice.example/", &["order.created"]);
    let bob = owned_subscription("bob", "https://bob.example/", &["order.created"]);
    let alice_too = owned_subscription("alice", "https://alice.example/2", &["order.created"]);
    for s in [&alice, &bob, &alice_too] {
        store.insert_subscription(s).await.unwrap();
    }
    let owner = Owner::new("alice").unwrap();
    let ids: Vec<_> = store.owner_subscriptions(&owner).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![alice.id, alice_too.id], "oldest first");
    assert!(store.owner_subscriptions(&Owner::new("carol").unwrap()).await.unwrap().is_empty());
    let hers = store.publish(&owned_event("alice", "order.created", 0), body("{}")).await.unwrap();
    store.publish(&owned_event("bob", "order.created", 1), body("{}")).await.unwrap();
    let query = DeliveryQuery { owner: Some(owner), limit: 10, ..DeliveryQuery::default() };
    let listed: BTreeSet<_> =
        store.list_deliveries(&query).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(listed, hers.deliveries.iter().copied().collect());
}

/// Reads scoped to an owner find its subscription and delivery, and answer
/// another owner's ids exactly like ids that never existed.
pub async fn owned_reads_find_an_owners_ids_and_nothing_of_anothers<S: Store>(store: S) {
    let alice = owned_subscription("alice", "https://alice.example/", &["order.created"]);
    let bob = owned_subscription("bob", "https://bob.example/", &["order.created"]);
    store.insert_subscription(&alice).await.unwrap();
    store.insert_subscription(&bob).await.unwrap();
    let hers =
        store.publish(&owned_event("alice", "order.created", 1), body("{}")).await.unwrap().deliveries[0];
    let (alice_key, bob_key) = (&alice.owner, &bob.owner);

    assert_eq!(store.owned_subscription(alice_key, alice.id).await.unwrap().map(|s| s.id), Some(alice.id));
    assert_eq!(store.owned_subscription(bob_key, alice.id).await.unwrap(), None);
    assert_eq!(store.owned_subscription(alice_key, SubscriptionId::new()).await.unwrap(), None);
    let found = store.owned_delivery(alice_key, hers).await.unwrap().expect("her delivery");
    assert_eq!((found.id, found.subscription_id), (hers, alice.id));
    assert_eq!(store.owned_delivery(bob_key, hers).await.unwrap(), None);
    assert_eq!(store.owned_delivery(alice_key, DeliveryId::new()).await.unwrap(), None);
}
