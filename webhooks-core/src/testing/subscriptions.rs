//! Subscriptions: kept, read, changed and deleted as given.

use super::*;

/// Insert, read, list, update and delete subscriptions.
pub async fn subscriptions_round_trip<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.completed"]);
    let mut b = subscription("https://example.com/b", &["job.failed", "wallet.low"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    assert_eq!(store.subscription(a.id).await.unwrap(), Some(a.clone()));
    let all = store.subscriptions().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.contains(&a) && all.contains(&b));

    b.url = "https://example.com/b2".parse().unwrap();
    b.event_types = BTreeSet::from(["job.completed".to_owned()]);
    b.previous_secret = Some(PreviousSecret { secret: b.secret.clone(), valid_until: at(86_400) });
    b.secret = Secret::from("rotated");
    store.update_subscription(&b).await.unwrap();
    assert_eq!(store.subscription(b.id).await.unwrap(), Some(b.clone()));

    assert!(store.delete_subscription(a.id).await.unwrap());
    assert!(!store.delete_subscription(a.id).await.unwrap());
    assert_eq!(store.subscription(a.id).await.unwrap(), None);
}

/// Duplicates and missing subscriptions are typed errors.
pub async fn subscription_errors_are_typed<S: Store>(store: S) {
    let a = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&a).await.unwrap();
    assert!(
        matches!(store.insert_subscription(&a).await, Err(StoreError::DuplicateSubscription(id)) if id == a.id)
    );
    let missing = subscription("https://example.com/missing", &["job.completed"]);
    assert!(matches!(
        store.update_subscription(&missing).await,
        Err(StoreError::SubscriptionNotFound(id)) if id == missing.id
    ));
    assert!(matches!(
        store.enable_subscription(missing.id, t0()).await,
        Err(StoreError::SubscriptionNotFound(_))
    ));
    assert!(matches!(
        store.disable_subscription(missing.id, "x", t0()).await,
        Err(StoreError::SubscriptionNotFound(_))
    ));
}

/// Deleting a subscription deletes its deliveries and their logs.
pub async fn deleting_a_subscription_removes_its_deliveries<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Retry { at: at(10) }, 0)).await.unwrap();
    assert!(store.delete_subscription(sub.id).await.unwrap());
    assert_eq!(store.delivery(id).await.unwrap(), None);
    assert!(store.attempts(id).await.unwrap().is_empty());
    assert!(claim_at(&store, 100, 10, 160).await.is_empty());
}

/// Every setting round-trips, a secret header's value included, and an
/// update replaces them whole.
pub async fn settings_round_trip_with_secret_headers_and_are_replaced_by_an_update<S: Store>(store: S) {
    let mut sub = subscription("https://example.com/a", &["job.completed"]);
    sub.settings = EndpointSettings {
        headers: vec![
            CustomHeader::secret("Authorization", "Bearer s3cr3t").expect("a valid header"),
            CustomHeader::new("X-Route", "eu-1").expect("a valid header"),
        ],
        rate_limit: Some(RateLimit::new(10, 20).expect("a valid limit")),
        max_in_flight: Some(4),
        ordered: true,
        description: "Billing ☃".into(),
        metadata: [("team".to_owned(), "payments".to_owned()), ("tier".to_owned(), "gold".to_owned())]
            .into_iter()
            .collect(),
        retry: Some(RetryChoice::WaitsMs(vec![1_000, 60_000])),
        disable: Some(DisablePolicy::after_consecutive_failures(3).disable_on_gone(false)),
        held_limit: Some(500),
    };
    store.insert_subscription(&sub).await.unwrap();
    let read = store.subscription(sub.id).await.unwrap().expect("the subscription");
    assert_eq!(read.settings, sub.settings);
    assert_eq!(read.settings.headers[0].expose_value(), "Bearer s3cr3t", "a secret is kept, not redacted");
    assert!(read.settings.headers[0].is_secret());
    assert_eq!(store.subscriptions().await.unwrap()[0].settings, sub.settings);

    sub.settings = EndpointSettings {
        headers: vec![CustomHeader::new("x-tenant", "42").expect("a valid header")],
        description: "renamed".into(),
        retry: Some(RetryChoice::named("premium")),
        ..EndpointSettings::default()
    };
    store.update_subscription(&sub).await.unwrap();
    assert_eq!(store.subscription(sub.id).await.unwrap().expect("the subscription").settings, sub.settings);
    let published = store.publish(&event("job.completed", 0), body("{}")).await.unwrap();
    let claims = claim_at(&store, 0, 10, 60).await;
    assert_eq!(claims.len(), published.deliveries.len());
    assert_eq!(claims[0].subscription.settings, sub.settings, "a claim carries the settings");
}
