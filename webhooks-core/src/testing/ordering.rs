//! Ordered subscriptions: one delivery at a time, in publish order.

use super::*;

/// Only the head of an ordered subscription is claimed; the others wait,
/// reported pending with no due time. Delivering the head makes exactly
/// the next one due, at the time of the recording.
pub async fn ordered_deliveries_wait_and_finishing_the_head_releases_exactly_the_next<S: Store>(store: S) {
    let (sub, ids) = ordered_with(&store, 3).await;
    for waiting in &ids[1..] {
        let delivery = store.delivery(*waiting).await.unwrap().unwrap();
        assert_eq!((delivery.state, delivery.next_attempt_at), (DeliveryState::Pending, None));
    }
    assert_eq!(store.delivery_counts(sub.id).await.unwrap().pending, 3, "waiting ones are pending");
    assert_eq!(claimed(&store, 100).await, vec![ids[0]], "the later ones wait");
    // A retry keeps the head in front.
    store.record_attempt(&answered(ids[0], 1, 500, Verdict::Retry { at: at(200) }, 101)).await.unwrap();
    assert!(claimed(&store, 150).await.is_empty(), "nothing overtakes a retrying head");
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(200)));
    store.record_attempt(&answered(ids[0], 2, 200, Verdict::Delivered, 201)).await.unwrap();
    let next = store.delivery(ids[1]).await.unwrap().unwrap();
    assert_eq!(next.next_attempt_at, Some(at(201)), "due when the head finished");
    assert_eq!(store.delivery(ids[2]).await.unwrap().unwrap().next_attempt_at, None);
    assert_eq!(claimed(&store, 300).await, vec![ids[1]]);
    store.record_attempt(&answered(ids[1], 1, 200, Verdict::Delivered, 301)).await.unwrap();
    assert_eq!(claimed(&store, 400).await, vec![ids[2]]);
    // With nothing pending, a new delivery goes at once.
    store.record_attempt(&answered(ids[2], 1, 200, Verdict::Delivered, 401)).await.unwrap();
    let later = store.publish(&event("job.completed", 500), body("{}")).await.unwrap().deliveries;
    assert_eq!(claimed(&store, 500).await, later);
}

/// Deliveries to an ordered subscription published in one batch wait as
/// they would published one by one, beside an unordered listener's in the
/// same batch that all go at once.
pub async fn ordered_deliveries_published_in_one_batch_wait_too<S: Store>(store: S) {
    let mut ordered = subscription("https://example.com/ordered", &["job.completed"]);
    ordered.settings.ordered = true;
    store.insert_subscription(&ordered).await.unwrap();
    let free = subscription("https://example.com/free", &["job.failed"]);
    store.insert_subscription(&free).await.unwrap();
    let events: Vec<_> = (0..3)
        .flat_map(|n| [(event("job.completed", n), body("{}")), (event("job.failed", n), body("{}"))])
        .collect();
    let published = store.publish_many(&events).await.unwrap();
    let ids: Vec<DeliveryId> = published.iter().map(|p| p.deliveries[0]).collect();
    let mut claimed = claimed(&store, 100).await;
    claimed.sort();
    let mut expected = vec![ids[0], ids[1], ids[3], ids[5]];
    expected.sort();
    assert_eq!(claimed, expected, "the ordered head and every unordered delivery");
    for waiting in [ids[2], ids[4]] {
        assert_eq!(store.delivery(waiting).await.unwrap().unwrap().next_attempt_at, None);
    }
}

/// A dropped head lets the next one go, as a delivered one does.
pub async fn a_dropped_ordered_delivery_releases_the_next<S: Store>(store: S) {
    let (_, ids) = ordered_with(&store, 2).await;
    assert_eq!(claimed(&store, 10).await, vec![ids[0]]);
    store.record_attempt(&answered(ids[0], 1, 500, Verdict::Dropped, 11)).await.unwrap();
    assert_eq!(store.delivery(ids[0]).await.unwrap().unwrap().state, DeliveryState::Dropped);
    assert_eq!(claimed(&store, 20).await, vec![ids[1]]);
}

/// Another subscription's deliveries are claimed while an ordered one's
/// head is retrying, with many of its deliveries waiting.
pub async fn a_slow_ordered_subscription_holds_back_no_other<S: Store>(store: S) {
    let (ordered, ids) = ordered_with(&store, 20).await;
    assert_eq!(store.delivery_counts(ordered.id).await.unwrap().pending, 20);
    let other = subscription("https://example.com/other", &["job.completed"]);
    store.insert_subscription(&other).await.unwrap();
    let mut others = Vec::new();
    for second in 30..33 {
        for id in store.publish(&event("job.completed", second), body("{}")).await.unwrap().deliveries {
            if subscription_of(&store, id).await == other.id {
                others.push(id);
            }
        }
    }
    assert_eq!(claimed(&store, 40).await, [&ids[..1], &others[..]].concat());
    store.record_attempt(&answered(ids[0], 1, 500, Verdict::Retry { at: at(9000) }, 41)).await.unwrap();
    for id in &others {
        store.record_attempt(&answered(*id, 1, 200, Verdict::Delivered, 41)).await.unwrap();
    }
    let more = store.publish(&event("job.completed", 50), body("{}")).await.unwrap().deliveries;
    let mine: Vec<DeliveryId> = {
        let mut mine = Vec::new();
        for id in more {
            if subscription_of(&store, id).await == other.id {
                mine.push(id);
            }
        }
        mine
    };
    assert_eq!(claimed(&store, 60).await, mine, "the other's delivery goes, the ordered ones wait");
}

/// Enabling an ordered subscription makes its held head due, not the
/// deliveries waiting behind it.
pub async fn enabling_keeps_waiting_deliveries_waiting<S: Store>(store: S) {
    let (sub, ids) = ordered_with(&store, 3).await;
    store.disable_subscription(sub.id, "paused", at(5)).await.unwrap();
    assert!(claimed(&store, 10).await.is_empty());
    store.enable_subscription(sub.id, at(20)).await.unwrap();
    assert_eq!(claimed(&store, 20).await, vec![ids[0]]);
    assert_eq!(store.delivery(ids[1]).await.unwrap().unwrap().next_attempt_at, None);
    // A head finished while disabled lets the next go once enabled.
    store.disable_subscription(sub.id, "paused", at(21)).await.unwrap();
    store.record_attempt(&answered(ids[0], 1, 200, Verdict::Delivered, 22)).await.unwrap();
    assert!(claimed(&store, 23).await.is_empty(), "held while disabled");
    store.enable_subscription(sub.id, at(30)).await.unwrap();
    assert_eq!(claimed(&store, 30).await, vec![ids[1]]);
}

/// Turning ordering off lets every waiting delivery go; turning it on
/// keeps the earliest pending one going and makes the others wait.
pub async fn turning_ordering_off_or_on_through_an_update<S: Store>(store: S) {
    let (mut sub, ids) = ordered_with(&store, 3).await;
    sub.settings.ordered = false;
    store.update_subscription(&sub).await.unwrap();
    assert_eq!(claimed(&store, 10).await, ids, "all due once unordered");
    for id in &ids {
        store.release(&[*id], at(10)).await.unwrap();
    }
    sub.settings.ordered = true;
    store.update_subscription(&sub).await.unwrap();
    assert_eq!(claimed(&store, 20).await, vec![ids[0]], "ordered again: one at a time");
    store.record_attempt(&answered(ids[0], 1, 200, Verdict::Delivered, 21)).await.unwrap();
    assert_eq!(claimed(&store, 30).await, vec![ids[1]]);
}

/// A resend of an ordered subscription's finished delivery puts it in its
/// place by publish order: ahead of the later deliveries pending, and the
/// one that was going waits behind it.
pub async fn a_resent_ordered_delivery_takes_its_place_in_publish_order<S: Store>(store: S) {
    let (_, ids) = ordered_with(&store, 3).await;
    store.record_attempt(&answered(ids[0], 1, 200, Verdict::Delivered, 10)).await.unwrap();
    assert_eq!(claimed(&store, 11).await, vec![ids[1]]);
    store.resend(ids[0], at(12)).await.unwrap();
    // ids[1] was claimed: its attempt is recorded, and it then waits.
    store.record_attempt(&answered(ids[1], 1, 500, Verdict::Retry { at: at(13) }, 12)).await.unwrap();
    assert_eq!(claimed(&store, 20).await, vec![ids[0]], "the resent one goes first");
    let resent = Attempt { cycle: 2, ..answered(ids[0], 1, 200, Verdict::Delivered, 21).attempt };
    store.record_attempt(&record(resent, Verdict::Delivered, 21)).await.unwrap();
    assert_eq!(claimed(&store, 30).await, vec![ids[1]]);
    store.record_attempt(&answered(ids[1], 2, 200, Verdict::Delivered, 31)).await.unwrap();
    assert_eq!(claimed(&store, 40).await, vec![ids[2]]);
    // A resend with nothing else pending goes at once.
    store.record_attempt(&answered(ids[2], 1, 200, Verdict::Delivered, 41)).await.unwrap();
    store.resend(ids[1], at(50)).await.unwrap();
    assert_eq!(claimed(&store, 50).await, vec![ids[1]]);
}
