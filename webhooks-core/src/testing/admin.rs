//! Listing, counting and reading logs.

use super::*;

/// Listing filters by subscription, state, event type and time, in id
/// order, a page at a time.
pub async fn deliveries_are_listed_by_filter_in_pages<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.completed", "job.failed"]);
    let b = subscription("https://example.com/b", &["job.completed"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    let mut to_a = Vec::new();
    for n in 0..5 {
        let ids = store.publish(&event("job.completed", n), body("{}")).await.unwrap().deliveries;
        for id in ids {
            if store.delivery(id).await.unwrap().unwrap().subscription_id == a.id {
                to_a.push(id);
            }
        }
    }
    let failed = store.publish(&event("job.failed", 10), body("{}")).await.unwrap().deliveries[0];
    to_a.push(failed);
    store.record_attempt(&record(success(to_a[0], 1, 20), Verdict::Delivered, 20)).await.unwrap();
    store.record_attempt(&record(failure(to_a[1], 1, 20), Verdict::Dropped, 20)).await.unwrap();

    let list = |q: DeliveryQuery| {
        let store = &store;
        async move { store.list_deliveries(&q).await.unwrap().iter().map(|d| d.id).collect::<Vec<_>>() }
    };
    let of_a = DeliveryQuery { subscription: Some(a.id), limit: 100, ..DeliveryQuery::default() };
    assert_eq!(list(of_a.clone()).await, to_a);
    let page = list(DeliveryQuery { limit: 2, ..of_a.clone() }).await;
    assert_eq!(page, to_a[..2]);
    let next = list(DeliveryQuery { limit: 2, after: Some(page[1]), ..of_a.clone() }).await;
    assert_eq!(next, to_a[2..4]);
    assert_eq!(
        list(DeliveryQuery { state: Some(StateFilter::Delivered), ..of_a.clone() }).await,
        vec![to_a[0]]
    );
    assert_eq!(
        list(DeliveryQuery { state: Some(StateFilter::Dropped), ..of_a.clone() }).await,
        vec![to_a[1]]
    );
    assert_eq!(
        list(DeliveryQuery { event_type: Some("job.failed".into()), ..of_a.clone() }).await,
        vec![failed]
    );
    let window = DeliveryQuery { created_from: Some(at(2)), created_until: Some(at(4)), ..of_a.clone() };
    assert_eq!(list(window).await, to_a[2..4]);
    assert_eq!(list(DeliveryQuery { state: Some(StateFilter::Pending), ..of_a.clone() }).await, to_a[2..]);
    store.disable_subscription(a.id, "paused", at(30)).await.unwrap();
    assert_eq!(list(DeliveryQuery { state: Some(StateFilter::Held), ..of_a.clone() }).await, to_a[2..]);
    assert!(list(DeliveryQuery { state: Some(StateFilter::Pending), ..of_a }).await.is_empty());
    let all = list(DeliveryQuery { limit: 100, ..DeliveryQuery::default() }).await;
    assert_eq!(all.len(), 11);
    assert!(all.windows(2).all(|w| w[0] < w[1]), "id order");
}

/// Stats count a subscription's attempts, successes and last times.
pub async fn stats_add_up_a_subscriptions_attempts<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    let empty = store.subscription_stats(sub.id).await.unwrap();
    assert_eq!((empty.attempts, empty.success_rate(), empty.last_success_at), (0, None, None));
    store.record_attempt(&record(failure(id, 1, 10), Verdict::Retry { at: at(20) }, 10)).await.unwrap();
    store.record_attempt(&record(success(id, 2, 20), Verdict::Delivered, 20)).await.unwrap();
    let other = store.publish(&event("job.completed", 30), body("{}")).await.unwrap().deliveries[0];
    store.record_attempt(&record(failure(other, 1, 30), Verdict::Retry { at: at(40) }, 30)).await.unwrap();
    let stats = store.subscription_stats(sub.id).await.unwrap();
    assert_eq!((stats.attempts, stats.succeeded, stats.consecutive_failures), (3, 1, 1));
    assert_eq!((stats.last_success_at, stats.last_failure_at), (Some(at(20)), Some(at(30))));
    assert!((stats.success_rate().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!(matches!(
        store.subscription_stats(SubscriptionId::new()).await,
        Err(StoreError::SubscriptionNotFound(_))
    ));
}

/// Every pending delivery counts, held ones too; finished ones do not.
pub async fn pending_count_counts_every_pending_delivery<S: Store>(store: S) {
    assert_eq!(store.pending_count().await.unwrap(), 0);
    let (sub, id) = one_delivery(&store).await;
    store.publish(&event("job.completed", 1), body("{}")).await.unwrap();
    store.publish(&event("job.completed", 2), body("{}")).await.unwrap();
    store.record_attempt(&record(success(id, 1, 3), Verdict::Delivered, 3)).await.unwrap();
    store.disable_subscription(sub.id, "paused", at(4)).await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 2);
}

/// Counts by state follow publishing, recording, resending, recovering,
/// purging and deleting.
pub async fn counts_follow_every_change_of_state<S: Store>(store: S) {
    let (sub, first) = one_delivery(&store).await;
    let second = store.publish(&event("job.completed", 1), body("{}")).await.unwrap().deliveries[0];
    let third = store.publish(&event("job.completed", 2), body("{}")).await.unwrap().deliveries[0];
    let counts = |pending, delivered, dropped| DeliveryCounts { pending, delivered, dropped };
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(3, 0, 0));
    store.record_attempt(&record(success(first, 1, 3), Verdict::Delivered, 3)).await.unwrap();
    store.record_attempt(&record(failure(second, 1, 3), Verdict::Dropped, 3)).await.unwrap();
    store.record_attempt(&record(failure(third, 1, 3), Verdict::Retry { at: at(9) }, 3)).await.unwrap();
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(1, 1, 1));
    // A late attempt on a finished delivery changes no count.
    store.record_attempt(&record(success(second, 2, 4), Verdict::Delivered, 4)).await.unwrap();
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(1, 1, 1));
    store.resend(first, at(5)).await.unwrap();
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(2, 0, 1));
    assert_eq!(store.recover(sub.id, at(0), at(6)).await.unwrap(), 1);
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(3, 0, 0));
    assert_eq!(store.pending_count().await.unwrap(), 3);
    store.record_attempt(&record(success(third, 2, 10), Verdict::Delivered, 10)).await.unwrap();
    assert_eq!(store.purge_finished(at(100), 10).await.unwrap(), 1);
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(2, 0, 0));
    assert!(store.delete_subscription(sub.id).await.unwrap());
    assert_eq!(store.delivery_counts(sub.id).await.unwrap(), counts(0, 0, 0));
    assert_eq!(store.pending_count().await.unwrap(), 0);
}

/// The logs of a page of deliveries come in the order asked, each first
/// first; a delivery without attempts, or without a row, has none.
pub async fn attempts_of_reads_a_page_of_logs_at_once<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    let ids = stored_with(&store, &sub, 0..3).await;
    store.record_attempt(&answered(ids[0], 1, 500, Verdict::Retry { at: at(9) }, 5)).await.unwrap();
    store.record_attempt(&answered(ids[2], 1, 200, Verdict::Delivered, 6)).await.unwrap();
    store.record_attempt(&answered(ids[0], 2, 204, Verdict::Delivered, 9)).await.unwrap();
    let missing = DeliveryId::new();
    let asked = [ids[2], missing, ids[0], ids[1]];
    let logs = store.attempts_of(&asked).await.unwrap();
    assert_eq!(logs.iter().map(|(id, _)| *id).collect::<Vec<_>>(), asked);
    for (id, log) in &logs {
        assert_eq!(log, &store.attempts(*id).await.unwrap(), "{id}: as attempts() reads it");
    }
    let numbers: Vec<Vec<u32>> = logs.iter().map(|(_, log)| log.iter().map(|a| a.number).collect()).collect();
    assert_eq!(numbers, vec![vec![1], vec![], vec![1, 2], vec![]]);
    assert!(store.attempts_of(&[]).await.unwrap().is_empty());
}
