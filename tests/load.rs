//! Shutdown under load, a bounded soak, and how a backlog drains.
//!
//! Each check is an `async fn` taking the store to run on, so the same
//! checks can run on every store; the `#[tokio::test]` wrappers at the end
//! run them on `MemoryStore`.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{over_http, sqlite_store};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use webhooks_core::{
    AttemptResult, ClaimRequest, DeliveryId, DeliveryState, DisablePolicy, Preset, Subscription, Webhooks,
    prelude::*,
};
use webhooks_examples::{Receiver, Reply};
use webhooks_memory::MemoryStore;

const EVENT: &str = "content.status_updated";

/// A facade on `store` with the system clock and DeepSmith over `http://`.
fn facade(store: Arc<dyn Store>, preset: Preset) -> Webhooks {
    Webhooks::builder().shared_store(store).preset(over_http(preset)).build().unwrap()
}

/// DeepSmith's 4 attempts back to back, never disabling the endpoint.
fn fast_retries() -> Preset {
    Preset::deepsmith().with_retry_scale(0.0).unwrap().with_disable_policy(DisablePolicy::never())
}

/// A tiny deterministic hash (splitmix64): the same request number gets the
/// same answer run to run.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn publish_all(webhooks: &Webhooks, events: usize) -> Vec<DeliveryId> {
    let mut ids = Vec::with_capacity(events);
    for n in 0..events {
        ids.extend(webhooks.publish(EVENT, json!({ "n": n })).await.unwrap().deliveries);
    }
    assert_eq!(ids.len(), events);
    ids
}

/// Polls until `check` holds, failing after `limit`.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/// A few hundred deliveries to a receiver that takes 200 ms per reply, 100 in
/// flight; the dispatcher is cancelled while its first wave is in flight.
/// When `run` returns, every delivery is either attempted and recorded or
/// claimable at once: none is stuck under a lease, none is lost.
async fn graceful_shutdown_under_load(store: Arc<dyn Store>) {
    const DELIVERIES: usize = 400;
    const CONCURRENCY: usize = 100;
    let receiver =
        Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_millis(200))).await.unwrap();
    let webhooks = facade(Arc::clone(&store), Preset::deepsmith());
    webhooks.subscribe(Subscription::builder(receiver.url()).event_type(EVENT)).await.unwrap();
    let ids = publish_all(&webhooks, DELIVERIES).await;

    let recorded = Arc::new(AtomicUsize::new(0));
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .concurrency(CONCURRENCY)
        .per_endpoint_concurrency(CONCURRENCY)
        .request_timeout(Duration::from_secs(5))
        .on_outcome({
            let recorded = Arc::clone(&recorded);
            move |_| {
                recorded.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let lease = chrono::Duration::from_std(dispatcher.lease()).unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));

    // Cancel once most of the first wave has reached the receiver; its
    // answers are still 200 ms away.
    within(Duration::from_secs(10), "the first wave reaches the receiver", || async {
        receiver.received().len() >= CONCURRENCY * 9 / 10
    })
    .await;
    let in_flight = receiver.received().len() - recorded.load(Ordering::SeqCst);
    shutdown.cancel();
    let cancelled = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns once the attempts in flight are done")
        .unwrap();
    let stopping = cancelled.elapsed();

    let sent = receiver.received().len();
    let mut delivered = HashSet::new();
    let mut pending = HashSet::new();
    for id in &ids {
        let delivery = webhooks.delivery(*id).await.unwrap().unwrap();
        let attempts = webhooks.attempts(*id).await.unwrap();
        match delivery.state {
            DeliveryState::Delivered => {
                assert_eq!(attempts.len(), 1, "{id}: one attempt, logged");
                assert_eq!(attempts[0].status(), Some(200));
                delivered.insert(*id);
            }
            DeliveryState::Pending | DeliveryState::Held => {
                assert!(attempts.is_empty(), "{id}: pending after {attempts:?}");
                pending.insert(*id);
            }
            DeliveryState::Dropped => panic!("{id} was dropped"),
        }
    }
    let now = webhooks.clock().now();
    let claimable: HashSet<DeliveryId> = store
        .claim_due(&ClaimRequest { now, limit: DELIVERIES * 2, lease_until: now + lease, skip: &[] })
        .await
        .unwrap()
        .into_iter()
        .map(|claim| claim.delivery.id)
        .collect();
    println!(
        "cancelled with {in_flight} in flight; run returned {stopping:?} later; {} delivered, {} pending, \
         {} claimable at once, {sent} requests",
        delivered.len(),
        pending.len(),
        claimable.len()
    );

    assert!(in_flight >= CONCURRENCY / 2, "only {in_flight} attempts were in flight at the cancel");
    assert!(stopping < Duration::from_secs(2), "run took {stopping:?} to return");
    assert!(delivered.len() >= in_flight, "attempts in flight at the cancel were not finished and recorded");
    assert!(!pending.is_empty(), "the cancel came after the queue was done: nothing was tested");
    assert_eq!(sent, delivered.len(), "every request that went out is recorded");
    assert_eq!(claimable, pending, "every pending delivery is claimable at once: none stuck leased");
    assert_eq!(delivered.len() + claimable.len(), DELIVERIES, "none lost");
}

/// Thousands of deliveries to a receiver that fails a pseudo-random 30% of
/// requests, retried at once, 64 in flight. At the end every delivery is
/// delivered or dropped exactly as its log says, and the counts add up.
async fn bounded_soak(store: Arc<dyn Store>) {
    const DELIVERIES: usize = 3000;
    const SEED: u64 = 0x50a4;
    let fails = |n: usize| splitmix(SEED ^ n as u64) % 100 < 30;
    let receiver =
        Receiver::scripted(move |n, _| Reply::status(if fails(n) { 500 } else { 200 })).await.unwrap();
    let webhooks = facade(store, fast_retries());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type(EVENT)).await.unwrap();
    let shutdown = CancellationToken::new();
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .concurrency(64)
        // One endpoint: its share is every slot, as by default.
        .per_endpoint_concurrency(64)
        .request_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));

    let started = Instant::now();
    let ids = publish_all(&webhooks, DELIVERIES).await;
    within(Duration::from_secs(20), "every delivery is delivered or dropped", || async {
        let counts = webhooks.delivery_counts(subscription.id).await.unwrap();
        counts.pending == 0 && counts.delivered + counts.dropped == DELIVERIES as u64
    })
    .await;
    let elapsed = started.elapsed();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("the dispatcher stops").unwrap();

    let (mut delivered, mut dropped, mut attempts_logged, mut failures_logged) = (0, 0, 0, 0);
    for id in &ids {
        let delivery = webhooks.delivery(*id).await.unwrap().unwrap();
        let attempts = webhooks.attempts(*id).await.unwrap();
        assert_eq!(attempts.len(), delivery.attempts as usize, "{id}: the log has every attempt");
        assert!(
            attempts.iter().enumerate().all(|(i, a)| a.number as usize == i + 1),
            "{id}: attempts numbered 1, 2, ..."
        );
        let (last, earlier) = attempts.split_last().expect("every delivery was attempted");
        for attempt in &attempts {
            if !attempt.succeeded() {
                failures_logged += 1;
                assert_eq!(
                    attempt.result,
                    AttemptResult::Response { status: 500, body: String::new() },
                    "{id}: a failure the receiver did not send"
                );
            }
        }
        assert!(earlier.iter().all(|a| !a.succeeded()), "{id}: an attempt after a 2xx");
        assert_eq!(delivery.next_attempt_at, None, "{id}: finished, yet due again");
        match delivery.state {
            DeliveryState::Delivered => {
                assert!(last.succeeded(), "{id}: delivered, but the last attempt is {:?}", last.result);
                delivered += 1;
            }
            DeliveryState::Dropped => {
                assert_eq!(attempts.len(), 4, "{id}: dropped after {} attempts", attempts.len());
                assert!(!last.succeeded(), "{id}: dropped after a 2xx");
                dropped += 1;
            }
            DeliveryState::Pending | DeliveryState::Held => panic!("{id} is still pending"),
        }
        attempts_logged += attempts.len();
    }
    let requests = receiver.received().len();
    let failures_sent = (0..requests).filter(|&n| fails(n)).count();
    println!(
        "soak: {DELIVERIES} published, {delivered} delivered, {dropped} dropped; {requests} requests \
         ({failures_sent} answered 500), {attempts_logged} attempts logged; {elapsed:?} ({:.0} requests/s)",
        requests as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(delivered + dropped, DELIVERIES);
    assert_eq!(attempts_logged, requests, "one logged attempt per request the receiver got");
    assert_eq!(failures_logged, failures_sent, "one logged failure per 500 the receiver sent");
    // 0.3⁴ of 3000 is 24: the drops are real, and rare.
    assert!((1..100).contains(&dropped), "{dropped} dropped");
}

/// One endpoint that answers at once, with more due deliveries than its
/// in-flight share: at 2 in flight and a few milliseconds a request, 40
/// deliveries take a fraction of a second.
async fn backlog_drains_at_the_endpoints_pace(store: Arc<dyn Store>) {
    const DELIVERIES: usize = 40;
    let receiver = Receiver::start().await.unwrap();
    let webhooks = facade(store, Preset::deepsmith());
    let subscription =
        webhooks.subscribe(Subscription::builder(receiver.url()).event_type(EVENT)).await.unwrap();
    publish_all(&webhooks, DELIVERIES).await;
    let shutdown = CancellationToken::new();
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .concurrency(8)
        .per_endpoint_concurrency(2)
        .build()
        .unwrap();
    let started = Instant::now();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    let result = tokio::time::timeout(Duration::from_secs(3), async {
        while webhooks.delivery_counts(subscription.id).await.unwrap().delivered < DELIVERIES as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let delivered = webhooks.delivery_counts(subscription.id).await.unwrap().delivered;
    println!("{delivered} of {DELIVERIES} delivered after {:?}", started.elapsed());
    shutdown.cancel();
    running.await.unwrap();
    assert!(result.is_ok(), "only {delivered} of {DELIVERIES} delivered in 3 s");
}

// ---------------------------------------------------------------------------
// On the memory store
// ---------------------------------------------------------------------------

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_graceful_shutdown_under_load() {
    graceful_shutdown_under_load(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_bounded_soak() {
    bounded_soak(memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_backlog_drains_at_the_endpoints_pace() {
    backlog_drains_at_the_endpoints_pace(memory()).await;
}

// ---------------------------------------------------------------------------
// On the SQLite store, a real file in a temporary directory
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_graceful_shutdown_under_load() {
    let (store, _dir) = sqlite_store().await;
    graceful_shutdown_under_load(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_bounded_soak() {
    let (store, _dir) = sqlite_store().await;
    bounded_soak(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_backlog_drains_at_the_endpoints_pace() {
    let (store, _dir) = sqlite_store().await;
    backlog_drains_at_the_endpoints_pace(store).await;
}

// ---------------------------------------------------------------------------
// On the PostgreSQL store, a fresh database on the server
// WEBHOOKS_POSTGRES_URL names or one the tests start; without either they
// are ignored
// ---------------------------------------------------------------------------

async fn postgres() -> (Arc<dyn Store>, webhooks_postgres_tests::TestDatabase) {
    let database = webhooks_postgres_tests::TestDatabase::create().await.unwrap();
    let store = database.store().await.unwrap();
    (Arc::new(store), database)
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_graceful_shutdown_under_load() {
    let (store, _database) = postgres().await;
    graceful_shutdown_under_load(store).await;
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_bounded_soak() {
    let (store, _database) = postgres().await;
    bounded_soak(store).await;
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_backlog_drains_at_the_endpoints_pace() {
    let (store, _database) = postgres().await;
    backlog_drains_at_the_endpoints_pace(store).await;
}
