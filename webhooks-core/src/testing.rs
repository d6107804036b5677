//! The behaviour every [`Store`] must have, as tests to run against it.
//!
//! Each check is a plain `async fn` over a fresh store. A store crate runs
//! them all with one macro call in its tests, and proves itself by passing
//! them unchanged:
//!
//! ```ignore
//! webhooks_core::store_suite!(|| async { (webhooks_memory::MemoryStore::new(), ()) });
//! ```
//!
//! The closure returns the store and a guard kept alive for the test (a
//! temporary directory, a database connection).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::model::{
    Attempt, AttemptResult, Audience, DeliveryId, DeliveryState, Event, EventId, IdempotencyKey, Owner,
    PreviousSecret, Subscription, SubscriptionId, SubscriptionStatus,
};
use crate::preset::DisablePolicy;
use crate::secret::Secret;
use crate::settings::{CustomHeader, EndpointSettings, RateLimit, RetryChoice};
use crate::store::{
    AttemptRecord, Claim, ClaimRequest, DeliveryCounts, DeliveryQuery, StateFilter, Store, StoreError,
    Verdict,
};

/// Runs every check of the suite as its own `#[tokio::test]`.
///
/// `$make` is a closure returning a future of `(store, guard)`; the store must
/// be `Clone` (handles share one queue). Attributes before it, ended by
/// `;`, go on every test, for example an `ignore` where the store's server
/// cannot be had:
///
/// ```ignore
/// webhooks_core::store_suite!(
///     #[cfg_attr(not(postgres_server), ignore = "no PostgreSQL server")];
///     || async { (connect().await, ()) }
/// );
/// ```
#[macro_export]
macro_rules! store_suite {
    (#[$first:meta] $(#[$attribute:meta])* ; $make:expr) => {
        $crate::store_suite!(@all [#[$first] $(#[$attribute])*] $make);
    };
    ($make:expr) => {
        $crate::store_suite!(@all [] $make);
    };
    (@all $attributes:tt $make:expr) => {
        $crate::store_suite!(@each $attributes $make;
            subscriptions_round_trip,
            subscription_errors_are_typed,
            publish_fans_out_to_every_listening_subscription,
            publish_without_listeners_creates_nothing,
            claims_due_deliveries_earliest_first_up_to_the_limit,
            future_deliveries_are_not_claimed,
            a_leased_delivery_is_not_claimed_again_until_its_lease_ends,
            released_claims_are_claimable_from_the_time_given,
            disable_now_disables_at_once,
            batches_publish_and_record_like_single_calls,
            concurrent_claims_never_share_a_delivery,
            success_delivers_and_resets_the_failure_count,
            retry_reschedules_the_delivery,
            dropped_delivery_keeps_its_attempt_log,
            auto_disable_at_exactly_the_threshold,
            disabled_subscription_deliveries_are_held_not_lost,
            enabling_resumes_held_deliveries_and_resets_failures,
            attempt_log_keeps_every_field_in_order,
            recording_on_a_finished_delivery_keeps_its_state,
            next_due_at_tracks_due_times_and_leases,
            a_retry_that_never_comes_round_trips,
            deleting_a_subscription_removes_its_deliveries,
            claims_pass_over_skipped_subscriptions,
            a_batch_record_for_a_missing_delivery_fails_alone,
            deliveries_are_listed_by_filter_in_pages,
            resend_starts_a_new_cycle_with_the_same_body,
            recover_requeues_held_and_recently_dropped_deliveries,
            publish_to_reaches_one_subscription_whatever_it_listens_to,
            stats_add_up_a_subscriptions_attempts,
            pending_count_counts_every_pending_delivery,
            a_resend_while_disabled_is_held_until_enabled,
            a_delivery_finished_while_disabled_resends_after_enable,
            enabling_an_enabled_subscription_keeps_retry_times,
            purging_deletes_old_finished_deliveries_in_batches_and_nothing_else,
            counts_follow_every_change_of_state,
            events_reach_only_their_owners_subscriptions,
            every_owner_only_when_asked,
            deleting_an_owner_removes_its_subscriptions_deliveries_and_logs_alone,
            listing_by_owner,
            a_repeated_idempotency_key_creates_nothing_and_returns_the_first_publication,
            idempotency_keys_are_scoped_to_the_owner_and_held_until_their_window_ends,
            expired_keys_are_forgotten_in_batches_and_an_owners_go_with_it,
            events_reach_the_subscriptions_listening_on_one_of_their_channels,
            owned_reads_find_an_owners_ids_and_nothing_of_anothers,
            settings_round_trip_with_secret_headers_and_are_replaced_by_an_update,
            a_resend_starts_the_next_cycle_and_attempt_numbers_restart,
            delivery_ids_carry_the_event_time,
            ordered_deliveries_wait_and_finishing_the_head_releases_exactly_the_next,
            a_dropped_ordered_delivery_releases_the_next,
            ordered_deliveries_published_in_one_batch_wait_too,
            a_slow_ordered_subscription_holds_back_no_other,
            enabling_keeps_waiting_deliveries_waiting,
            turning_ordering_off_or_on_through_an_update,
            a_resent_ordered_delivery_takes_its_place_in_publish_order,
            attempts_of_reads_a_page_of_logs_at_once,
        );
    };
    (@each $attributes:tt $make:expr; $($check:ident),* $(,)?) => {
        $(
            $crate::store_suite!(@one $attributes $make; $check);
        )*
    };
    (@one [$(#[$attribute:meta])*] $make:expr; $check:ident) => {
        $(#[$attribute])*
        #[tokio::test]
        async fn $check() {
            let (store, _guard) = ($make)().await;
            $crate::testing::$check(store).await;
        }
    };
}

/// The time the checks start at.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time") // 2026-01-01T00:00:00Z
}

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(seconds)
}

/// Up to `limit` deliveries due at `t0() + now` seconds, leased until
/// `t0() + until` seconds, no endpoint skipped.
async fn claim_at<S: Store + ?Sized>(store: &S, now: i64, limit: usize, until: i64) -> Vec<Claim> {
    let request = ClaimRequest { now: at(now), limit, lease_until: at(until), skip: &[] };
    store.claim_due(&request).await.unwrap()
}

/// A subscription to `url` listening to `events`.
pub fn subscription(url: &str, events: &[&str]) -> Subscription {
    Subscription {
        id: SubscriptionId::new(),
        owner: Owner::default(),
        url: url.parse().expect("a valid URL"),
        event_types: events.iter().map(|e| (*e).to_owned()).collect(),
        channels: Default::default(),
        secret: Secret::generate(),
        previous_secret: None,
        status: SubscriptionStatus::Enabled,
        consecutive_failures: 0,
        settings: Default::default(),
        created_at: t0(),
    }
}

/// An event named `name` that happened at `t0() + seconds`.
pub fn event(name: &str, seconds: i64) -> Event {
    Event {
        id: EventId::new(),
        audience: Audience::Owner(Owner::default()),
        idempotency_key: None,
        name: name.to_owned(),
        channels: Default::default(),
        occurred_at: at(seconds),
        data: serde_json::json!({"n": seconds}).into(),
    }
}

fn body(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn failure(delivery_id: DeliveryId, number: u32, seconds: i64) -> Attempt {
    Attempt {
        delivery_id,
        cycle: 1,
        number,
        started_at: at(seconds),
        duration: Duration::from_millis(12),
        result: AttemptResult::Response { status: 500, body: "oops".into() },
    }
}

fn success(delivery_id: DeliveryId, number: u32, seconds: i64) -> Attempt {
    Attempt {
        delivery_id,
        cycle: 1,
        number,
        started_at: at(seconds),
        duration: Duration::from_millis(3),
        result: AttemptResult::Response { status: 204, body: String::new() },
    }
}

/// The record of attempt `number` of delivery `id`, answered with `status`
/// at `t0() + seconds` after 12.345 ms, under a disable threshold of 10.
pub fn answered(id: DeliveryId, number: u32, status: u16, verdict: Verdict, seconds: i64) -> AttemptRecord {
    let attempt = Attempt {
        delivery_id: id,
        cycle: 1,
        number,
        started_at: at(seconds),
        duration: Duration::from_micros(12_345),
        result: AttemptResult::Response { status, body: format!("answer {status}") },
    };
    record(attempt, verdict, seconds)
}

fn record(attempt: Attempt, verdict: Verdict, seconds: i64) -> AttemptRecord {
    AttemptRecord { attempt, verdict, disable_after: Some(10), disable_now: None, now: at(seconds) }
}

async fn one_delivery<S: Store>(store: &S) -> (Subscription, DeliveryId) {
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.expect("insert");
    let ids = store.publish(&event("job.completed", 0), body("{}")).await.expect("publish").deliveries;
    assert_eq!(ids.len(), 1, "one listening subscription, one delivery");
    (sub, ids[0])
}

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

/// Deleting a subscription deletes its deliveries and their logs.
pub async fn deleting_a_subscription_removes_its_deliveries<S: Store>(store: S) {
    let (sub, id) = one_delivery(&store).await;
    store.record_attempt(&record(failure(id, 1, 0), Verdict::Retry { at: at(10) }, 0)).await.unwrap();
    assert!(store.delete_subscription(sub.id).await.unwrap());
    assert_eq!(store.delivery(id).await.unwrap(), None);
    assert!(store.attempts(id).await.unwrap().is_empty());
    assert!(claim_at(&store, 100, 10, 160).await.is_empty());
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

type Snapshot = (
    Vec<Subscription>,
    Option<crate::model::Delivery>,
    Option<crate::model::Delivery>,
    Vec<Attempt>,
    DeliveryCounts,
    Option<DateTime<Utc>>,
);

async fn snapshot<S: Store>(
    store: &S,
    retried: DeliveryId,
    leased: DeliveryId,
    held: SubscriptionId,
) -> Snapshot {
    (
        store.subscriptions().await.unwrap(),
        store.delivery(retried).await.unwrap(),
        store.delivery(leased).await.unwrap(),
        store.attempts(retried).await.unwrap(),
        store.delivery_counts(held).await.unwrap(),
        store.next_due_at().await.unwrap(),
    )
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

/// A subscription of `owner` to `url`, listening to `events`.
pub fn owned_subscription(owner: &str, url: &str, events: &[&str]) -> Subscription {
    Subscription { owner: Owner::new(owner).expect("a valid owner"), ..subscription(url, events) }
}

/// An event for `owner` only.
pub fn owned_event(owner: &str, name: &str, seconds: i64) -> Event {
    Event { audience: Audience::Owner(Owner::new(owner).expect("a valid owner")), ..event(name, seconds) }
}

async fn subscription_of<S: Store>(store: &S, delivery: DeliveryId) -> SubscriptionId {
    store.delivery(delivery).await.unwrap().expect("the delivery").subscription_id
}

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

/// An event of `owner` at `seconds` whose key is held for a day.
fn keyed_event(owner: &str, key: &str, seconds: i64) -> Event {
    held_key_event(owner, key, seconds, seconds + DAY)
}

/// An event of `owner` at `seconds` whose key is held until `until`.
fn held_key_event(owner: &str, key: &str, seconds: i64, until: i64) -> Event {
    let idempotency_key = IdempotencyKey { key: key.to_owned(), held_until: at(until) };
    Event { idempotency_key: Some(idempotency_key), ..owned_event(owner, "order.created", seconds) }
}

const DAY: i64 = 24 * 60 * 60;

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

/// An ordered subscription with `n` deliveries published one second apart
/// from `t0()`, and their ids.
async fn ordered_with<S: Store>(store: &S, n: i64) -> (Subscription, Vec<DeliveryId>) {
    let mut sub = subscription("https://example.com/ordered", &["job.completed"]);
    sub.settings.ordered = true;
    let ids = stored_with(store, &sub, 0..n).await;
    (sub, ids)
}

/// Stores `sub` and publishes a `job.completed` event at each of `seconds`;
/// the deliveries made.
async fn stored_with<S: Store + ?Sized>(
    store: &S,
    sub: &Subscription,
    seconds: impl IntoIterator<Item = i64>,
) -> Vec<DeliveryId> {
    store.insert_subscription(sub).await.unwrap();
    let mut ids = Vec::new();
    for second in seconds {
        ids.extend(store.publish(&event("job.completed", second), body("{}")).await.unwrap().deliveries);
    }
    ids
}

/// The ids of what is due at `t0() + seconds`, leased for a second.
async fn claimed<S: Store>(store: &S, seconds: i64) -> Vec<DeliveryId> {
    claim_at(store, seconds, 100, seconds + 1).await.iter().map(|c| c.delivery.id).collect()
}

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
