//! Publishing inside the host's own transaction, on SQLite and PostgreSQL:
//! a rolled-back transaction delivers nothing, a committed one delivers
//! once, and after `kill -9` between a host's row and its event either both
//! are there or neither.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use webhooks_core::{Preset, Publication, Publish, Subscription, UrlRule, Webhooks};
use webhooks_examples::Receiver;
use webhooks_postgres::PostgresStore;
use webhooks_postgres_tests::TestDatabase;
use webhooks_sqlite::{SqliteStore, rusqlite};

/// The library on `store` with a dispatcher, and a receiver subscribed for
/// the owner `shop`.
async fn shop(store: impl webhooks_core::Store) -> (Webhooks, Receiver, common::Running) {
    let preset = Preset::deepsmith().with_event_types(["order.created"]).with_url_rule(UrlRule::allow_http());
    let webhooks = Webhooks::builder().store(store).preset(preset).build().unwrap();
    let receiver = Receiver::start().await.unwrap();
    let endpoint = Subscription::builder(receiver.url()).owner("shop").event_type("order.created");
    webhooks.subscribe(endpoint).await.unwrap();
    // No poll within a test's time: what arrives was woken for (by the
    // host after its commit on SQLite, by the commit's NOTIFY on PostgreSQL).
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .poll_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    (webhooks, receiver, common::Running::start(dispatcher))
}

fn order(webhooks: &Webhooks, id: &str) -> webhooks_core::Prepared {
    webhooks
        .prepare(Publish::new("order.created", json!({ "id": id })).owner("shop").idempotency_key(id))
        .unwrap()
}

/// Once the dispatcher has settled (it looked after the commit or the
/// rollback and found nothing more to send), the receiver has had exactly
/// `expected` requests.
async fn quiet(running: &common::Running, receiver: &Receiver, expected: usize) {
    running.settle().await;
    assert_eq!(receiver.received().len(), expected);
}

/// A publication rolled back with the host's transaction: nothing went out
/// once the dispatcher settled, and nothing of it is kept.
async fn rolled_back(
    webhooks: &Webhooks,
    running: &common::Running,
    receiver: &Receiver,
    published: &[Publication],
) {
    quiet(running, receiver, 0).await;
    assert_eq!(webhooks.delivery(published[0].deliveries[0]).await.unwrap(), None);
}

/// A committed publication's delivery arrives, under its own id.
async fn arrives(receiver: &Receiver, published: &[Publication]) {
    let arrived = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(arrived[0].header("x-webhook-id"), published[0].deliveries[0].to_string());
}

#[tokio::test]
async fn sqlite_a_rolled_back_transaction_delivers_nothing_and_a_committed_one_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let (webhooks, receiver, running) = shop(SqliteStore::open(&path).await.unwrap()).await;
    let mut db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch("CREATE TABLE orders (id TEXT PRIMARY KEY)").unwrap();

    let tx = db.transaction().unwrap();
    tx.execute("INSERT INTO orders (id) VALUES ('o-1')", []).unwrap();
    let published = SqliteStore::publish_in(&tx, &[order(&webhooks, "o-1")]).unwrap();
    assert_eq!(published[0].deliveries.len(), 1);
    tx.rollback().unwrap();
    webhooks.wake_dispatchers();
    rolled_back(&webhooks, &running, &receiver, &published).await;

    let tx = db.transaction().unwrap();
    tx.execute("INSERT INTO orders (id) VALUES ('o-2')", []).unwrap();
    let published = SqliteStore::publish_in(&tx, &[order(&webhooks, "o-2")]).unwrap();
    tx.commit().unwrap();
    webhooks.wake_dispatchers();
    arrives(&receiver, &published).await;
    quiet(&running, &receiver, 1).await;
    running.stop().await;
}

#[tokio::test]
async fn sqlite_a_failed_publish_leaves_the_hosts_transaction_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let (webhooks, _receiver, running) = shop(SqliteStore::open(&path).await.unwrap()).await;
    let mut db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE orders (id TEXT PRIMARY KEY);
         CREATE TRIGGER no_events BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'refused'); END;",
    )
    .unwrap();
    let tx = db.transaction().unwrap();
    tx.execute("INSERT INTO orders (id) VALUES ('o-1')", []).unwrap();
    assert!(SqliteStore::publish_in(&tx, &[order(&webhooks, "o-1")]).is_err());
    tx.commit().unwrap();
    let orders: i64 = db.query_row("SELECT count(*) FROM orders", [], |row| row.get(0)).unwrap();
    let events: i64 = db.query_row("SELECT count(*) FROM events", [], |row| row.get(0)).unwrap();
    assert_eq!((orders, events), (1, 0), "the host's row stays; the publish left nothing half done");
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
async fn postgres_a_rolled_back_transaction_delivers_nothing_and_a_committed_one_once() {
    let database = TestDatabase::create().await.unwrap();
    let store = database.store().await.unwrap();
    let pool = store.pool().clone();
    let (webhooks, receiver, running) = shop(store).await;
    let mut client = pool.get().await.unwrap();
    client.batch_execute("CREATE TABLE public.orders (id TEXT PRIMARY KEY)").await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO public.orders (id) VALUES ('o-1')", &[]).await.unwrap();
    let published = PostgresStore::publish_in(&tx, &[order(&webhooks, "o-1")]).await.unwrap();
    tx.rollback().await.unwrap();
    rolled_back(&webhooks, &running, &receiver, &published).await;

    // No wake-up from this process: the commit's NOTIFY wakes the dispatcher.
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO public.orders (id) VALUES ('o-2')", &[]).await.unwrap();
    let published = PostgresStore::publish_in(&tx, &[order(&webhooks, "o-2")]).await.unwrap();
    tx.commit().await.unwrap();
    arrives(&receiver, &published).await;
    quiet(&running, &receiver, 1).await;
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
async fn postgres_a_host_on_plain_tokio_postgres_publishes_in_its_own_transaction() {
    use webhooks_postgres::tokio_postgres;

    let database = TestDatabase::create().await.unwrap();
    let (webhooks, receiver, running) = shop(database.store().await.unwrap()).await;
    // The host's own connection, no pool of this library's.
    let (mut client, connection) =
        tokio_postgres::connect(database.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE public.orders (id TEXT PRIMARY KEY)").await.unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO public.orders (id) VALUES ('o-1')", &[]).await.unwrap();
    let published = PostgresStore::publish_in(&tx, &[order(&webhooks, "o-1")]).await.unwrap();
    tx.rollback().await.unwrap();
    rolled_back(&webhooks, &running, &receiver, &published).await;

    // A client in a transaction the host began by hand.
    client.batch_execute("BEGIN").await.unwrap();
    client.execute("INSERT INTO public.orders (id) VALUES ('o-2')", &[]).await.unwrap();
    let published = PostgresStore::publish_in(&client, &[order(&webhooks, "o-2")]).await.unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    arrives(&receiver, &published).await;

    // Outside a transaction nothing is published: a half-done outbox is no
    // outbox.
    let error = PostgresStore::publish_in(&client, &[order(&webhooks, "o-3")]).await.unwrap_err();
    let why = webhooks_core::ErrorChain(&error).to_string();
    assert!(why.contains("publish in the host's transaction"), "{why}");
    quiet(&running, &receiver, 1).await;
    let events: i64 = client.query_one("SELECT count(*) FROM webhooks.events", &[]).await.unwrap().get(0);
    assert_eq!(events, 1);
    running.stop().await;
}

#[tokio::test]
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
async fn postgres_a_host_on_sqlx_publishes_in_its_own_transaction() {
    use webhooks_postgres::Sqlx;

    let database = TestDatabase::create().await.unwrap();
    let (webhooks, receiver, running) = shop(database.store().await.unwrap()).await;
    let pool = sqlx::PgPool::connect(database.url()).await.unwrap();
    sqlx::raw_sql("CREATE TABLE public.orders (id TEXT PRIMARY KEY)").execute(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO public.orders (id) VALUES ('o-1')").execute(&mut *tx).await.unwrap();
    let published = PostgresStore::publish_in(&Sqlx::new(&mut tx), &[order(&webhooks, "o-1")]).await.unwrap();
    tx.rollback().await.unwrap();
    rolled_back(&webhooks, &running, &receiver, &published).await;

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO public.orders (id) VALUES ('o-2')").execute(&mut *tx).await.unwrap();
    let published = PostgresStore::publish_in(&Sqlx::new(&mut tx), &[order(&webhooks, "o-2")]).await.unwrap();
    // The same key again in the same transaction is the same publication.
    let again = PostgresStore::publish_in(&Sqlx::new(&mut tx), &[order(&webhooks, "o-2")]).await.unwrap();
    assert!(again[0].repeated);
    assert_eq!(again[0].deliveries, published[0].deliveries);
    tx.commit().await.unwrap();
    arrives(&receiver, &published).await;

    quiet(&running, &receiver, 1).await;
    running.stop().await;
}

/// Runs the `outbox` example on `store`, kills it with SIGKILL once it has
/// committed `before_kill` orders, and returns the orders it said it
/// committed.
async fn kill_mid_run(store: &str, before_kill: usize) -> BTreeSet<String> {
    let mut child = tokio::process::Command::new(common::example_binary("outbox"))
        .args(["--store", store, "--orders", "100000"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut said = BTreeSet::new();
    while said.len() < before_kill {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap();
        let line = line.expect("the example commits orders until it is killed");
        said.insert(line.strip_prefix("committed ").expect(&line).to_owned());
    }
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    child.wait().await.unwrap();
    // What it printed before dying, too.
    while let Ok(Some(line)) = lines.next_line().await {
        said.insert(line.strip_prefix("committed ").expect(&line).to_owned());
    }
    said
}

fn check_both_or_neither(said: &BTreeSet<String>, orders: &BTreeSet<String>, keys: &BTreeSet<String>) {
    assert!(said.is_subset(orders), "every order it said it committed is there");
    assert_eq!(orders, keys, "each order row has its event and each event its row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_9_between_a_row_and_its_event_leaves_both_or_neither() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let store = format!("sqlite:{}", path.display());
    let mut said = BTreeSet::new();
    for round in 1..=3 {
        said.extend(kill_mid_run(&store, 40 * round).await);
    }
    let db = rusqlite::Connection::open(&path).unwrap();
    let column = |sql: &str| -> BTreeSet<String> {
        db.prepare(sql).unwrap().query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let orders = column("SELECT id FROM orders");
    let keys = column(
        "SELECT k.key FROM idempotency_keys k JOIN events e ON e.id = k.event_id AND e.seq = k.event_seq \
         WHERE k.audience = 'shop'",
    );
    check_both_or_neither(&said, &orders, &keys);
    assert!(orders.len() >= said.len() && said.len() >= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
async fn postgres_kill_9_between_a_row_and_its_event_leaves_both_or_neither() {
    let database = TestDatabase::create().await.unwrap();
    let mut said = BTreeSet::new();
    for round in 1..=3 {
        said.extend(kill_mid_run(database.url(), 40 * round).await);
    }
    let store = database.store().await.unwrap();
    let client = store.pool().get().await.unwrap();
    let column = |rows: Vec<webhooks_postgres::tokio_postgres::Row>| -> BTreeSet<String> {
        rows.iter().map(|row| row.get(0)).collect()
    };
    let orders = column(client.query("SELECT id FROM public.orders", &[]).await.unwrap());
    let keys = column(
        client
            .query(
                "SELECT k.key FROM webhooks.idempotency_keys k \
                 JOIN webhooks.events e ON e.id = k.event_id AND e.seq = k.event_seq WHERE k.audience = 'shop'",
                &[],
            )
            .await
            .unwrap(),
    );
    check_both_or_neither(&said, &orders, &keys);
    assert!(orders.len() >= said.len() && said.len() >= 40);
}
