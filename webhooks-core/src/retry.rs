//! When to try a failed delivery again.
//!
//! A [`RetryPolicy`] maps the number of the attempt that just failed to the
//! wait before the next one, or to `None` to give up. The dispatcher turns
//! that wait into the delivery's persisted `next_attempt_at`, so a policy is
//! plain arithmetic, with no loop, timer or state of its own.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;

use crate::error::Error;

/// Decides the wait before the next attempt.
///
/// ```
/// use std::time::Duration;
/// use webhooks_core::RetryPolicy;
///
/// /// Retry every minute, three times.
/// #[derive(Debug)]
/// struct EveryMinute;
///
/// impl RetryPolicy for EveryMinute {
///     fn next_delay(&self, failed_attempt: u32) -> Option<Duration> {
///         (failed_attempt <= 3).then_some(Duration::from_secs(60))
///     }
///
///     fn longest_delay(&self) -> Duration {
///         Duration::from_secs(60)
///     }
/// }
///
/// assert_eq!(EveryMinute.next_delay(1), Some(Duration::from_secs(60)));
/// assert_eq!(EveryMinute.next_delay(4), None);
/// ```
pub trait RetryPolicy: Send + Sync + Debug {
    /// The wait after failed attempt number `failed_attempt` (1 for the first
    /// attempt), or `None` when no attempt follows and the delivery is dropped.
    fn next_delay(&self, failed_attempt: u32) -> Option<Duration>;

    /// The longest wait this policy ever returns; a receiver's `Retry-After`
    /// is capped at it.
    fn longest_delay(&self) -> Duration;
}

/// Waits that grow by a constant factor: `base`, `base × factor`, ...
///
/// ```
/// use std::time::Duration;
/// use webhooks_core::{Exponential, RetryPolicy};
///
/// let policy = Exponential::new(Duration::from_secs(120), 2.0, 5).unwrap();
/// assert_eq!(policy.next_delay(1), Some(Duration::from_secs(120)));
/// assert_eq!(policy.next_delay(5), Some(Duration::from_secs(1920)));
/// assert_eq!(policy.next_delay(6), None);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Exponential {
    base: Duration,
    factor: f64,
    max_retries: u32,
    jitter: f64,
}

impl Exponential {
    /// `max_retries` waits starting at `base`, each `factor` times the last.
    ///
    /// Fails when `base` is zero, `factor` is below 1 or not finite, or
    /// `max_retries` is over 100.
    pub fn new(base: Duration, factor: f64, max_retries: u32) -> Result<Self, Error> {
        if base.is_zero() {
            return Err(Error::invalid("retry base", "must be longer than zero"));
        }
        if !factor.is_finite() || factor < 1.0 {
            return Err(Error::invalid("retry factor", "must be a finite number of at least 1"));
        }
        if max_retries > MAX_RETRIES {
            return Err(Error::invalid("max retries", "must be at most 100"));
        }
        Ok(Self { base, factor, max_retries, jitter: 0.0 })
    }

    /// Spread each wait randomly by up to ± `fraction` of it (0 to 1), so
    /// endpoints that failed together are not retried together.
    pub fn with_jitter(mut self, fraction: f64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::invalid("retry jitter", "must be between 0 and 1"));
        }
        self.jitter = fraction;
        Ok(self)
    }

    fn nominal(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        saturating_mul(self.base, self.factor.powi(exponent))
    }
}

impl RetryPolicy for Exponential {
    fn next_delay(&self, failed_attempt: u32) -> Option<Duration> {
        if failed_attempt == 0 || failed_attempt > self.max_retries {
            return None;
        }
        let nominal = self.nominal(failed_attempt);
        if self.jitter == 0.0 {
            return Some(nominal);
        }
        let spread = rand::rng().random_range(-self.jitter..=self.jitter);
        Some(saturating_mul(nominal, 1.0 + spread))
    }

    fn longest_delay(&self) -> Duration {
        saturating_mul(self.nominal(self.max_retries), 1.0 + self.jitter)
    }
}

/// An explicit list of waits, one per retry.
///
/// ```
/// use std::time::Duration;
/// use webhooks_core::{RetryPolicy, Schedule};
///
/// let policy = Schedule::new([10, 60, 300].map(Duration::from_secs)).unwrap();
/// assert_eq!(policy.next_delay(2), Some(Duration::from_secs(60)));
/// assert_eq!(policy.next_delay(4), None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule(Vec<Duration>);

impl Schedule {
    /// The waits, in order. Fails when there are over 100 of them.
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> Result<Self, Error> {
        let delays: Vec<Duration> = delays.into_iter().collect();
        if delays.len() > MAX_RETRIES as usize {
            return Err(Error::invalid("retry schedule", "must have at most 100 delays"));
        }
        Ok(Self(delays))
    }

    /// No retries: the first failure drops the delivery.
    pub fn none() -> Self {
        Self(Vec::new())
    }
}

impl RetryPolicy for Schedule {
    fn next_delay(&self, failed_attempt: u32) -> Option<Duration> {
        let index = usize::try_from(failed_attempt.checked_sub(1)?).ok()?;
        self.0.get(index).copied()
    }

    fn longest_delay(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }
}

/// Another policy with every wait multiplied by a factor: `0.001` runs a
/// 32-minute schedule in about two seconds, handy in development.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use webhooks_core::{RetryPolicy, Scaled, Schedule};
///
/// let schedule = Arc::new(Schedule::new([Duration::from_secs(10)]).unwrap());
/// let fast = Scaled::new(schedule, 0.5).unwrap();
/// assert_eq!(fast.next_delay(1), Some(Duration::from_secs(5)));
/// ```
#[derive(Clone, Debug)]
pub struct Scaled {
    inner: Arc<dyn RetryPolicy>,
    factor: f64,
}

impl Scaled {
    /// `inner` with its waits multiplied by `factor` (finite, 0 or more).
    pub fn new(inner: Arc<dyn RetryPolicy>, factor: f64) -> Result<Self, Error> {
        if !factor.is_finite() || factor < 0.0 {
            return Err(Error::invalid("retry scale", "must be a finite number of at least 0"));
        }
        Ok(Self { inner, factor })
    }
}

impl RetryPolicy for Scaled {
    fn next_delay(&self, failed_attempt: u32) -> Option<Duration> {
        self.inner.next_delay(failed_attempt).map(|delay| saturating_mul(delay, self.factor))
    }

    fn longest_delay(&self) -> Duration {
        saturating_mul(self.inner.longest_delay(), self.factor)
    }
}

const MAX_RETRIES: u32 = 100;

/// The longest wait any policy returns: a year, so time arithmetic never
/// overflows.
const CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

fn saturating_mul(delay: Duration, factor: f64) -> Duration {
    let secs = delay.as_secs_f64() * factor;
    if secs.is_nan() || secs <= 0.0 {
        Duration::ZERO
    } else {
        Duration::try_from_secs_f64(secs).map_or(CEILING, |d| d.min(CEILING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_from_the_base() {
        let policy = Exponential::new(Duration::from_secs(120), 2.0, 5).unwrap();
        let delays: Vec<_> = (1..=6).map(|n| policy.next_delay(n)).collect();
        let minutes = |m: u64| Some(Duration::from_secs(m * 60));
        assert_eq!(delays, vec![minutes(2), minutes(4), minutes(8), minutes(16), minutes(32), None]);
        assert_eq!(policy.longest_delay(), Duration::from_secs(32 * 60));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = Exponential::new(Duration::from_secs(100), 2.0, 3).unwrap().with_jitter(0.1).unwrap();
        for _ in 0..200 {
            let delay = policy.next_delay(1).unwrap();
            assert!((90.0..=110.0).contains(&delay.as_secs_f64()), "{delay:?}");
        }
    }

    #[test]
    fn absurd_settings_are_refused_with_the_field_named() {
        let error = Exponential::new(Duration::ZERO, 2.0, 5).unwrap_err();
        assert!(error.to_string().contains("retry base"), "{error}");
        assert!(Exponential::new(Duration::from_secs(1), f64::NAN, 5).is_err());
        assert!(Exponential::new(Duration::from_secs(1), 0.5, 5).is_err());
        assert!(Exponential::new(Duration::from_secs(1), 2.0, 1000).is_err());
        assert!(Scaled::new(Arc::new(Schedule::none()), -1.0).is_err());
    }

    #[test]
    fn huge_waits_saturate_instead_of_overflowing() {
        let policy = Exponential::new(Duration::from_secs(3600), 10.0, 100).unwrap();
        assert_eq!(policy.next_delay(100), Some(CEILING));
    }

    #[test]
    fn scaling_by_zero_retries_at_once() {
        let policy = Scaled::new(Arc::new(Schedule::new([Duration::from_secs(10)]).unwrap()), 0.0).unwrap();
        assert_eq!(policy.next_delay(1), Some(Duration::ZERO));
        assert_eq!(policy.next_delay(2), None);
    }
}
