//! Wake-ups across instances: two stores (two pools, as two instances of
//! the host have) on one database; what one publishes wakes the other's
//! signal, through `LISTEN`/`NOTIFY` on a real server, and the listening
//! connection survives being cut.
//!
//! Bounds here are generous deadlines against a hang, not measurements:
//! the latency is measured by the bench example.
//!
//! The server is the one `WEBHOOKS_POSTGRES_URL` names or one the tests
//! start; with neither, cargo reports the tests as ignored.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use webhooks_core::prelude::*;
use webhooks_core::testing::{event, subscription, t0};
use webhooks_postgres::PostgresStore;
use webhooks_postgres_tests::TestDatabase;

/// Longer than any wake-up on a working server takes, by far.
const DEADLINE: Duration = Duration::from_secs(5);

fn at(seconds: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(seconds)
}

/// The backends listening in `store`'s database, read beside the store.
async fn listeners(store: &PostgresStore) -> Vec<i32> {
    let client = store.pool().get().await.unwrap();
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' ORDER BY pid",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// Waits until the listening backends are other than `not`, and returns
/// them; panics at the deadline.
async fn listeners_other_than(store: &PostgresStore, not: &[i32]) -> Vec<i32> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let now = listeners(store).await;
            if now != not {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the listening backends are still {not:?}"))
}

/// Runs `action` with a wait on `signal` registered first, and says
/// whether the signal fired before the deadline.
async fn wakes<T>(signal: &Notify, action: impl Future<Output = T>) -> (T, bool) {
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();
    let value = action.await;
    (value, tokio::time::timeout(DEADLINE, woken).await.is_ok())
}

/// A database and two instances on it, the second listening.
async fn two_instances() -> (PostgresStore, PostgresStore, Arc<Notify>, TestDatabase) {
    let database = TestDatabase::create().await.expect("a test database");
    let publisher = database.store().await.expect("the first store connects");
    let dispatcher = database.store().await.expect("the second store connects");
    let signal = dispatcher.wake_ups().expect("a store made by connect listens");
    (publisher, dispatcher, signal, database)
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_on_one_instance_wakes_the_other() {
    let (publisher, dispatcher, signal, _database) = two_instances().await;
    let listening = listeners_other_than(&dispatcher, &[]).await;
    assert_eq!(listening.len(), 1, "one listening connection per store: {listening:?}");
    assert!(
        Arc::ptr_eq(&signal, &dispatcher.clone().wake_ups().unwrap()),
        "clones share one signal and one listener"
    );
    let sub = subscription("https://example.com/a", &["job.completed"]);
    publisher.insert_subscription(&sub).await.unwrap();

    let (published, woken) =
        wakes(&signal, publisher.publish(&event("job.completed", 0), Bytes::from_static(b"{}"))).await;
    assert_eq!(published.unwrap().deliveries.len(), 1);
    assert!(woken, "the other instance was woken by the publish");
    assert_eq!(listeners(&dispatcher).await, listening, "still the one listening connection");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_that_makes_deliveries_due_wakes_the_other_instance() {
    let (publisher, dispatcher, signal, _database) = two_instances().await;
    listeners_other_than(&dispatcher, &[]).await;
    let sub = subscription("https://example.com/a", &["job.completed"]);
    publisher.insert_subscription(&sub).await.unwrap();
    let body = || Bytes::from_static(b"{}");

    let events = [(event("job.completed", 1), body()), (event("job.completed", 2), body())];
    let (published, woken) = wakes(&signal, publisher.publish_many(&events)).await;
    assert_eq!(published.unwrap().len(), 2);
    assert!(woken, "publish_many wakes");

    let (id, woken) = wakes(&signal, publisher.publish_to(&event("webhook.test", 3), body(), sub.id)).await;
    let id = id.unwrap();
    assert!(woken, "publish_to wakes");

    let (resent, woken) = wakes(&signal, publisher.resend(id, at(4))).await;
    resent.unwrap();
    assert!(woken, "resend wakes");

    publisher.disable_subscription(sub.id, "paused", at(5)).await.unwrap();
    let (enabled, woken) = wakes(&signal, publisher.enable_subscription(sub.id, at(6))).await;
    enabled.unwrap();
    assert!(woken, "enabling a subscription wakes");

    let (recovered, woken) = wakes(&signal, publisher.recover(sub.id, at(0), at(7))).await;
    recovered.unwrap();
    assert!(woken, "recover wakes");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_survives_its_connection_being_cut() {
    let (publisher, dispatcher, signal, _database) = two_instances().await;
    let first = listeners_other_than(&dispatcher, &[]).await;
    let sub = subscription("https://example.com/a", &["job.completed"]);
    publisher.insert_subscription(&sub).await.unwrap();

    let cut = async {
        let client = publisher.pool().get().await.unwrap();
        client.query_one("SELECT pg_terminate_backend($1)", &[&first[0]]).await.unwrap().get::<_, bool>(0)
    };
    let (terminated, woken) = wakes(&signal, cut).await;
    assert!(terminated, "the listening backend {first:?} was terminated");
    assert!(woken, "the listener wakes the dispatchers once it listens again");
    let second = listeners_other_than(&dispatcher, &first).await;
    assert_eq!(second.len(), 1, "one new listening connection: {second:?}");

    let (published, woken) =
        wakes(&signal, publisher.publish(&event("job.completed", 0), Bytes::from_static(b"{}"))).await;
    assert_eq!(published.unwrap().deliveries.len(), 1);
    assert!(woken, "a publish after the cut still wakes the other instance");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_stops_with_the_last_store_handle() {
    let (publisher, dispatcher, signal, _database) = two_instances().await;
    let clone = dispatcher.clone();
    listeners_other_than(&publisher, &[]).await;
    drop(dispatcher);
    // A clone keeps it listening: a publish made after the drop still
    // reaches it through the listener's connection.
    publisher.insert_subscription(&subscription("https://example.com/a", &["job.completed"])).await.unwrap();
    let (published, woken) =
        wakes(&signal, publisher.publish(&event("job.completed", 0), Bytes::from_static(b"{}"))).await;
    published.unwrap();
    assert!(woken, "the clone still hears publishes");
    let listening = listeners(&publisher).await;
    assert_eq!(listening.len(), 1, "a clone still holds the listener");
    drop(clone);
    let left = listeners_other_than(&publisher, &listening).await;
    assert!(left.is_empty(), "the listener's connection closed with the store: {left:?}");
    drop(signal);
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_the_hosts_pool_has_no_wake_ups() {
    let database = TestDatabase::create().await.expect("a test database");
    let store = database.store().await.unwrap();
    let on_pool = PostgresStore::from_pool(store.pool().clone()).await.unwrap();
    assert!(on_pool.wake_ups().is_none(), "its settings cannot be read back to listen");
}
