//! The dispatcher itself: starts the workers, the recorder, the outcome
//! hook and the housekeeping, runs the attempts moved off the workers, and
//! on shutdown lets everything in flight finish and be recorded.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::activity::{Activity, Watch};
use super::attempt::Attempts;
use super::claim::{Claims, Timing};
use super::http::Transport;
use super::parts::{Parts, Upkeep};
use super::record::{Aftermath, OutcomeHook, Recorder};
use super::shares::Shares;
use super::workers::{MovedAttempt, Workers};
use crate::error::ErrorChain;

/// How much longer than a request a lease lasts: room to claim (a store busy
/// with another writer waits a few seconds at most) and to record the
/// outcome. Short, because a crashed worker's claims come back only when
/// their leases end.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// How often a dispatcher trims disabled endpoints' held deliveries.
const HELD_TRIM_INTERVAL: Duration = Duration::from_secs(60);

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
    pub(super) parts: Arc<Parts>,
    /// Where the workers run: one lane per runtime, at least one.
    pub(super) lanes: Vec<Lane>,
    pub(super) request_timeout: Duration,
    pub(super) on_outcome: Option<OutcomeHook>,
    pub(super) outcome_queue: usize,
    pub(super) watch: Arc<Watch>,
    pub(super) concurrency: usize,
    pub(super) per_endpoint: usize,
    pub(super) slow_requests: usize,
    pub(super) poll_interval: Duration,
}

/// Some of a dispatcher's workers, on one runtime, with what they alone use.
pub(super) struct Lane {
    /// Their runtime; `None`: the one that runs the dispatcher.
    pub(super) runtime: Option<Handle>,
    /// Their HTTP client.
    pub(super) transport: Transport,
    pub(super) workers: usize,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("concurrency", &self.concurrency)
            .field("per_endpoint", &self.per_endpoint)
            .field("slow_requests", &self.slow_requests)
            .field("request_timeout", &self.request_timeout)
            .field("runtimes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// How long a claim is held: longer than the longest possible attempt
    /// (the request timeout bounds the whole exchange) plus time to record
    /// it, so no live attempt's delivery is handed to another worker.
    pub fn lease(&self) -> Duration {
        self.request_timeout + LEASE_MARGIN
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
    /// (up to [`slow_requests`](crate::DispatcherBuilder::slow_requests) of them),
    /// and the worker takes its next claim. One worker at a time claims from the
    /// store, for itself and for every worker waiting behind it, so the
    /// store sees few calls under load; when nothing is due, that worker
    /// alone watches for work (the facade's publishes, the store's
    /// [`DeliveryQueue::wake_ups`](crate::DeliveryQueue::wake_ups), the next due time, the poll interval) while the
    /// others wait behind it. A store that [prefers batches](crate::DeliveryQueue::prefers_batches)
    /// gets the records of many attempts in one call from a recorder task;
    /// otherwise each worker records its own attempt. The
    /// [outcome hook](crate::DispatcherBuilder::on_outcome) runs on a task of its own.
    /// [Spread over](crate::DispatcherBuilder::spread_over) several runtimes,
    /// each runtime's workers do all this among themselves; dropping this
    /// future stops them all.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            concurrency = self.concurrency,
            per_endpoint = self.per_endpoint,
            slow_requests = self.slow_requests,
            runtimes = self.lanes.len(),
            "dispatcher started"
        );
        let lease = chrono::Duration::from_std(self.lease()).unwrap_or(chrono::Duration::MAX);
        let upkeep = Arc::clone(&self.parts.upkeep);
        // Secrets sealed with the current key; held deliveries bounded.
        let housekeeper = tokio::spawn(keep_house(upkeep, HELD_TRIM_INTERVAL, shutdown.clone()));
        let (outcomes, hook_runner) =
            Aftermath::start(Arc::clone(&self.parts), self.on_outcome, self.outcome_queue);
        let shared = Shared {
            parts: self.parts,
            shares: Arc::new(Shares::new(self.per_endpoint, self.slow_requests, self.request_timeout)),
            watch: self.watch,
            outcomes,
            timing: Timing {
                lease,
                poll: chrono::Duration::from_std(self.poll_interval).unwrap_or(chrono::Duration::MAX),
            },
            request_timeout: self.request_timeout,
            shutdown,
        };
        // Owned here, so a dispatcher's future dropped (or aborted) stops
        // every lane with it.
        let mut lanes = JoinSet::new();
        for (index, lane) in self.lanes.into_iter().enumerate() {
            let running = shared.clone().run_lane(index, lane.transport, lane.workers);
            match &lane.runtime {
                Some(runtime) => lanes.spawn_on(running, runtime),
                None => lanes.spawn(running),
            };
        }
        // The last handle on the hook's queue but the lanes' goes.
        drop(shared);
        while let Some(done) = lanes.join_next().await {
            if let Err(error) = done {
                tracing::error!(error = %ErrorChain(&error), "a runtime's workers failed");
            }
        }
        housekeeper.abort();
        // The hook hears what was queued for it and ends.
        if let Some(hook_runner) = hook_runner
            && let Err(error) = hook_runner.await
        {
            tracing::error!(error = %ErrorChain(&error), "the outcome hook runner failed");
        }
        tracing::info!("dispatcher stopped");
    }
}

/// What every lane of a running dispatcher shares.
#[derive(Clone)]
struct Shared {
    parts: Arc<Parts>,
    shares: Arc<Shares>,
    watch: Arc<Watch>,
    outcomes: Aftermath,
    timing: Timing,
    request_timeout: Duration,
    shutdown: CancellationToken,
}

impl Shared {
    /// Runs one lane's `workers` (the `index`th claimer of the watch) until
    /// shutdown, then lets what they have in flight finish and be recorded.
    async fn run_lane(self, index: usize, transport: Transport, workers: usize) {
        let Shared { parts, shares, watch, outcomes, timing, request_timeout, shutdown } = self;
        // Room for one record per worker: a store slower to record than the
        // workers are to attempt holds the workers back, so at most a
        // bounded number of attempts wait unrecorded under their leases.
        let store = Arc::clone(&parts.store);
        let (recorder, batch_recorder) = Recorder::start(store, outcomes, Arc::clone(&watch), workers);
        let attempts = Arc::new(Attempts::new(Arc::clone(&parts), transport, request_timeout, recorder));
        let quick_within = shares.quick_within();
        let alone = !attempts.recorded_in_batches();
        let claims = Claims::new(parts, timing, shutdown.clone(), alone, shares, (watch, index));
        let (off_workers, mut moved) = mpsc::unbounded_channel();
        let workers_of_lane = Arc::new(Workers::new(claims, attempts, quick_within, off_workers));
        // Attempts waiting off the workers: owned here, so a dropped lane
        // stops them with the workers.
        let mut waiting = JoinSet::new();
        supervise(&workers_of_lane, workers, &mut moved, &mut waiting, &shutdown).await;
        // Attempts that left their workers finish and are recorded too.
        while let Ok(attempt) = moved.try_recv() {
            waiting.spawn(attempt);
        }
        while let Some(done) = waiting.join_next().await {
            if let Err(error) = done {
                tracing::error!(error = %ErrorChain(&error), "an attempt waiting off the workers failed");
            }
        }
        // Workers drain the claims taken for them before they stop; any left
        // by a failed worker go back at once.
        workers_of_lane.claims.give_back_ready().await;
        // The last handle on the recorder's queue goes with the workers: it
        // records what was queued and ends.
        drop(workers_of_lane);
        if let Some(recorder) = batch_recorder
            && let Err(error) = recorder.await
        {
            tracing::error!(error = %ErrorChain(&error), "the recorder failed");
        }
    }
}

/// Runs `concurrency` workers until shutdown and each has ended, a new one
/// in place of one that failed, and the attempts they move off them into
/// `waiting`.
async fn supervise(
    workers: &Arc<Workers>,
    concurrency: usize,
    moved: &mut mpsc::UnboundedReceiver<MovedAttempt>,
    waiting: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) {
    let mut running = JoinSet::new();
    for _ in 0..concurrency {
        running.spawn(Arc::clone(workers).work());
    }
    let mut stopping = false;
    loop {
        tokio::select! {
            Some(attempt) = moved.recv() => {
                waiting.spawn(attempt);
            }
            Some(done) = waiting.join_next(), if !waiting.is_empty() => {
                if let Err(error) = done {
                    tracing::error!(error = %ErrorChain(&error), "an attempt waiting off the workers failed");
                }
            }
            done = running.join_next() => match done {
                None => break,
                Some(Ok(())) => {}
                Some(Err(error)) => {
                    // Its attempt's slot was freed as it unwound and its
                    // claim's lease ends; a new worker keeps the
                    // concurrency.
                    tracing::error!(error = %ErrorChain(&error), "a dispatch worker failed");
                    if !shutdown.is_cancelled() {
                        running.spawn(Arc::clone(workers).work());
                    }
                }
            },
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                tracing::info!("dispatcher stopping; finishing attempts in flight");
            }
        }
    }
}

/// Has the facade reseal secrets once, then trim held deliveries and
/// forget expired idempotency keys every `interval` until `shutdown`.
async fn keep_house(upkeep: Arc<dyn Upkeep>, interval: Duration, shutdown: CancellationToken) {
    if let Err(error) = upkeep.reseal_secrets().await {
        tracing::error!(error = %ErrorChain(&error), "could not seal secrets with the current key");
    }
    let mut ticks = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = upkeep.trim_held().await {
            tracing::error!(error = %ErrorChain(&error), "could not trim held deliveries");
        }
        if let Err(error) = upkeep.forget_expired_keys().await {
            tracing::error!(error = %ErrorChain(&error), "could not forget expired idempotency keys");
        }
    }
}
