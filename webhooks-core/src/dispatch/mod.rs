//! The dispatcher: claims due deliveries, signs, POSTs and records outcomes.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod activity;
mod judge;
mod shares;

pub use activity::Activity;
use activity::{Busy, Watch};
use judge::judge;
use shares::{Finished, Refused, Share, Shares};

use crate::error::Error;
use crate::guard::Guard;
use crate::http;
use crate::model::{Attempt, AttemptResult, DeliveryId, SubscriptionId};
use crate::operational::{FAILING_AFTER, OperationalEvent};
use crate::patience::while_unavailable;
use crate::scheme::Message;
use crate::store::{AttemptRecord, Claim, ClaimRequest, Recorded, Store, StoreError, StoreResult, Verdict};
use crate::webhooks::Webhooks;

/// An attempt as recorded, handed to [`DispatcherBuilder::on_outcome`].
#[derive(Clone, Debug)]
pub struct AttemptOutcome {
    /// The delivery.
    pub delivery_id: DeliveryId,
    /// Its subscription.
    pub subscription_id: SubscriptionId,
    /// Its event type.
    pub event_type: String,
    /// The attempt, as logged.
    pub attempt: Attempt,
    /// What happens to the delivery next.
    pub verdict: Verdict,
    /// What the attempt did to the subscription.
    pub recorded: Recorded,
}

impl AttemptOutcome {
    /// What became of the delivery, by name: `delivered`, `dropped`,
    /// `retrying`, or `held` when this attempt disabled its endpoint (a
    /// `410 Gone`, or failures reaching the threshold) and the delivery,
    /// still pending, waits kept until the endpoint is enabled again.
    pub fn as_str(&self) -> &'static str {
        match self.verdict {
            Verdict::Retry { .. } if self.recorded.disabled_subscription => "held",
            verdict => verdict.as_str(),
        }
    }
}

type OutcomeHook = Arc<dyn Fn(&AttemptOutcome) + Send + Sync>;

/// Configures a [`Dispatcher`]; from [`Webhooks::dispatcher`].
///
/// ```
/// use std::time::Duration;
/// # use webhooks_core::{Preset, Webhooks};
/// # let webhooks = Webhooks::builder()
/// #     .store(webhooks_memory::MemoryStore::new())
/// #     .preset(Preset::deepsmith())
/// #     .build()
/// #     .unwrap();
/// let dispatcher = webhooks
///     .dispatcher()
///     .concurrency(32)
///     .request_timeout(Duration::from_secs(5))
///     .build()
///     .unwrap();
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct DispatcherBuilder {
    webhooks: Webhooks,
    client: Option<reqwest::ClientBuilder>,
    concurrency: usize,
    per_endpoint: Option<usize>,
    slow_requests: usize,
    allow_private: bool,
    allowed_networks: Vec<String>,
    egress_proxy: Option<String>,
    request_timeout: Duration,
    response_body_limit: usize,
    poll_interval: Duration,
    on_outcome: Option<OutcomeHook>,
    outcome_queue: usize,
}

/// How many outcomes may wait for the hook by default.
const OUTCOME_QUEUE: usize = 10_000;

/// How many requests may wait on slow endpoints, off the workers, by
/// default: well under a process's usual limit of 1 024 open files.
const SLOW_REQUESTS: usize = 512;

impl fmt::Debug for DispatcherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatcherBuilder")
            .field("concurrency", &self.concurrency)
            .field("per_endpoint", &self.per_endpoint)
            .field("slow_requests", &self.slow_requests)
            .field("allow_private", &self.allow_private)
            .field("allowed_networks", &self.allowed_networks)
            .field("egress_proxy", &self.egress_proxy.is_some())
            .field("request_timeout", &self.request_timeout)
            .field("response_body_limit", &self.response_body_limit)
            .field("poll_interval", &self.poll_interval)
            .field("outcome_queue", &self.outcome_queue)
            .finish_non_exhaustive()
    }
}

/// How much longer than a request a lease lasts: room to claim (a store busy
/// with another writer waits a few seconds at most) and to record the
/// outcome. Short, because a crashed worker's claims come back only when
/// their leases end.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// What an attempt leaves of its lease for recording its outcome: the
/// request is cut short rather than let the lease run out under it.
const RECORD_MARGIN: Duration = Duration::from_secs(10);

/// How long recording waits out an unavailable store, within the margin.
const RECORD_PATIENCE: Duration = Duration::from_secs(8);

impl DispatcherBuilder {
    pub(crate) fn new(webhooks: Webhooks) -> Self {
        Self {
            webhooks,
            client: None,
            concurrency: 64,
            per_endpoint: None,
            slow_requests: SLOW_REQUESTS,
            allow_private: false,
            allowed_networks: Vec::new(),
            egress_proxy: None,
            request_timeout: Duration::from_secs(15),
            response_body_limit: 4096,
            poll_interval: Duration::from_secs(1),
            on_outcome: None,
            outcome_queue: OUTCOME_QUEUE,
        }
    }

    /// Workers (1 to 10 000); 64 by default. A worker claims, signs, sends
    /// to an endpoint that answers quickly and records: the work that takes
    /// CPU and store round trips. A request to an endpoint that is slow,
    /// hangs or has not answered yet waits off the workers, in the room that
    /// [`slow_requests`](DispatcherBuilder::slow_requests) sizes, so such
    /// endpoints take no worker from the quick ones.
    pub fn concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests;
        self
    }

    /// The longest one exchange may take, connect to last byte read; 15 s by
    /// default. Past it the attempt fails.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How much of a response body is read and logged; 4 KiB by default.
    pub fn response_body_limit(mut self, bytes: usize) -> Self {
        self.response_body_limit = bytes;
        self
    }

    /// How often an idle dispatcher looks at the store for work it was not
    /// told about (another process's publish); 1 s by default. Publishes
    /// through the same [`Webhooks`] wake it at once.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Requests in flight to one endpoint at most; the concurrency by
    /// default, so one endpoint that answers quickly may use every worker.
    /// Slow and hanging endpoints are held back by their shares and the
    /// room for waiting requests instead. What an endpoint has due past its
    /// share waits in the queue while other endpoints' deliveries are
    /// claimed.
    pub fn per_endpoint_concurrency(mut self, requests: usize) -> Self {
        self.per_endpoint = Some(requests);
        self
    }

    /// Requests that may wait on endpoints that are not known to answer
    /// quickly (slow ones, hanging ones until they time out, new ones until
    /// their first answer), off the workers; 512 by default, 0 to 100 000.
    /// Each costs a socket (an open file) and a few KiB, not a worker. While
    /// the room is full, such endpoints wait in the queue and quick ones go
    /// on. 0 keeps every request on a worker.
    pub fn slow_requests(mut self, requests: usize) -> Self {
        self.slow_requests = requests;
        self
    }

    /// Allows loopback, private-network, link-local and other non-public
    /// targets (development, tests, endpoints inside your own network). Off
    /// by default: customer URLs must not reach into the host's network.
    pub fn allow_private_networks(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self
    }

    /// Allows one network besides the public internet, in CIDR notation
    /// (`10.20.0.0/16`, `fd00:ab::/32`): the middle ground between refusing
    /// every private address and [`allow_private_networks`], for a host
    /// whose customers may reach one internal range. Call once per network;
    /// a malformed one fails [`build`](DispatcherBuilder::build).
    ///
    /// [`allow_private_networks`]: DispatcherBuilder::allow_private_networks
    pub fn allow_network(mut self, cidr: impl Into<String>) -> Self {
        self.allowed_networks.push(cidr.into());
        self
    }

    /// Sends every request through an egress proxy
    /// (`http://egress.internal:3128`) that does its own address filtering:
    /// the proxy resolves the endpoints' names, so the dispatcher's guard
    /// checks only IP literals, and the proxy must refuse internal targets
    /// (Smokescreen, or Squid with ACLs, do). An invalid URL fails
    /// [`build`](DispatcherBuilder::build).
    pub fn egress_proxy(mut self, url: impl Into<String>) -> Self {
        self.egress_proxy = Some(url.into());
        self
    }

    /// Builds the HTTP client from this builder (TLS roots, pool settings).
    /// The dispatcher still turns redirects off, sets its connect timeout and
    /// user agent, and, unless private networks are allowed, adds the address
    /// guard and turns the builder's proxies off (a proxy resolves names
    /// itself, past the guard): to send through one, use
    /// [`egress_proxy`](DispatcherBuilder::egress_proxy).
    pub fn client_builder(mut self, builder: reqwest::ClientBuilder) -> Self {
        self.client = Some(builder);
        self
    }

    /// Calls `hook` with every recorded attempt, e.g. to alert when an
    /// endpoint is disabled. It runs on a task of its own, one outcome after
    /// another in the order they were recorded, never on an attempt's path:
    /// a slow hook delays the hooks after it, not deliveries (though a hook
    /// that blocks its thread takes that thread from the runtime). A hook
    /// that panics is logged and still called with the next outcome.
    ///
    /// Outcomes wait for the hook in a queue of
    /// [`outcome_queue`](DispatcherBuilder::outcome_queue) places. When it is
    /// full, delivery goes on and the hook misses the outcomes that do not
    /// fit: each is counted in `webhooks_outcomes_dropped_total` and the first
    /// is logged. The store's attempt log has every attempt all the same.
    pub fn on_outcome(mut self, hook: impl Fn(&AttemptOutcome) + Send + Sync + 'static) -> Self {
        self.on_outcome = Some(Arc::new(hook));
        self
    }

    /// How many outcomes may wait for the [outcome hook](DispatcherBuilder::on_outcome);
    /// 10 000 by default, at least 1.
    pub fn outcome_queue(mut self, outcomes: usize) -> Self {
        self.outcome_queue = outcomes;
        self
    }

    /// Checks the settings and builds.
    pub fn build(self) -> Result<Dispatcher, Error> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(Error::invalid("concurrency", "must be between 1 and 10000"));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            return Err(Error::invalid("request timeout", "must be between 1 ms and 1 hour"));
        }
        if self.poll_interval.is_zero() || self.poll_interval > Duration::from_secs(3600) {
            return Err(Error::invalid("poll interval", "must be between 1 ms and 1 hour"));
        }
        if self.outcome_queue == 0 {
            return Err(Error::invalid("outcome queue", "must hold at least 1 outcome"));
        }
        let per_endpoint = self.per_endpoint.unwrap_or(self.concurrency);
        if per_endpoint == 0 {
            return Err(Error::invalid("per-endpoint concurrency", "must be at least 1"));
        }
        if self.slow_requests > 100_000 {
            return Err(Error::invalid("slow requests", "must be between 0 and 100000"));
        }
        let networks = self
            .allowed_networks
            .iter()
            .map(|cidr| {
                cidr.parse::<ipnet::IpNet>().map_err(|_| {
                    Error::invalid("allowed network", format!("{cidr:?} is not a network in CIDR notation"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let proxy = self
            .egress_proxy
            .map(|url| reqwest::Proxy::all(&url).map_err(|e| Error::invalid("egress proxy", e.to_string())))
            .transpose()?;
        let guard = Arc::new(Guard::new(self.allow_private, networks));
        let client =
            http::client(self.client.unwrap_or_default(), self.request_timeout, Arc::clone(&guard), proxy)
                .map_err(|e| Error::invalid("http client", e.to_string()))?;
        Ok(Dispatcher {
            shared: Arc::new(Shared {
                webhooks: self.webhooks,
                client,
                request_timeout: self.request_timeout,
                response_body_limit: self.response_body_limit,
                guard,
                on_outcome: self.on_outcome,
                outcome_queue: self.outcome_queue,
            }),
            watch: Arc::new(Watch::new()),
            concurrency: self.concurrency,
            per_endpoint: per_endpoint.min(self.concurrency),
            slow_requests: self.slow_requests,
            poll_interval: self.poll_interval,
        })
    }
}

/// Delivers the queue: a future the host runs on its own runtime and stops
/// with a [`CancellationToken`].
///
/// ```no_run
/// # use webhooks_core::{Preset, Webhooks};
/// use tokio_util::sync::CancellationToken;
///
/// # async fn run(webhooks: Webhooks) -> Result<(), webhooks_core::Error> {
/// let shutdown = CancellationToken::new();
/// let dispatcher = webhooks.dispatcher().build()?;
/// let running = tokio::spawn(dispatcher.run(shutdown.clone()));
/// // ... on SIGTERM:
/// shutdown.cancel();
/// running.await.expect("dispatcher panicked");
/// # Ok(())
/// # }
/// ```
pub struct Dispatcher {
    shared: Arc<Shared>,
    watch: Arc<Watch>,
    concurrency: usize,
    per_endpoint: usize,
    slow_requests: usize,
    poll_interval: Duration,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("concurrency", &self.concurrency)
            .field("per_endpoint", &self.per_endpoint)
            .field("slow_requests", &self.slow_requests)
            .field("request_timeout", &self.shared.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What every worker needs, for the dispatcher's whole life.
struct Shared {
    webhooks: Webhooks,
    client: reqwest::Client,
    request_timeout: Duration,
    response_body_limit: usize,
    /// Which addresses requests may go to.
    guard: Arc<Guard>,
    on_outcome: Option<OutcomeHook>,
    outcome_queue: usize,
}

/// The most attempt records committed in one store transaction.
const RECORD_BATCH: usize = 256;

/// How often the pending-deliveries gauge is refreshed from the store.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);

impl Dispatcher {
    /// How long a claim is held: longer than the longest possible attempt
    /// (the request timeout bounds the whole exchange) plus time to record
    /// it, so no live attempt's delivery is handed to another worker.
    pub fn lease(&self) -> Duration {
        self.shared.request_timeout + LEASE_MARGIN
    }

    /// Tells when this dispatcher, once running, has caught up; see
    /// [`Activity`].
    pub fn activity(&self) -> Activity {
        Activity::new(Arc::clone(&self.watch))
    }

    /// Delivers until `shutdown` is cancelled, then lets the attempts in
    /// flight finish and be recorded (each is bounded by the request timeout)
    /// and returns. Nothing claimed is left behind: every claim is attempted
    /// and recorded, and a failed record is retried by lease expiry.
    ///
    /// `concurrency` workers are spawned once and each loops: take a claim,
    /// make the attempt, record it. An attempt to an endpoint not known to
    /// answer quickly, or one still waiting for its answer after a quick
    /// answer's time, goes on off the worker, on a task this future owns
    /// (up to [`slow_requests`](DispatcherBuilder::slow_requests) of them),
    /// and the worker takes its next claim. One worker at a time claims from the
    /// store, for itself and for every worker waiting behind it, so the
    /// store sees few calls under load; when nothing is due, that worker
    /// alone watches for work (the facade's publishes, the store's
    /// [`DeliveryQueue::wake_ups`](crate::DeliveryQueue::wake_ups), the next due time, the poll interval) while the
    /// others wait behind it. A store that [prefers batches](crate::DeliveryQueue::prefers_batches)
    /// gets the records of many attempts in one call from a recorder task;
    /// otherwise each worker records its own attempt. The
    /// [outcome hook](DispatcherBuilder::on_outcome) runs on a task of its own.
    pub async fn run(self, shutdown: CancellationToken) {
        let webhooks = &self.shared.webhooks;
        let store = Arc::clone(webhooks.store());
        let (hooks, hook_runner) = match &self.shared.on_outcome {
            Some(hook) => {
                let (hooks, queue) = mpsc::channel(self.shared.outcome_queue);
                (Some(hooks), Some(tokio::spawn(run_hooks(Arc::clone(hook), queue))))
            }
            None => (None, None),
        };
        let outcomes = Outcomes { webhooks: webhooks.clone(), hooks, missed: Arc::new(AtomicUsize::new(0)) };
        let watch = Arc::clone(&self.watch);
        // Room for one record per slot: a store slower to record than the
        // workers are to attempt holds the workers back, so at most a
        // bounded number of attempts wait unrecorded under their leases.
        let (to_record, recorder) = if store.prefers_batches() {
            let (to_record, queue) = mpsc::channel(self.concurrency);
            let recorder = tokio::spawn(record_in_batches(
                Arc::clone(&store),
                outcomes.clone(),
                Arc::clone(&watch),
                queue,
            ));
            (Some(to_record), Some(recorder))
        } else {
            (None, None)
        };
        let (off_workers, mut moved) = mpsc::unbounded_channel();
        let pool = Arc::new(Pool {
            wake_ups: store.wake_ups(),
            store,
            shared: Arc::clone(&self.shared),
            lease: chrono::Duration::from_std(self.lease()).unwrap_or(chrono::Duration::MAX),
            poll: chrono::Duration::from_std(self.poll_interval).unwrap_or(chrono::Duration::MAX),
            shutdown,
            claimer: tokio::sync::Mutex::new(Claimer {
                gauge_refreshed: None,
                busy: Vec::new(),
                failing_since: None,
            }),
            waiting: AtomicUsize::new(0),
            ready: Mutex::new(VecDeque::new()),
            shares: Arc::new(Shares::new(self.per_endpoint, self.slow_requests, self.shared.request_timeout)),
            off_workers,
            watch,
            to_record,
            outcomes,
        });
        tracing::info!(
            concurrency = self.concurrency,
            per_endpoint = self.per_endpoint,
            slow_requests = self.slow_requests,
            "dispatcher started"
        );

        // Secrets sealed with the current key; held deliveries bounded.
        let trimmer = tokio::spawn(keep_house(webhooks.clone(), HELD_TRIM_INTERVAL, pool.shutdown.clone()));
        let mut workers = JoinSet::new();
        for _ in 0..self.concurrency {
            workers.spawn(Arc::clone(&pool).work());
        }
        // Attempts waiting off the workers: owned here, so a dispatcher's
        // future dropped (or aborted) stops them with the workers.
        let mut waiting = JoinSet::new();
        let mut stopping = false;
        loop {
            tokio::select! {
                Some(attempt) = moved.recv() => {
                    waiting.spawn(attempt);
                }
                Some(done) = waiting.join_next(), if !waiting.is_empty() => {
                    if let Err(error) = done {
                        tracing::error!(%error, "an attempt waiting off the workers failed");
                    }
                }
                done = workers.join_next() => match done {
                    None => break,
                    Some(Ok(())) => {}
                    Some(Err(error)) => {
                        // Its attempt's slot was freed as it unwound and its
                        // claim's lease ends; a new worker keeps the
                        // concurrency.
                        tracing::error!(%error, "a dispatch worker failed");
                        if !pool.shutdown.is_cancelled() {
                            workers.spawn(Arc::clone(&pool).work());
                        }
                    }
                },
                () = pool.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    tracing::info!("dispatcher stopping; finishing attempts in flight");
                }
            }
        }
        trimmer.abort();
        // Attempts that left their workers finish and are recorded too.
        while let Ok(attempt) = moved.try_recv() {
            waiting.spawn(attempt);
        }
        while let Some(done) = waiting.join_next().await {
            if let Err(error) = done {
                tracing::error!(%error, "an attempt waiting off the workers failed");
            }
        }
        // Workers drain the claims taken for them before they stop; any left
        // by a failed worker go back at once.
        let left: Vec<DeliveryId> = pool.lock_ready().drain(..).map(|c| c.claim.delivery.id).collect();
        if !left.is_empty()
            && let Err(error) = pool.store.release(&left, pool.shared.webhooks.clock().now()).await
        {
            tracing::error!(%error, "store failed to release claims; their leases will end");
        }
        // The last handles on the recorder's and the hooks' queues go with
        // the pool: both finish what was queued and end.
        drop(pool);
        if let Some(recorder) = recorder
            && let Err(error) = recorder.await
        {
            tracing::error!(%error, "the recorder failed");
        }
        if let Some(hook_runner) = hook_runner
            && let Err(error) = hook_runner.await
        {
            tracing::error!(%error, "the outcome hook runner failed");
        }
        tracing::info!("dispatcher stopped");
    }
}

/// What the workers of one [`Dispatcher::run`] share.
struct Pool {
    shared: Arc<Shared>,
    store: Arc<dyn Store>,
    wake_ups: Option<Arc<Notify>>,
    lease: chrono::Duration,
    poll: chrono::Duration,
    shutdown: CancellationToken,
    /// Held by the one worker claiming from the store (or watching for
    /// work); the others queue behind it.
    claimer: tokio::sync::Mutex<Claimer>,
    /// Workers queued for a claim: the claimer claims for them too.
    waiting: AtomicUsize,
    watch: Arc<Watch>,
    /// Claims taken for queued workers, each already counted in its
    /// endpoint's share.
    ready: Mutex<VecDeque<Claimed>>,
    shares: Arc<Shares>,
    /// Where workers hand the attempts whose requests wait off the workers.
    off_workers: mpsc::UnboundedSender<MovedAttempt>,
    /// The recorder's queue, when the store records in batches.
    to_record: Option<mpsc::Sender<ToRecord>>,
    outcomes: Outcomes,
}

/// An attempt whose request waits off the workers, handed to
/// [`Dispatcher::run`] to run on a task of its own.
type MovedAttempt = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The claimer's own state, kept between claims.
struct Claimer {
    gauge_refreshed: Option<Instant>,
    /// The endpoints to pass over, reused from claim to claim.
    busy: Vec<SubscriptionId>,
    /// Since when claims have failed: an outage is logged as it begins and
    /// as it ends, not at every poll.
    failing_since: Option<Instant>,
}

/// A claim on its way to an attempt, holding its place in its endpoint's
/// share.
struct Claimed {
    claim: Claim,
    lease_until: DateTime<Utc>,
    share: Share,
    busy: Busy,
}

/// An attempt waiting to be recorded, with what its outcome needs.
struct ToRecord {
    record: AttemptRecord,
    about: About,
    busy: Busy,
}

/// Which delivery an attempt was, for its outcome.
struct About {
    subscription_id: SubscriptionId,
    event_type: String,
    span: tracing::Span,
}

/// What follows a recorded attempt: the waiters on settled deliveries,
/// metrics, logs and the host's hook.
#[derive(Clone)]
struct Outcomes {
    webhooks: Webhooks,
    hooks: Option<mpsc::Sender<AttemptOutcome>>,
    /// Outcomes the hook missed because its queue was full.
    missed: Arc<AtomicUsize>,
}

impl Outcomes {
    /// The operational events a recorded attempt makes: each comes from
    /// the one instance that recorded it. The hook hears them at once;
    /// their webhooks are published on a task of their own, off the
    /// recording path.
    fn tell_what_changed(&self, record: &AttemptRecord, recorded: Recorded, subscription_id: SubscriptionId) {
        let at = record.now;
        let mut events = Vec::new();
        if recorded.disabled_subscription {
            let reason = record
                .disable_now
                .clone()
                .unwrap_or_else(|| format!("{} consecutive failed attempts", recorded.consecutive_failures));
            events.push(OperationalEvent::EndpointDisabled { subscription_id, reason, at });
        } else if recorded.consecutive_failures == FAILING_AFTER {
            let consecutive_failures = recorded.consecutive_failures;
            events.push(OperationalEvent::EndpointFailing { subscription_id, consecutive_failures, at });
        }
        if record.verdict == Verdict::Dropped {
            let delivery_id = record.attempt.delivery_id;
            events.push(OperationalEvent::DeliveryDropped { subscription_id, delivery_id, at });
        }
        for event in &events {
            self.webhooks.hear(event);
        }
        if !events.is_empty() && self.webhooks.publishes_operational() {
            let webhooks = self.webhooks.clone();
            tokio::spawn(async move {
                for event in events {
                    webhooks.publish_operational(event).await;
                }
            });
        }
    }

    fn recorded(&self, record: AttemptRecord, result: StoreResult<Recorded>, about: About) {
        let recorded = match result {
            Ok(recorded) => recorded,
            Err(error) => {
                // The lease runs out and the delivery is attempted again:
                // at least once, never lost.
                tracing::error!(%error, "could not record the attempt; it will be retried when its lease ends");
                return;
            }
        };
        self.webhooks.settled().notify_waiters();
        let verdict = record.verdict;
        count_attempt(verdict, record.attempt.duration);
        if recorded.disabled_subscription {
            metrics::counter!("webhooks_endpoints_disabled_total").increment(1);
        }
        self.tell_what_changed(&record, recorded, about.subscription_id);
        match (&record.attempt.result, recorded.disabled_subscription) {
            (_, true) => tracing::warn!(failures = recorded.consecutive_failures, "endpoint disabled"),
            (AttemptResult::Error(error), _) => tracing::info!(%error, "attempt failed"),
            _ => tracing::debug!("attempt recorded"),
        }
        if let Some(hooks) = &self.hooks {
            let sent = hooks.try_send(AttemptOutcome {
                delivery_id: record.attempt.delivery_id,
                subscription_id: about.subscription_id,
                event_type: about.event_type,
                attempt: record.attempt,
                verdict,
                recorded,
            });
            // Delivery never waits for the hook: what does not fit is missed.
            if let Err(mpsc::error::TrySendError::Full(outcome)) = sent {
                metrics::counter!("webhooks_outcomes_dropped_total").increment(1);
                if self.missed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        delivery_id = %outcome.delivery_id,
                        "the outcome hook is behind and its queue is full; outcomes that do not fit are not handed to it"
                    );
                }
            }
        }
    }
}

/// Counts an attempt by its outcome. The label values are literals, so the
/// keys are static and counting allocates nothing.
fn count_attempt(verdict: Verdict, duration: Duration) {
    macro_rules! count {
        ($outcome:literal) => {{
            metrics::counter!("webhooks_attempts_total", "outcome" => $outcome).increment(1);
            metrics::histogram!("webhooks_attempt_duration_seconds", "outcome" => $outcome)
                .record(duration.as_secs_f64());
        }};
    }
    match verdict {
        Verdict::Delivered => count!("delivered"),
        Verdict::Retry { .. } => count!("retrying"),
        Verdict::Dropped => count!("dropped"),
    }
}

/// Calls the host's hook with each outcome, in the order they were recorded,
/// on a task of its own: a slow hook delays later hooks, not attempts. A
/// panicking hook is logged and the next outcome is handed to it all the same.
/// One outcome out of the queue at a time, so the queue's bound is all that
/// waits; each wake-up hands on every outcome already queued.
async fn run_hooks(hook: OutcomeHook, mut queue: mpsc::Receiver<AttemptOutcome>) {
    let call = |outcome: AttemptOutcome| {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&outcome))).is_err() {
            tracing::error!(delivery_id = %outcome.delivery_id, "the outcome hook panicked");
        }
    };
    while let Some(outcome) = queue.recv().await {
        call(outcome);
        while let Ok(outcome) = queue.try_recv() {
            call(outcome);
        }
    }
}

/// How often a dispatcher trims disabled endpoints' held deliveries.
const HELD_TRIM_INTERVAL: Duration = Duration::from_secs(60);

/// Calls [`Webhooks::reseal_secrets`] once, then [`Webhooks::trim_held`]
/// and [`Webhooks::forget_expired_keys`] every `interval` until
/// `shutdown`.
async fn keep_house(webhooks: Webhooks, interval: Duration, shutdown: CancellationToken) {
    if let Err(error) = webhooks.reseal_secrets().await {
        tracing::error!(%error, "could not seal secrets with the current key");
    }
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = webhooks.trim_held().await {
            tracing::error!(%error, "could not trim held deliveries");
        }
        if let Err(error) = webhooks.forget_expired_keys().await {
            tracing::error!(%error, "could not forget expired idempotency keys");
        }
    }
}

/// How long a delivery whose subscription names a retry policy this
/// instance does not know waits before it is looked at again.
const UNKNOWN_POLICY_WAIT: Duration = Duration::from_secs(60);

/// Records attempts as they come, every one queued meanwhile in the same
/// transaction: a durable store pays one commit for many attempts.
async fn record_in_batches(
    store: Arc<dyn Store>,
    outcomes: Outcomes,
    watch: Arc<Watch>,
    mut queue: mpsc::Receiver<ToRecord>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        // Each stays busy until its outcome is out.
        let mut busy = Vec::with_capacity(batch.len());
        let (records, about): (Vec<AttemptRecord>, Vec<About>) = batch
            .drain(..)
            .map(|t| {
                busy.push(t.busy);
                (t.record, t.about)
            })
            .unzip();
        // A store unavailable for a moment (a restart) is waited out within
        // the leases, so the attempts are not made again.
        let results =
            match while_unavailable(RECORD_PATIENCE, "recording", || store.record_attempts(&records)).await {
                Ok(results) if results.len() == records.len() => results,
                Ok(_) => records
                    .iter()
                    .map(|_| Err(StoreError::backend("the store recorded a short batch")))
                    .collect(),
                Err(error) => {
                    let message = error.to_string();
                    records.iter().map(|_| Err(StoreError::backend(message.clone()))).collect()
                }
            };
        // Retries may be due now.
        watch.changed();
        for ((record, result), about) in records.into_iter().zip(results).zip(about) {
            let span = about.span.clone();
            span.in_scope(|| outcomes.recorded(record, result, about));
        }
        drop(busy);
    }
}

fn attempt_span(claim: &Claim) -> tracing::Span {
    tracing::info_span!(
        "webhooks.attempt",
        delivery_id = %claim.delivery.id,
        subscription_id = %claim.subscription.id,
        // The host alone: a path or a query may carry a token.
        host = %claim.subscription.url.host_str().unwrap_or_default(),
        event_type = %claim.delivery.event_type,
        attempt = claim.delivery.attempts + 1,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}

impl Pool {
    fn lock_ready(&self) -> MutexGuard<'_, VecDeque<Claimed>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One worker: attempts claims until shutdown and no claim taken for it
    /// is left.
    async fn work(self: Arc<Self>) {
        // The endpoints this worker's claims pass over, kept between claims.
        let mut skip = Vec::new();
        while let Some(claimed) = self.next_claim(&mut skip).await {
            let span = attempt_span(&claimed.claim);
            let off_worker = claimed.share.off_worker();
            let mover = claimed.share.mover();
            let mut attempt: MovedAttempt = Box::pin(Arc::clone(&self).attempt(claimed).instrument(span));
            // A request to an endpoint not known to be quick waits off the
            // workers from the start; one to a quick endpoint leaves its
            // worker once it has waited longer than a quick answer takes.
            if off_worker {
                self.move_off(attempt).await;
                continue;
            }
            tokio::select! {
                biased;
                () = &mut attempt => {}
                () = tokio::time::sleep(self.shares.quick_within()) => {
                    if mover.leave_worker() {
                        self.move_off(attempt).await;
                    } else {
                        attempt.await;
                    }
                }
            }
        }
    }

    /// Hands an attempt to the dispatcher's task for attempts off the
    /// workers; runs it here should that task be gone.
    async fn move_off(&self, attempt: MovedAttempt) {
        if let Err(mpsc::error::SendError(attempt)) = self.off_workers.send(attempt) {
            attempt.await;
        }
    }

    /// The next claim to attempt: one taken for this worker already, or one
    /// it claims itself (for the workers queued behind it too), waiting for
    /// work if none is due. `None` once shutting down with nothing claimed.
    async fn next_claim(&self, skip: &mut Vec<SubscriptionId>) -> Option<Claimed> {
        loop {
            if let Some(claimed) = self.lock_ready().pop_front() {
                return Some(claimed);
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            if self.to_record.is_none()
                && let Some(claimed) = self.claim_alone(skip).await
            {
                return Some(claimed);
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            self.watch.changed();
            let mut claimer = self.claimer.lock().await;
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            // The worker before us may have claimed for us.
            if let Some(claimed) = self.lock_ready().pop_front() {
                return Some(claimed);
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            if let Some(claimed) = self.claim(&mut claimer).await {
                return Some(claimed);
            }
        }
    }

    /// Claims one delivery for this worker alone, if one is due: how workers
    /// take work from a store that costs little per call (the memory
    /// store), with no hand-over between workers while work is due. When
    /// none is, the worker queues behind the claimer, who waits for work.
    async fn claim_alone(&self, skip: &mut Vec<SubscriptionId>) -> Option<Claimed> {
        let now = self.shared.webhooks.clock().now();
        let lease_until = now + self.lease;
        self.shares.busy(skip, now);
        let claim = self
            .store
            .claim_due(&ClaimRequest { now, limit: 1, lease_until, skip })
            .await
            .ok()?
            .into_iter()
            .next()?;
        match self.shares.take(&claim.subscription, now) {
            Ok(share) => Some(Claimed { claim, lease_until, share, busy: self.watch.busy() }),
            Err(_) => {
                if let Err(error) = self.store.release(&[claim.delivery.id], now).await {
                    tracing::error!(%error, "store failed to release a claim; its lease will end");
                }
                None
            }
        }
    }

    /// Claims for this worker and those queued behind it, waiting until
    /// something is due; `None` at shutdown. Called with the claimer held.
    async fn claim(&self, claimer: &mut Claimer) -> Option<Claimed> {
        let clock = self.shared.webhooks.clock();
        loop {
            // Created before looking at the store, so a publish that lands
            // while we look still wakes us: a `Notified` sees every
            // `notify_waiters` from its creation on.
            let work = self.shared.webhooks.work().notified();
            // The store's wake-ups too: one that fires while we claim must
            // not wait for the next poll.
            let woken = self.wake_ups.as_ref().map(|wake_ups| wake_ups.notified());
            let woken = async {
                match woken {
                    Some(woken) => woken.await,
                    None => std::future::pending().await,
                }
            };
            let changes = self.watch.changes.load(Ordering::SeqCst);

            if claimer.gauge_refreshed.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                claimer.gauge_refreshed = Some(Instant::now());
                match self.store.pending_count().await {
                    Ok(pending) => metrics::gauge!("webhooks_pending_deliveries").set(pending as f64),
                    Err(error) => tracing::warn!(%error, "store failed to count pending deliveries"),
                }
            }

            let now = clock.now();
            let lease_until = now + self.lease;
            let mut wait_until = now + self.poll;
            // Endpoints with their share in flight, or out of rate, wait in
            // the queue; look again when a rate limit lets one go.
            if let Some(next_token) = self.shares.busy(&mut claimer.busy, now) {
                wait_until = wait_until.min(next_token);
            }
            let wanted = self.waiting.load(Ordering::Relaxed) + 1;
            // Whether the store answered both questions: only then is finding
            // nothing a pass.
            let mut looked = true;
            let claimed = self
                .store
                .claim_due(&ClaimRequest { now, limit: wanted, lease_until, skip: &claimer.busy })
                .await;
            match (&claimed, claimer.failing_since) {
                (Ok(_), Some(since)) => {
                    claimer.failing_since = None;
                    tracing::info!(
                        after_ms = since.elapsed().as_millis() as u64,
                        "store answers claims again"
                    );
                }
                (Err(error), None) => {
                    claimer.failing_since = Some(Instant::now());
                    tracing::error!(%error, "store failed to claim deliveries; trying again every poll");
                }
                (Err(error), Some(_)) => tracing::debug!(%error, "store still fails to claim deliveries"),
                (Ok(_), None) => {}
            }
            match claimed {
                Ok(claims) if !claims.is_empty() => {
                    let mut mine = None;
                    let mut over_share = Vec::new();
                    for claim in claims {
                        let share = match self.shares.take(&claim.subscription, now) {
                            Ok(share) => share,
                            Err(Refused::Busy | Refused::Rate(_)) => {
                                over_share.push(claim.delivery.id);
                                continue;
                            }
                        };
                        let claimed = Claimed { claim, lease_until, share, busy: self.watch.busy() };
                        match mine {
                            None => mine = Some(claimed),
                            Some(_) => self.lock_ready().push_back(claimed),
                        }
                    }
                    // More of one endpoint than its share or its rate allows
                    // came in one batch: back at once; the next claims pass
                    // the endpoint over until it may have more.
                    if !over_share.is_empty()
                        && let Err(error) = self.store.release(&over_share, now).await
                    {
                        tracing::error!(%error, "store failed to release claims; their leases will end");
                    }
                    if mine.is_some() {
                        return mine;
                    }
                    continue;
                }
                Ok(_) => match self.store.next_due_at().await {
                    // Due now yet not claimed: it is a busy endpoint's,
                    // claimable when one of its attempts ends.
                    Ok(Some(due)) if due <= now => {}
                    Ok(Some(due)) => wait_until = wait_until.min(due),
                    Ok(None) => {}
                    Err(error) => {
                        looked = false;
                        tracing::error!(%error, "store failed to tell the next due time");
                    }
                },
                Err(_) => looked = false,
            }
            if wait_until <= clock.now() {
                continue;
            }
            // Idle, then a last look at the changes: a worker or the
            // recorder either sees us idle and wakes us, or its change is
            // seen here.
            self.watch.idle.store(true, Ordering::SeqCst);
            if self.watch.changes.load(Ordering::SeqCst) == changes {
                if looked {
                    self.watch.looked_idle(changes);
                }
                tokio::select! {
                    () = self.shutdown.cancelled() => {}
                    () = work => {}
                    () = woken => {}
                    () = self.watch.wake.notified() => {}
                    () = clock.sleep_until(wait_until) => {}
                }
            }
            self.watch.idle.store(false, Ordering::SeqCst);
            if self.shutdown.is_cancelled() {
                return None;
            }
        }
    }

    /// Makes one attempt and records it (or hands it to the recorder), all
    /// before the claim's lease ends.
    async fn attempt(self: Arc<Self>, claimed: Claimed) {
        let Claimed { claim: Claim { delivery, subscription }, lease_until, share, busy } = claimed;
        let shared = &*self.shared;
        let webhooks = &shared.webhooks;
        let preset = webhooks.preset();
        let clock = webhooks.clock();
        let number = delivery.attempts + 1;

        let started_at = clock.now();
        // A policy this instance does not know is not guessed at: the
        // delivery stays pending for an instance that knows it (or this one,
        // once redeployed), looked at again after a while.
        let retry = match webhooks.retry_for(&subscription) {
            Ok(retry) => retry,
            Err(error) => {
                metrics::counter!("webhooks_unknown_retry_policy_total").increment(1);
                tracing::error!(%error, subscription_id = %subscription.id, "delivery not attempted");
                let later = started_at + chrono::Duration::from_std(UNKNOWN_POLICY_WAIT).unwrap_or_default();
                if let Err(error) = self.store.release(&[delivery.id], later).await {
                    tracing::error!(%error, "could not release a claim; its lease will end");
                }
                return;
            }
        };
        // A claim that waited long for a busy store has less of its lease
        // left: the request gets what remains after room to record.
        let left = (lease_until - started_at).to_std().ok().and_then(|left| left.checked_sub(RECORD_MARGIN));
        let Some(timeout) = left.filter(|left| !left.is_zero()).map(|left| left.min(shared.request_timeout))
        else {
            if let Err(error) = self.store.release(&[delivery.id], started_at).await {
                tracing::error!(%error, "could not release a claim whose lease ran short");
            }
            return;
        };
        let message = Message {
            delivery_id: delivery.id,
            event_type: &delivery.event_type,
            body: &delivery.body,
            timestamp: started_at,
        };
        let mut headers = preset.scheme().headers(&message, &subscription.signing_secrets(started_at));
        // The subscription's own headers, checked when it was saved never
        // to name one the scheme sets; one the scheme sets only sometimes
        // (a custom scheme) still never gets a second value.
        for header in &subscription.settings.headers {
            if !headers.contains_key(header.header_name()) {
                headers.insert(header.header_name().clone(), header.header_value().clone());
            }
        }
        let timer = Instant::now();
        let exchange = http::post(
            &shared.client,
            &subscription.url,
            headers,
            delivery.body.clone(),
            timeout,
            shared.response_body_limit,
            &shared.guard,
        )
        .await;
        let attempt = Attempt {
            delivery_id: delivery.id,
            cycle: delivery.cycle,
            number,
            started_at,
            duration: timer.elapsed(),
            result: exchange.result,
        };
        // The endpoint's share follows how it answered; the slot itself is
        // freed once the attempt is handed on.
        share.finish(match attempt.result {
            AttemptResult::Response { .. } => Finished::Answered(attempt.duration),
            AttemptResult::Error(_) => Finished::NoAnswer(attempt.duration),
        });

        let now = clock.now();
        let disable = preset.disable_policy_for(&subscription);
        let judged = judge(&attempt, exchange.retry_after, &*retry, &disable, now);
        let verdict = judged.verdict;
        let span = tracing::Span::current();
        if let Some(status) = attempt.status() {
            span.record("status", status);
        }
        span.record("duration_ms", attempt.duration.as_millis() as u64);
        span.record("outcome", verdict.as_str());

        let record = AttemptRecord {
            attempt,
            verdict,
            disable_after: disable.threshold(),
            disable_now: judged.disable_now,
            now,
        };
        let about = About { subscription_id: subscription.id, event_type: delivery.event_type, span };
        match &self.to_record {
            Some(to_record) => {
                if to_record.send(ToRecord { record, about, busy }).await.is_err() {
                    tracing::error!("the recorder stopped; the attempt will be retried when its lease ends");
                }
            }
            None => {
                let result =
                    while_unavailable(RECORD_PATIENCE, "recording", || self.store.record_attempt(&record))
                        .await;
                self.outcomes.recorded(record, result, about);
                drop(busy);
            }
        }
    }
}

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use metrics_util::debugging::DebuggingRecorder;

    use super::*;

    #[test]
    fn attempts_are_counted_under_their_verdicts_name() {
        for verdict in [Verdict::Delivered, Verdict::Retry { at: Utc::now() }, Verdict::Dropped] {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            metrics::with_local_recorder(&recorder, || count_attempt(verdict, Duration::from_millis(5)));
            let mut seen: Vec<(String, Vec<String>)> = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, ..)| {
                    let key = key.key();
                    (
                        key.name().to_owned(),
                        key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect(),
                    )
                })
                .collect();
            seen.sort();
            let label = vec![format!("outcome={}", verdict.as_str())];
            assert_eq!(
                seen,
                vec![
                    ("webhooks_attempt_duration_seconds".to_owned(), label.clone()),
                    ("webhooks_attempts_total".to_owned(), label),
                ]
            );
        }
    }
}
