//! Several application instances, one PostgreSQL queue: three dispatchers,
//! each with its own store (connection pool), facade and HTTP client as
//! separate processes would have, share one database and deliver 5,000
//! events to a local receiver. Every event arrives; none twice while every
//! instance lives; and when one is killed mid-flight, its leased claims
//! come back to the others when the leases end, and nothing is lost.
//!
//! The tests need a server: the one `WEBHOOKS_POSTGRES_URL` names or one
//! they start from the machine's PostgreSQL binaries; with neither, cargo
//! reports them as ignored.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;
use webhooks_core::{Preset, Subscription, SubscriptionId, Webhooks};
use webhooks_examples::{Receiver, Reply};
use webhooks_postgres::PostgresStore;
use webhooks_postgres_tests::TestDatabase;

const EVENTS: usize = 5_000;
const EVENT: &str = "content.status_updated";
const INSTANCES: usize = 3;

/// The two tests take turns: each loads both cores on its own, and side by
/// side each would only be slower and noisier.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One instance of the host application.
struct Instance {
    store: PostgresStore,
    webhooks: Webhooks,
    /// Attempts this instance recorded.
    recorded: Arc<AtomicUsize>,
    /// How long its claims are leased.
    lease: Duration,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Instance {
    /// Connects to the database, as an instance does when it starts.
    async fn connect(database: &TestDatabase) -> (PostgresStore, Webhooks) {
        let store = database.store().await.expect("the instance connects");
        let preset = common::over_http(Preset::deepsmith()).with_retry_scale(0.0).unwrap();
        (store.clone(), Webhooks::builder().store(store).preset(preset).build().unwrap())
    }

    /// Starts the instance's dispatcher, whose requests say which instance
    /// sent them (`X-Instance: N`).
    fn start(number: usize, (store, webhooks): (PostgresStore, Webhooks), request_timeout: Duration) -> Self {
        let recorded = Arc::new(AtomicUsize::new(0));
        let dispatcher = webhooks
            .dispatcher()
            .allow_private_networks(true)
            .concurrency(32)
            // One endpoint: it may have every slot.
            .per_endpoint_concurrency(32)
            .request_timeout(request_timeout)
            .client_builder(reqwest::Client::builder().default_headers(instance_header(number)))
            .on_outcome({
                let recorded = Arc::clone(&recorded);
                move |_| {
                    recorded.fetch_add(1, Ordering::SeqCst);
                }
            })
            .build()
            .unwrap();
        let lease = dispatcher.lease();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(dispatcher.run(shutdown.clone()));
        Self { store, webhooks, recorded, lease, shutdown, task }
    }

    /// Lets the attempts in flight finish and be recorded, then returns.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task).await.expect("stops in time").unwrap();
    }
}

/// `X-Instance: N` on every request of instance `N`.
fn instance_header(number: usize) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert("x-instance", http::HeaderValue::from(number));
    headers
}

/// Every instance publishes its share of the events, at the same time.
async fn publish_from_every_instance(instances: &[Webhooks]) {
    let publishing: Vec<_> = instances
        .iter()
        .enumerate()
        .map(|(number, webhooks)| {
            let webhooks = webhooks.clone();
            tokio::spawn(async move {
                for n in (number..EVENTS).step_by(INSTANCES) {
                    webhooks.publish(EVENT, json!({ "n": n })).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishing {
        publisher.await.unwrap();
    }
}

/// Requests per delivery id, as the receiver got them.
fn arrivals(receiver: &Receiver) -> HashMap<String, usize> {
    let mut arrivals = HashMap::new();
    for request in receiver.received() {
        *arrivals.entry(request.header("x-webhook-id").to_owned()).or_default() += 1;
    }
    arrivals
}

/// Requests each instance sent.
fn sent_by(receiver: &Receiver) -> [usize; INSTANCES] {
    let mut sent = [0; INSTANCES];
    for request in receiver.received() {
        if let Some(n) = request.header("x-instance").parse::<usize>().ok()
            && n < INSTANCES
        {
            sent[n] += 1;
        }
    }
    sent
}

/// Waits until every event has arrived and every delivery is recorded as
/// delivered, failing at `deadline`.
async fn until_all_delivered(
    receiver: &Receiver,
    store: &PostgresStore,
    subscription: SubscriptionId,
    deadline: Instant,
) {
    use webhooks_core::prelude::*;
    loop {
        let arrived = arrivals(receiver).len();
        let counts = store.delivery_counts(subscription).await.unwrap();
        if arrived == EVENTS && counts.delivered == EVENTS as u64 {
            assert_eq!(counts.pending + counts.dropped, 0, "{counts:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not delivered in time: {arrived} of {EVENTS} arrived, {counts:?} recorded"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_deliver_every_event_once() {
    let database = TestDatabase::create().await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(50);
    let receiver = Receiver::start().await.unwrap();
    let mut instances = Vec::new();
    for number in 0..INSTANCES {
        instances.push(Instance::start(number, Instance::connect(&database).await, Duration::from_secs(5)));
    }
    let subscription = instances[0]
        .webhooks
        .subscribe(Subscription::builder(receiver.url()).event_type(EVENT))
        .await
        .unwrap();

    // Each instance publishes while all of them deliver.
    let facades: Vec<Webhooks> = instances.iter().map(|i| i.webhooks.clone()).collect();
    publish_from_every_instance(&facades).await;
    let published = started.elapsed();
    until_all_delivered(&receiver, &instances[1].store, subscription.id, deadline).await;
    let delivered = started.elapsed();
    let recorded: Vec<usize> = instances.iter().map(|i| i.recorded.load(Ordering::SeqCst)).collect();
    for instance in instances {
        instance.stop().await;
    }

    let arrivals = arrivals(&receiver);
    let twice = arrivals.values().filter(|&&n| n > 1).count();
    let sent = sent_by(&receiver);
    println!(
        "{EVENTS} events from {INSTANCES} instances: published in {published:?}, all delivered after \
         {delivered:?}; requests per instance {sent:?}, attempts recorded per instance {recorded:?}; \
         {twice} delivered twice"
    );
    assert_eq!(arrivals.len(), EVENTS, "every event arrived");
    assert_eq!(twice, 0, "no delivery was attempted by two instances");
    assert_eq!(sent.iter().sum::<usize>(), EVENTS, "one request per event");
    assert!(sent.iter().all(|&n| n > 0), "every instance delivered some: {sent:?}");
    assert_eq!(recorded, sent, "every instance recorded each attempt it made");
}

#[cfg_attr(not(postgres_server), ignore = "no PostgreSQL: install postgresql or set WEBHOOKS_POSTGRES_URL")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_flight_loses_nothing() {
    let database = TestDatabase::create().await.unwrap();
    let _turn = ONE_AT_A_TIME.lock().await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(55);
    // Slow enough replies that a kill finds requests in flight; a 1 s
    // request timeout keeps the leases short (it plus the dispatcher's
    // margin for recording).
    let receiver =
        Receiver::scripted(|_, _| Reply::status(200).after(Duration::from_millis(40))).await.unwrap();
    // Every instance publishes its share, then all three start delivering.
    let mut connected = Vec::new();
    for _ in 0..INSTANCES {
        connected.push(Instance::connect(&database).await);
    }
    let subscription =
        connected[0].1.subscribe(Subscription::builder(receiver.url()).event_type(EVENT)).await.unwrap();
    let facades: Vec<Webhooks> = connected.iter().map(|(_, webhooks)| webhooks.clone()).collect();
    publish_from_every_instance(&facades).await;
    let mut instances: Vec<Instance> = connected
        .into_iter()
        .enumerate()
        .map(|(number, connected)| Instance::start(number, connected, Duration::from_secs(1)))
        .collect();

    // Kill instance 0 once it has sent a fifth of its share: its dispatcher
    // task is dropped where it stands, requests in flight, claims leased.
    while sent_by(&receiver)[0] < EVENTS / (5 * INSTANCES) {
        assert!(Instant::now() < deadline, "instance 0 never got going");
        sleep(Duration::from_millis(5)).await;
    }
    let killed = instances.remove(0);
    let lease = killed.lease;
    killed.task.abort();
    let _ = killed.task.await;
    let killed_at = started.elapsed();
    killed.store.pool().close();

    until_all_delivered(&receiver, &instances[0].store, subscription.id, deadline).await;
    // Counted once everything is delivered: a request of the killed
    // instance already on its way when it died has landed by now.
    let sent_by_killed = sent_by(&receiver)[0];
    let left_leased = sent_by_killed - killed.recorded.load(Ordering::SeqCst);
    let delivered = started.elapsed();
    for instance in instances {
        instance.stop().await;
    }

    let arrivals = arrivals(&receiver);
    let twice = arrivals.values().filter(|&&n| n > 1).count();
    let sent = sent_by(&receiver);
    println!(
        "killed instance 0 after {killed_at:?} with {left_leased} attempts unrecorded ({sent_by_killed} sent); \
         all {EVENTS} delivered after {delivered:?}; requests per instance {sent:?}; {twice} delivered twice"
    );
    assert!(left_leased > 0, "the kill found attempts in flight: nothing was tested");
    assert_eq!(arrivals.len(), EVENTS, "every event arrived, at least once");
    assert!(sent[0] == sent_by_killed, "the killed instance sent nothing more");
    assert!(delivered >= killed_at + lease - Duration::from_secs(1), "its claims waited for their leases");
    assert!(twice <= left_leased, "only the killed instance's unrecorded attempts were repeated");
}
