//! Sends the events read from stdin to one endpoint, printing every attempt.
//!
//! ```text
//! cargo run --release -q --example send -- --preset smartlyq|deepsmith|standard --url URL --secret SECRET [options] < events.jsonl
//! ```
//!
//! stdin holds one JSON object a line: `{"event":"job.completed","data":{...}}`.
//! stdout gets one JSON line per attempt, then a summary line. Exit status:
//! 0 when every event was delivered; 3 when the run ended with deliveries
//! dropped in it, or held by a disabled endpoint; 2 for bad arguments or a
//! refused subscription; 1 otherwise (a malformed input line, reported on
//! stderr and skipped; a store gone for good; stdout that cannot be
//! written). `--help` prints the usage. A UTF-8 byte order mark before the
//! first line is skipped.
//! Once stdin is read and every event in it published, stderr gets
//! `accepted N events`. Lines are published as they arrive, whatever is
//! ready in one store step (a single commit on a durable store), so a line
//! typed by hand goes at once; a line over twice the body limit is rejected
//! without being kept.
//!
//! With `--store sqlite:PATH` the queue outlives the run: a later run on the
//! same file (stdin may be empty) resumes every pending delivery, and reuses
//! the subscription to `--url` with its stored secret, so `--secret` may be
//! left out; a `--secret` that differs from the stored one is refused
//! (exit 2). A subscription that was disabled is enabled again.
//!
//! `--store postgres://USER:PASSWORD@HOST/DATABASE` (or `postgresql://`,
//! the whole URL) keeps the queue in PostgreSQL with the same resume
//! behaviour; runs on several machines may share the database at once, each
//! delivering its part. Messages never repeat the URL's password.
//!
//! `--preset standard` (Standard Webhooks) has no fixed catalogue: without
//! `--events` the subscription listens to every event type stdin names.
//!
//! `--secret-file PATH`, or the environment variables `WEBHOOKS_SECRET` and
//! `WEBHOOKS_STORE`, keep the secret and a store URL with a password out of
//! the process list (`ps`); a flag given wins over the environment.
//!
//! `--secret-key-file PATH` or `WEBHOOKS_SECRET_KEY` (base64 of 32 bytes,
//! never a flag's value) seals the signing secret at rest in a SQLite or
//! PostgreSQL store; a store sealed so needs the same key on every later run.
//!
//! A store that is unavailable for a while (a database restarting or not up
//! yet, a file another process holds locked) is waited out, at start-up as
//! during the run, up to a minute (`--store-patience S`) counted from the
//! first call that found it unavailable, however many lines wait on it;
//! stderr says so when it starts, every 5 s while it lasts, and when it
//! ends; past the deadline the run ends with exit 1 and the reason.
//!
//! `--owner KEY` (the default owner without it) is whose run this is: the
//! subscription and every event read belong to that owner, so runs of
//! several owners on one store reach only their own endpoints. A line may
//! carry `"idempotency_key": "..."` beside `event` and `data`; a key the
//! store holds for the owner already (from earlier in the input, or an
//! earlier run within the idempotency window) creates no delivery and is
//! not an error. A line may also carry `"channels": ["..."]`, the channels
//! its event is published on (the run's subscription names none, so it
//! hears every channel; a bad channel name is that line's error).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use webhooks_core::{
    AttemptOutcome, DEFAULT_MAX_BODY_BYTES, DeliveryId, ErrorChain, Owner, Preset, Publish, SecretKeys,
    Store, StoreError, Subscription, SubscriptionId, SubscriptionStatus, SubscriptionUpdate, UrlRule,
    Verdict, Webhooks,
};
use webhooks_memory::MemoryStore;
use webhooks_postgres::PostgresStore;
use webhooks_sqlite::SqliteStore;

/// A delivery allocates many small, short-lived buffers (headers, request
/// parts, the attempt's record): mimalloc serves them faster than the
/// system allocator, 10 to 17 % more events a second from a binary that
/// does nothing else. A host picks its own allocator; the library needs none.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: send --preset smartlyq|deepsmith|standard --url URL [--secret SECRET] \
[--secret-file PATH] [--secret-key-file PATH] [--store memory|sqlite:PATH|postgres://URL] [--owner KEY] [--retry-scale F] [--allow-http] [--allow-private] \
[--events a,b] [--concurrency N] [--threads N] [--timeout-ms MS] [--store-patience S] < events.jsonl";

struct Args {
    preset: Preset,
    url: String,
    /// Required unless the store has a subscription to `url` already.
    secret: Option<String>,
    store: String,
    /// Whose subscription and events these are.
    owner: Owner,
    events: Option<Vec<String>>,
    /// The dispatcher's workers, shared out among the threads; its default when not given.
    concurrency: Option<usize>,
    /// Threads the dispatcher runs on (see [`runtime`]): one per core by default.
    threads: usize,
    timeout: Duration,
    allow_private: bool,
    /// How long a store outage is waited out.
    store_patience: Duration,
    /// The key secrets are sealed with at rest.
    secret_keys: Option<SecretKeys>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut preset = None;
    let (mut url, mut secret, mut events) = (None, None, None);
    // The secret and the store URL (which may hold a password) may come
    // from the environment, out of sight of `ps`; a flag wins.
    let mut store =
        std::env::var("WEBHOOKS_STORE").ok().filter(|s| !s.is_empty()).unwrap_or("memory".to_owned());
    let mut owner = Owner::default();
    let mut retry_scale = 1.0;
    let mut store_patience = STORE_PATIENCE;
    let mut secret_keys = None;
    let (mut allow_http, mut allow_private, mut concurrency, mut timeout_ms) =
        (false, false, None, 15_000u64);
    let mut threads = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--preset" => {
                let name = value()?;
                preset = Some(
                    Preset::by_name(&name)
                        .ok_or(format!("unknown preset {name:?}: use smartlyq, deepsmith or standard"))?,
                )
            }
            "--url" => url = Some(value()?),
            "--secret" => secret = Some(value()?),
            "--secret-file" => {
                let path = value()?;
                let read =
                    std::fs::read_to_string(&path).map_err(|e| format!("--secret-file {path}: {e}"))?;
                secret = Some(read.trim_end_matches(['\r', '\n']).to_owned());
            }
            "--secret-key-file" => {
                let path = value()?;
                let read =
                    std::fs::read_to_string(&path).map_err(|e| format!("--secret-key-file {path}: {e}"))?;
                secret_keys = Some(
                    SecretKeys::from_base64(&read).map_err(|e| format!("--secret-key-file {path}: {e}"))?,
                );
            }
            "--store" => store = value()?,
            "--owner" => owner = Owner::new(value()?).map_err(|e| format!("--owner: {e}"))?,
            "--retry-scale" => {
                retry_scale = value()?.parse().map_err(|_| "--retry-scale needs a number".to_owned())?
            }
            "--events" => events = Some(value()?.split(',').map(|e| e.trim().to_owned()).collect()),
            "--concurrency" => {
                concurrency =
                    Some(value()?.parse().map_err(|_| "--concurrency needs a whole number".to_owned())?)
            }
            "--threads" => {
                threads = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--threads needs a whole number, at least 1")?
            }
            "--timeout-ms" => {
                timeout_ms = value()?.parse().map_err(|_| "--timeout-ms needs a whole number".to_owned())?
            }
            "--store-patience" => {
                let seconds: u64 = value()?
                    .parse()
                    .map_err(|_| "--store-patience needs a whole number of seconds".to_owned())?;
                store_patience = Duration::from_secs(seconds);
            }
            "--allow-http" => allow_http = true,
            "--allow-private" => allow_private = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let secret = secret.or_else(|| std::env::var("WEBHOOKS_SECRET").ok().filter(|s| !s.is_empty()));
    // The key that seals secrets at rest: from a file or the environment,
    // never the command line.
    let secret_keys = match (secret_keys, std::env::var("WEBHOOKS_SECRET_KEY")) {
        (Some(keys), _) => Some(keys),
        (None, Ok(key)) if !key.is_empty() => {
            Some(SecretKeys::from_base64(&key).map_err(|e| format!("WEBHOOKS_SECRET_KEY: {e}"))?)
        }
        (None, _) => None,
    };
    let mut preset = preset.ok_or("--preset is required")?;
    if allow_http {
        preset = preset.with_url_rule(UrlRule::allow_http());
    }
    let preset = preset.with_retry_scale(retry_scale).map_err(|e| e.to_string())?;
    Ok(Args {
        preset,
        url: url.ok_or("--url is required")?,
        secret,
        store,
        owner,
        events,
        concurrency,
        threads,
        timeout: Duration::from_millis(timeout_ms),
        allow_private,
        store_patience,
        secret_keys,
    })
}

/// One input line.
#[derive(Deserialize)]
struct Line {
    event: String,
    /// The data as written, sent byte for byte; `None` when missing or null.
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
    /// A key of the line's own: a repeat publishes nothing.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// The channels it is published on.
    #[serde(default)]
    channels: Vec<String>,
}

/// One output line per attempt; the fields in the order of the contract.
#[derive(Serialize)]
struct AttemptLine<'a> {
    delivery_id: DeliveryId,
    event: &'a str,
    attempt: u32,
    status: Option<u16>,
    error: Option<String>,
    outcome: &'static str,
    duration_ms: u128,
}

#[derive(Serialize)]
struct SummaryLine {
    summary: Summary,
}

/// The fields in the order of the contract.
#[derive(Serialize)]
struct Summary {
    delivered: u64,
    dropped: u64,
    pending: u64,
    endpoint_disabled: bool,
}

fn print_attempt(outcome: &AttemptOutcome) {
    let line = AttemptLine {
        delivery_id: outcome.delivery_id,
        event: &outcome.event_type,
        attempt: outcome.attempt.number,
        status: outcome.attempt.status(),
        error: outcome.attempt.error(),
        outcome: outcome.as_str(),
        duration_ms: outcome.attempt.duration.as_millis(),
    };
    print_json(&line);
}

/// Stdout, buffered: a line per attempt written straight out would cost a
/// system call each. The buffer is flushed every few milliseconds while
/// the run goes on, on an interrupt (Ctrl-C), and once more before the
/// process exits.
static OUT: std::sync::LazyLock<std::sync::Mutex<std::io::BufWriter<std::io::Stdout>>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(std::io::BufWriter::new(std::io::stdout())));

/// How long a printed line may wait in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(20);

/// `value` as one JSON line, serialized straight into the buffer.
fn print_json(value: &impl Serialize) {
    let mut out = OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let written = serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from);
    if let Err(error) = written.and_then(|()| out.write_all(b"\n")) {
        stdout_failed(&error);
    }
}

fn flush_lines() {
    if let Err(error) = OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).flush() {
        stdout_failed(&error);
    }
}

/// Ends the run: an attempt line that cannot be written is a report lost,
/// and a run that cannot report is not worth going on with. What was
/// accepted stays in a durable store for the next run.
fn stdout_failed(error: &std::io::Error) -> ! {
    eprintln!("error: cannot write to stdout: {error}");
    std::process::exit(1);
}

/// The runtime of the run: one thread, which runs the dispatcher's first
/// workers too. Each further thread (`--threads`) runs a one-thread runtime
/// of its own that the dispatcher is spread over: a request's own work is
/// small beside the kernel's for its socket, so tasks that moved between
/// the threads of one runtime would spend more on wake-ups than they gain.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// A one-thread runtime on a new thread of its own. It lives on until the
/// process exits: connections it opened for the store's pool are driven by
/// it.
fn on_a_thread_of_its_own() -> Result<tokio::runtime::Handle, Failure> {
    let runtime = runtime().map_err(|e| Failure::Run(format!("cannot start a runtime: {e}")))?;
    let handle = runtime.handle().clone();
    std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
    Ok(handle)
}

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        tokio::spawn(async {
            let mut every = tokio::time::interval(FLUSH_EVERY);
            let interrupted = tokio::signal::ctrl_c();
            tokio::pin!(interrupted);
            loop {
                tokio::select! {
                    _ = every.tick() => flush_lines(),
                    // Interrupted: what was printed is not lost.
                    _ = &mut interrupted => {
                        flush_lines();
                        std::process::exit(130);
                    }
                }
            }
        });
        run(args).await
    });
    // With the runtime gone, no task writes a line any more (a run that
    // failed may have left the dispatcher running): the last flush has all.
    runtime.shutdown_timeout(Duration::from_secs(1));
    flush_lines();
    match result {
        Ok(code) => code,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Run(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Run(String),
}

/// The store `spec` names, and the SQLite file to close at the end. A
/// server or a file that cannot be had yet is waited for as an outage.
async fn open_store(spec: &str, outage: &Outage) -> Result<(Arc<dyn Store>, Option<SqliteStore>), Failure> {
    let failed = |error: webhooks_core::Error| Failure::Run(ErrorChain(&error).to_string());
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        let connect = || async {
            match PostgresStore::connect(spec).await {
                Ok(store) => Ok(Ok(store)),
                Err(error @ webhooks_postgres::Error::InvalidUrl { .. }) => {
                    Ok(Err(Failure::Usage(ErrorChain(&error).to_string())))
                }
                Err(error) => Err(StoreError::from(error)),
            }
        };
        let store = outage.retrying(connect).await?.map_err(failed)??;
        return Ok((Arc::new(store), None));
    }
    match spec.split_once(':') {
        None if spec == "memory" => Ok((Arc::new(MemoryStore::new()), None)),
        Some(("sqlite", path)) if !path.is_empty() => {
            let open = || async { SqliteStore::open(path).await.map_err(StoreError::from) };
            let store = outage.retrying(open).await?.map_err(failed)?;
            Ok((Arc::new(store.clone()), Some(store)))
        }
        _ => Err(Failure::Usage(format!(
            "unsupported --store {:?}: use memory, sqlite:PATH or postgres://URL",
            shown_store(spec)
        ))),
    }
}

/// `--store` as it may be printed: a URL's password replaced by `***`.
fn shown_store(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else { return spec.to_owned() };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority.len()..])
        }
        _ => spec.to_owned(),
    }
}

/// The subscription to `--url`: the store's own when a run before this one
/// made it, with the secret it stored, or a new one with `--secret`. It
/// listens to `--events`, else to the preset's whole catalogue, else (an
/// open catalogue) to the event types stdin names. Returns its id and the
/// event types it listens to.
async fn subscription(
    webhooks: &Webhooks,
    outage: &Outage,
    args: &Args,
    named: &[&str],
) -> Result<(SubscriptionId, BTreeSet<String>), Failure> {
    let usage = |e: webhooks_core::Error| Failure::Usage(ErrorChain(&e).to_string());
    let preset = webhooks.preset();
    let open = preset.catalogue().is_open();
    let url = preset.url_rule().check(&args.url, preset.name()).map_err(usage)?;
    let stored = outage.patiently(|| webhooks.subscriptions(&args.owner)).await?;
    let stored = stored.into_iter().find(|s| s.url == url);
    let mut events: BTreeSet<String> = match &args.events {
        Some(events) => events.iter().cloned().collect(),
        None if open => {
            named.iter().filter(|n| preset.check_event_type(n).is_ok()).map(|n| (*n).to_owned()).collect()
        }
        None => preset.catalogue().names().map(str::to_owned).collect(),
    };
    if open && args.events.is_none() {
        events.extend(stored.iter().flat_map(|s| s.event_types.iter().cloned()));
        if events.is_empty() && stored.is_none() {
            return Err(Failure::Usage(format!(
                "{} has no fixed event types: name them with --events, or send at least one event",
                preset.name()
            )));
        }
    }
    let Some(mut subscription) = stored else {
        let secret = args.secret.clone().ok_or(Failure::Usage("--secret is required".to_owned()))?;
        let new =
            Subscription::builder(&args.url).owner(args.owner.clone()).event_types(events).secret(secret);
        let subscription = outage.retrying(|| webhooks.subscribe(new.clone())).await?.map_err(usage)?;
        return Ok((subscription.id, subscription.event_types));
    };
    if args.secret.as_deref().is_some_and(|secret| secret != subscription.secret.expose()) {
        return Err(Failure::Usage(format!(
            "--secret differs from the secret stored for {url} in {}; leave --secret out to use the stored one",
            shown_store(&args.store)
        )));
    }
    if !events.is_empty() && events != subscription.event_types {
        let update = || {
            webhooks
                .update_subscription(subscription.id, SubscriptionUpdate::new().event_types(events.clone()))
        };
        subscription = outage.retrying(update).await?.map_err(|e| match e {
            webhooks_core::Error::Store(_) => Failure::Run(ErrorChain(&e).to_string()),
            _ => usage(e),
        })?;
    }
    if let SubscriptionStatus::Disabled { reason, .. } = &subscription.status {
        eprintln!("{url} was disabled ({reason}); enabling it again to resume its deliveries");
        outage.patiently(|| webhooks.enable(subscription.id)).await?;
    }
    Ok((subscription.id, subscription.event_types))
}

/// Whether the subscription's event types must come from stdin: an open
/// catalogue, no `--events` and nothing stored for `--url`. Then it is made
/// once stdin names a first event type (or ends), not before.
async fn types_come_from_stdin(webhooks: &Webhooks, outage: &Outage, args: &Args) -> Result<bool, Failure> {
    let preset = webhooks.preset();
    if !preset.catalogue().is_open() || args.events.is_some() {
        return Ok(false);
    }
    // A URL that is refused is reported at once, by `subscription`.
    let Ok(url) = preset.url_rule().check(&args.url, preset.name()) else { return Ok(false) };
    let stored = outage.patiently(|| webhooks.subscriptions(&args.owner)).await?;
    Ok(!stored.iter().any(|s| s.url == url))
}

/// Events published in one store step at most (one commit on a durable
/// store).
const MAX_BATCH: usize = 256;
/// Bytes of events published in one store step, about at most.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Bytes of read lines waiting to be published or being published, at
/// most: stdin may outpace the store.
const READ_AHEAD_BYTES: usize = 64 << 20;
/// A longer line is rejected and skipped without being kept: its body could
/// not fit the limit. Twice the limit leaves room for the whitespace and
/// escapes that rendering drops.
const MAX_LINE_BYTES: usize = 2 * DEFAULT_MAX_BODY_BYTES;
/// A line this long may render over the limit, and one bad event fails a
/// whole batch: it is published alone.
const PUBLISHED_ALONE_BYTES: usize = DEFAULT_MAX_BODY_BYTES / 2;

/// One stdin line that is not blank.
struct Read {
    /// Its line number, from 1.
    number: usize,
    /// The bytes kept of it: its length, or 0 when it is not an event.
    bytes: usize,
    /// The event, or why the line is not one.
    line: Result<Line, String>,
    /// Its share of the read-ahead budget, given back once it is published.
    budget: Option<OwnedSemaphorePermit>,
}

/// Reads stdin line by line on its own thread, and hands each line that is
/// not blank to `lines` as soon as it is read.
fn read_stdin(lines: mpsc::Sender<Read>, budget: Arc<Semaphore>, runtime: tokio::runtime::Handle) {
    let mut input = std::io::BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    let mut text = Vec::new();
    for number in 1.. {
        // A read error ends the input: reading again would most likely fail
        // again.
        let mut ended = false;
        let (kept, line) = match read_line(&mut input, &mut text) {
            Ok(None) => return,
            Ok(Some(bytes)) if bytes > MAX_LINE_BYTES => {
                // The line alone is that large; its body would be about as large.
                let too_large =
                    webhooks_core::Error::BodyTooLarge { size: bytes, limit: DEFAULT_MAX_BODY_BYTES };
                (0, Err(too_large.to_string()))
            }
            Ok(Some(bytes)) => match std::str::from_utf8(without_bom(number, &text)) {
                Err(_) => (0, Err("unreadable: stream did not contain valid UTF-8".to_owned())),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => (
                    bytes,
                    serde_json::from_str::<Line>(text).map_err(|e| format!("not an event object: {e}")),
                ),
            },
            Err(error) => {
                ended = true;
                (0, Err(format!("unreadable: {error}")))
            }
        };
        let permits = u32::try_from(kept.clamp(1, READ_AHEAD_BYTES)).unwrap_or(u32::MAX);
        let budget = runtime.block_on(Arc::clone(&budget).acquire_many_owned(permits)).ok();
        if lines.blocking_send(Read { number, bytes: kept, line, budget }).is_err() || ended {
            return;
        }
    }
}

/// The line's text without the UTF-8 byte order mark an editor may put
/// before the first line.
fn without_bom(number: usize, text: &[u8]) -> &[u8] {
    if number == 1 { text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text) } else { text }
}

/// Reads one line into `text`, without its end of line, keeping at most
/// `MAX_LINE_BYTES + 1` bytes of it and skipping the rest unkept. Returns
/// the line's whole length, or `None` at the end of the input.
fn read_line(input: &mut impl BufRead, text: &mut Vec<u8>) -> std::io::Result<Option<usize>> {
    text.clear();
    let mut length = 0;
    let mut started = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(started.then_some(length));
        }
        started = true;
        let end = available.iter().position(|&b| b == b'\n');
        let part = &available[..end.unwrap_or(available.len())];
        let room = (MAX_LINE_BYTES + 1).saturating_sub(text.len());
        text.extend_from_slice(&part[..part.len().min(room)]);
        length += part.len();
        let used = part.len() + usize::from(end.is_some());
        input.consume(used);
        if end.is_some() {
            return Ok(Some(length));
        }
    }
}

/// What the attempt hook saw of the subscription's deliveries.
#[derive(Clone, Copy)]
struct Seen {
    /// A delivery was delivered or dropped.
    settled: bool,
    /// A delivery was dropped.
    dropped: bool,
    /// The attempt disabled the endpoint.
    disabled: bool,
}

/// How many of the subscription's deliveries are still to attempt, kept
/// from what is published and what the attempts report: constant work per
/// attempt. The store is read only to confirm the end, or when nothing has
/// happened for a while (another process may attempt or disable too).
struct Completion {
    outstanding: i64,
    disabled: bool,
    /// Deliveries dropped in this run.
    dropped: u64,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Completion {
    fn apply(&mut self, seen: Seen) {
        self.outstanding -= i64::from(seen.settled);
        self.disabled |= seen.disabled;
        self.dropped += u64::from(seen.dropped);
    }

    /// Takes in what the attempts reported so far.
    fn catch_up(&mut self) {
        while let Ok(seen) = self.seen.try_recv() {
            self.apply(seen);
        }
    }

    /// Waits until nothing is left to attempt: every delivery delivered or
    /// dropped, or held because the endpoint was disabled.
    async fn wait(
        &mut self,
        webhooks: &Webhooks,
        outage: &Outage,
        subscription: SubscriptionId,
    ) -> Result<(), Failure> {
        let mut idle = false;
        loop {
            self.catch_up();
            if self.outstanding <= 0 || self.disabled || idle {
                match look(webhooks, outage, subscription).await? {
                    Look::Done => return Ok(()),
                    Look::Pending(pending) => {
                        self.outstanding = i64::try_from(pending).unwrap_or(i64::MAX);
                        self.disabled = false;
                    }
                    Look::Changed => {
                        idle = true;
                        continue;
                    }
                }
            }
            idle = match tokio::time::timeout(Duration::from_millis(200), self.seen.recv()).await {
                Ok(Some(seen)) => {
                    self.apply(seen);
                    false
                }
                Ok(None) | Err(_) => true,
            };
        }
    }
}

/// What the store says of the subscription's deliveries.
enum Look {
    /// Nothing is left to attempt.
    Done,
    /// This many are still to attempt.
    Pending(u64),
    /// The endpoint was enabled or disabled while looking: look again.
    Changed,
}

/// How long a run waits out a store that is unavailable (a database
/// restarting, a file locked by another process) unless `--store-patience`
/// says otherwise.
const STORE_PATIENCE: Duration = Duration::from_secs(60);

/// How often a run waiting for its store says it still is.
const SAY_EVERY: Duration = Duration::from_secs(5);

/// One deadline for a store outage, however many calls wait on it: it runs
/// from the first call that found the store unavailable to the first that
/// succeeds again, and past it the run ends.
struct Outage {
    patience: Duration,
    /// When it began and when it was last reported, while it lasts.
    state: std::sync::Mutex<Option<(tokio::time::Instant, tokio::time::Instant)>>,
}

impl Outage {
    fn new(patience: Duration) -> Self {
        Self { patience, state: std::sync::Mutex::new(None) }
    }

    /// Runs `call` again while the store is unavailable, until the outage
    /// is past its deadline: then, or on any other error, the run fails
    /// with it.
    async fn patiently<T, E, F, Fut>(&self, call: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: Into<webhooks_core::Error>,
    {
        self.retrying(call).await?.map_err(|error| Failure::Run(ErrorChain(&error).to_string()))
    }

    /// Runs `call` again while the store is unavailable; its own result once
    /// the store answers, or the run's failure once the outage is past its
    /// deadline.
    async fn retrying<T, E, F, Fut>(&self, mut call: F) -> Result<Result<T, webhooks_core::Error>, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: Into<webhooks_core::Error>,
    {
        loop {
            match call().await.map_err(Into::into) {
                Err(error) if error.is_transient() => self.wait(&error).await?,
                answered => {
                    self.over();
                    return Ok(answered);
                }
            }
        }
    }

    /// Waits a little before the next try, saying so now and then; fails
    /// once the outage has lasted the patience.
    async fn wait(&self, error: &webhooks_core::Error) -> Result<(), Failure> {
        let now = tokio::time::Instant::now();
        {
            let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let (began, said) = state.get_or_insert_with(|| {
                eprintln!(
                    "store unavailable, waiting up to {} s: {}",
                    self.patience.as_secs(),
                    ErrorChain(error)
                );
                (now, now)
            });
            let lasted = now - *began;
            if lasted >= self.patience {
                return Err(Failure::Run(format!(
                    "the store stayed unavailable for {} s: {}",
                    lasted.as_secs(),
                    ErrorChain(error)
                )));
            }
            if now - *said >= SAY_EVERY {
                eprintln!("store still unavailable after {} s: {}", lasted.as_secs(), ErrorChain(error));
                *said = now;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        Ok(())
    }

    /// The store answered: an outage in progress is over.
    fn over(&self) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((began, _)) = state.take() {
            eprintln!("store available again after {} s", began.elapsed().as_secs());
        }
    }
}

async fn look(webhooks: &Webhooks, outage: &Outage, subscription: SubscriptionId) -> Result<Look, Failure> {
    // The status before and after the counts: an attempt that drops a
    // delivery and disables the endpoint commits both in one step, and may
    // land between two reads (another process's store, a server).
    let enabled = outage.patiently(|| webhooks.subscription(subscription)).await?.is_enabled();
    let counts = outage.patiently(|| webhooks.delivery_counts(subscription)).await?;
    if outage.patiently(|| webhooks.subscription(subscription)).await?.is_enabled() != enabled {
        return Ok(Look::Changed);
    }
    Ok(if counts.pending == 0 || !enabled { Look::Done } else { Look::Pending(counts.pending) })
}

/// A published line's event type and whether its key repeated an earlier
/// one, or why the line was refused.
type LineResult = Result<(String, bool), String>;

/// Publishes stdin's events in batches and counts what it did.
struct Publisher<'a> {
    webhooks: &'a Webhooks,
    outage: &'a Outage,
    owner: Owner,
    subscription: SubscriptionId,
    /// The event types the subscription listens to.
    listening: BTreeSet<String>,
    /// Whether event types stdin names are added to the subscription.
    adds_types: bool,
    accepted: u64,
    /// Deliveries created for the subscription.
    created: u64,
    malformed: bool,
}

impl Publisher<'_> {
    /// Publishes a batch of lines in one store step where every line is
    /// good, and reports each bad line on stderr, in line order.
    async fn publish(&mut self, batch: Vec<Read>) -> Result<(), Failure> {
        let preset = self.webhooks.preset();
        if self.adds_types {
            self.listen_to_new_types(&batch).await?;
        }
        let mut results: Vec<(usize, LineResult)> = Vec::with_capacity(batch.len());
        let mut together = Vec::with_capacity(batch.len());
        let mut alone = Vec::new();
        // The read-ahead budget is given back once the batch is published.
        let mut budget = Vec::with_capacity(batch.len());
        for read in batch {
            budget.push(read.budget);
            match read.line {
                Err(why) => results.push((read.number, Err(why))),
                // A line `publish` may refuse goes alone, to fail by itself
                // with its own message.
                Ok(line)
                    if preset.check_event_type(&line.event).is_err()
                        || line.data.is_none()
                        || read.bytes > PUBLISHED_ALONE_BYTES =>
                {
                    alone.push((read.number, line))
                }
                Ok(line) => together.push((read.number, line)),
            }
        }
        if !together.is_empty() {
            let events = || self.webhooks.publish_many(together.iter().map(|(_, line)| self.event(line)));
            match self.outage.retrying(events).await? {
                Ok(published) => results.extend(
                    together
                        .into_iter()
                        .zip(published)
                        .map(|((number, line), p)| (number, Ok((line.event, p.repeated)))),
                ),
                // One of them is refused after all: each goes alone and is
                // reported alone.
                Err(_) => alone.extend(together),
            }
        }
        for (number, line) in alone {
            let published = self.outage.retrying(|| self.webhooks.publish_event(self.event(&line))).await?;
            results.push((number, published.map(|p| (line.event, p.repeated)).map_err(|e| e.to_string())));
        }
        drop(budget);
        results.sort_unstable_by_key(|(number, _)| *number);
        for (number, result) in results {
            match result {
                Ok((event, repeated)) => {
                    self.accepted += 1;
                    self.created += u64::from(!repeated && self.listening.contains(&event));
                }
                Err(why) => {
                    eprintln!("line {number}: {why}");
                    self.malformed = true;
                }
            }
        }
        Ok(())
    }

    /// A line's event, for the run's owner.
    fn event(&self, line: &Line) -> Publish {
        // The data's text, as it came: numbers of any size, key order and
        // duplicate keys reach the receiver as written.
        let data = line.data.as_deref().map_or("null", serde_json::value::RawValue::get);
        let publish = Publish::json(line.event.as_str(), data)
            .owner(self.owner.clone())
            .channels(line.channels.iter().map(String::as_str));
        match &line.idempotency_key {
            Some(key) => publish.idempotency_key(key.as_str()),
            None => publish,
        }
    }

    /// Adds to the subscription the event types this batch names first, so
    /// that its events are delivered.
    async fn listen_to_new_types(&mut self, batch: &[Read]) -> Result<(), Failure> {
        let preset = self.webhooks.preset();
        let new: BTreeSet<&str> = batch
            .iter()
            .filter_map(|read| read.line.as_ref().ok())
            .map(|line| line.event.as_str())
            .filter(|name| !self.listening.contains(*name) && preset.check_event_type(name).is_ok())
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let mut listening = self.listening.clone();
        listening.extend(new.into_iter().map(str::to_owned));
        let update = || {
            let change = SubscriptionUpdate::new().event_types(listening.clone());
            self.webhooks.update_subscription(self.subscription, change)
        };
        let subscription = self.outage.patiently(update).await?;
        self.listening = subscription.event_types;
        Ok(())
    }
}

/// The exit status of a run that ended with deliveries dropped or held.
const UNDELIVERED: u8 = 3;

async fn run(args: Args) -> Result<ExitCode, Failure> {
    // One deadline for an outage, from the start of the run to its end.
    let outage = Outage::new(args.store_patience);
    let (store, closing) = open_store(&args.store, &outage).await?;
    let mut builder = Webhooks::builder();
    if let Some(keys) = args.secret_keys.clone() {
        builder = builder.secret_keys(keys);
    }
    let webhooks = builder
        .shared_store(store)
        .preset(args.preset.clone())
        // The run waits out outages itself, on one deadline: a publish
        // that finds the store unavailable returns at once.
        .publish_retry(Duration::ZERO)
        .build()
        .map_err(|e| Failure::Usage(ErrorChain(&e).to_string()))?;

    let (sender, mut lines) = mpsc::channel(4 * MAX_BATCH);
    let budget = Arc::new(Semaphore::new(READ_AHEAD_BYTES));
    let runtime = tokio::runtime::Handle::current();
    // A thread of its own, not waited for: an early exit must not wait for
    // stdin to end.
    std::thread::spawn(move || read_stdin(sender, budget, runtime));

    // With an open catalogue the lines may name the event types: the lines
    // up to the first that names one are kept (what is wrong with them
    // only), and reported once the subscription is settled.
    let mut first: Vec<Read> = Vec::new();
    let from_stdin = types_come_from_stdin(&webhooks, &outage, &args).await?;
    if from_stdin {
        while let Some(mut read) = lines.recv().await {
            let names = match &read.line {
                Ok(line) => match webhooks.preset().check_event_type(&line.event) {
                    Ok(()) => true,
                    Err(why) => {
                        read.line = Err(why.to_string());
                        false
                    }
                },
                Err(_) => false,
            };
            if !names {
                read.budget = None;
            }
            first.push(read);
            if names {
                break;
            }
        }
    }
    let named: Vec<&str> =
        first.iter().filter_map(|read| read.line.as_ref().ok()).map(|l| l.event.as_str()).collect();
    let (subscription, listening) = subscription(&webhooks, &outage, &args, &named).await?;

    // Deliveries a run before this one left, counted before any attempt.
    let resumed = outage.patiently(|| webhooks.delivery_counts(subscription)).await?.pending;
    let (report, seen) = mpsc::unbounded_channel();
    let mut dispatcher = webhooks.dispatcher();
    if let Some(workers) = args.concurrency {
        dispatcher = dispatcher.concurrency(workers);
    }
    // No more threads than workers: a machine with more cores than the
    // default workers uses as many threads as there are workers.
    let threads = args.threads.min(dispatcher.workers().max(1));
    let mut runtimes = vec![tokio::runtime::Handle::current()];
    for _ in 1..threads {
        runtimes.push(on_a_thread_of_its_own()?);
    }
    let dispatcher = dispatcher
        .spread_over(runtimes)
        .allow_private_networks(args.allow_private)
        .request_timeout(args.timeout)
        .on_outcome(move |outcome| {
            print_attempt(outcome);
            if outcome.subscription_id != subscription {
                return;
            }
            let seen = Seen {
                settled: matches!(outcome.verdict, Verdict::Delivered | Verdict::Dropped),
                dropped: outcome.verdict == Verdict::Dropped,
                disabled: outcome.recorded.disabled_subscription,
            };
            if seen.settled || seen.disabled {
                // Never blocks; fails only once the run no longer listens.
                let _ = report.send(seen);
            }
        })
        .build()
        .map_err(|e| Failure::Usage(ErrorChain(&e).to_string()))?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(dispatcher.run(shutdown.clone()));
    let mut completion = Completion {
        outstanding: i64::try_from(resumed).unwrap_or(i64::MAX),
        disabled: false,
        dropped: 0,
        seen,
    };

    let mut publisher = Publisher {
        webhooks: &webhooks,
        outage: &outage,
        owner: args.owner.clone(),
        subscription,
        listening,
        // As when the subscription was made: an open catalogue without
        // `--events` listens to what stdin names.
        adds_types: webhooks.preset().catalogue().is_open() && args.events.is_none(),
        accepted: 0,
        created: 0,
        malformed: false,
    };
    publisher.publish(first).await?;
    // Whatever stdin has ready goes in one batch: a full one when stdin
    // outpaces the store, a single line when it comes by hand.
    while let Some(read) = lines.recv().await {
        let mut bytes = read.bytes;
        let mut batch = vec![read];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match lines.try_recv() {
                Ok(read) => {
                    bytes += read.bytes;
                    batch.push(read);
                }
                Err(_) => break,
            }
        }
        publisher.publish(batch).await?;
        completion.catch_up();
    }
    // Every event is in the store now; with a durable one, none can be lost.
    eprintln!("accepted {} events", publisher.accepted);
    let malformed = publisher.malformed;
    completion.outstanding += i64::try_from(publisher.created).unwrap_or(i64::MAX);

    completion.wait(&webhooks, &outage, subscription).await?;
    // Attempts still in flight finish and are printed; the summary comes
    // after them, from the store as they left it.
    shutdown.cancel();
    running.await.map_err(|e| Failure::Run(ErrorChain(&e).to_string()))?;
    let counts = outage.patiently(|| webhooks.delivery_counts(subscription)).await?;
    let enabled = outage.patiently(|| webhooks.subscription(subscription)).await?.is_enabled();
    let summary = Summary {
        delivered: counts.delivered,
        dropped: counts.dropped,
        pending: counts.pending,
        endpoint_disabled: !enabled,
    };

    let undelivered = completion.dropped > 0 || summary.pending > 0;
    print_json(&SummaryLine { summary });
    if let Some(file) = closing {
        // Closed, the file is whole again: no -wal beside it.
        file.close().await.map_err(|e| Failure::Run(ErrorChain(&e).to_string()))?;
    }
    Ok(if malformed {
        ExitCode::from(1)
    } else if undelivered {
        ExitCode::from(UNDELIVERED)
    } else {
        ExitCode::SUCCESS
    })
}
