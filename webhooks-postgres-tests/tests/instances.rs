//! What only a shared server can show: several stores (pools, as separate
//! instances have) on one database, locks held by another session, leases
//! of a store that went away, migrations racing, schema versions, purging,
//! on a real server with a fresh database per test.
//!
//! The server is the one `WEBHOOKS_POSTGRES_URL` names or one the tests
//! start; with neither, cargo reports the tests as ignored.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use webhooks_core::ErrorChain;
use webhooks_core::testing::{answered, event, subscription, t0};
use webhooks_core::{
    AttemptResult, ClaimRequest, DeliveryId, DeliveryQuery, StateFilter, Verdict, prelude::*,
};
use webhooks_postgres::{Error, PostgresStore};
use webhooks_postgres_tests::TestDatabase;

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(seconds)
}

/// A fresh database and a store on it.
async fn fresh() -> (PostgresStore, TestDatabase) {
    let database = TestDatabase::create().await.expect("a test database");
    let store = database.store().await.expect("the store connects");
    (store, database)
}

/// Counts rows with raw SQL, beside the store.
async fn count(store: &PostgresStore, sql: &str) -> i64 {
    store.pool().get().await.unwrap().query_one(sql, &[]).await.unwrap().get(0)
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_stores_on_one_database_never_claim_the_same_delivery() {
    let (first, database) = fresh().await;
    let stores = [first, database.store().await.unwrap(), database.store().await.unwrap()];
    let per_store =
        webhooks_core::testing::separate_handles_never_claim_the_same_delivery(&stores, 600).await;
    println!("claims per store: {per_store:?}");
    assert!(per_store.iter().all(|&n| n > 0), "every store claimed some: {per_store:?}");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_claim_passes_over_rows_another_session_holds_instead_of_waiting() {
    let (store, _database) = fresh().await;
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.extend(
            store.publish(&event("job.completed", n), Bytes::from_static(b"{}")).await.unwrap().deliveries,
        );
    }

    // Another session holds the three earliest rows, as an instance in the
    // middle of claiming or recording them would.
    let mut other = store.pool().get().await.unwrap();
    let holding = other.transaction().await.unwrap();
    let held = holding
        .query(
            "SELECT id FROM webhooks.deliveries WHERE state = 'pending' \
             ORDER BY claimable_at LIMIT 3 FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(held.len(), 3);

    let claims = tokio::time::timeout(
        Duration::from_secs(5),
        store.claim_due(&ClaimRequest { now: at(100), limit: 100, lease_until: at(160), skip: &[] }),
    )
    .await
    .expect("the claim does not wait for the other session")
    .unwrap();
    let claimed: Vec<DeliveryId> = claims.iter().map(|c| c.delivery.id).collect();
    assert_eq!(claimed, ids[3..], "the held rows passed over, the rest earliest first");

    // Once the other session lets go, what it held is claimable.
    holding.rollback().await.unwrap();
    let rest = store
        .claim_due(&ClaimRequest { now: at(100), limit: 100, lease_until: at(160), skip: &[] })
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|c| c.delivery.id).collect::<Vec<_>>(), ids[..3]);
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn the_claims_of_a_store_that_went_away_come_back_when_their_leases_end() {
    let (survivor, database) = fresh().await;
    let sub = subscription("https://example.com/a", &["job.completed"]);
    survivor.insert_subscription(&sub).await.unwrap();
    for n in 0..5 {
        survivor.publish(&event("job.completed", n), Bytes::from_static(b"{}")).await.unwrap();
    }
    let gone = database.store().await.unwrap();
    assert_eq!(
        gone.claim_due(&ClaimRequest { now: at(10), limit: 10, lease_until: at(70), skip: &[] })
            .await
            .unwrap()
            .len(),
        5
    );
    gone.pool().close();
    drop(gone);

    assert!(
        survivor
            .claim_due(&ClaimRequest { now: at(69), limit: 10, lease_until: at(129), skip: &[] })
            .await
            .unwrap()
            .is_empty(),
        "leased until 70"
    );
    assert_eq!(survivor.next_due_at().await.unwrap(), Some(at(70)));
    let back = survivor
        .claim_due(&ClaimRequest { now: at(70), limit: 10, lease_until: at(130), skip: &[] })
        .await
        .unwrap();
    assert_eq!(back.len(), 5);
    assert!(back.iter().all(|c| c.delivery.attempts == 0), "an expired lease is not an attempt");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn reconnecting_keeps_subscriptions_deliveries_leases_and_logs() {
    let (store, database) = fresh().await;
    // Borrowed: the database lives until the test ends.
    let database = &database;
    webhooks_core::testing::reopening_keeps_subscriptions_deliveries_leases_and_logs(
        store,
        |store| async move {
            store.pool().close();
            drop(store);
            database.store().await.unwrap()
        },
    )
    .await;
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_at_once_migrate_the_database_once() {
    let database = TestDatabase::create().await.unwrap();
    let starting: Vec<_> = (0..6)
        .map(|_| {
            let url = database.url().to_owned();
            tokio::spawn(async move { PostgresStore::connect(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starting {
        stores.push(start.await.unwrap().expect("every instance starts"));
    }
    let versions = count(&stores[0], "SELECT count(*) FROM webhooks.schema_migrations").await;
    assert_eq!(versions, PostgresStore::SCHEMA_VERSION, "one row per version, each applied once");
    let latest = count(&stores[0], "SELECT max(version) FROM webhooks.schema_migrations").await;
    assert_eq!(latest, PostgresStore::SCHEMA_VERSION);
    // Each works on the one schema.
    stores[3].insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    assert_eq!(stores[5].subscriptions().await.unwrap().len(), 1);
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_database_from_a_newer_schema_is_refused_and_left_alone() {
    let (store, database) = fresh().await;
    store.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    let newer = PostgresStore::SCHEMA_VERSION + 1;
    store
        .pool()
        .get()
        .await
        .unwrap()
        .execute("INSERT INTO webhooks.schema_migrations (version) VALUES ($1)", &[&newer])
        .await
        .unwrap();

    match PostgresStore::connect(database.url()).await {
        Err(Error::SchemaTooNew(too_new)) => {
            let (found, supported) = (too_new.found, too_new.supported);
            assert_eq!((found, supported), (newer, PostgresStore::SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let error = PostgresStore::connect(database.url()).await.unwrap_err();
    assert!(error.to_string().contains("upgrade webhooks-postgres"), "{error}");
    assert_eq!(count(&store, "SELECT max(version) FROM webhooks.schema_migrations").await, newer);
    assert_eq!(count(&store, "SELECT count(*) FROM webhooks.subscriptions").await, 1);
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_store_can_be_built_on_the_hosts_own_pool() {
    let database = TestDatabase::create().await.unwrap();
    let config: webhooks_postgres::tokio_postgres::Config = database.url().parse().unwrap();
    let manager =
        webhooks_postgres::deadpool_postgres::Manager::new(config, webhooks_postgres::tokio_postgres::NoTls);
    let pool = webhooks_postgres::deadpool_postgres::Pool::builder(manager).max_size(2).build().unwrap();
    let store = PostgresStore::from_pool(pool).await.unwrap();
    let shown = format!("{store:?}");
    assert!(shown.contains(database.name()) && shown.contains("127.0.0.1"), "{shown}");
    store.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    assert_eq!(store.subscriptions().await.unwrap().len(), 1);
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn passwords_never_show_in_errors_or_debug_output() {
    let (store, database) = fresh().await;
    let url = url::Url::parse(database.url()).unwrap();
    let password = url.password().expect("the test server's URL has a password").to_owned();
    let shown = format!("{store:?} {}", store.target());
    assert!(!shown.contains(&password), "{shown}");
    assert!(shown.contains(database.name()), "{shown}");

    let mut wrong = url.clone();
    wrong.set_password(Some("wrong-password-7f3a")).unwrap();
    let error = PostgresStore::connect(wrong.as_str()).await.unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let shown = format!("{} {error:?}", ErrorChain(&error));
    assert!(!shown.contains("wrong-password-7f3a") && !shown.contains(&password), "{shown}");
    // Its own part names the server; the chain under it says why.
    assert!(error.to_string().starts_with("could not connect to PostgreSQL at"), "{error}");
    let why = ErrorChain(&error).to_string();
    assert!(why.contains("password authentication failed"), "says why: {why}");

    let mut missing = url.clone();
    missing.set_path("/no_such_database_7f3a");
    let error = PostgresStore::connect(missing.as_str()).await.unwrap_err();
    let why = ErrorChain(&error).to_string();
    assert!(why.contains("does not exist"), "says why: {why}");
    assert_eq!(why.matches("does not exist").count(), 1, "the cause is said once: {why}");

    let mut closed = url.clone();
    closed.set_port(Some(1)).unwrap();
    let error = PostgresStore::connect(closed.as_str()).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("127.0.0.1:1") && !shown.contains(&password), "{shown}");
    let why = ErrorChain(&error).to_string();
    assert!(why.to_lowercase().contains("refused"), "says why: {why}");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn times_round_trip_to_the_microsecond() {
    let (store, _database) = fresh().await;
    let mut sub = subscription("https://example.com/a", &["job.completed"]);
    sub.created_at = DateTime::from_timestamp(1_767_225_600, 123_456_000).unwrap();
    store.insert_subscription(&sub).await.unwrap();
    let mut published = event("job.completed", 0);
    published.occurred_at = DateTime::from_timestamp(1_767_225_601, 999_999_000).unwrap();
    let id = store.publish(&published, Bytes::new()).await.unwrap().deliveries[0];
    assert_eq!(store.subscription(sub.id).await.unwrap().unwrap().created_at, sub.created_at);
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(
        (delivery.created_at, delivery.next_attempt_at),
        (published.occurred_at, Some(published.occurred_at))
    );
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_response_body_with_nul_is_logged_and_does_not_fail_its_batch() {
    let (store, _database) = fresh().await;
    store.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    let first = store.publish(&event("job.completed", 0), Bytes::new()).await.unwrap().deliveries[0];
    let second = store.publish(&event("job.completed", 1), Bytes::new()).await.unwrap().deliveries[0];
    let mut hostile = answered(first, 1, 500, Verdict::Retry { at: at(10) }, 2);
    hostile.attempt.result = AttemptResult::Response { status: 500, body: "bad\0body".into() };
    let mut error = answered(second, 1, 500, Verdict::Retry { at: at(10) }, 2);
    error.attempt.result = AttemptResult::Error("reset\0".into());
    let results = store.record_attempts(&[hostile, error]).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        store.attempts(first).await.unwrap()[0].result,
        AttemptResult::Response { status: 500, body: "bad\u{FFFD}body".into() }
    );
    assert_eq!(store.attempts(second).await.unwrap()[0].result, AttemptResult::Error("reset\u{FFFD}".into()));
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_resent_delivery_of_a_disabled_subscription_stays_held() {
    let (store, _database) = fresh().await;
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    let id = store.publish(&event("job.completed", 0), Bytes::new()).await.unwrap().deliveries[0];
    store.record_attempt(&answered(id, 1, 500, Verdict::Dropped, 1)).await.unwrap();
    store.disable_subscription(sub.id, "paused", at(2)).await.unwrap();

    store.resend(id, at(3)).await.unwrap();
    assert!(
        store
            .claim_due(&ClaimRequest { now: at(10), limit: 10, lease_until: at(70), skip: &[] })
            .await
            .unwrap()
            .is_empty(),
        "held, not claimed"
    );
    let held = DeliveryQuery::new().state(StateFilter::Held).limit(10);
    assert_eq!(store.list_deliveries(&held).await.unwrap().len(), 1);
    store.enable_subscription(sub.id, at(20)).await.unwrap();
    assert_eq!(
        store
            .claim_due(&ClaimRequest { now: at(20), limit: 10, lease_until: at(80), skip: &[] })
            .await
            .unwrap()
            .len(),
        1
    );
}

/// Publishes race a disable from another store: whichever commits first,
/// every event is kept and no delivery to the disabled subscription is
/// left claimable.
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_racing_a_disable_leave_no_delivery_unheld() {
    let (store, database) = fresh().await;
    let sub = subscription("https://example.com/a", &["job.completed"]);
    store.insert_subscription(&sub).await.unwrap();
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..150 {
                    store.publish(&event("job.completed", n), Bytes::new()).await.unwrap();
                }
            })
        })
        .collect();
    let other = database.store().await.unwrap();
    while store.pending_count().await.unwrap() < 200 {
        tokio::task::yield_now().await;
    }
    other.disable_subscription(sub.id, "paused", at(1)).await.unwrap();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    assert_eq!(store.delivery_counts(sub.id).await.unwrap().pending, 600, "nothing published is lost");
    let unheld = DeliveryQuery::new().subscription(sub.id).state(StateFilter::Pending).limit(1000);
    assert!(store.list_deliveries(&unheld).await.unwrap().is_empty(), "every delivery is held");
    assert!(
        store
            .claim_due(&ClaimRequest { now: at(1000), limit: 1000, lease_until: at(1060), skip: &[] })
            .await
            .unwrap()
            .is_empty()
    );
}

/// Three stores record failing attempts for two subscriptions at once, in
/// batches, while publishing more, until both are disabled: locks taken in
/// one order everywhere, so nothing fails with a deadlock.
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_recorders_publishers_and_disables_never_deadlock() {
    let (store, database) = fresh().await;
    let a = subscription("https://example.com/a", &["job.completed"]);
    let b = subscription("https://example.com/b", &["job.completed"]);
    store.insert_subscription(&a).await.unwrap();
    store.insert_subscription(&b).await.unwrap();
    let events: Vec<_> = (0..300).map(|n| (event("job.completed", n), Bytes::new())).collect();
    store.publish_many(&events).await.unwrap();

    let mut tasks = Vec::new();
    for n in 0..3 {
        let store = database.store().await.unwrap();
        tasks.push(tokio::spawn(async move {
            loop {
                let claims = store
                    .claim_due(&ClaimRequest { now: at(1000), limit: 20, lease_until: at(1060), skip: &[] })
                    .await
                    .unwrap();
                if claims.is_empty() {
                    return;
                }
                let mut records: Vec<_> = claims
                    .iter()
                    .map(|c| {
                        let mut r = answered(c.delivery.id, 1, 500, Verdict::Retry { at: at(5000) }, 1000);
                        r.disable_after = Some(250);
                        r
                    })
                    .collect();
                // Each batch in another order, as attempts end in any order.
                if n % 2 == 1 {
                    records.reverse();
                }
                for result in store.record_attempts(&records).await.unwrap() {
                    result.unwrap();
                }
                store.publish(&event("job.completed", 1), Bytes::new()).await.unwrap();
            }
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task).await.expect("no deadlock stalls").unwrap();
    }
    for sub in [&a, &b] {
        let stored = store.subscription(sub.id).await.unwrap().unwrap();
        assert!(!stored.is_enabled(), "{:?} reached 250 failures", stored.url.as_str());
        let unheld = DeliveryQuery::new().subscription(sub.id).state(StateFilter::Pending).limit(1);
        assert!(store.list_deliveries(&unheld).await.unwrap().is_empty(), "every pending delivery is held");
    }
}

/// Two instances publishing one idempotency key at the same instant create
/// one event: the unique index decides, not a read before the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
async fn instances_racing_with_one_idempotency_key_create_one_event() {
    let (first, database) = fresh().await;
    let second = database.store().await.unwrap();
    let alice =
        webhooks_core::testing::owned_subscription("alice", "https://alice.example/", &["order.created"]);
    first.insert_subscription(&alice).await.unwrap();
    for round in 0..20 {
        let key = format!("order-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|n| {
                let store = if n % 2 == 0 { first.clone() } else { second.clone() };
                let barrier = barrier.clone();
                let event = webhooks_core::testing::owned_event("alice", "order.created", round);
                let held_until = event.occurred_at + chrono::Duration::days(1);
                let event =
                    event.with_idempotency_key(webhooks_core::IdempotencyKey::new(key.clone(), held_until));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.publish(&event, Bytes::from_static(b"{}")).await.unwrap()
                })
            })
            .collect();
        let mut publications = Vec::new();
        for racer in racers {
            publications.push(racer.await.unwrap());
        }
        let created: Vec<_> = publications.iter().filter(|p| !p.repeated).collect();
        assert_eq!(created.len(), 1, "round {round}: {publications:?}");
        assert!(
            publications
                .iter()
                .all(|p| p.event_id == created[0].event_id && p.deliveries == created[0].deliveries)
        );
    }
    assert_eq!(count(&first, "SELECT count(*) FROM webhooks.events").await, 20);
    assert_eq!(count(&first, "SELECT count(*) FROM webhooks.deliveries").await, 20);
}

/// A new database's tables get their first statistics once the store has
/// published a few thousand deliveries, so plans settled while they were
/// empty do not stay.
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn the_first_statistics_are_gathered_once_the_queue_has_grown() {
    let (store, _database) = fresh().await;
    store.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    let analyzed = "SELECT count(*) FROM pg_stat_user_tables \
                    WHERE relname IN ('deliveries', 'events') AND schemaname = 'webhooks' \
                    AND last_analyze IS NOT NULL";
    let events: Vec<_> = (0..4_000).map(|n| (event("job.completed", n), Bytes::from_static(b"{}"))).collect();
    store.publish_many(&events).await.unwrap();
    // Nothing is started below the threshold: nothing to wait for.
    assert_eq!(count(&store, analyzed).await, 0, "not before 5 000 deliveries");
    store.publish_many(&events[..1_000]).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count(&store, analyzed).await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no statistics after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A commit on a connection the server ended is unconfirmed, and not
/// transient: it is never retried as if nothing had happened. One the
/// server refused is an ordinary failure.
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn a_commit_on_a_lost_connection_is_unconfirmed() {
    use webhooks_postgres::statements::commit_error;

    let (store, _database) = fresh().await;
    let doomed = store.pool().get().await.unwrap();
    let pid: i32 = doomed.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    doomed.batch_execute("BEGIN").await.unwrap();
    let killer = store.pool().get().await.unwrap();
    killer.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
    let lost = doomed.batch_execute("COMMIT").await.unwrap_err();
    let error = commit_error(lost, "publish events");
    let why = ErrorChain(&error).to_string();
    assert!(!error.is_transient(), "{why}");
    assert!(why.contains("whether it took effect is unknown"), "{why}");

    let refused = killer.batch_execute("COMMIT TO NOWHERE").await.unwrap_err();
    let why = ErrorChain(&commit_error(refused, "publish events")).to_string();
    assert!(why.contains("could not publish events"), "{why}");
    assert!(!why.contains("whether it took effect is unknown"), "{why}");
}
