//! What the dispatcher is doing: how its claimers learn to look again, and
//! [`Activity`], how a host learns that it has caught up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// How the claimers (one per runtime the dispatcher runs on), waiting for
/// work, learn that they should look again (a worker queued for a claim:
/// its endpoint's share is free, and a retry may be due; a recorder
/// recorded a batch), and what they tell [`Activity`].
#[derive(Debug)]
pub(super) struct Watch {
    /// Counts the changes; a claimer compares it before and after looking.
    pub(super) changes: AtomicUsize,
    /// One per claimer: any change may free work for any of them.
    pub(super) claimers: Box<[Waking]>,
    /// Claims taken and not yet recorded or given back.
    busy: AtomicUsize,
    /// The latest look that found nothing to do, as the count of changes
    /// when it started: a look that started after a change saw it.
    passes: watch::Sender<usize>,
}

/// How one claimer is woken.
#[derive(Debug, Default)]
pub(super) struct Waking {
    /// Whether the claimer is waiting for work; only then is it woken.
    pub(super) idle: AtomicBool,
    pub(super) wake: Notify,
}

impl Watch {
    /// The watch of a dispatcher with `claimers` claimers (at least one).
    pub(super) fn new(claimers: usize) -> Self {
        Self {
            changes: AtomicUsize::new(0),
            claimers: (0..claimers.max(1)).map(|_| Waking::default()).collect(),
            busy: AtomicUsize::new(0),
            passes: watch::Sender::new(0),
        }
    }

    /// Tells the idle claimers that something changed; returns the count
    /// of changes with this one. Costs one atomic add and a load per
    /// claimer while they are busy.
    pub(super) fn changed(&self) -> usize {
        let count = self.changes.fetch_add(1, Ordering::SeqCst) + 1;
        for claimer in &self.claimers {
            if claimer.idle.load(Ordering::SeqCst) {
                // A permit is kept if the claimer is not polling yet.
                claimer.wake.notify_one();
            }
        }
        count
    }

    /// A claim was taken: busy until its [`Busy`] drops.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// A claimer's look that started when the count of changes was
    /// `started` found nothing due, and it is about to wait: a pass, if
    /// nothing is in flight either.
    pub(super) fn looked_idle(&self, started: usize) {
        if self.busy.load(Ordering::SeqCst) == 0 {
            self.passes.send_if_modified(|pass| {
                let newer = started > *pass;
                *pass = (*pass).max(started);
                newer
            });
        }
    }
}

/// A claim from when it is taken until it is recorded or given back.
pub(super) struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        // Counted as a change first: a look that started before it (and did
        // not see what the attempt's record made due) is not a pass, even if
        // it ends after the claim is no longer busy.
        self.0.changed();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Tells when a running dispatcher has caught up: nothing claimable at its
/// clock's now, no attempt in flight and none waiting to be recorded. From
/// [`Dispatcher::activity`](super::Dispatcher::activity), before `run`.
///
/// With a [`ManualClock`](crate::ManualClock) it proves that nothing happens
/// yet without sleeping: advance the clock, await [`Activity::settled`], look.
///
/// ```
/// use std::time::Duration;
/// use tokio_util::sync::CancellationToken;
/// use webhooks_core::{ManualClock, Preset, Webhooks};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), webhooks_core::Error> {
/// let clock = ManualClock::new(chrono::Utc::now());
/// let webhooks = Webhooks::builder()
///     .store(webhooks_memory::MemoryStore::new())
///     .preset(Preset::deepsmith())
///     .clock(clock.clone())
///     .build()?;
/// let dispatcher = webhooks.dispatcher().build()?;
/// let activity = dispatcher.activity();
/// let shutdown = CancellationToken::new();
/// let running = tokio::spawn(dispatcher.run(shutdown.clone()));
/// clock.advance(Duration::from_secs(60));
/// // Every attempt due within the minute is made and recorded.
/// activity.settled().await;
/// shutdown.cancel();
/// running.await.unwrap();
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Activity {
    watch: Arc<Watch>,
}

impl Activity {
    pub(super) fn new(watch: Arc<Watch>) -> Self {
        Self { watch }
    }

    /// Resolves once the dispatcher, looking after this call, found nothing
    /// claimable at its clock's now with no attempt in flight or unrecorded.
    /// Never resolves while the dispatcher is not running: bound it with a
    /// timeout in tests.
    pub async fn settled(&self) {
        let mut passes = self.watch.passes.subscribe();
        // A change the claimer wakes for; a look that started after it saw
        // everything done before this call.
        let after = self.watch.changed();
        // The sender lives in `self.watch`: it cannot close while we wait.
        let _ = passes.wait_for(|pass| *pass >= after).await;
    }
}
