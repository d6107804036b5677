//! [`Outcomes`]: every attempt a dispatcher records, as a channel.

use std::time::Duration;

use tokio::sync::mpsc;
use webhooks_core::{AttemptOutcome, DispatcherBuilder};

/// The outcome of every attempt a dispatcher records, in recording order.
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use webhooks_core::{Preset, Subscription, UrlRule, Webhooks};
/// use webhooks_testkit::{Outcomes, Receiver, TestDispatcher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let receiver = Receiver::start().await.unwrap();
/// let webhooks = Webhooks::builder()
///     .store(webhooks_memory::MemoryStore::new())
///     .preset(Preset::deepsmith().with_url_rule(UrlRule::allow_http()))
///     .build()
///     .unwrap();
/// webhooks.subscribe(Subscription::builder(receiver.url()).event_type("iq.status_updated")).await.unwrap();
/// let (builder, mut outcomes) = Outcomes::collect(webhooks.dispatcher().allow_private_networks(true));
/// let dispatcher = TestDispatcher::start(builder.build().unwrap());
///
/// let published = webhooks.publish("iq.status_updated", json!({})).await.unwrap();
/// let outcome = outcomes.next(Duration::from_secs(10)).await.expect("an attempt is recorded");
/// assert_eq!((outcome.delivery_id, outcome.as_str()), (published.deliveries[0], "delivered"));
/// dispatcher.stop().await;
/// assert!(outcomes.try_next().is_none());
/// # }
/// ```
#[derive(Debug)]
pub struct Outcomes {
    receiver: mpsc::UnboundedReceiver<AttemptOutcome>,
}

impl Outcomes {
    /// Sets `builder`'s [outcome hook](DispatcherBuilder::on_outcome) to feed
    /// the returned stream. It replaces a hook set before; set one after to
    /// replace this one.
    ///
    /// See the [type's example](Outcomes).
    pub fn collect(builder: DispatcherBuilder) -> (DispatcherBuilder, Self) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let builder = builder.on_outcome(move |outcome| {
            // Nobody reading any more is no reason to disturb the dispatcher.
            let _ = sender.send(outcome.clone());
        });
        (builder, Self { receiver })
    }

    /// The next outcome, waiting up to `timeout`; `None` if none came in
    /// time or the dispatcher is gone.
    ///
    /// See the [type's example](Outcomes).
    pub async fn next(&mut self, timeout: Duration) -> Option<AttemptOutcome> {
        tokio::time::timeout(timeout, self.receiver.recv()).await.ok().flatten()
    }

    /// The next outcome if one has arrived already.
    ///
    /// See the [type's example](Outcomes).
    pub fn try_next(&mut self) -> Option<AttemptOutcome> {
        self.receiver.try_recv().ok()
    }

    /// The underlying channel, e.g. to wrap it as a `Stream` with
    /// `tokio_stream::wrappers::UnboundedReceiverStream`.
    ///
    /// ```
    /// # use webhooks_core::{Preset, Webhooks};
    /// # use webhooks_testkit::Outcomes;
    /// # let webhooks = Webhooks::builder().store(webhooks_memory::MemoryStore::new()).preset(Preset::deepsmith()).build().unwrap();
    /// let (_builder, outcomes) = Outcomes::collect(webhooks.dispatcher());
    /// let mut channel: tokio::sync::mpsc::UnboundedReceiver<_> = outcomes.into_inner();
    /// assert!(channel.try_recv().is_err());
    /// ```
    pub fn into_inner(self) -> mpsc::UnboundedReceiver<AttemptOutcome> {
        self.receiver
    }
}
