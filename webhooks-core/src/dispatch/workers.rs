//! The workers: each loops, taking a claim and making its attempt. An
//! attempt to an endpoint not known to answer quickly, or one still waiting
//! for its answer after a quick answer's time, goes on off the worker, and
//! the worker takes its next claim.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

#[cfg(not(feature = "tracing"))]
use crate::telemetry::tracing;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::attempt::{self, Attempts};
use super::claim::Claims;

/// An attempt whose request waits off the workers, handed to the
/// dispatcher's task to run on a task of its own.
pub(super) type MovedAttempt = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the workers of one running dispatcher share.
pub(super) struct Workers {
    pub(super) claims: Claims,
    attempts: Arc<Attempts>,
    /// How long a request to a quick endpoint may keep its worker.
    quick_within: Duration,
    /// Where workers hand the attempts whose requests wait off the workers.
    off_workers: mpsc::UnboundedSender<MovedAttempt>,
}

impl Workers {
    pub(super) fn new(
        claims: Claims,
        attempts: Arc<Attempts>,
        quick_within: Duration,
        off_workers: mpsc::UnboundedSender<MovedAttempt>,
    ) -> Self {
        Self { claims, attempts, quick_within, off_workers }
    }

    /// One worker: attempts claims until shutdown and no claim taken for it
    /// is left.
    pub(super) async fn work(self: Arc<Self>) {
        // The endpoints this worker's claims pass over, kept between claims.
        let mut skip = Vec::new();
        while let Some(claimed) = self.claims.next(&mut skip).await {
            let span = attempt::span(&claimed.claim);
            let off_worker = claimed.share.off_worker();
            let mover = claimed.share.mover();
            let mut attempt: MovedAttempt =
                Box::pin(Arc::clone(&self.attempts).attempt(claimed).instrument(span));
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
                () = tokio::time::sleep(self.quick_within) => {
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
}
