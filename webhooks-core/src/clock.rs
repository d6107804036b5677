//! Where the time comes from.
//!
//! Nothing in the library reads the system time directly: the facade and the
//! dispatcher ask their [`Clock`], so tests run a 32-minute retry schedule in
//! milliseconds with a [`ManualClock`].

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// A source of the current time that can also wait for a later one.
#[async_trait]
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;

    /// Returns once [`Clock::now`] has reached `deadline`.
    async fn sleep_until(&self, deadline: DateTime<Utc>);
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        // Wall time can jump; a sleep that ends early is followed by a fresh
        // look at the store, so the worst case is one extra query.
        if let Ok(wait) = (deadline - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A clock that moves only when told to; for tests.
///
/// ```
/// use std::time::Duration;
/// use webhooks_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-03-02T14:30:00Z".parse().unwrap());
/// let start = clock.now();
/// clock.advance(Duration::from_secs(32 * 60));
/// assert_eq!((clock.now() - start).num_minutes(), 32);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

#[derive(Debug)]
struct ManualInner {
    now: Mutex<DateTime<Utc>>,
    moved: Notify,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self { inner: Arc::new(ManualInner { now: Mutex::new(start), moved: Notify::new() }) }
    }

    /// Moves the clock forward, waking whoever sleeps until a time now passed.
    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        self.set(self.now().checked_add_signed(by).unwrap_or(DateTime::<Utc>::MAX_UTC));
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.inner.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
        self.inner.moved.notify_waiters();
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.inner.now.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        loop {
            let moved = self.inner.moved.notified();
            tokio::pin!(moved);
            // Registered before the check, so a move in between is not missed.
            moved.as_mut().enable();
            if self.now() >= deadline {
                return;
            }
            moved.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_ends_when_the_clock_passes_the_deadline() {
        let clock = ManualClock::new(DateTime::UNIX_EPOCH);
        let deadline = clock.now() + chrono::Duration::seconds(60);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(deadline).await }
        });
        clock.advance(Duration::from_secs(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(30));
        tokio::time::timeout(Duration::from_secs(5), sleeper).await.unwrap().unwrap();
    }
}
