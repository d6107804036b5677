//! Wake-ups across instances: a transaction that makes deliveries due
//! `NOTIFY`s one channel, delivered when it commits, and a store whose
//! dispatchers asked for wake-ups keeps one connection of its own that
//! `LISTEN`s on it and wakes them.
//!
//! Polling stays the fallback: a notification lost while the listening
//! connection is down costs latency, not work, and the listener wakes the
//! dispatchers once each time it connects again, so what was published in
//! the gap is found then.

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use webhooks_core::ErrorChain;

use crate::error::Step;
use crate::session::Connection;

/// Publishing transactions notify the channel `webhooks_work`, and the
/// listener listens on it. The schema is always `webhooks`, so one fixed
/// name serves every database. (Both take an identifier, not a parameter.)
const NOTIFY: &str = "NOTIFY webhooks_work";
const LISTEN: &str = "LISTEN webhooks_work";

/// The first pause before connecting again, doubled after each failure up
/// to [`LAST_RETRY`]; polling covers the time in between.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The longest pause between two attempts to connect.
const LAST_RETRY: Duration = Duration::from_secs(10);

/// Tells the listeners that deliveries became due; PostgreSQL sends it on
/// commit, and only then. Several in one transaction are sent as one.
pub(crate) async fn announce<C: Connection>(db: &C) -> Step<()> {
    db.run_batch(NOTIFY).await
}

/// How the listener reaches the server: the settings the pool connects with.
#[derive(Clone)]
pub(crate) struct Source {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
    /// The server as logs may show it, without the password.
    pub(crate) target: String,
}

/// A store's wake-ups, shared by its clones: the listener starts at the
/// first [`WakeUps::get`] and stops when the last clone drops this.
pub(crate) struct WakeUps {
    /// `None` for a store on a pool the host built: its settings cannot be
    /// read back, so there is no listener and dispatchers poll.
    source: Option<Source>,
    started: OnceLock<Listening>,
}

struct Listening {
    notify: Arc<Notify>,
    /// Dropped with the store, which ends the listener.
    _stop: oneshot::Sender<()>,
}

impl WakeUps {
    pub(crate) fn new(source: Option<Source>) -> Self {
        Self { source, started: OnceLock::new() }
    }

    /// The signal, starting the listener on the current runtime the first
    /// time; `None` without a source or outside a runtime (a later call
    /// from within one starts it).
    pub(crate) fn get(&self) -> Option<Arc<Notify>> {
        let source = self.source.as_ref()?;
        if let Some(listening) = self.started.get() {
            return Some(Arc::clone(&listening.notify));
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let listening = self.started.get_or_init(|| {
            let notify = Arc::new(Notify::new());
            let (stop, stopped) = oneshot::channel();
            runtime.spawn(listen(source.clone(), Arc::clone(&notify), stopped));
            Listening { notify, _stop: stop }
        });
        Some(Arc::clone(&listening.notify))
    }
}

/// Listens until `stopped` fires (or its sender drops), connecting again
/// with backoff whenever the connection fails.
async fn listen(source: Source, notify: Arc<Notify>, mut stopped: oneshot::Receiver<()>) {
    let mut retry = FIRST_RETRY;
    loop {
        let mut listening = false;
        let lost = tokio::select! {
            _ = &mut stopped => return,
            lost = session(&source, &notify, &mut listening) => lost,
        };
        if listening {
            // It had worked: the next try comes soon.
            retry = FIRST_RETRY;
        }
        tracing::warn!(
            target = %source.target,
            error = %lost,
            retry_in_ms = retry.as_millis(),
            "the connection listening for other instances' publishes failed; dispatchers poll until it is back"
        );
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// Why a listening session ended.
enum Lost {
    Connect(tokio_postgres::Error),
    Listen(tokio_postgres::Error),
    Connection(tokio_postgres::Error),
    Closed,
    Unanswered,
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "could not connect: {}", ErrorChain(error)),
            Self::Listen(error) => write!(f, "could not LISTEN: {}", ErrorChain(error)),
            Self::Connection(error) => write!(f, "{}", ErrorChain(error)),
            Self::Closed => f.write_str("the server closed the connection"),
            Self::Unanswered => write!(f, "the server did not answer within {} s", ANSWER.as_secs()),
        }
    }
}

/// How often an idle listener checks that its connection still works: a
/// connection dropped without a word (a NAT or firewall forgetting an idle
/// flow) would otherwise go unnoticed for hours, and the check keeps such
/// a flow alive.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// How long connecting, `LISTEN` or a heartbeat may take.
const ANSWER: Duration = Duration::from_secs(15);

/// Ends the task driving a connection when the session ends, whatever way.
struct Driving(tokio::task::JoinHandle<Lost>);

impl Drop for Driving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One connection: `LISTEN`, wake the dispatchers once (anything published
/// while no one listened is found), then wake them at each notification
/// until the connection ends. Sets `listening` once `LISTEN` succeeded.
async fn session(source: &Source, notify: &Arc<Notify>, listening: &mut bool) -> Lost {
    let (client, mut connection) =
        match tokio::time::timeout(ANSWER, source.config.connect(source.tls.clone())).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(error)) => return Lost::Connect(error),
            Err(_) => return Lost::Unanswered,
        };
    // Notifications arrive only after LISTEN, so the driver may wake the
    // dispatchers from the start.
    let mut driver = Driving(tokio::spawn({
        let notify = Arc::clone(notify);
        async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(_))) => notify.notify_waiters(),
                    // Notices, and anything a later driver adds.
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Lost::Connection(error),
                    None => return Lost::Closed,
                }
            }
        }
    }));
    match tokio::time::timeout(ANSWER, client.batch_execute(LISTEN)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Lost::Listen(error),
        Err(_) => return Lost::Unanswered,
    }
    *listening = true;
    notify.notify_waiters();
    loop {
        tokio::select! {
            ended = &mut driver.0 => return ended.unwrap_or(Lost::Closed),
            () = tokio::time::sleep(HEARTBEAT) => {
                // LISTEN again, a no-op: pg_stat_activity keeps showing
                // the session as the listener.
                match tokio::time::timeout(ANSWER, client.batch_execute(LISTEN)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Lost::Connection(error),
                    Err(_) => return Lost::Unanswered,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_source_means_no_wake_ups() {
        assert!(WakeUps::new(None).get().is_none());
    }
}
