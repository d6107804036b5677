//! awa doing what one webhook delivery does: sign the body (HMAC-SHA256,
//! Standard Webhooks headers) and POST it through one shared client.
//!
//! ```text
//! awa-send --database-url URL --url RECEIVER --secret S [--events N] [--concurrency N]
//!          [--poll-ms MS] [--deadline-ms MS]
//! ```
//!
//! Creates database `awa_bench_<pid>` on the server at URL, runs awa's
//! migrations there, starts a worker, then feeds it N jobs in COPY batches
//! while it works. The clock runs from the first insert until awa reports
//! every job terminal; the database is dropped at the end. Prints
//! `awa jobs=N seconds=S per_sec=R`. Everything else is awa's default
//! (sqlx's pool of 10 connections, one claimer, claims of up to 512, polls
//! every 200 ms besides LISTEN/NOTIFY wake-ups, a 5-minute job deadline)
//! but `max_workers`: awa's 50 becomes `--concurrency` (256, as `send` has on
//! PostgreSQL).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use awa::{Client, InsertOpts, JobArgs, JobError, JobResult, QueueConfig, QueueStorage, QueueStorageConfig};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

const USAGE: &str = "usage: awa-send --database-url URL --url URL --secret S [--events N] \
[--concurrency N] [--poll-ms MS] [--deadline-ms MS]";
const QUEUE: &str = "webhooks";
/// Jobs per COPY, as a producer batching its events would (awa's own
/// benchmarks use 500).
const INSERT_BATCH: usize = 500;

/// How many jobs awa has finished (completed or failed for good): the
/// terminal part of `QueueStorage::queue_counts` (awa 0.6.9, its branch for
/// trusted counters), summed over the whole database, which has one queue.
/// That method's running and available parts anti-join every claim and
/// scan the backlog: about 5 s for one call after 30 000 jobs, far too dear
/// to poll (it took over half the server's CPU in a run).
const TERMINAL: &str = "
SELECT (
    COALESCE((SELECT sum(GREATEST(COALESCE(lanes.pruned_completed_count, 0), COALESCE(rollups.pruned_completed_count, 0))
                         + COALESCE(rollups.pruned_failed_count, 0))
              FROM (SELECT queue, priority, pruned_completed_count FROM awa.queue_lanes) AS lanes
              FULL JOIN awa.queue_terminal_rollups AS rollups USING (queue, priority)), 0)
    + COALESCE((SELECT sum(live_terminal_count) FROM awa.queue_terminal_live_counts), 0)
    + COALESCE((SELECT sum(terminal_delta) FROM awa.queue_terminal_count_deltas), 0)
    + COALESCE((SELECT sum(completed_count) FROM awa.receipt_completion_batches), 0)
    - (SELECT count(*) FROM awa.receipt_completion_tombstones)
)::bigint";

/// One delivery: the rendered body, as our store keeps it.
#[derive(Serialize, Deserialize, JobArgs)]
struct Deliver {
    body: String,
}

struct Args {
    database_url: String,
    url: String,
    secret: String,
    events: usize,
    concurrency: u32,
    poll_ms: Option<u64>,
    deadline_ms: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        database_url: String::new(),
        url: String::new(),
        secret: String::new(),
        events: 40_000,
        concurrency: 256,
        poll_ms: None,
        deadline_ms: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<u64>().map_err(|_| format!("{flag} needs a whole number"));
        match flag.as_str() {
            "--database-url" => args.database_url = value,
            "--url" => args.url = value,
            "--secret" => args.secret = value,
            "--events" => args.events = number()? as usize,
            "--concurrency" => args.concurrency = number()? as u32,
            "--poll-ms" => args.poll_ms = Some(number()?),
            "--deadline-ms" => args.deadline_ms = Some(number()?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if args.database_url.is_empty() || args.url.is_empty() || args.secret.is_empty() {
        return Err("--database-url, --url and --secret are required".into());
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\n{USAGE}"))?;
    let server = PgConnectOptions::from_str(&args.database_url)?;
    let name = format!("awa_bench_{}", std::process::id());
    let mut admin = server.connect().await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await?;

    let result = run(&args, server.clone().database(&name)).await;

    // WITH (FORCE): a connection awa left behind must not keep the database.
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin).await?;
    admin.close().await?;
    let seconds = result?;
    println!("awa jobs={} seconds={seconds:.2} per_sec={:.0}", args.events, args.events as f64 / seconds);
    Ok(())
}

/// Runs the benchmark on a fresh database; returns the wall seconds.
async fn run(args: &Args, db: PgConnectOptions) -> Result<f64, Box<dyn std::error::Error>> {
    // awa's pool: sqlx's defaults, as in awa's README.
    let pool = PgPool::connect_with(db.clone()).await?;
    awa::migrations::run(&pool).await?;

    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    let key: Arc<[u8]> = args.secret.as_bytes().into();
    let url: Arc<str> = args.url.as_str().into();
    let delivered = Arc::new(AtomicUsize::new(0));

    let mut queue = QueueConfig { max_workers: args.concurrency, ..QueueConfig::default() };
    if let Some(ms) = args.poll_ms {
        queue.poll_interval = Duration::from_millis(ms);
    }
    if let Some(ms) = args.deadline_ms {
        // 0 turns the per-job deadline off, which lets awa take its compact
        // "receipt" claim path (its own benchmarks run that way).
        queue.deadline_duration = Duration::from_millis(ms);
    }
    let client = Client::builder(pool.clone())
        .queue(QUEUE, queue)
        .register::<Deliver, _, _>({
            let delivered = delivered.clone();
            move |job, ctx| {
                let (http, key, url, delivered) = (http.clone(), key.clone(), url.clone(), delivered.clone());
                let id = format!("msg_{}", ctx.job.id);
                async move {
                    let result = deliver(&http, &url, &key, &id, job.body).await;
                    if result.is_ok() {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    result
                }
            }
        })
        .build()?;
    // Installs and activates awa's queue storage on a fresh database.
    client.start().await?;

    // The producer is another process in real life: its own connections,
    // not awa's pool.
    let producer = PgPoolOptions::new().max_connections(2).connect_with(db).await?;
    let store = Arc::new(QueueStorage::new(QueueStorageConfig::default())?);
    if !store.terminal_counter_trusted(&producer).await? {
        return Err("awa does not keep terminal counters on this database: TERMINAL would be wrong".into());
    }
    let total = args.events as i64;
    let started = Instant::now();
    let insert = tokio::spawn({
        let (producer, store) = (producer.clone(), store.clone());
        async move {
            let batch: Vec<_> = (0..INSERT_BATCH).map(|_| Deliver { body: body() }).collect();
            let opts = InsertOpts { queue: QUEUE.into(), ..InsertOpts::default() };
            let mut left = total as usize;
            while left > 0 {
                let n = left.min(INSERT_BATCH);
                let params = batch[..n]
                    .iter()
                    .map(|job| awa::model::insert::params_with(job, opts.clone()))
                    .collect::<Result<Vec<_>, _>>()?;
                // awa's fastest producer path: COPY straight into queue storage.
                store.enqueue_params_copy(&producer, &params).await?;
                left -= n;
            }
            Ok::<_, awa::AwaError>(())
        }
    });

    // Done when awa counts every job terminal, asked every 50 ms.
    let mut insert = Some(insert);
    let mut every = tokio::time::interval(Duration::from_millis(50));
    let mut progress = (0, Instant::now());
    loop {
        every.tick().await;
        if let Some(task) = insert.take_if(|task| task.is_finished()) {
            task.await??; // an insert error ends the run
        }
        let terminal: i64 = sqlx::query_scalar(TERMINAL).fetch_one(&producer).await?;
        if insert.is_none() && terminal >= total {
            break;
        }
        // A receiver that keeps failing would otherwise be retried for hours.
        if terminal > progress.0 {
            progress = (terminal, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(60) {
            return Err(format!("no progress for 60 s: {terminal} of {total} jobs done").into());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    client.shutdown(Duration::from_secs(5)).await;
    producer.close().await;
    pool.close().await;
    // Terminal counts jobs that failed for good too: each must have had a 2xx.
    match delivered.load(Ordering::Relaxed) {
        n if n < args.events => Err(format!("only {n} of {total} deliveries answered 2xx").into()),
        _ => Ok(seconds),
    }
}

/// Signs and posts one body; anything but a 2xx is retried by awa.
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    key: &[u8],
    id: &str,
    body: String,
) -> Result<JobResult, JobError> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body.as_bytes()] {
        mac.update(part);
    }
    let signature = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp)
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(JobError::retryable)?;
    match response.status() {
        status if status.is_success() => Ok(JobResult::Completed),
        status => Err(JobError::retryable_msg(format!("endpoint answered {status}"))),
    }
}

/// The body examples/send_vs_wrk.sh posts (its "512-byte" body: 487 bytes
/// and a newline).
fn body() -> String {
    format!(r#"{{"event":"iq.status_updated","data":{{"pad":"{}"}}}}"#, "x".repeat(440))
}
