//! [`TestDispatcher`]: a dispatcher running in the background that a test
//! steps through time.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use webhooks_core::{Activity, Dispatcher, ManualClock};

/// How long [`TestDispatcher::settle`] and [`TestDispatcher::stop`] wait by
/// default before failing the test: long enough for a loaded CI machine.
pub const DEFAULT_PATIENCE: Duration = Duration::from_secs(30);

/// A [`Dispatcher`] running on its own task until [`stop`](Self::stop)ped or
/// dropped (dropping cancels it without waiting).
///
/// [`settle`](Self::settle) waits until the dispatcher has nothing left to
/// do at its clock's now: every attempt due has been made and recorded and
/// none is in flight. With a [`ManualClock`], [`advance`](Self::advance)
/// moves time and settles, so a test proves "nothing happens yet" without
/// sleeping.
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use webhooks_core::{ManualClock, Preset, Subscription, UrlRule, Webhooks};
/// use webhooks_testkit::{Receiver, Reply, TestDispatcher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let receiver = Receiver::scripted(|_, _| Reply::status(500)).await.unwrap();
/// let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
/// let webhooks = Webhooks::builder()
///     .store(webhooks_memory::MemoryStore::new())
///     .preset(Preset::smartlyq().with_url_rule(UrlRule::allow_http()))
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// webhooks.subscribe(Subscription::builder(receiver.url()).event_type("wallet.low")).await.unwrap();
/// let dispatcher = TestDispatcher::start(webhooks.dispatcher().allow_private_networks(true).build().unwrap());
///
/// webhooks.publish("wallet.low", json!({"balance": "4.99"})).await.unwrap();
/// dispatcher.settle().await;
/// assert_eq!(receiver.received().len(), 1);
/// // SmartlyQ retries after 2 minutes.
/// dispatcher.advance(&clock, Duration::from_secs(119)).await;
/// assert_eq!(receiver.received().len(), 1, "no retry before 2 minutes");
/// dispatcher.advance(&clock, Duration::from_secs(1)).await;
/// assert_eq!(receiver.received().len(), 2);
/// dispatcher.stop().await;
/// # }
/// ```
#[derive(Debug)]
pub struct TestDispatcher {
    activity: Activity,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    patience: Duration,
}

impl TestDispatcher {
    /// Spawns `dispatcher` on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, as [`tokio::spawn`] does.
    pub fn start(dispatcher: Dispatcher) -> Self {
        let activity = dispatcher.activity();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(dispatcher.run(shutdown.clone()));
        Self { activity, shutdown, task: Some(task), patience: DEFAULT_PATIENCE }
    }

    /// How long [`settle`](Self::settle) and [`stop`](Self::stop) wait before
    /// failing the test; [`DEFAULT_PATIENCE`] unless set.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use webhooks_core::{Preset, Webhooks};
    /// # use webhooks_testkit::TestDispatcher;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// let dispatcher = TestDispatcher::start(webhooks.dispatcher().build().unwrap()).patience(Duration::from_secs(60));
    /// dispatcher.settle().await;
    /// # dispatcher.stop().await;
    /// # }
    /// ```
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The dispatcher's [`Activity`], to wait on it another way.
    ///
    /// ```
    /// # use webhooks_core::{Preset, Webhooks};
    /// # use webhooks_testkit::TestDispatcher;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// let dispatcher = TestDispatcher::start(webhooks.dispatcher().build().unwrap());
    /// let caught_up = tokio::time::timeout(std::time::Duration::from_secs(10), dispatcher.activity().settled()).await;
    /// assert!(caught_up.is_ok());
    /// # dispatcher.stop().await;
    /// # }
    /// ```
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Waits until the dispatcher, looking after this call, finds nothing
    /// claimable at its clock's now, with no attempt in flight or waiting to
    /// be recorded. Outcome hooks run on a task of their own and may still
    /// be running: read outcomes with [`Outcomes::next`](crate::Outcomes::next).
    ///
    /// # Panics
    ///
    /// When it has not settled within the [patience](Self::patience): a
    /// receiver slower than that, or a dispatcher that stopped.
    ///
    /// See the [type's example](TestDispatcher).
    pub async fn settle(&self) {
        if tokio::time::timeout(self.patience, self.activity.settled()).await.is_err() {
            let state = match &self.task {
                Some(task) if task.is_finished() => "it has stopped",
                _ => "it is still busy (an attempt in flight, or deliveries due)",
            };
            panic!("the dispatcher did not settle within {:?}: {state}", self.patience);
        }
    }

    /// Moves `clock` forward by `by`, then [settles](Self::settle): every
    /// attempt due by the new now has been made and recorded.
    ///
    /// # Panics
    ///
    /// As [`settle`](Self::settle).
    ///
    /// See the [type's example](TestDispatcher).
    pub async fn advance(&self, clock: &ManualClock, by: Duration) {
        clock.advance(by);
        self.settle().await;
    }

    /// Cancels the dispatcher and waits until it has let its attempts in
    /// flight finish and recorded them.
    ///
    /// # Panics
    ///
    /// When it does not return within the [patience](Self::patience), or
    /// its task panicked.
    ///
    /// See the [type's example](TestDispatcher).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let Some(task) = self.task.take() else { return };
        match tokio::time::timeout(self.patience, task).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("the dispatcher's task failed: {error}"),
            Err(_) => panic!("the dispatcher did not stop within {:?}", self.patience),
        }
    }

    /// Ends the dispatcher's task at once, without waiting for the attempts
    /// in flight (a test whose endpoints hang would wait for their timeouts).
    /// Their claims come back when their leases end, as after a crash.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for TestDispatcher {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
