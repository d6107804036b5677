//! Measures the library against the machine's own limit, in one run.
//!
//! ```text
//! cargo run --release --example bench -- [--store memory|sqlite:PATH|postgres://URL] [--deliveries N] [--concurrency C] [--per-endpoint P] [--slow-requests R] [--body-bytes B] [--subscriptions S] [--claim-pending 10000,1000000] [--scale 4000,400] [--backlog 300000] [--claim-endpoints 100000] [--figures all|end-to-end|scale|publish]
//! cargo run --release --example bench -- --serve
//! ```
//!
//! A fast local receiver (hyper, answers 204 and discards the body) serves
//! both a bare `reqwest` loop (the baseline: no store, no signing) and the
//! library end to end; the report is one JSON document on stdout.
//!
//! With `--store postgres://URL` (a server the bench may create databases
//! on) every PostgreSQL figure runs on a fresh database: end to end with one
//! dispatcher and with three instances (a pool, a facade and a dispatcher
//! each) on the same database, beside the CPU the server's processes used.
//!
//! The dispatcher runs with its defaults: `--concurrency`,
//! `--per-endpoint` and `--slow-requests` override them (the baseline uses as many requests at
//! once as the dispatcher has workers).
//!
//! The scale figures (`--scale QUICK,SLOW`, `--figures scale` for them
//! alone) compare runs of the same total on the same store kind: QUICK
//! endpoints (one owner each) against one; QUICK beside SLOW endpoints that
//! answer in 3 s against QUICK alone; one endpoint with the defaults against
//! one with a per-endpoint share of every worker; and a healthy endpoint's
//! latency beside 50 and 200 endpoints that never answer, all of them new
//! to the dispatcher (as after a restart); a healthy customer's 1 000
//! events on SQLite beside another's backlog (`--backlog`) to an endpoint
//! that never answers, against the same with no backlog; and the memory
//! store's claim with 100 000 endpoints that have work
//! (`--claim-endpoints`) against 10.
//!
//! `--serve` runs the receiver alone, printing its URL, until killed: the
//! `send` example is measured against it from outside
//! (`examples/send_vs_bench.sh`). `--figures end-to-end` measures only the
//! baseline and the end-to-end figures; `--figures publish` only what
//! publishing JSON text and checking a schema cost.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use webhooks_core::{
    Audience, Catalogue, ClaimRequest, DEFAULT_CONCURRENCY, DEFAULT_CONCURRENCY_BATCHING, DeliveryId,
    Envelope, Event, EventType, JsonEnvelope, Owner, Preset, Publish, Subscription, UrlRule, Webhooks,
    prelude::*,
};
use webhooks_memory::MemoryStore;
use webhooks_postgres_tests::TestDatabase;
use webhooks_sqlite::SqliteStore;

#[derive(Clone)]
struct Options {
    store: String,
    deliveries: usize,
    /// Workers, when not the dispatcher's default.
    concurrency: Option<usize>,
    /// Requests per endpoint, when not the dispatcher's default.
    per_endpoint: Option<usize>,
    /// Requests waiting off the workers, when not the dispatcher's default.
    slow_requests: Option<usize>,
    body_bytes: usize,
    subscriptions: usize,
    claim_sizes: Vec<usize>,
    /// Quick and slow endpoints of the scale figures.
    scale: (usize, usize),
    /// The hanging endpoint's backlog beside a healthy customer (SQLite).
    backlog: usize,
    /// Endpoints with work for the memory store's claim-cost figure.
    claim_endpoints: usize,
    figures: Figures,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Figures {
    All,
    /// Only the baseline and the end-to-end figures.
    EndToEnd,
    /// Only the scale figures.
    Scale,
    /// Only the publish figures: JSON text and schema checks, in process.
    Publish,
}

impl Options {
    /// The dispatcher's workers: its default for the store (which the
    /// baseline matches) unless `--concurrency` is given.
    fn workers(&self) -> usize {
        let default = if self.store == "memory" { DEFAULT_CONCURRENCY } else { DEFAULT_CONCURRENCY_BATCHING };
        self.concurrency.unwrap_or(default)
    }

    /// The dispatcher, with the defaults but for what the options override.
    fn dispatcher(&self, webhooks: &Webhooks) -> webhooks_core::DispatcherBuilder {
        let mut builder = webhooks.dispatcher().allow_private_networks(true);
        if let Some(concurrency) = self.concurrency {
            builder = builder.concurrency(concurrency);
        }
        if let Some(per_endpoint) = self.per_endpoint {
            builder = builder.per_endpoint_concurrency(per_endpoint);
        }
        if let Some(slow_requests) = self.slow_requests {
            builder = builder.slow_requests(slow_requests);
        }
        builder
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        store: "memory".into(),
        deliveries: 20_000,
        concurrency: None,
        per_endpoint: None,
        slow_requests: None,
        body_bytes: 512,
        subscriptions: 1,
        claim_sizes: vec![10_000, 1_000_000],
        scale: (4000, 400),
        backlog: 300_000,
        claim_endpoints: 100_000,
        figures: Figures::All,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|_| format!("{flag} needs a whole number"));
        match flag.as_str() {
            "--store" => options.store = value.clone(),
            "--deliveries" => options.deliveries = number()?,
            "--concurrency" => options.concurrency = Some(number()?),
            "--per-endpoint" => options.per_endpoint = Some(number()?),
            "--slow-requests" => options.slow_requests = Some(number()?),
            "--backlog" => options.backlog = number()?,
            "--claim-endpoints" => options.claim_endpoints = number()?,
            "--scale" => {
                let numbers: Vec<usize> = value.split(',').filter_map(|n| n.trim().parse().ok()).collect();
                match numbers[..] {
                    [quick, slow] if quick > 0 => options.scale = (quick, slow),
                    _ => return Err("--scale takes QUICK,SLOW endpoint counts, e.g. 4000,400".into()),
                }
            }
            "--body-bytes" => options.body_bytes = number()?,
            "--subscriptions" => options.subscriptions = number()?,
            "--figures" => {
                options.figures = match value.as_str() {
                    "all" => Figures::All,
                    "end-to-end" => Figures::EndToEnd,
                    "scale" => Figures::Scale,
                    "publish" => Figures::Publish,
                    _ => return Err("--figures takes all, end-to-end, scale or publish".into()),
                }
            }
            "--claim-pending" => {
                options.claim_sizes = value
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .map_err(|_| "--claim-pending needs whole numbers, e.g. 10000,1000000")
                    })
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.deliveries == 0
        || options.concurrency == Some(0)
        || options.per_endpoint == Some(0)
        || options.subscriptions == 0
    {
        return Err(
            "--deliveries, --concurrency, --per-endpoint and --subscriptions must be at least 1".into()
        );
    }
    Ok(options)
}

/// The receiver: 204 to everything, body read and discarded. Reports each
/// request's arrival on `arrivals` when one is given.
async fn start_receiver(arrivals: Option<mpsc::UnboundedSender<Instant>>) -> std::io::Result<SocketAddr> {
    start_receiver_after(arrivals, Duration::ZERO).await
}

/// The receiver, answering each request `delay` after reading it.
async fn start_receiver_after(
    arrivals: Option<mpsc::UnboundedSender<Instant>>,
    delay: Duration,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        if let Some(arrivals) = &arrivals {
                            let _ = arrivals.send(Instant::now());
                        }
                        let _ = request.into_body().collect().await;
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let mut response = Response::new(Empty::<Bytes>::new());
                        *response.status_mut() = StatusCode::NO_CONTENT;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(address)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

/// Event data that makes the rendered body `bytes` long (or a little over).
fn data_of(bytes: usize) -> Value {
    let overhead =
        r#"{"event":"iq.status_updated","timestamp":"2026-03-02T14:30:00Z","data":{"pad":""}}"#.len();
    json!({ "pad": "x".repeat(bytes.saturating_sub(overhead)) })
}

/// The bare `reqwest` loop: the physical limit of this machine for this
/// receiver, concurrency and body.
async fn baseline(url: &str, options: &Options, body: Bytes) -> f64 {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..options.workers())
        .map(|_| {
            let (client, next, body, url) = (client.clone(), Arc::clone(&next), body.clone(), url.to_owned());
            let total = options.deliveries;
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("the local receiver answers");
                    let _ = response.bytes().await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    options.deliveries as f64 / started.elapsed().as_secs_f64()
}

fn facade(store: Arc<dyn Store>) -> Webhooks {
    Webhooks::builder()
        .shared_store(store)
        .preset(Preset::deepsmith().with_url_rule(UrlRule::allow_http()))
        .build()
        .expect("valid settings")
}

fn is_postgres(spec: &str) -> bool {
    spec.starts_with("postgres://") || spec.starts_with("postgresql://")
}

/// A store opened fresh, with the database it lives in when that is one of
/// its own (dropped with it).
struct Opened {
    store: Arc<dyn Store>,
    database: Option<TestDatabase>,
}

/// Opens the store `spec` names, fresh: a SQLite file is recreated, and
/// on a PostgreSQL server a new database is created.
async fn open_store(spec: &str) -> Result<Opened, String> {
    if is_postgres(spec) {
        let database = TestDatabase::create_on(spec).await.map_err(|e| e.to_string())?;
        let store = database.store().await.map_err(|e| e.to_string())?;
        return Ok(Opened { store: Arc::new(store), database: Some(database) });
    }
    match spec.split_once(':') {
        None if spec == "memory" => Ok(Opened { store: Arc::new(MemoryStore::new()), database: None }),
        Some(("sqlite", path)) if !path.is_empty() => {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            let store = SqliteStore::open(path).await.map_err(|e| e.to_string())?;
            Ok(Opened { store: Arc::new(store), database: None })
        }
        _ => Err(format!("unsupported --store {spec:?}: use memory, sqlite:PATH or postgres://URL")),
    }
}

/// A fresh store of the same kind as `spec`, in `dir` for SQLite.
async fn fresh_store(spec: &str, dir: &std::path::Path, name: &str) -> Result<Opened, String> {
    if spec == "memory" || is_postgres(spec) {
        return open_store(spec).await;
    }
    open_store(&format!("sqlite:{}", dir.join(name).display())).await
}

/// CPU time used so far, in seconds: by this process, by the PostgreSQL
/// server's processes, and by the whole machine (busy, all cores).
#[derive(Clone, Copy, Default)]
struct CpuTimes {
    bench: f64,
    postgres: f64,
    machine: f64,
}

/// Clock ticks per second of `/proc`'s counters (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

fn stat_ticks(stat: &str) -> Option<(String, f64)> {
    // The command name is in parentheses and may hold spaces.
    let (head, tail) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = tail.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after `)`.
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks))
}

fn cpu_times() -> CpuTimes {
    let mut times = CpuTimes::default();
    if let Some((_, ticks)) = std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(stat_ticks)
    {
        times.bench = ticks / TICKS;
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((name, ticks)) = stat_ticks(&stat)
            && name == "postgres"
        {
            times.postgres += ticks / TICKS;
        }
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/stat")
        && let Some(line) = stat.lines().next()
    {
        // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
        let numbers: Vec<f64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
        let busy: f64 =
            numbers.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).take(8).map(|(_, n)| n).sum();
        times.machine = busy / TICKS;
    }
    times
}

/// Cores kept busy between `before` and now, over `seconds` of wall time.
fn cores_since(before: CpuTimes, seconds: f64) -> Value {
    let after = cpu_times();
    json!({
        "bench_process": (after.bench - before.bench) / seconds,
        "postgres_server": (after.postgres - before.postgres) / seconds,
        "whole_machine": (after.machine - before.machine) / seconds,
    })
}

/// Publishes `deliveries / subscriptions` events through the library and
/// waits for every delivery to be acknowledged and recorded. With several
/// stores (instances on one database) each has its own facade and
/// dispatcher, and the bursts are published through them in turn.
async fn end_to_end(url: &str, options: &Options, stores: Vec<Arc<dyn Store>>) -> Value {
    let instances: Vec<Webhooks> = stores.into_iter().map(facade).collect();
    for _ in 0..options.subscriptions {
        instances[0]
            .subscribe(
                Subscription::builder(url).event_type("iq.status_updated").secret("bench-signing-secret"),
            )
            .await
            .expect("subscribe");
    }
    let published_at: Arc<Mutex<HashMap<DeliveryId, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new((AtomicUsize::new(0), Notify::new()));
    let total = options.deliveries / options.subscriptions * options.subscriptions;
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    for webhooks in &instances {
        let dispatcher = options
            .dispatcher(webhooks)
            .on_outcome({
                let (published_at, latencies, done) =
                    (Arc::clone(&published_at), Arc::clone(&latencies), Arc::clone(&done));
                move |outcome| {
                    let now = Instant::now();
                    let start = published_at.lock().expect("lock").get(&outcome.delivery_id).copied();
                    if let Some(start) = start {
                        latencies.lock().expect("lock").push(now - start);
                    }
                    // The run's last outcome wakes the bench, not every one.
                    if done.0.fetch_add(1, Ordering::Relaxed) + 1 >= total {
                        done.1.notify_one();
                    }
                }
            })
            .build()
            .expect("dispatcher");
        running.push(tokio::spawn(dispatcher.run(shutdown.clone())));
    }

    let events = total / options.subscriptions;
    let data = data_of(options.body_bytes);
    let cpu = cpu_times();
    let started = Instant::now();
    // Bursts of 100, as a busy host publishes: one store step each.
    let mut left = events;
    let mut turn = 0;
    while left > 0 {
        let burst = left.min(100);
        left -= burst;
        let at = Instant::now();
        let batch = (0..burst).map(|_| ("iq.status_updated", data.clone()));
        let published = instances[turn % instances.len()].publish_many(batch).await.expect("publish");
        turn += 1;
        let mut map = published_at.lock().expect("lock");
        for id in published.into_iter().flat_map(|p| p.deliveries) {
            map.insert(id, at);
        }
    }
    while done.0.load(Ordering::Relaxed) < total {
        let _ = tokio::time::timeout(Duration::from_millis(100), done.1.notified()).await;
    }
    let elapsed = started.elapsed();
    let cores = cores_since(cpu, elapsed.as_secs_f64());
    shutdown.cancel();
    for dispatcher in running {
        dispatcher.await.expect("dispatcher stops");
    }

    let mut latencies = std::mem::take(&mut *latencies.lock().expect("lock"));
    latencies.sort();
    json!({
        "deliveries": total,
        "instances": instances.len(),
        "seconds": elapsed.as_secs_f64(),
        "deliveries_per_sec": total as f64 / elapsed.as_secs_f64(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "cores_busy": cores,
    })
}

/// End to end on a fresh PostgreSQL database shared by `instances` stores,
/// each its own pool, facade and dispatcher.
async fn end_to_end_postgres(url: &str, options: &Options, instances: usize) -> Result<Value, String> {
    let database = TestDatabase::create_on(&options.store).await.map_err(|e| e.to_string())?;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..instances {
        stores.push(Arc::new(database.store().await.map_err(|e| e.to_string())?));
    }
    let figure = end_to_end(url, options, stores).await;
    drop(database);
    Ok(figure)
}

/// Events accepted per second, one at a time, in batches of 100 and from 64
/// tasks at once; on SQLite beside the same rows written with raw `rusqlite`.
async fn publish_rate(options: &Options, dir: &std::path::Path) -> Result<Value, String> {
    let count = options.deliveries.min(20_000) / 100 * 100;
    let body = Bytes::from(vec![b'x'; options.body_bytes]);
    let mut rates = serde_json::Map::new();
    for batch in [1, 100] {
        let Opened { store, database: _database } =
            fresh_store(&options.store, dir, &format!("publish-{batch}.db")).await?;
        subscribe_nowhere(&store, options.subscriptions).await?;
        let started = Instant::now();
        for _ in 0..count / batch {
            let events: Vec<_> = (0..batch).map(|_| (event(), body.clone())).collect();
            if batch == 1 {
                store.publish(&events[0].0, body.clone()).await.map_err(|e| e.to_string())?;
            } else {
                store.publish_many(&events).await.map_err(|e| e.to_string())?;
            }
        }
        let name = if batch == 1 { "single_per_sec" } else { "batch_per_sec" };
        rates.insert(name.into(), json!(count as f64 / started.elapsed().as_secs_f64()));
    }
    let Opened { store, database: _database } =
        fresh_store(&options.store, dir, "publish-concurrent.db").await?;
    subscribe_nowhere(&store, options.subscriptions).await?;
    let concurrent = publish_concurrently(store, count, &body).await?;
    rates.insert("concurrent_64_per_sec".into(), json!(concurrent));
    if options.store.starts_with("sqlite:") {
        let raw = raw_sqlite_batches(dir, count, options.subscriptions, &body).await?;
        let batch = rates["batch_per_sec"].as_f64().unwrap_or(0.0);
        rates.insert("raw_rusqlite_batch_per_sec".into(), json!(raw));
        rates.insert("batch_ratio_to_raw".into(), json!(batch / raw));
        rates.insert("concurrent_64_ratio_to_raw".into(), json!(concurrent / raw));
    }
    rates.insert("events".into(), json!(count));
    Ok(Value::Object(rates))
}

/// Events accepted per second when 64 tasks each publish single events, each
/// call awaiting its own event's durability, as request handlers do.
async fn publish_concurrently(store: Arc<dyn Store>, count: usize, body: &Bytes) -> Result<f64, String> {
    const TASKS: usize = 64;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, next, body) = (Arc::clone(&store), Arc::clone(&next), body.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    store.publish(&event(), body.clone()).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Subscribes `count` endpoints that are never sent to.
async fn subscribe_nowhere(
    store: &Arc<dyn Store>,
    count: usize,
) -> Result<Vec<webhooks_core::SubscriptionId>, String> {
    let webhooks = facade(Arc::clone(store));
    let mut ids = Vec::new();
    for n in 0..count {
        let new = Subscription::builder(format!("http://127.0.0.1:9/{n}")).event_type("iq.status_updated");
        ids.push(webhooks.subscribe(new).await.map_err(|e| e.to_string())?.id);
    }
    Ok(ids)
}

/// The baseline of a SQLite publish: the very rows the store writes (an
/// event with its body, a delivery per subscription), with plain `rusqlite`
/// in transactions of 100 events, under the same durability settings.
async fn raw_sqlite_batches(
    dir: &std::path::Path,
    count: usize,
    subscriptions: usize,
    body: &Bytes,
) -> Result<f64, String> {
    let path = dir.join("raw.db");
    // The store creates the schema and the subscriptions, then steps aside.
    let subscribers = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.map_err(|e| e.to_string())?);
        subscribe_nowhere(&store, subscriptions).await?
    };
    let body = body.clone();
    tokio::task::spawn_blocking(move || -> rusqlite::Result<f64> {
        let mut db = rusqlite::Connection::open(&path)?;
        db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        let started = Instant::now();
        for _ in 0..count / 100 {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut insert_event =
                    tx.prepare_cached("INSERT INTO events (id, name, occurred_at, body) VALUES (?1, ?2, ?3, ?4)")?;
                let mut insert_delivery = tx.prepare_cached(
                    "INSERT INTO deliveries (id, event_seq, subscription_id, state, attempts, next_attempt_at) \
                     VALUES (?1, ?2, ?3, 'pending', 0, ?4)",
                )?;
                for _ in 0..100 {
                    let now = chrono::Utc::now().timestamp_micros();
                    insert_event.execute(rusqlite::params![uuid::Uuid::now_v7(), "iq.status_updated", now, &body[..]])?;
                    let seq = tx.last_insert_rowid();
                    for subscriber in &subscribers {
                        insert_delivery.execute(rusqlite::params![uuid::Uuid::now_v7(), seq, subscriber.as_uuid(), now])?;
                    }
                }
            }
            tx.commit()?;
        }
        Ok(count as f64 / started.elapsed().as_secs_f64())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

/// How long claiming 64 due deliveries takes with `pending` in the queue
/// (SQLite; the median of 50 claims, each released again).
async fn claim_cost(dir: &std::path::Path, pending: usize) -> Result<Value, String> {
    let Opened { store, .. } = fresh_store("sqlite:", dir, &format!("claim-{pending}.db")).await?;
    subscribe_nowhere(&store, 1).await?;
    let body = Bytes::from_static(b"{}");
    let mut left = pending;
    while left > 0 {
        let batch: Vec<_> = (0..left.min(10_000)).map(|_| (event(), body.clone())).collect();
        left -= batch.len();
        store.publish_many(&batch).await.map_err(|e| e.to_string())?;
    }
    Ok(json!({ "pending": pending, "claim_64_p50_ms": median_claim_ms(store.as_ref(), 64, &[]).await? }))
}

/// The median time of 50 claims of up to `limit` due deliveries passing
/// over `skip`, each released again.
async fn median_claim_ms(
    store: &dyn Store,
    limit: usize,
    skip: &[webhooks_core::SubscriptionId],
) -> Result<f64, String> {
    let mut samples = Vec::new();
    for _ in 0..50 {
        let now = chrono::Utc::now();
        let started = Instant::now();
        let claims = store
            .claim_due(&ClaimRequest { now, limit, lease_until: now + chrono::Duration::seconds(60), skip })
            .await
            .map_err(|e| e.to_string())?;
        samples.push(started.elapsed());
        let ids: Vec<DeliveryId> = claims.iter().map(|c| c.delivery.id).collect();
        store.release(&ids, now).await.map_err(|e| e.to_string())?;
    }
    samples.sort();
    Ok(percentile(&samples, 0.5))
}

fn event() -> Event {
    Event::new("iq.status_updated", json!({}), chrono::Utc::now())
        .with_audience(Audience::Owner(Owner::default()))
}

/// Counts the heap bytes in use, to measure what a pending delivery costs;
/// only while that figure is measured, so the other figures do not pay for
/// a counter every thread writes on every allocation.
struct Counting;

static HEAP_IN_USE: AtomicUsize = AtomicUsize::new(0);
static COUNTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

// SAFETY: every call is passed to the system allocator unchanged; only a
// counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: the caller's layout goes to the system allocator as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            HEAP_IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes each pending delivery costs the memory store: its body, its
/// record and its place in every index.
/// What publishing JSON text the host already holds costs, checked and
/// rendered into a body (`Webhooks::prepare`), as text (`Publish::json`,
/// copied byte for byte) against the way there is without it: parsed into a
/// `Value` and serialized again (`Publish::new`). Events of about
/// `body_bytes` with numbers, strings and nesting, as an order would be.
fn publish_text(body_bytes: usize) -> Value {
    const EVENTS: usize = 20_000;
    let webhooks = facade(Arc::new(MemoryStore::new()));
    let item = r#"{"sku":"SKU-000123","name":"A thing with a name","quantity":3,"unit_price":1299,"tags":["a","b"]}"#;
    let items = vec![item; (body_bytes / item.len()).max(1)].join(",");
    let text =
        format!(r#"{{"order_id":"o-8f3a2c","total":123456789012,"currency":"EUR","items":[{items}]}}"#);
    let rate = |make: &dyn Fn() -> Publish| {
        let started = Instant::now();
        for _ in 0..EVENTS {
            webhooks.prepare(make()).expect("prepares");
        }
        EVENTS as f64 / started.elapsed().as_secs_f64()
    };
    let as_value = rate(&|| {
        let parsed: Value = serde_json::from_str(&text).expect("JSON");
        Publish::new("iq.status_updated", parsed)
    });
    let as_text = rate(&|| Publish::json("iq.status_updated", text.as_str()));
    json!({
        "data_bytes": text.len(),
        "events_per_sec_as_text": as_text,
        "events_per_sec_parsed_to_value": as_value,
        "ratio_text_to_value": as_text / as_value,
    })
}

/// What checking data against its event type's JSON Schema costs at
/// publish: the same order events prepared (checked and rendered) by a
/// facade whose catalogue declares `order.created` with a schema of the
/// order's shape, against one that declares it without. As a value, and as
/// text (which the check parses first).
fn publish_schema(body_bytes: usize) -> Value {
    const EVENTS: usize = 20_000;
    let item_schema = json!({
        "type": "object",
        "required": ["sku", "quantity", "unit_price"],
        "properties": {
            "sku": {"type": "string", "pattern": "^SKU-[0-9]+$"},
            "name": {"type": "string", "maxLength": 200},
            "quantity": {"type": "integer", "minimum": 1},
            "unit_price": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}}
        }
    });
    let schema = json!({
        "type": "object",
        "required": ["order_id", "total", "currency", "items"],
        "properties": {
            "order_id": {"type": "string"},
            "total": {"type": "integer"},
            "currency": {"enum": ["EUR", "USD", "GBP"]},
            "items": {"type": "array", "items": item_schema}
        }
    });
    let facade_with = |event_type: EventType| {
        let catalogue = Catalogue::of([event_type]).expect("valid catalogue");
        Webhooks::builder()
            .store(MemoryStore::new())
            .preset(Preset::neutral().with_catalogue(catalogue))
            .build()
            .expect("valid settings")
    };
    let checked = facade_with(EventType::new("order.created").with_schema(schema));
    let unchecked = facade_with(EventType::new("order.created"));
    let item = r#"{"sku":"SKU-000123","name":"A thing with a name","quantity":3,"unit_price":1299,"tags":["a","b"]}"#;
    let items = vec![item; (body_bytes / item.len()).max(1)].join(",");
    let text =
        format!(r#"{{"order_id":"o-8f3a2c","total":123456789012,"currency":"EUR","items":[{items}]}}"#);
    let value: Value = serde_json::from_str(&text).expect("JSON");
    let rate = |webhooks: &Webhooks, make: &dyn Fn() -> Publish| {
        let started = Instant::now();
        for _ in 0..EVENTS {
            webhooks.prepare(make()).expect("prepares");
        }
        EVENTS as f64 / started.elapsed().as_secs_f64()
    };
    let as_value = || Publish::from(("order.created", value.clone()));
    let as_text = || Publish::json("order.created", text.as_str());
    let (value_checked, value_unchecked) = (rate(&checked, &as_value), rate(&unchecked, &as_value));
    let (text_checked, text_unchecked) = (rate(&checked, &as_text), rate(&unchecked, &as_text));
    json!({
        "data_bytes": text.len(),
        "events_per_sec_value_checked": value_checked,
        "events_per_sec_value_unchecked": value_unchecked,
        "ratio_value_checked_to_unchecked": value_checked / value_unchecked,
        "events_per_sec_text_checked": text_checked,
        "events_per_sec_text_unchecked": text_unchecked,
        "ratio_text_checked_to_unchecked": text_checked / text_unchecked,
        "micros_added_per_event_value": 1e6 / value_checked - 1e6 / value_unchecked,
        "micros_added_per_event_text": 1e6 / text_checked - 1e6 / text_unchecked,
    })
}

async fn memory_per_delivery(body_bytes: usize) -> Value {
    const COUNT: usize = 100_000;
    let store = MemoryStore::new();
    let webhooks = facade(Arc::new(store.clone()));
    webhooks
        .subscribe(Subscription::builder("http://127.0.0.1:9/").event_type("iq.status_updated"))
        .await
        .expect("subscribe");
    COUNTING.store(true, Ordering::Relaxed);
    let before = HEAP_IN_USE.load(Ordering::Relaxed);
    for _ in 0..COUNT {
        // A body of its own per event, as real events have.
        let body = Bytes::from(vec![b'x'; body_bytes]);
        store.publish(&event(), body).await.expect("publish");
    }
    // Wrapping: a free in the window of memory allocated before it counts
    // down from where the counter stood.
    let per = HEAP_IN_USE.load(Ordering::Relaxed).wrapping_sub(before) as f64 / COUNT as f64;
    COUNTING.store(false, Ordering::Relaxed);
    json!({ "pending": COUNT, "heap_bytes_per_pending": per, "overhead_bytes": per - body_bytes as f64 })
}

/// Publish to the first attempt's arrival, with the dispatcher idle.
async fn idle_latency() -> Value {
    const SAMPLES: usize = 200;
    let (arrivals_in, mut arrivals) = mpsc::unbounded_channel();
    let address = start_receiver(Some(arrivals_in)).await.expect("receiver");
    let webhooks = facade(Arc::new(MemoryStore::new()));
    webhooks
        .subscribe(Subscription::builder(format!("http://{address}/")).event_type("iq.status_updated"))
        .await
        .expect("subscribe");
    let shutdown = CancellationToken::new();
    let dispatcher = webhooks.dispatcher().allow_private_networks(true).build().expect("dispatcher");
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        tokio::time::sleep(Duration::from_millis(5)).await; // let it go idle
        let start = Instant::now();
        webhooks.publish("iq.status_updated", json!({})).await.expect("publish");
        let arrived = arrivals.recv().await.expect("arrival");
        samples.push(arrived - start);
    }
    shutdown.cancel();
    let _ = running.await;
    samples.sort();
    json!({ "samples": SAMPLES, "p50_ms": percentile(&samples, 0.5), "p99_ms": percentile(&samples, 0.99) })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--serve") {
        return serve().await;
    }
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let address = start_receiver(None).await.expect("receiver");
    let url = format!("http://{address}/");
    let mut report = json!({
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "load_average": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        },
        "options": {
            "store": if is_postgres(&options.store) { "postgres" } else { options.store.as_str() },
            "deliveries": options.deliveries, "concurrency": options.workers(),
            "per_endpoint": options.per_endpoint.map_or(json!("default"), |p| json!(p)),
            "body_bytes": options.body_bytes, "subscriptions": options.subscriptions,
        },
    });
    if options.figures == Figures::Publish {
        report["publish_text"] = publish_text(options.body_bytes);
        report["publish_schema"] = publish_schema(options.body_bytes);
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
        return std::process::ExitCode::SUCCESS;
    }
    if options.figures != Figures::Scale {
        let Opened { store, database } = match open_store(&options.store).await {
            Ok(opened) => opened,
            Err(message) => {
                eprintln!("error: {message}");
                return std::process::ExitCode::from(2);
            }
        };
        // The baseline sends the very body the library renders for its events.
        let sample = event().with_data(data_of(options.body_bytes));
        let body = JsonEnvelope.render(&sample).expect("renders");
        let baseline = baseline(&url, &options, body).await;
        let mut end_to_end_figure = end_to_end(&url, &options, vec![store]).await;
        drop(database);
        if !is_postgres(&options.store)
            && let Some(cores) = end_to_end_figure["cores_busy"].as_object_mut()
        {
            // Only the server's live processes are counted: off PostgreSQL the
            // figure says nothing (a test server's backends come and go).
            cores.remove("postgres_server");
        }
        let ratio = end_to_end_figure["deliveries_per_sec"].as_f64().unwrap_or(0.0) / baseline;
        report["baseline"] = json!({ "requests_per_sec": baseline });
        report["end_to_end"] = end_to_end_figure;
        report["ratio_to_baseline"] = json!(ratio);
        if is_postgres(&options.store) {
            let three = end_to_end_postgres(&url, &options, 3)
                .await
                .unwrap_or_else(|message| json!({ "error": message }));
            let three_ratio = three["deliveries_per_sec"].as_f64().unwrap_or(0.0) / baseline;
            report["end_to_end_3_instances"] = three;
            report["ratio_3_instances_to_baseline"] = json!(three_ratio);
        }
    }
    if options.figures == Figures::All {
        report["publish"] =
            publish_rate(&options, dir.path()).await.unwrap_or_else(|message| json!({ "error": message }));
        let mut claim = Vec::new();
        for pending in &options.claim_sizes {
            claim.push(
                claim_cost(dir.path(), *pending).await.unwrap_or_else(|message| json!({ "error": message })),
            );
        }
        report["claim_sqlite"] = json!(claim);
        report["publish_text"] = publish_text(options.body_bytes);
        report["publish_schema"] = publish_schema(options.body_bytes);
        report["memory"] = memory_per_delivery(options.body_bytes).await;
        report["idle_latency"] = idle_latency().await;
        let server = if is_postgres(&options.store) {
            Some(options.store.clone())
        } else {
            std::env::var(webhooks_postgres_tests::URL_VARIABLE).ok().filter(|url| !url.is_empty())
        };
        report["cross_instance_postgres"] = cross_instance_postgres(server).await;
    }
    if !matches!(options.figures, Figures::EndToEnd | Figures::Publish) {
        report["scale"] =
            scale(&options, dir.path(), &url).await.unwrap_or_else(|message| json!({ "error": message }));
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    std::process::ExitCode::SUCCESS
}

/// The receiver alone, for measuring a program from outside: prints its URL
/// and serves until killed.
async fn serve() -> std::process::ExitCode {
    match start_receiver(None).await {
        Ok(address) => {
            println!("http://{address}/");
            std::future::pending::<()>().await;
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Cross-instance publish to first attempt on PostgreSQL: two instances
/// (two pools, facades) on a fresh database. Instance B runs a dispatcher,
/// idle; instance A publishes one event at a time and the time is taken
/// from A's call to the receiver seeing B's request. The reference is the
/// same publish made through B's own facade, which wakes its dispatcher in
/// process.
async fn cross_instance_postgres(server: Option<String>) -> Value {
    const SAMPLES: usize = 200;
    let Some(server) = server else {
        return json!({ "skipped": "neither --store postgres://URL nor WEBHOOKS_POSTGRES_URL is given" });
    };
    match cross_instance_on(&server, SAMPLES).await {
        Ok(figure) => figure,
        Err(message) => json!({ "error": message }),
    }
}

async fn cross_instance_on(server: &str, samples: usize) -> Result<Value, String> {
    let database = TestDatabase::create_on(server).await.map_err(|e| e.to_string())?;
    let publisher = database.store().await.map_err(|e| e.to_string())?;
    let pool = publisher.pool().clone();
    let a = facade(Arc::new(publisher));
    let b = facade(Arc::new(database.store().await.map_err(|e| e.to_string())?));
    let (arrivals_in, mut arrivals) = mpsc::unbounded_channel();
    let address = start_receiver(Some(arrivals_in)).await.map_err(|e| e.to_string())?;
    a.subscribe(Subscription::builder(format!("http://{address}/")).event_type("iq.status_updated"))
        .await
        .map_err(|e| e.to_string())?;

    let shutdown = CancellationToken::new();
    let dispatcher = b.dispatcher().allow_private_networks(true).build().map_err(|e| e.to_string())?;
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    // The listener is up once its backend shows in pg_stat_activity.
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    loop {
        let listening: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        if listening > 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err("the listener did not start in 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(client);

    let cross = publish_then_arrive(&a, &mut arrivals, samples).await?;
    let same = publish_then_arrive(&b, &mut arrivals, samples).await?;
    shutdown.cancel();
    running.await.map_err(|e| e.to_string())?;
    drop((a, b));
    drop(database);
    Ok(json!({
        "samples": samples,
        "p50_ms": percentile(&cross, 0.5),
        "p99_ms": percentile(&cross, 0.99),
        "same_instance_p50_ms": percentile(&same, 0.5),
        "same_instance_p99_ms": percentile(&same, 0.99),
    }))
}

/// `samples` times: publishes one event through `instance` once the
/// dispatcher has gone idle, and waits for its request at the receiver;
/// returns the sorted publish-to-arrival times.
async fn publish_then_arrive(
    instance: &Webhooks,
    arrivals: &mut mpsc::UnboundedReceiver<Instant>,
    samples: usize,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        // Room for the last attempt to be recorded and the claimer to idle.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = Instant::now();
        instance.publish("iq.status_updated", json!({})).await.map_err(|e| e.to_string())?;
        let arrived = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .map_err(|_| "no attempt arrived within 10 s")?
            .ok_or("the receiver stopped")?;
        latencies.push(arrived - start);
    }
    latencies.sort();
    Ok(latencies)
}

/// Events each slow endpoint has, published before the quick ones.
const SLOW_EVENTS: usize = 10;

/// The scale figures, each a ratio of two runs of the same total on fresh
/// stores of the options' kind.
async fn scale(options: &Options, dir: &std::path::Path, quick_url: &str) -> Result<Value, String> {
    let (quick, slow) = options.scale;
    let slow_url = format!(
        "http://{}/",
        start_receiver_after(None, Duration::from_secs(3)).await.map_err(|e| e.to_string())?
    );
    let total = options.deliveries / quick * quick;
    let run = |name: &'static str, endpoints: usize, slow: usize, per_endpoint: Option<usize>| {
        let slow_url = slow_url.clone();
        async move {
            let store = fresh_store(&options.store, dir, name).await?;
            let options = Options { per_endpoint: per_endpoint.or(options.per_endpoint), ..options.clone() };
            scale_run(store, &options, quick_url, &slow_url, endpoints, slow, total).await
        }
    };
    let one = run("scale-one.db", 1, 0, None).await?;
    let many = run("scale-many.db", quick, 0, None).await?;
    let beside_slow = run("scale-slow.db", quick, slow, None).await?;
    let full_share = run("scale-full-share.db", 1, 0, Some(options.workers())).await?;
    let rate = |figure: &Value| figure["deliveries_per_sec"].as_f64().unwrap_or(0.0);
    let hanging_url = format!(
        "http://{}/",
        start_receiver_after(None, Duration::from_secs(3600)).await.map_err(|e| e.to_string())?
    );
    let mut after_restart = Vec::new();
    for hanging in [50, 200] {
        let store =
            fresh_store(&options.store, dir, if hanging == 50 { "restart-50.db" } else { "restart-200.db" })
                .await?;
        after_restart.push(healthy_after_restart(store, quick_url, &hanging_url, hanging).await?);
    }
    let no_backlog = healthy_beside_backlog(dir, quick_url, &hanging_url, 0, "backlog-0.db").await?;
    let backlog = healthy_beside_backlog(dir, quick_url, &hanging_url, options.backlog, "backlog.db").await?;
    let seconds = |figure: &Value| figure["seconds"].as_f64().unwrap_or(f64::NAN);
    let claim_10 = claim_among_endpoints(10).await?;
    let claim_many = claim_among_endpoints(options.claim_endpoints).await?;
    let claim_ms = |figure: &Value| figure["claim_4_p50_ms"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "sqlite_healthy_no_backlog": no_backlog,
        "sqlite_healthy_beside_backlog": backlog,
        "ratio_time_beside_backlog_to_none": seconds(&backlog) / seconds(&no_backlog),
        "memory_claim_10_endpoints": claim_10,
        "memory_claim_many_endpoints": claim_many,
        "ratio_claim_many_to_10_endpoints": claim_ms(&claim_many) / claim_ms(&claim_10),
        "one_endpoint": one,
        "endpoints": many,
        "endpoints_beside_slow": beside_slow,
        "one_endpoint_full_share": full_share,
        "ratio_endpoints_to_one": rate(&many) / rate(&one),
        "ratio_beside_slow_to_alone": rate(&beside_slow) / rate(&many),
        "ratio_defaults_to_full_share": rate(&one) / rate(&full_share),
        "healthy_beside_hanging_after_restart": after_restart,
    }))
}

/// `total` deliveries to `quick` endpoints (one owner each), published in
/// bursts of 100 while the dispatcher runs, beside `slow` endpoints on the
/// slow receiver with [`SLOW_EVENTS`] each published first (so due first).
/// The figure is the quick deliveries' rate; the slow ones are still going
/// when it is taken.
async fn scale_run(
    opened: Opened,
    options: &Options,
    quick_url: &str,
    slow_url: &str,
    quick: usize,
    slow: usize,
    total: usize,
) -> Result<Value, String> {
    let Opened { store, database } = opened;
    let webhooks = facade(store);
    let subscribe = |url: &str, owner: String| {
        webhooks.subscribe(
            Subscription::builder(url)
                .owner(owner)
                .event_type("iq.status_updated")
                .secret("bench-signing-secret"),
        )
    };
    let mut quick_ids = std::collections::HashSet::new();
    for n in 0..quick {
        quick_ids.insert(subscribe(quick_url, format!("quick-{n}")).await.map_err(|e| e.to_string())?.id);
    }
    for n in 0..slow {
        subscribe(slow_url, format!("slow-{n}")).await.map_err(|e| e.to_string())?;
    }
    let data = data_of(options.body_bytes);
    let publish = |owners: Vec<String>| {
        webhooks.publish_many(
            owners.into_iter().map(|owner| Publish::new("iq.status_updated", &data).owner(owner)),
        )
    };
    let slow_owners: Vec<String> =
        (0..slow * SLOW_EVENTS).map(|n| format!("slow-{}", n % slow.max(1))).collect();
    for burst in slow_owners.chunks(100) {
        publish(burst.to_vec()).await.map_err(|e| e.to_string())?;
    }
    let done = Arc::new((AtomicUsize::new(0), Notify::new()));
    let dispatcher = options
        .dispatcher(&webhooks)
        .on_outcome({
            let done = Arc::clone(&done);
            move |outcome| {
                if quick_ids.contains(&outcome.subscription_id)
                    && done.0.fetch_add(1, Ordering::Relaxed) + 1 >= total
                {
                    done.1.notify_one();
                }
            }
        })
        .build()
        .map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    let cpu = cpu_times();
    let started = Instant::now();
    let quick_owners: Vec<String> = (0..total).map(|n| format!("quick-{}", n % quick)).collect();
    for burst in quick_owners.chunks(100) {
        publish(burst.to_vec()).await.map_err(|e| e.to_string())?;
    }
    let published_in = started.elapsed();
    // Bounded: a dispatcher that starves the quick endpoints is reported,
    // not waited for.
    let give_up = Instant::now() + Duration::from_secs(120);
    while done.0.load(Ordering::Relaxed) < total && Instant::now() < give_up {
        let _ = tokio::time::timeout(Duration::from_millis(100), done.1.notified()).await;
    }
    let elapsed = started.elapsed();
    let delivered = done.0.load(Ordering::Relaxed).min(total);
    let cores = cores_since(cpu, elapsed.as_secs_f64());
    // Slow requests would hold a graceful stop for seconds.
    shutdown.cancel();
    running.abort();
    drop(database);
    Ok(json!({
        "quick_endpoints": quick,
        "slow_endpoints": slow,
        "deliveries": total,
        "seconds": elapsed.as_secs_f64(),
        "delivered": delivered,
        "deliveries_per_sec": delivered as f64 / elapsed.as_secs_f64(),
        "published_in_seconds": published_in.as_secs_f64(),
        "cores_busy": cores["bench_process"],
    }))
}

/// A healthy endpoint's 200 deliveries beside `hanging` endpoints that
/// accept and never answer, each with 5 deliveries published first, all
/// pending when a fresh dispatcher starts (none has answered it yet): the
/// healthy deliveries' latency from the start.
async fn healthy_after_restart(
    opened: Opened,
    quick_url: &str,
    hanging_url: &str,
    hanging: usize,
) -> Result<Value, String> {
    const HEALTHY: usize = 200;
    let Opened { store, database } = opened;
    let webhooks = facade(store);
    for n in 0..hanging {
        let owner = format!("hanging-{n}");
        subscribe_owner(&webhooks, hanging_url, &owner).await?;
        publish_for(&webhooks, &owner, 5).await?;
    }
    let healthy = subscribe_owner(&webhooks, quick_url, "healthy").await?;
    publish_for(&webhooks, "healthy", HEALTHY).await?;
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(Notify::new());
    let started = Instant::now();
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .on_outcome({
            let (latencies, done) = (Arc::clone(&latencies), Arc::clone(&done));
            move |outcome| {
                if outcome.subscription_id == healthy.id && outcome.attempt.succeeded() {
                    let mut latencies = latencies.lock().expect("lock");
                    latencies.push(started.elapsed());
                    if latencies.len() == HEALTHY {
                        done.notify_one();
                    }
                }
            }
        })
        .build()
        .map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    // The hanging requests' 15 s timeout bounds the wait.
    let _ = tokio::time::timeout(Duration::from_secs(30), done.notified()).await;
    shutdown.cancel();
    running.abort();
    drop(database);
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("lock"));
    latencies.sort();
    Ok(json!({
        "hanging_endpoints": hanging,
        "healthy_delivered": latencies.len(),
        "p50_ms": percentile(&latencies, 0.5),
        "p99_ms": percentile(&latencies, 0.99),
    }))
}

/// A healthy customer's 1 000 events on SQLite, published once the
/// dispatcher runs, beside another customer's `backlog` deliveries to an
/// endpoint that never answers, all published before: how long until the
/// healthy ones are delivered.
async fn healthy_beside_backlog(
    dir: &std::path::Path,
    quick_url: &str,
    hanging_url: &str,
    backlog: usize,
    name: &str,
) -> Result<Value, String> {
    const HEALTHY: usize = 1_000;
    let Opened { store, .. } = open_store(&format!("sqlite:{}", dir.join(name).display())).await?;
    let webhooks = facade(store);
    subscribe_owner(&webhooks, hanging_url, "stuck").await?;
    let healthy = subscribe_owner(&webhooks, quick_url, "healthy").await?;
    let mut left = backlog;
    while left > 0 {
        let burst = left.min(1_000);
        left -= burst;
        publish_for(&webhooks, "stuck", burst).await?;
    }
    let done = Arc::new((AtomicUsize::new(0), Notify::new()));
    let dispatcher = webhooks
        .dispatcher()
        .allow_private_networks(true)
        .on_outcome({
            let done = Arc::clone(&done);
            move |outcome| {
                if outcome.subscription_id == healthy.id
                    && outcome.attempt.succeeded()
                    && done.0.fetch_add(1, Ordering::Relaxed) + 1 == HEALTHY
                {
                    done.1.notify_one();
                }
            }
        })
        .build()
        .map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    // The hanging endpoint's first requests are out before the healthy
    // customer publishes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for _ in 0..HEALTHY / 100 {
        publish_for(&webhooks, "healthy", 100).await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(120), done.1.notified()).await;
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.abort();
    Ok(json!({
        "backlog": backlog,
        "healthy_delivered": done.0.load(Ordering::Relaxed),
        "seconds": elapsed.as_secs_f64(),
    }))
}

/// How long the memory store takes to claim 4 due deliveries, passing over
/// 4 busy endpoints, when `endpoints` endpoints each have one due (the
/// median of 50 claims, each released again).
async fn claim_among_endpoints(endpoints: usize) -> Result<Value, String> {
    let store = MemoryStore::new();
    let webhooks = facade(Arc::new(store.clone()));
    let mut ids = Vec::with_capacity(endpoints);
    for n in 0..endpoints {
        let subscription = webhooks
            .subscribe(
                Subscription::builder("https://example.com/")
                    .owner(format!("o{n}"))
                    .event_type("iq.status_updated"),
            )
            .await
            .map_err(|e| e.to_string())?;
        ids.push(subscription.id);
    }
    let owners: Vec<String> = (0..endpoints).map(|n| format!("o{n}")).collect();
    for chunk in owners.chunks(1_000) {
        webhooks
            .publish_many(
                chunk.iter().map(|owner| Publish::new("iq.status_updated", json!({})).owner(owner.as_str())),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    let busy: Vec<_> = ids.iter().take(4).copied().collect();
    let claim = median_claim_ms(&store, 4, &busy).await?;
    Ok(json!({ "endpoints": endpoints, "claim_4_p50_ms": claim }))
}

/// Subscribes one endpoint of `owner` at `url` to the bench's event type.
async fn subscribe_owner(webhooks: &Webhooks, url: &str, owner: &str) -> Result<Subscription, String> {
    webhooks
        .subscribe(Subscription::builder(url).owner(owner).event_type("iq.status_updated"))
        .await
        .map_err(|e| e.to_string())
}

/// Publishes `count` empty events for `owner`, in one step.
async fn publish_for(webhooks: &Webhooks, owner: &str, count: usize) -> Result<(), String> {
    webhooks
        .publish_many((0..count).map(|_| Publish::new("iq.status_updated", json!({})).owner(owner)))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
