//! Holding and releasing, resending and recovering: nothing is lost while an endpoint is disabled.

use super::*;

/// While disabled, nothing is claimed and nothing is lost: what was
/// pending and what is published meanwhile is held, and goes out in
/// publish order once the subscription is enabled.
pub async fn disabled_subscription_deliveries_are_held_not_lost<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    store.disable_subscription(sub.id, "maintenance", at(1)).await.unwrap();
    assert!(claim_at(&store, 1000, 10, 1060).await.is_empty());
    assert_eq!(store.next_due_at().await.unwrap(), None);
    assert_eq!(store.delivery(id).await.unwrap().unwrap().state, DeliveryState::Pending);
    assert_eq!(store.delivery_counts(sub.id).await.unwrap().pending, 1);
    let status = store.subscription(sub.id).await.unwrap().unwrap().status;
    assert_eq!(status, SubscriptionStatus::Disabled { reason: "maintenance".into(), at: at(1) });
    let published = store.publish(&event("job.completed", 2), body("{}")).await.unwrap().deliveries;
    assert_eq!(published.len(), 1, "a delivery published while disabled is kept");
    let meanwhile = store.publish_to(&event("job.completed", 3), body("{}"), sub.id).await.unwrap();
    assert!(claim_at(&store, 1000, 10, 1060).await.is_empty(), "and held");
    assert_eq!(store.delivery(published[0]).await.unwrap().unwrap().state, DeliveryState::Pending);
    assert_eq!(store.delivery_counts(sub.id).await.unwrap().pending, 3);

    store.enable_subscription(sub.id, at(1000)).await.unwrap();
    let claimed: Vec<DeliveryId> =
        claim_at(&store, 1000, 10, 1060).await.iter().map(|c| c.delivery.id).collect();
    assert_eq!(claimed, vec![id, published[0], meanwhile]);
}

/// Enabling resets the failure count and makes held deliveries due at once.
pub async fn enabling_resumes_held_deliveries_and_resets_failures<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    let mut record = record(failure(id, 1, 0), Verdict::Retry { at: at(3600) }, 0);
    record.disable_after = Some(1);
    assert!(store.record_attempt(&record).await.unwrap().disabled_subscription);
    assert!(claim_at(&store, 5000, 10, 5060).await.is_empty());

    store.enable_subscription(sub.id, at(50)).await.unwrap();
    let enabled = store.subscription(sub.id).await.unwrap().unwrap();
    assert_eq!(enabled.status, SubscriptionStatus::Enabled);
    assert_eq!(enabled.consecutive_failures, 0);
    let claims = claim_at(&store, 50, 10, 110).await;
    assert_eq!(claims.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![id]);
}

/// A resend makes a finished delivery pending again, due now, its count
/// back to zero, with the same id, body and log.
pub async fn resend_starts_a_new_cycle_with_the_same_body<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Dropped, 0)).await.unwrap();
    store.resend(id, at(100)).await.unwrap();
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(
        (delivery.state, delivery.attempts, delivery.next_attempt_at),
        (DeliveryState::Pending, 0, Some(at(100)))
    );
    assert_eq!(delivery.body, body("{}"));
    let claims = claim_at(&store, 100, 10, 160).await;
    assert_eq!(claims.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(store.attempts(id).await.unwrap().len(), 1, "the log is kept");
    assert!(matches!(store.resend(DeliveryId::new(), at(0)).await, Err(StoreError::DeliveryNotFound(_))));
}

/// Recovering enables the subscription and requeues its held deliveries and
/// those dropped since the given time; older drops and delivered ones stay.
pub async fn recover_requeues_held_and_recently_dropped_deliveries<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    let ids = stored_with(&store, &sub, [0, 10, 20, 30]).await;
    let (old_drop, recent_drop, delivered, held) = (ids[0], ids[1], ids[2], ids[3]);
    store.record_attempt(&record(failure(old_drop, 1, 40), Verdict::Dropped, 40)).await.unwrap();
    store.record_attempt(&record(failure(recent_drop, 1, 40), Verdict::Dropped, 40)).await.unwrap();
    store.record_attempt(&record(success(delivered, 1, 40), Verdict::Delivered, 40)).await.unwrap();
    store.record_attempt(&record(failure(held, 1, 40), Verdict::Retry { at: at(9000) }, 40)).await.unwrap();
    store.disable_subscription(sub.id, "down", at(50)).await.unwrap();

    assert_eq!(store.recover(sub.id, at(5), at(60)).await.unwrap(), 2);
    assert!(store.subscription(sub.id).await.unwrap().unwrap().is_enabled());
    let claimed: HashSet<_> = claim_at(&store, 60, 10, 120).await.iter().map(|c| c.delivery.id).collect();
    assert_eq!(claimed, HashSet::from([recent_drop, held]));
    assert_eq!(store.delivery(held).await.unwrap().unwrap().attempts, 0);
    assert_eq!(store.delivery(old_drop).await.unwrap().unwrap().state, DeliveryState::Dropped);
    assert_eq!(store.delivery(delivered).await.unwrap().unwrap().state, DeliveryState::Delivered);
    assert!(matches!(
        store.recover(SubscriptionId::new(), at(0), at(0)).await,
        Err(StoreError::SubscriptionNotFound(_))
    ));
}

/// A resend while the subscription is disabled is held, then resumes.
pub async fn a_resend_while_disabled_is_held_until_enabled<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Dropped, 0)).await.unwrap();
    store.disable_subscription(sub.id, "paused", at(1)).await.unwrap();
    store.resend(id, at(2)).await.unwrap();
    assert!(claim_at(&store, 100, 10, 160).await.is_empty(), "held while disabled");
    store.enable_subscription(sub.id, at(200)).await.unwrap();
    let claims = claim_at(&store, 200, 10, 260).await;
    assert_eq!(claims.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![id]);
}

/// A delivery recorded while its subscription was disabled can be resent
/// once the subscription is enabled again.
pub async fn a_delivery_finished_while_disabled_resends_after_enable<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    claim_at(&store, 0, 1, 60).await;
    store.disable_subscription(sub.id, "paused", at(1)).await.unwrap();
    store.record_attempt(&record(success(id, 1, 2), Verdict::Delivered, 2)).await.unwrap();
    store.enable_subscription(sub.id, at(3)).await.unwrap();
    store.resend(id, at(10)).await.unwrap();
    let claims = claim_at(&store, 10, 10, 70).await;
    assert_eq!(claims.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), vec![id]);
}

/// Enabling a subscription that is not disabled leaves retries when they are.
pub async fn enabling_an_enabled_subscription_keeps_retry_times<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Retry { at: at(600) }, 0)).await.unwrap();
    store.enable_subscription(sub.id, at(5)).await.unwrap();
    assert_eq!(store.delivery(id).await.unwrap().unwrap().next_attempt_at, Some(at(600)));
    assert!(claim_at(&store, 10, 10, 70).await.is_empty());
}

/// A resend starts the next cycle: attempts are logged with their cycle
/// and numbered from 1 in each; a late attempt of the old cycle changes
/// nothing of the new one.
pub async fn a_resend_starts_the_next_cycle_and_attempt_numbers_restart<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    assert_eq!(store.delivery(id).await.unwrap().unwrap().cycle, 1);
    store.record_attempt(&answered(id, 1, 500, Verdict::Dropped, 1)).await.unwrap();
    store.resend(id, at(10)).await.unwrap();
    let resent = store.delivery(id).await.unwrap().unwrap();
    assert_eq!((resent.cycle, resent.attempts, resent.state), (2, 0, DeliveryState::Pending));
    let claims = claim_at(&store, 10, 10, 70).await;
    assert_eq!(claims[0].delivery.cycle, 2, "a claim carries the cycle");
    // A late attempt of cycle 1 is logged but leaves cycle 2 pending.
    store.record_attempt(&answered(id, 2, 200, Verdict::Delivered, 11)).await.unwrap();
    let still = store.delivery(id).await.unwrap().unwrap();
    assert_eq!((still.state, still.attempts), (DeliveryState::Pending, 0));
    let second = Attempt { cycle: 2, ..answered(id, 1, 200, Verdict::Delivered, 12).attempt };
    store.record_attempt(&record(second, Verdict::Delivered, 12)).await.unwrap();
    let done = store.delivery(id).await.unwrap().unwrap();
    assert_eq!((done.state, done.cycle, done.attempts), (DeliveryState::Delivered, 2, 1));
    let log: Vec<(u32, u32, Option<u16>)> =
        store.attempts(id).await.unwrap().iter().map(|a| (a.cycle, a.number, a.status())).collect();
    assert_eq!(log, vec![(1, 1, Some(500)), (1, 2, Some(200)), (2, 1, Some(200))]);
}
