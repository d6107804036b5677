//! Recording an attempt: its verdict, the failure count and disabling, in one step.

use super::*;

/// `disable_now` disables at once, whatever the failure count.
pub async fn disable_now_disables_at_once<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    let mut gone = record(failure(id, 1, 0), Verdict::Dropped, 3);
    gone.disable_now = Some("the endpoint answered 410 Gone".into());
    let recorded = store.record_attempt(&gone).await.unwrap();
    assert!(recorded.disabled_subscription);
    assert_eq!(recorded.consecutive_failures, 1);
    let status = store.subscription(sub.id).await.unwrap().unwrap().status;
    assert_eq!(
        status,
        SubscriptionStatus::Disabled { reason: "the endpoint answered 410 Gone".into(), at: at(3) }
    );
}

/// A success delivers, ends the schedule and resets the failure count.
pub async fn success_delivers_and_resets_the_failure_count<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    claim_at(&store, 0, 1, 60).await;
    let recorded =
        store.record_attempt(&record(failure(id, 1, 0), Verdict::Retry { at: at(10) }, 0)).await.unwrap();
    assert_eq!(recorded.consecutive_failures, 1);
    claim_at(&store, 10, 1, 70).await;
    let recorded = store.record_attempt(&record(success(id, 2, 10), Verdict::Delivered, 10)).await.unwrap();
    assert_eq!(recorded.consecutive_failures, 0);
    assert!(!recorded.disabled_subscription);

    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.next_attempt_at, None);
    assert_eq!(store.subscription(sub.id).await.unwrap().unwrap().consecutive_failures, 0);
    assert!(claim_at(&store, 10_000, 10, 10_060).await.is_empty());
    let counts = store.delivery_counts(sub.id).await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dropped), (0, 1, 0));
}

/// A retry verdict makes the delivery due again at its time, not before.
pub async fn retry_reschedules_the_delivery<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    claim_at(&store, 0, 1, 60).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Retry { at: at(10) }, 0)).await.unwrap();
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Pending);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.next_attempt_at, Some(at(10)));
    assert!(claim_at(&store, 9, 1, 69).await.is_empty(), "recording ends the lease but not the wait");
    let claims = claim_at(&store, 10, 1, 70).await;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].delivery.attempts, 1);
}

/// A dropped delivery is never claimed again and keeps its log.
pub async fn dropped_delivery_keeps_its_attempt_log<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    claim_at(&store, 0, 1, 60).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Dropped, 0)).await.unwrap();
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Dropped);
    assert_eq!(delivery.next_attempt_at, None);
    assert_eq!(store.attempts(id).await.unwrap().len(), 1);
    assert!(claim_at(&store, 10_000, 10, 10_060).await.is_empty());
    let counts = store.delivery_counts(sub.id).await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dropped), (0, 0, 1));
}

/// The tenth failure in a row disables the subscription; the ninth does not.
pub async fn auto_disable_at_exactly_the_threshold<S: Store>(store: S) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    let ids = stored_with(&store, &sub, 0..10).await;
    for (n, id) in ids.iter().enumerate() {
        let recorded = store
            .record_attempt(&record(failure(*id, 1, 20), Verdict::Retry { at: at(100) }, 20))
            .await
            .unwrap();
        assert_eq!(recorded.consecutive_failures, n as u32 + 1);
        assert_eq!(recorded.disabled_subscription, n == 9, "failure {} of 10", n + 1);
        let status = store.subscription(sub.id).await.unwrap().unwrap().status;
        if n < 9 {
            assert_eq!(status, SubscriptionStatus::Enabled);
        } else {
            assert!(
                matches!(status, SubscriptionStatus::Disabled { ref reason, at: when } if reason.contains("10") && when == at(20)),
                "{status:?}"
            );
        }
    }
}

/// Every attempt is kept, in order, with all its fields.
pub async fn attempt_log_keeps_every_field_in_order<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    let first = Attempt {
        delivery_id: id,
        cycle: 1,
        number: 1,
        started_at: at(0),
        duration: Duration::from_millis(15_000),
        result: AttemptResult::Error("timed out after 15000 ms".into()),
    };
    let second = Attempt {
        delivery_id: id,
        cycle: 1,
        number: 2,
        started_at: at(10),
        duration: Duration::from_millis(7),
        result: AttemptResult::Response { status: 503, body: "busy ☃".into() },
    };
    let third = success(id, 3, 70);
    store.record_attempt(&record(first.clone(), Verdict::Retry { at: at(10) }, 15)).await.unwrap();
    store.record_attempt(&record(second.clone(), Verdict::Retry { at: at(70) }, 10)).await.unwrap();
    store.record_attempt(&record(third.clone(), Verdict::Delivered, 70)).await.unwrap();
    assert_eq!(store.attempts(id).await.unwrap(), vec![first, second, third]);
    assert!(store.attempts(DeliveryId::new()).await.unwrap().is_empty());
}

/// An attempt recorded after the delivery was finished is logged but does
/// not reopen it.
pub async fn recording_on_a_finished_delivery_keeps_its_state<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    store.record_attempt(&record(success(id, 1, 0), Verdict::Delivered, 0)).await.unwrap();
    store.record_attempt(&record(failure(id, 1, 1), Verdict::Retry { at: at(10) }, 1)).await.unwrap();
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.state, DeliveryState::Delivered);
    assert_eq!(store.attempts(id).await.unwrap().len(), 2);
    assert!(matches!(
        store.record_attempt(&record(success(DeliveryId::new(), 1, 0), Verdict::Delivered, 0)).await,
        Err(StoreError::DeliveryNotFound(_))
    ));
}

/// A retry at the latest time a `DateTime` holds is stored and read back
/// as it is, and never claimed.
pub async fn a_retry_that_never_comes_round_trips<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    let never = DateTime::<Utc>::MAX_UTC;
    store.record_attempt(&answered(id, 1, 500, Verdict::Retry { at: never }, 1)).await.unwrap();
    assert_eq!(store.delivery(id).await.unwrap().unwrap().next_attempt_at, Some(never));
    assert_eq!(store.next_due_at().await.unwrap(), Some(never));
    let far_ahead = ClaimRequest { now: at(1_000_000_000), limit: 10, lease_until: never, skip: &[] };
    assert!(store.claim_due(&far_ahead).await.unwrap().is_empty());
}

/// In a batch, a record whose delivery is gone gets its own error; the
/// others apply.
pub async fn a_batch_record_for_a_missing_delivery_fails_alone<S: Store>(store: S) {
    let (_, id) = one_delivery(&store).await;
    let missing = DeliveryId::new();
    let records = vec![
        record(failure(missing, 1, 0), Verdict::Retry { at: at(10) }, 0),
        record(success(id, 1, 0), Verdict::Delivered, 0),
    ];
    let results = store.record_attempts(&records).await.unwrap();
    assert!(matches!(results[0], Err(StoreError::DeliveryNotFound(gone)) if gone == missing));
    assert!(results[1].is_ok());
    assert_eq!(store.delivery(id).await.unwrap().unwrap().state, DeliveryState::Delivered);
}
