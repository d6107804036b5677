//! Claiming: due work, earliest first, never to two workers at once.

use super::*;

/// Claims come earliest due first, at most `limit`, with their subscription.
pub async fn claims_due_deliveries_earliest_first_up_to_the_limit<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    let mut published = Vec::new();
    for seconds in [3, 1, 2] {
        published.push((
            seconds,
            store.publish(&event("job.completed", seconds), body("{}")).await.unwrap().deliveries[0],
        ));
    }
    published.sort();
    let claims = claim_at(&store, 10, 2, 70).await;
    let claimed: Vec<_> = claims.iter().map(|c| c.delivery.id).collect();
    assert_eq!(claimed, vec![published[0].1, published[1].1]);
    assert_eq!(*claims[0].subscription, sub, "a claim carries its subscription");
    let rest = claim_at(&store, 10, 10, 70).await;
    assert_eq!(rest.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![published[2].1]);
}

/// A delivery due later is left alone until then.
pub async fn future_deliveries_are_not_claimed<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    store.publish(&event("job.completed", 100), body("{}")).await.unwrap();
    assert!(claim_at(&store, 99, 10, 160).await.is_empty());
    assert_eq!(claim_at(&store, 100, 10, 160).await.len(), 1);
}

/// A lease keeps a delivery from other workers until it ends; then the
/// delivery comes back, as after a crash.
pub async fn a_leased_delivery_is_not_claimed_again_until_its_lease_ends<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    assert_eq!(claim_at(&store, 1, 10, 61).await.len(), 1);
    assert!(claim_at(&store, 2, 10, 62).await.is_empty());
    assert!(claim_at(&store, 60, 10, 120).await.is_empty());
    let again = claim_at(&store, 61, 10, 121).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.id, id);
    assert_eq!(again[0].delivery.attempts, 0, "an expired lease is not an attempt");
}

/// Released claims can be claimed again from the time given, not before.
pub async fn released_claims_are_claimable_from_the_time_given<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    assert_eq!(claim_at(&store, 1, 10, 61).await.len(), 1);
    store.release(&[id], at(2)).await.unwrap();
    let again = claim_at(&store, 2, 10, 62).await;
    assert_eq!(again.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![id]);

    store.release(&[id], at(5)).await.unwrap();
    assert!(claim_at(&store, 4, 10, 64).await.is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(5)));
    assert_eq!(claim_at(&store, 5, 10, 65).await.len(), 1);
    assert_eq!(store.delivery(id).await.unwrap().unwrap().attempts, 0, "a release is not an attempt");
}

/// Many workers claiming at once never get the same delivery.
pub async fn concurrent_claims_never_share_a_delivery<S: Store + Clone>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    for n in 0..200 {
        store.publish(&event("job.completed", n % 7), body("{}")).await.unwrap();
    }
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claims = claim_at(&store, 10, 7, 70).await;
                    if claims.is_empty() {
                        return mine;
                    }
                    mine.extend(claims.into_iter().map(|c| c.delivery.id));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for worker in workers {
        for id in worker.await.unwrap() {
            assert!(seen.insert(id), "delivery {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

/// `next_due_at` is the earliest due time or lease end.
pub async fn next_due_at_tracks_due_times_and_leases<S: Store>(store: S) {
    assert_eq!(store.next_due_at().await.unwrap(), None);
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    store.publish(&event("job.completed", 40), body("{}")).await.unwrap();
    store.publish(&event("job.completed", 30), body("{}")).await.unwrap();
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(30)));
    claim_at(&store, 30, 1, 90).await;
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(40)));
    claim_at(&store, 40, 1, 80).await;
    assert_eq!(store.next_due_at().await.unwrap(), Some(at(80)), "a lease end is when a claim comes back");
}

/// Skipped subscriptions' deliveries stay queued; the others are claimed,
/// earliest first.
pub async fn claims_pass_over_skipped_subscriptions<S: Store>(store: S) {
    let busy = subscription("https://example.com/busy", &["job.completed"]);
    let idle = subscription("https://example.com/idle", &["job.failed"]);
    store.insert_subscription(&busy).await.unwrap();
    store.insert_subscription(&idle).await.unwrap();
    for n in 0..20 {
        store.publish(&event("job.completed", n), body("{}")).await.unwrap();
    }
    let wanted = store.publish(&event("job.failed", 30), body("{}")).await.unwrap().deliveries;
    let claims = store
        .claim_due(&ClaimRequest { now: at(40), limit: 5, lease_until: at(100), skip: &[busy.id] })
        .await
        .unwrap();
    assert_eq!(claims.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), wanted);
    let claims = claim_at(&store, 40, 5, 100).await;
    assert_eq!(claims.len(), 5);
    assert!(claims.iter().all(|c| c.subscription.id == busy.id));
    assert_eq!(claims[0].delivery.created_at, at(0), "earliest first");
}

/// What a durable store keeps across a reopen (a restart, another process):
/// subscriptions with their secrets, deliveries with their bodies byte for
/// byte, attempt logs, counts, a disable, retry times and live leases.
/// `reopen` drops the handle it is given and opens a new one on the same
/// data. The memory store does not run it: its queue goes with its process.
pub async fn reopening_keeps_subscriptions_deliveries_leases_and_logs<S, F, Fut>(store: S, reopen: F)
where
    S: Store,
    F: FnOnce(S) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let mut a = subscription("https://example.com/a", &["job.completed", "job.failed"]);
    a.previous_secret = Some(PreviousSecret { secret: Secret::from("old"), valid_until: at(3600) });
    let b = subscription("https://example.com/b", &["job.completed"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    let published = store.publish(&event("job.completed", 0), body("{\"n\":0}")).await.unwrap().deliveries;
    let later =
        store.publish(&event("job.failed", 5), Bytes::from_static(b"\xff\x00 raw")).await.unwrap().deliveries;
    store.disable_subscription(b.id, "maintenance", at(1)).await.unwrap();

    // One delivery retried, one leased, one held by the disabled subscription.
    let mut retried = None;
    for id in &published {
        if store.delivery(*id).await.unwrap().unwrap().subscription_id == a.id {
            retried = Some(*id);
        }
    }
    let retried = retried.expect("a listens");
    let mut attempt = failure(retried, 1, 2);
    attempt.duration = Duration::from_micros(12_345);
    store.record_attempt(&record(attempt, Verdict::Retry { at: at(60) }, 2)).await.unwrap();
    let leased = claim_at(&store, 10, 10, 70).await;
    assert_eq!(leased.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), later);

    let before = snapshot(&store, retried, later[0], b.id).await;
    let store = reopen(store).await;
    let after = snapshot(&store, retried, later[0], b.id).await;
    assert_eq!(before, after);
    assert_eq!(after.0.len(), 2);
    assert!(matches!(after.0[1].status, SubscriptionStatus::Disabled { .. }));
    assert_eq!(after.2.as_ref().unwrap().body, Bytes::from_static(b"\xff\x00 raw"), "bodies byte for byte");
    assert_eq!(after.3[0].duration, Duration::from_micros(12_345));
    assert_eq!(after.4, DeliveryCounts { pending: 1, delivered: 0, dropped: 0 });
    assert_eq!(after.5, Some(at(60)), "the retry is due before the lease ends");

    // The lease survived: nothing is claimable before it ends but the retry.
    let claims = claim_at(&store, 69, 10, 130).await;
    assert_eq!(claims.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![retried]);
    assert_eq!(*claims[0].subscription, after.0[0], "the claim carries the subscription with its secrets");
    assert_eq!(claims[0].subscription.previous_secret, a.previous_secret);
    assert_eq!(claim_at(&store, 70, 10, 130).await.len(), 1);
}

/// Handles on separate connections (or processes' worth of pools) to one
/// store's data, claiming at once with four workers each, never claim the
/// same delivery, and every one of `deliveries` is claimed. Returns how many
/// each handle claimed. Run it on a multi-threaded runtime so the workers
/// really race.
pub async fn separate_handles_never_claim_the_same_delivery<S: Store + Clone>(
    handles: &[S],
    deliveries: usize,
) -> Vec<usize> {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    handles[0].insert_subscription(&sub).await.unwrap();
    let events: Vec<_> = (0..deliveries)
        .map(|n| (event("job.completed", (n % 11) as i64), Bytes::from(format!("{{\"n\":{n}}}"))))
        .collect();
    handles[handles.len() - 1].publish_many(&events).await.unwrap();

    let workers: Vec<_> = (0..4 * handles.len())
        .map(|n| {
            let store = handles[n % handles.len()].clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let claims = claim_at(&store, 20, 5, 80).await;
                    if claims.is_empty() {
                        return mine;
                    }
                    mine.extend(claims.into_iter().map(|c| c.delivery.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_handle = vec![0; handles.len()];
    for (n, worker) in workers.into_iter().enumerate() {
        for id in worker.await.expect("a worker") {
            assert!(seen.insert(id), "delivery {id} was claimed twice");
            per_handle[n % handles.len()] += 1;
        }
    }
    assert_eq!(seen.len(), deliveries);
    per_handle
}
