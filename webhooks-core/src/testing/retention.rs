//! Purging finished deliveries, and idempotency keys held for their window.

use super::*;

/// Purging deletes what finished before the time given, in batches, with its
/// log, and never a pending delivery.
pub async fn purging_deletes_old_finished_deliveries_in_batches_and_nothing_else<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.completed"]);
    let b = subscription("https://example.com/b", &["job.completed"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    for n in 0..5 {
        for id in
            store.publish(&event("job.completed", n), Bytes::from(format!("{n}"))).await.unwrap().deliveries
        {
            let delivery = store.delivery(id).await.unwrap().unwrap();
            if delivery.subscription_id == a.id { to_a.push(id) } else { to_b.push(id) }
        }
    }
    // To a: three finished long ago, one finished lately, one still retrying.
    store.record_attempt(&record(success(to_a[0], 1, 10), Verdict::Delivered, 10)).await.unwrap();
    store.record_attempt(&record(failure(to_a[1], 1, 20), Verdict::Dropped, 20)).await.unwrap();
    store.record_attempt(&record(success(to_a[2], 1, 30), Verdict::Delivered, 30)).await.unwrap();
    store.record_attempt(&record(success(to_a[3], 1, 500), Verdict::Delivered, 500)).await.unwrap();
    store.record_attempt(&record(failure(to_a[4], 1, 40), Verdict::Retry { at: at(5) }, 40)).await.unwrap();

    assert_eq!(store.purge_finished(at(100), 2).await.unwrap(), 3, "two batches of two, the second short");
    for id in &to_a[..3] {
        assert_eq!(store.delivery(*id).await.unwrap(), None);
        assert!(store.attempts(*id).await.unwrap().is_empty());
    }
    assert_eq!(store.delivery(to_a[3]).await.unwrap().unwrap().state, DeliveryState::Delivered);
    assert_eq!(store.attempts(to_a[4]).await.unwrap().len(), 1);
    // b's deliveries of the same events keep their bodies.
    for (n, id) in to_b.iter().enumerate() {
        assert_eq!(store.delivery(*id).await.unwrap().unwrap().body, Bytes::from(format!("{n}")));
    }
    // However old, pending deliveries stay; a zero batch still makes progress.
    store.disable_subscription(b.id, "paused", at(600)).await.unwrap();
    assert_eq!(store.purge_finished(DateTime::<Utc>::MAX_UTC, 0).await.unwrap(), 1);
    assert_eq!(
        store.delivery_counts(a.id).await.unwrap(),
        DeliveryCounts { pending: 1, ..Default::default() }
    );
    assert_eq!(store.delivery_counts(b.id).await.unwrap().pending, 5);
    assert_eq!(store.purge_finished(DateTime::<Utc>::MAX_UTC, 10).await.unwrap(), 0);
    assert_eq!(store.pending_count().await.unwrap(), 6);
}

/// A batch takes the deliveries that finished first, whatever order they
/// were published in.
pub async fn a_purge_batch_takes_the_earliest_finished_first<S: Store>(store: S) {
    let (_, first) = one_delivery(&store).await;
    let second = store.publish(&event("job.completed", 1), body("b")).await.unwrap().deliveries[0];
    store.record_attempt(&record(success(second, 1, 10), Verdict::Delivered, 10)).await.unwrap();
    store.record_attempt(&record(failure(first, 1, 20), Verdict::Dropped, 20)).await.unwrap();

    assert_eq!(store.purge_batch(at(100), 1).await.unwrap(), 1);
    assert_eq!(store.delivery(second).await.unwrap(), None, "finished first, purged first");
    assert!(store.delivery(first).await.unwrap().is_some(), "published first, finished later");
}

/// A key the store holds for the audience publishes nothing again and
/// returns the first publication: the same event id and delivery ids.
pub async fn a_repeated_idempotency_key_creates_nothing_and_returns_the_first_publication<S: Store>(
    store: S,
) {
    store
        .insert_subscription(&owned_subscription("alice", "https://alice.example/", &["order.created"]))
        .await
        .unwrap();
    store
        .insert_subscription(&owned_subscription("alice", "https://alice.example/2", &["order.created"]))
        .await
        .unwrap();
    let keyed = |seconds| keyed_event("alice", "order-42", seconds);
    let first = store.publish(&keyed(0), body("{\"first\":true}")).await.unwrap();
    assert_eq!((first.deliveries.len(), first.repeated), (2, false));
    let again = keyed(5);
    let repeat = store.publish(&again, body("{\"first\":false}")).await.unwrap();
    assert!(repeat.repeated);
    assert_eq!(repeat.event_id, first.event_id);
    assert_eq!(
        repeat.deliveries.iter().collect::<BTreeSet<_>>(),
        first.deliveries.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(store.pending_count().await.unwrap(), 2, "nothing created");
    assert_eq!(store.delivery(first.deliveries[0]).await.unwrap().unwrap().body, body("{\"first\":true}"));
    // In one batch too: the second of two with one key repeats the first.
    let batch = store
        .publish_many(&[
            (keyed_event("alice", "k2", 6), body("{}")),
            (keyed_event("alice", "k2", 7), body("{}")),
        ])
        .await
        .unwrap();
    assert_eq!((batch[0].repeated, batch[1].repeated), (false, true));
    assert_eq!((batch[1].event_id, &batch[1].deliveries), (batch[0].event_id, &batch[0].deliveries));
    assert_eq!(store.pending_count().await.unwrap(), 4);
}

/// One key means one event per owner (another owner's key is another key).
/// A key is held until its window ends whatever happens to the event: when
/// it reached no one, when its deliveries are purged. At the end of the
/// window the key publishes anew.
pub async fn idempotency_keys_are_scoped_to_the_owner_and_held_until_their_window_ends<S: Store>(store: S) {
    let alice = owned_subscription("alice", "https://alice.example/", &["order.created"]);
    store.insert_subscription(&alice).await.unwrap();
    store
        .insert_subscription(&owned_subscription("bob", "https://bob.example/", &["order.created"]))
        .await
        .unwrap();
    let hers = store.publish(&keyed_event("alice", "same", 0), body("{}")).await.unwrap();
    let his = store.publish(&keyed_event("bob", "same", 0), body("{}")).await.unwrap();
    assert!(!his.repeated, "another owner's key is another key");
    assert_ne!(his.event_id, hers.event_id);

    // Reaching no one, the key is held all the same: a repeat after a
    // subscription appeared is still the first publication.
    let lonely = store.publish(&keyed_event("carol", "lonely", 0), body("{}")).await.unwrap();
    assert!(lonely.deliveries.is_empty() && !lonely.repeated);
    store
        .insert_subscription(&owned_subscription("carol", "https://carol.example/", &["order.created"]))
        .await
        .unwrap();
    let later = store.publish(&keyed_event("carol", "lonely", 1), body("{}")).await.unwrap();
    assert_eq!((later.event_id, later.deliveries.len(), later.repeated), (lonely.event_id, 0, true));

    // Purged, the key is still held, and the repeat names no delivery.
    store.record_attempt(&record(success(hers.deliveries[0], 1, 2), Verdict::Delivered, 2)).await.unwrap();
    assert_eq!(store.purge_finished(at(100), 10).await.unwrap(), 1);
    let again = store.publish(&keyed_event("alice", "same", 200), body("{}")).await.unwrap();
    assert_eq!((again.event_id, again.deliveries.len(), again.repeated), (hers.event_id, 0, true));
    assert_eq!(store.pending_count().await.unwrap(), 1, "bob's alone: the repeat created nothing");

    // The last moment of the window repeats; its end publishes anew, and
    // the new event holds the key for a window of its own.
    let last = store.publish(&keyed_event("alice", "same", DAY - 1), body("{}")).await.unwrap();
    assert!(last.repeated);
    let anew = store.publish(&keyed_event("alice", "same", DAY), body("{}")).await.unwrap();
    assert!(!anew.repeated);
    assert_ne!(anew.event_id, hers.event_id);
    assert_eq!(anew.deliveries.len(), 1);
    let repeat = store.publish(&keyed_event("alice", "same", DAY + 5), body("{}")).await.unwrap();
    assert_eq!(
        (repeat.event_id, &repeat.deliveries, repeat.repeated),
        (anew.event_id, &anew.deliveries, true)
    );
}

/// Forgetting deletes keys whose window has ended, a batch per step, and
/// none still held; deleting an owner forgets the keys of its events.
pub async fn expired_keys_are_forgotten_in_batches_and_an_owners_go_with_it<S: Store>(store: S) {
    store
        .insert_subscription(&owned_subscription("alice", "https://alice.example/", &["order.created"]))
        .await
        .unwrap();
    for n in 0..5 {
        store.publish(&held_key_event("alice", &format!("short-{n}"), 0, 10), body("{}")).await.unwrap();
    }
    let long = store.publish(&held_key_event("alice", "long", 0, 1000), body("{}")).await.unwrap();
    assert_eq!(store.forget_keys(at(9), 10).await.unwrap(), 0, "all still held");
    assert_eq!(store.forget_keys(at(10), 2).await.unwrap(), 2, "one batch");
    assert_eq!(store.forget_expired_keys(at(10), 2).await.unwrap(), 3, "the rest, in batches");
    assert_eq!(store.forget_expired_keys(at(10), 2).await.unwrap(), 0);
    let still = store.publish(&held_key_event("alice", "long", 20, 2000), body("{}")).await.unwrap();
    assert_eq!((still.event_id, still.repeated), (long.event_id, true), "a held key is kept");
    let anew = store.publish(&held_key_event("alice", "short-0", 20, 2000), body("{}")).await.unwrap();
    assert!(!anew.repeated);

    // An account deleted takes its keys: the owner starting over publishes anew.
    store.delete_owner(&Owner::new("alice").unwrap()).await.unwrap();
    store
        .insert_subscription(&owned_subscription("alice", "https://alice.example/", &["order.created"]))
        .await
        .unwrap();
    let fresh = store.publish(&held_key_event("alice", "long", 30, 2000), body("{}")).await.unwrap();
    assert_eq!((fresh.repeated, fresh.deliveries.len()), (false, 1));
    assert_ne!(fresh.event_id, long.event_id);
    assert_eq!(store.forget_keys(at(5000), 10).await.unwrap(), 1, "only the fresh key was left");
}
