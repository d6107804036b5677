//! Publishing: one delivery per listening subscription, with the exact body.

use super::*;

/// One delivery per subscription listening to the event, each with the
/// exact body; a disabled subscription's is held, not claimed.
pub async fn publish_fans_out_to_every_listening_subscription<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.completed"]);
    let b = subscription("https://example.com/b", &["job.completed", "job.failed"]);
    let c = subscription("https://example.com/c", &["job.failed"]);
    let d = subscription("https://example.com/d", &["job.completed"]);
    for sub in [&a, &b, &c, &d] {
        store.insert_subscription(sub).await.unwrap();
    }
    store.disable_subscription(d.id, "paused by the host", t0()).await.unwrap();

    let event = event("job.completed", 5);
    let sent = body(r#"{"event":"job.completed","data":{"ünï":"☃"}}"#);
    let ids = store.publish(&event, sent.clone()).await.unwrap().deliveries;
    assert_eq!(ids.len(), 3);

    let mut reached = HashSet::new();
    for id in ids {
        let delivery = store.delivery(id).await.unwrap().expect("the delivery exists");
        assert_eq!(delivery.id, id);
        assert_eq!(delivery.event_id, event.id);
        assert_eq!(delivery.event_type, "job.completed");
        assert_eq!(delivery.body, sent, "the body is kept byte for byte");
        assert_eq!(delivery.state, DeliveryState::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.next_attempt_at, Some(event.occurred_at));
        reached.insert(delivery.subscription_id);
    }
    assert_eq!(reached, HashSet::from([a.id, b.id, d.id]));
    let claimed: HashSet<_> =
        claim_at(&store, 5, 10, 65).await.iter().map(|c| c.delivery.subscription_id).collect();
    assert_eq!(claimed, HashSet::from([a.id, b.id]), "the disabled one's is held");
}

/// An event nobody listens to creates no delivery.
pub async fn publish_without_listeners_creates_nothing<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.failed"]);
    store.insert_subscription(&a).await.unwrap();
    let ids = store.publish(&event("job.completed", 0), body("{}")).await.unwrap().deliveries;
    assert!(ids.is_empty());
    assert!(claim_at(&store, 10, 10, 70).await.is_empty());
}

/// Batch publishing and recording do what the single calls do.
pub async fn batches_publish_and_record_like_single_calls<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    let other = subscription("https://example.com/b", &["job.failed"]);
    store.insert_subscription(&other).await.unwrap();
    let events = vec![
        (event("job.completed", 0), body("one")),
        (event("job.failed", 1), body("two")),
        (event("wallet.low", 2), body("three")),
    ];
    let also = subscription("https://example.com/c", &["job.completed"]);
    store.insert_subscription(&also).await.unwrap();
    let published = store.publish_many(&events).await.unwrap();
    assert_eq!(published.iter().map(|p| p.deliveries.len()).collect::<Vec<_>>(), vec![2, 1, 0]);
    let mut firsts = Vec::new();
    for id in &published[0].deliveries {
        let delivery = store.delivery(*id).await.unwrap().unwrap();
        assert_eq!((delivery.event_id, delivery.body.clone()), (events[0].0.id, body("one")));
        firsts.push(delivery);
    }
    firsts.sort_by_key(|d| d.subscription_id != sub.id);
    assert_eq!(firsts.iter().map(|d| d.subscription_id).collect::<Vec<_>>(), vec![sub.id, also.id]);
    let first = firsts.remove(0);
    let second = store.delivery(published[1].deliveries[0]).await.unwrap().unwrap();
    assert_eq!((second.subscription_id, second.body.clone()), (other.id, body("two")));

    let records = vec![
        record(success(first.id, 1, 5), Verdict::Delivered, 5),
        record(failure(second.id, 1, 5), Verdict::Retry { at: at(20) }, 5),
    ];
    let recorded = store.record_attempts(&records).await.unwrap();
    let failures: Vec<u32> = recorded.into_iter().map(|r| r.unwrap().consecutive_failures).collect();
    assert_eq!(failures, vec![0, 1]);
    assert_eq!(store.delivery(first.id).await.unwrap().unwrap().state, DeliveryState::Delivered);
    let second = store.delivery(second.id).await.unwrap().unwrap();
    assert_eq!((second.state, second.next_attempt_at), (DeliveryState::Pending, Some(at(20))));
    assert_eq!(store.attempts(second.id).await.unwrap().len(), 1);
}

/// A test event goes to the one subscription named, whatever its types.
pub async fn publish_to_reaches_one_subscription_whatever_it_listens_to<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.failed"]);
    let b = subscription("https://example.com/b", &["webhook.test"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    let id = store.publish_to(&event("webhook.test", 5), body("test"), a.id).await.unwrap();
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(
        (delivery.subscription_id, delivery.body.clone(), delivery.next_attempt_at),
        (a.id, body("test"), Some(at(5)))
    );
    assert_eq!(store.delivery_counts(b.id).await.unwrap().pending, 0);
    assert!(matches!(
        store.publish_to(&event("webhook.test", 5), body("test"), SubscriptionId::new()).await,
        Err(StoreError::SubscriptionNotFound(_))
    ));
}

/// A subscription naming channels reaches only events on one of them; one
/// naming none hears every channel. Channels are kept, replaced by an
/// update, and routing follows.
pub async fn events_reach_the_subscriptions_listening_on_one_of_their_channels<S: Store>(store: S) {
    let on = |owner: &str, url: &str, channels: &[&str]| Subscription {
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
        ..owned_subscription(owner, url, &["order.created"])
    };
    let any = on("shop", "https://shop.example/any", &[]);
    let eu = on("shop", "https://shop.example/eu", &["store-eu"]);
    let mut both = on("shop", "https://shop.example/both", &["store-eu", "store-us"]);
    let other = on("other", "https://other.example/eu", &["store-eu"]);
    for subscription in [&any, &eu, &both, &other] {
        store.insert_subscription(subscription).await.unwrap();
    }
    assert_eq!(store.subscription(both.id).await.unwrap().unwrap().channels, both.channels);
    let mut seconds = 0;
    let mut reached = async |owner: &str, channels: &[&str]| -> BTreeSet<SubscriptionId> {
        seconds += 1;
        let event = Event {
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            ..owned_event(owner, "order.created", seconds)
        };
        let published = store.publish(&event, body("{}")).await.unwrap();
        let mut reached = BTreeSet::new();
        for delivery in published.deliveries {
            reached.insert(subscription_of(&store, delivery).await);
        }
        reached
    };
    assert_eq!(reached("shop", &["store-eu"]).await, BTreeSet::from([any.id, eu.id, both.id]));
    assert_eq!(reached("shop", &["store-us"]).await, BTreeSet::from([any.id, both.id]));
    assert_eq!(reached("shop", &[]).await, BTreeSet::from([any.id]), "no channel: those naming none");
    assert_eq!(reached("shop", &["store-us", "store-eu"]).await, BTreeSet::from([any.id, eu.id, both.id]));
    assert_eq!(reached("shop", &["store-jp"]).await, BTreeSet::from([any.id]));

    both.channels = BTreeSet::from(["store-jp".to_owned()]);
    store.update_subscription(&both).await.unwrap();
    assert_eq!(store.subscription(both.id).await.unwrap().unwrap().channels, both.channels);
    assert_eq!(reached("shop", &["store-us"]).await, BTreeSet::from([any.id]));
    assert_eq!(reached("shop", &["store-jp"]).await, BTreeSet::from([any.id, both.id]));

    // In one batch, each event by its own channels.
    let batch: Vec<(Event, Bytes)> = [&["store-eu"][..], &[]]
        .iter()
        .map(|channels| {
            let event = Event {
                channels: channels.iter().map(|c| (*c).to_owned()).collect(),
                ..owned_event("shop", "order.created", 100)
            };
            (event, body("{}"))
        })
        .collect();
    let published = store.publish_many(&batch).await.unwrap();
    assert_eq!((published[0].deliveries.len(), published[1].deliveries.len()), (2, 1));
}

/// A delivery's id carries its event's time, not the clock's.
pub async fn delivery_ids_carry_the_event_time<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    let event = event("job.completed", -86_400);
    let id = store.publish(&event, body("{}")).await.unwrap().deliveries[0];
    let (seconds, nanos) = id.as_uuid().get_timestamp().expect("a UUIDv7").to_unix();
    assert_eq!((seconds as i64, nanos), (event.occurred_at.timestamp(), 0));
    let test = store.publish_to(&Event { occurred_at: at(5), ..event }, body("{}"), sub.id).await.unwrap();
    let (seconds, _) = test.as_uuid().get_timestamp().expect("a UUIDv7").to_unix();
    assert_eq!(seconds as i64, at(5).timestamp());
}
