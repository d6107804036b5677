//! Times and durations as integer microseconds: how the stores keep them.
//!
//! Every `DateTime<Utc>` fits in an `i64` of microseconds (chrono's range is
//! ±262 143 years), `MAX_UTC` included, so a store can keep times as plain
//! integers and compare them in its own queries.
//!
//! ```
//! use webhooks_core::micros;
//!
//! let at = "2026-03-02T14:30:00.123456Z".parse().unwrap();
//! assert_eq!(micros::to_time(micros::from_time(at)), at);
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};

/// A time as unix microseconds (below a microsecond is dropped).
pub fn from_time(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The time `micros` stands for, clamped into chrono's range: a value past
/// either end reads as that end, and the largest stored time reads back as
/// `MAX_UTC` ("never"), not as its microsecond truncation.
pub fn to_time(micros: i64) -> DateTime<Utc> {
    if micros >= from_time(DateTime::<Utc>::MAX_UTC) {
        return DateTime::<Utc>::MAX_UTC;
    }
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A duration as microseconds, saturating at `i64::MAX` (292 000 years).
pub fn from_duration(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The duration `micros` stands for; a negative one reads as zero.
pub fn to_duration(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_microsecond_and_the_ends_are_kept() {
        let now = DateTime::from_timestamp(1_767_225_600, 123_456_000).unwrap();
        assert_eq!(to_time(from_time(now)), now);
        assert_eq!(to_time(from_time(DateTime::<Utc>::MAX_UTC)), DateTime::<Utc>::MAX_UTC);
        assert_eq!(to_time(from_time(DateTime::<Utc>::MIN_UTC)), DateTime::<Utc>::MIN_UTC);
        assert_eq!(to_time(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(to_time(i64::MIN), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn durations_saturate_and_never_go_negative() {
        assert_eq!(to_duration(from_duration(Duration::from_micros(1_500))), Duration::from_micros(1_500));
        assert_eq!(from_duration(Duration::MAX), i64::MAX);
        assert_eq!(to_duration(-5), Duration::ZERO);
    }
}
