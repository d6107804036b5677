//! Secrets sealed at rest: what a copy of the SQLite file or the PostgreSQL
//! table holds signs nothing, while deliveries are signed as before. A
//! store written in the clear is sealed by the first instance given keys;
//! a new key takes over from an older one; an instance without the key
//! refuses rather than sign with what it reads.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Running, over_http, start};
use serde_json::json;
use webhooks_core::{DeepSmithScheme, ManualClock, Preset, SecretKeys, Store, Subscription, Webhooks};
use webhooks_examples::Receiver;

const SECRET: &str = "whsec_NeverInTheStoreInTheClear";
const TOKEN: &str = "NeverInTheStoreEitherToken";

fn key(byte: u8) -> Vec<u8> {
    vec![byte; 32]
}

fn instance(store: &Arc<dyn Store>, keys: Option<SecretKeys>, clock: &ManualClock) -> Webhooks {
    let builder = Webhooks::builder()
        .shared_store(Arc::clone(store))
        .preset(over_http(Preset::deepsmith()))
        .clock(clock.clone());
    match keys {
        Some(keys) => builder.secret_keys(keys),
        None => builder,
    }
    .build()
    .unwrap()
}

/// Subscribes `receiver` with [`SECRET`] and a secret header carrying [`TOKEN`].
async fn subscribe(webhooks: &Webhooks, receiver: &Receiver) -> webhooks_core::Subscription {
    let new = Subscription::builder(receiver.url())
        .event_type("iq.status_updated")
        .secret(SECRET)
        .secret_header("Authorization", format!("Bearer {TOKEN}"));
    webhooks.subscribe(new).await.unwrap()
}

/// Publishes one event and checks the receiver got it signed with `secret`
/// and carrying the secret header.
async fn delivers_signed(webhooks: &Webhooks, receiver: &Receiver, secret: &str) {
    let before = receiver.received().len();
    webhooks.publish("iq.status_updated", json!({"n": before})).await.unwrap();
    let running = Running::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
    running.settle().await;
    running.stop().await;
    let request = receiver.received().pop().expect("delivered");
    assert_eq!(receiver.received().len(), before + 1);
    DeepSmithScheme
        .verify_header(
            request.header("x-webhook-signature"),
            &request.body,
            &webhooks_core::Secret::from(secret),
        )
        .expect("signed with the secret the customer holds");
    assert_eq!(request.header("authorization"), format!("Bearer {TOKEN}"));
}

/// The whole story on one store; `raw` reads what the store holds as text,
/// beside the library.
async fn sealed_at_rest(store: Arc<dyn Store>, raw: impl AsyncFn() -> String) {
    let clock = ManualClock::new(start());
    let receiver = Receiver::start().await.unwrap();

    // Written in the clear by an instance without keys.
    let clear = instance(&store, None, &clock);
    let subscription = subscribe(&clear, &receiver).await;
    assert!(raw().await.contains(SECRET), "the raw reader sees what is there");

    // The first instance with keys seals it (its dispatcher does, at start).
    let first = instance(&store, Some(SecretKeys::new(&key(1)).unwrap()), &clock);
    delivers_signed(&first, &receiver, SECRET).await;
    let held = raw().await;
    assert!(!held.contains(SECRET) && !held.contains(TOKEN), "sealed at rest");
    assert!(held.contains("sealed:v1:"), "sealed values are there instead");
    let error =
        webhooks_core::ErrorChain(&clear.subscription(subscription.id).await.unwrap_err()).to_string();
    assert!(error.contains("sealed"), "an instance without keys refuses: {error}");

    // A rotated signing secret is sealed too, the old one with it.
    let rotated = first.rotate_secret(subscription.id, Duration::from_secs(3600)).await.unwrap();
    let held = raw().await;
    assert!(!held.contains(rotated.expose()) && !held.contains(SECRET), "both secrets sealed");

    // A new key takes over: the older one still opens until all is resealed.
    let both = SecretKeys::new(&key(2)).unwrap().with_older(&key(1)).unwrap();
    let second = instance(&store, Some(both), &clock);
    assert_eq!(second.reseal_secrets().await.unwrap(), 1);
    assert_eq!(second.reseal_secrets().await.unwrap(), 0, "nothing left on the older key");
    let only_new = instance(&store, Some(SecretKeys::new(&key(2)).unwrap()), &clock);
    delivers_signed(&only_new, &receiver, rotated.expose()).await;
    let only_old = instance(&store, Some(SecretKeys::new(&key(1)).unwrap()), &clock);
    let error =
        webhooks_core::ErrorChain(&only_old.subscription(subscription.id).await.unwrap_err()).to_string();
    assert!(error.contains("which this instance does not hold"), "{error}");
}

#[tokio::test]
async fn sqlite_holds_no_secret_in_the_clear() {
    let (store, dir) = common::sqlite_store().await;
    // The file and its WAL as a backup would copy them, once what was
    // written before has been checkpointed: frames of writes made before
    // the keys were given stay in the WAL until a checkpoint.
    let raw = async || {
        let path = dir.path().join("webhooks.db");
        let beside = webhooks_sqlite::rusqlite::Connection::open(&path).unwrap();
        beside.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
        drop(beside);
        let mut text = String::new();
        for name in ["webhooks.db", "webhooks.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.path().join(name)) {
                text.push_str(&String::from_utf8_lossy(&bytes));
            }
        }
        text
    };
    sealed_at_rest(store, raw).await;
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test]
async fn postgres_holds_no_secret_in_the_clear() {
    let database = webhooks_postgres_tests::TestDatabase::create().await.unwrap();
    let store = database.store().await.unwrap();
    let reader = store.clone();
    let raw = async || {
        let client = reader.pool().get().await.unwrap();
        let rows =
            client.query("SELECT row_to_json(s)::text FROM webhooks.subscriptions s", &[]).await.unwrap();
        rows.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
    };
    sealed_at_rest(Arc::new(store), raw).await;
}

#[tokio::test]
async fn the_memory_store_needs_no_keys() {
    let clock = ManualClock::new(start());
    let receiver = Receiver::start().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(webhooks_memory::MemoryStore::new());
    let webhooks = instance(&store, None, &clock);
    subscribe(&webhooks, &receiver).await;
    delivers_signed(&webhooks, &receiver, SECRET).await;
}
