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

mod admin;
mod claiming;
mod lifecycle;
mod ordering;
mod owners;
mod publishing;
mod recording;
mod retention;
mod subscriptions;

pub use admin::*;
pub use claiming::*;
pub use lifecycle::*;
pub use ordering::*;
pub use owners::*;
pub use publishing::*;
pub use recording::*;
pub use retention::*;
pub use subscriptions::*;

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
            a_purge_batch_takes_the_earliest_finished_first,
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
