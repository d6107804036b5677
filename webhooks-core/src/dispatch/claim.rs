//! The claim stage: due deliveries leased from the store, each holding its
//! place in its endpoint's share, handed to the workers as [`Claimed`].
//!
//! One worker at a time claims from the store (the claimer), for itself
//! and for every worker queued behind it, so the store sees few calls under
//! load; when nothing is due, the claimer alone watches for work (the
//! facade's publishes, the store's wake-ups, the next due time, the poll
//! interval) while the others wait behind it. Where the store costs little
//! per call and records alone, a worker first tries to claim for itself
//! alone, with no hand-over between workers while work is due.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[cfg(not(feature = "metrics"))]
use crate::telemetry::metrics;
#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio_util::sync::CancellationToken;

use super::activity::{Busy, Watch};
use super::parts::Parts;
use super::shares::{Refused, Share, Shares};
use crate::error::ErrorChain;
use crate::model::{DeliveryId, SubscriptionId};
use crate::store::{Claim, ClaimRequest, Store, StoreResult};

/// Busy endpoints a claim passes over for each delivery it takes alone.
const PASSED_PER_CLAIMED: usize = 16;

/// The most deliveries a worker claims alone.
const MOST_CLAIMED_ALONE: usize = 16;

/// How many deliveries a worker claiming alone takes, passing over `busy`
/// endpoints: one while few are busy; more as more are, since the store
/// steps over each busy endpoint's due work once per claim, so that what
/// each delivery pays for the pass stays the same however many are busy.
fn alone_limit(busy: usize) -> usize {
    (busy / PASSED_PER_CLAIMED).clamp(1, MOST_CLAIMED_ALONE)
}

/// How often the pending-deliveries gauge is refreshed from the store.
const GAUGE_INTERVAL: Duration = Duration::from_secs(10);

/// A claim on its way to an attempt, holding its place in its endpoint's
/// share.
pub(super) struct Claimed {
    pub(super) claim: Claim,
    pub(super) lease_until: DateTime<Utc>,
    pub(super) share: Share,
    pub(super) busy: Busy,
}

/// How long claims are held and how long an idle claimer waits at most.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    pub(super) lease: chrono::Duration,
    pub(super) poll: chrono::Duration,
}

/// The claiming side of a running dispatcher, shared by its workers on one
/// runtime: each runtime the dispatcher runs on claims for its own workers.
pub(super) struct Claims {
    parts: Arc<Parts>,
    store: Arc<dyn Store>,
    wake_ups: Option<Arc<Notify>>,
    timing: Timing,
    shutdown: CancellationToken,
    /// Whether a worker may claim for itself alone before queueing.
    alone: bool,
    /// Held by the one worker claiming from the store (or watching for
    /// work); the others queue behind it.
    claimer: tokio::sync::Mutex<Claimer>,
    /// Workers queued for a claim: the claimer claims for them too.
    waiting: AtomicUsize,
    /// Claims taken for queued workers, each already counted in its
    /// endpoint's share.
    ready: Mutex<VecDeque<Claimed>>,
    shares: Arc<Shares>,
    watch: Arc<Watch>,
    /// This claimer's place in the watch.
    index: usize,
}

/// The claimer's own state, kept between claims.
struct Claimer {
    gauge_refreshed: Option<Instant>,
    /// The endpoints to pass over, reused from claim to claim.
    busy: Vec<SubscriptionId>,
    /// Since when claims have failed: an outage is logged as it begins and
    /// as it ends, not at every poll.
    failing_since: Option<Instant>,
}

/// What one look at the store found.
enum Look {
    /// Claims, for this worker and those queued behind it.
    Claims(Vec<Claim>),
    /// Nothing claimable now; when something is due later, if anything is.
    Nothing { next_due: Option<DateTime<Utc>> },
    /// The store did not answer: finding nothing is not a pass.
    Failed,
}

/// What wakes an idle claimer: made before it looks at the store, so a
/// change while it looks still wakes it (a `Notified` sees every
/// `notify_waiters` from its creation on).
struct Wake<'a> {
    /// The facade's publishes.
    work: Notified<'a>,
    /// The store's wake-ups, if it has any.
    woken: Option<Notified<'a>>,
    /// The count of the workers' and the recorder's changes.
    changes: usize,
}

impl Claims {
    /// `alone`: workers may claim for themselves alone (a store that costs
    /// little per call and records alone); `index`: which of the watch's
    /// claimers this is.
    pub(super) fn new(
        parts: Arc<Parts>,
        timing: Timing,
        shutdown: CancellationToken,
        alone: bool,
        shares: Arc<Shares>,
        (watch, index): (Arc<Watch>, usize),
    ) -> Self {
        let store = Arc::clone(&parts.store);
        Self {
            wake_ups: store.wake_ups(),
            store,
            parts,
            timing,
            shutdown,
            alone,
            claimer: tokio::sync::Mutex::new(Claimer {
                gauge_refreshed: None,
                busy: Vec::new(),
                failing_since: None,
            }),
            waiting: AtomicUsize::new(0),
            ready: Mutex::new(VecDeque::new()),
            shares,
            watch,
            index,
        }
    }

    fn lock_ready(&self) -> MutexGuard<'_, VecDeque<Claimed>> {
        self.ready.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next claim to attempt: one taken for this worker already, or one
    /// it claims itself (for the workers queued behind it too), waiting for
    /// work if none is due. `None` once shutting down with nothing claimed.
    pub(super) async fn next(&self, skip: &mut Vec<SubscriptionId>) -> Option<Claimed> {
        loop {
            if let Some(claimed) = self.lock_ready().pop_front() {
                return Some(claimed);
            }
            if self.shutdown.is_cancelled() {
                return None;
            }
            if self.alone
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
            if let Some(claimed) = self.claim_for_all(&mut claimer).await {
                return Some(claimed);
            }
        }
    }

    /// Claims for this worker alone, if anything is due: one delivery, or a
    /// few when many endpoints are busy (see [`alone_limit`]), the others
    /// left ready for the next workers. When nothing is due, the worker
    /// queues behind the claimer, who waits for work.
    async fn claim_alone(&self, skip: &mut Vec<SubscriptionId>) -> Option<Claimed> {
        let now = self.parts.clock.now();
        let lease_until = now + self.timing.lease;
        self.shares.busy(skip, now);
        let request = ClaimRequest { now, limit: alone_limit(skip.len()), lease_until, skip };
        let claims = self.store.claim_due(&request).await.ok()?;
        let mine = self.hand_out(claims, now, lease_until).await;
        if !self.lock_ready().is_empty() {
            // Workers queued behind an idle claimer take them through it.
            self.watch.changed();
        }
        mine
    }

    /// Claims for this worker and those queued behind it, waiting until
    /// something is due; `None` at shutdown. Called with the claimer held.
    async fn claim_for_all(&self, claimer: &mut Claimer) -> Option<Claimed> {
        let clock = &self.parts.clock;
        loop {
            // Claims a worker claiming alone left for the others.
            if let Some(claimed) = self.lock_ready().pop_front() {
                return Some(claimed);
            }
            let wake = self.wake();
            self.refresh_gauge(claimer).await;
            let now = clock.now();
            let lease_until = now + self.timing.lease;
            let mut wait_until = now + self.timing.poll;
            // Endpoints with their share in flight, or out of rate, wait in
            // the queue; look again when a rate limit lets one go.
            if let Some(next_token) = self.shares.busy(&mut claimer.busy, now) {
                wait_until = wait_until.min(next_token);
            }
            let looked = match self.look(claimer, now, lease_until).await {
                Look::Claims(claims) => match self.hand_out(claims, now, lease_until).await {
                    Some(mine) => return Some(mine),
                    None => continue,
                },
                Look::Nothing { next_due } => {
                    wait_until = next_due.map_or(wait_until, |due| wait_until.min(due));
                    true
                }
                Look::Failed => false,
            };
            if wait_until <= clock.now() {
                continue;
            }
            if !self.wait(wake, looked, wait_until).await {
                return None;
            }
        }
    }

    /// What will wake this claimer once idle, from now on.
    fn wake(&self) -> Wake<'_> {
        Wake {
            work: self.parts.work.notified(),
            woken: self.wake_ups.as_ref().map(|wake_ups| wake_ups.notified()),
            changes: self.watch.changes.load(Ordering::SeqCst),
        }
    }

    /// Sets the pending-deliveries gauge, every so often.
    async fn refresh_gauge(&self, claimer: &mut Claimer) {
        if claimer.gauge_refreshed.is_some_and(|at| at.elapsed() < GAUGE_INTERVAL) {
            return;
        }
        claimer.gauge_refreshed = Some(Instant::now());
        match self.store.pending_count().await {
            Ok(pending) => metrics::gauge!("webhooks_pending_deliveries").set(pending as f64),
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "store failed to count pending deliveries")
            }
        }
    }

    /// Claims as many due deliveries as there are workers to take them,
    /// passing over the busy endpoints; when there are none, asks when the
    /// next is due.
    async fn look(&self, claimer: &mut Claimer, now: DateTime<Utc>, lease_until: DateTime<Utc>) -> Look {
        let limit = self.waiting.load(Ordering::Relaxed) + 1;
        let request = ClaimRequest { now, limit, lease_until, skip: &claimer.busy };
        let claimed = self.store.claim_due(&request).await;
        claimer.follow_outage(&claimed);
        match claimed {
            Ok(claims) if !claims.is_empty() => Look::Claims(claims),
            Ok(_) => match self.store.next_due_at().await {
                // Due now yet not claimed: it is a busy endpoint's,
                // claimable when one of its attempts ends.
                Ok(Some(due)) if due <= now => Look::Nothing { next_due: None },
                Ok(next_due) => Look::Nothing { next_due },
                Err(error) => {
                    tracing::error!(error = %ErrorChain(&error), "store failed to tell the next due time");
                    Look::Failed
                }
            },
            Err(_) => Look::Failed,
        }
    }

    /// Gives each claim its place in its endpoint's share: the first is
    /// this worker's, the others wait for the workers queued behind it.
    /// More of one endpoint than its share or its rate allows came in one
    /// batch: back at once; the next claims pass the endpoint over until it
    /// may have more. `None` when every claim went back.
    async fn hand_out(
        &self,
        claims: Vec<Claim>,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Option<Claimed> {
        let mut mine = None;
        let mut over_share = Vec::new();
        for claim in claims {
            match self.shares.take(&claim.subscription, now) {
                Ok(share) => {
                    let claimed = self.claimed(claim, lease_until, share);
                    match mine {
                        None => mine = Some(claimed),
                        Some(_) => self.lock_ready().push_back(claimed),
                    }
                }
                Err(Refused::Busy | Refused::Rate(_)) => over_share.push(claim.delivery.id),
            }
        }
        if !over_share.is_empty()
            && let Err(error) = self.store.release(&over_share, now).await
        {
            tracing::error!(error = %ErrorChain(&error), "store failed to release claims; their leases will end");
        }
        mine
    }

    fn claimed(&self, claim: Claim, lease_until: DateTime<Utc>, share: Share) -> Claimed {
        Claimed { claim, lease_until, share, busy: self.watch.busy() }
    }

    /// Waits, idle, until `wake` fires or `until`; `looked`: the look
    /// before found nothing to do, a pass when nothing is in flight either.
    /// False at shutdown.
    async fn wait(&self, wake: Wake<'_>, looked: bool, until: DateTime<Utc>) -> bool {
        let Wake { work, woken, changes } = wake;
        let woken = async {
            match woken {
                Some(woken) => woken.await,
                None => std::future::pending().await,
            }
        };
        // Idle, then a last look at the changes: a worker or the recorder
        // either sees us idle and wakes us, or its change is seen here.
        let waking = &self.watch.claimers[self.index];
        waking.idle.store(true, Ordering::SeqCst);
        if self.watch.changes.load(Ordering::SeqCst) == changes {
            if looked {
                self.watch.looked_idle(changes);
            }
            tokio::select! {
                () = self.shutdown.cancelled() => {}
                () = work => {}
                () = woken => {}
                () = waking.wake.notified() => {}
                () = self.parts.clock.sleep_until(until) => {}
            }
        }
        waking.idle.store(false, Ordering::SeqCst);
        !self.shutdown.is_cancelled()
    }

    /// Gives back the claims taken for workers that did not take them: at
    /// shutdown, those a failed worker left.
    pub(super) async fn give_back_ready(&self) {
        let left: Vec<DeliveryId> = self.lock_ready().drain(..).map(|c| c.claim.delivery.id).collect();
        if !left.is_empty()
            && let Err(error) = self.store.release(&left, self.parts.clock.now()).await
        {
            tracing::error!(error = %ErrorChain(&error), "store failed to release claims; their leases will end");
        }
    }
}

impl Claimer {
    /// Logs a claim outage as it begins and as it ends.
    fn follow_outage<T>(&mut self, claimed: &StoreResult<T>) {
        match (claimed, self.failing_since) {
            (Ok(_), Some(since)) => {
                self.failing_since = None;
                tracing::info!(after_ms = since.elapsed().as_millis() as u64, "store answers claims again");
            }
            (Err(error), None) => {
                self.failing_since = Some(Instant::now());
                tracing::error!(error = %ErrorChain(error), "store failed to claim deliveries; trying again every poll");
            }
            (Err(error), Some(_)) => {
                tracing::debug!(error = %ErrorChain(error), "store still fails to claim deliveries")
            }
            (Ok(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_claims_alone_one_delivery_while_few_endpoints_are_busy_and_more_as_more_are() {
        for (busy, limit) in [(0, 1), (15, 1), (31, 1), (32, 2), (160, 10), (256, 16), (4000, 16)] {
            assert_eq!(alone_limit(busy), limit, "{busy} busy");
        }
    }
}
