//! How model values are stored: times and durations as `BIGINT`
//! microseconds, counts as `BIGINT`, states as their names, and text with
//! the one character PostgreSQL cannot store replaced.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use webhooks_core::DeliveryState;

use crate::error::Abort;

/// A time as unix microseconds. Every `DateTime<Utc>` fits in an `i64` of
/// microseconds (chrono's range is ±262 143 years), `MAX_UTC` included.
pub(crate) fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// The time `micros` stands for, clamped into chrono's range: a value past
/// either end reads as that end, and the largest stored time reads back as
/// `MAX_UTC` ("never"), not as its microsecond truncation.
pub(crate) fn time(micros: i64) -> DateTime<Utc> {
    if micros >= self::micros(DateTime::<Utc>::MAX_UTC) {
        return DateTime::<Utc>::MAX_UTC;
    }
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A duration as microseconds, saturating at `i64::MAX` (292 000 years).
pub(crate) fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The duration `micros` stands for; a negative one reads as zero.
pub(crate) fn duration(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// A stored count (attempts, attempt number, failures) as the model's `u32`.
pub(crate) fn count(value: i64, column: &str) -> Result<u32, Abort> {
    u32::try_from(value).map_err(|_| Abort::Corrupt(format!("{column} {value} is not a count")))
}

/// The state named `name`.
pub(crate) fn state(name: &str) -> Result<DeliveryState, Abort> {
    match name {
        "pending" => Ok(DeliveryState::Pending),
        "delivered" => Ok(DeliveryState::Delivered),
        "dropped" => Ok(DeliveryState::Dropped),
        other => Err(Abort::Corrupt(format!("unknown delivery state {other:?}"))),
    }
}

/// Text as PostgreSQL can store it: `TEXT` cannot hold NUL, so each one
/// becomes U+FFFD. Attempt logs go through here because a receiver chooses
/// what its response body holds; one NUL must not fail a batch of records.
pub(crate) fn text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') { Cow::Owned(text.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(text) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_to_the_microsecond_and_the_ends_are_kept() {
        let now = DateTime::from_timestamp(1_767_225_600, 123_456_000).unwrap();
        assert_eq!(time(micros(now)), now);
        assert_eq!(time(micros(DateTime::<Utc>::MAX_UTC)), DateTime::<Utc>::MAX_UTC);
        assert_eq!(time(micros(DateTime::<Utc>::MIN_UTC)), DateTime::<Utc>::MIN_UTC);
        assert_eq!(time(i64::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(time(i64::MIN), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn durations_saturate_and_never_go_negative() {
        assert_eq!(duration(duration_micros(Duration::from_micros(1_500))), Duration::from_micros(1_500));
        assert_eq!(duration_micros(Duration::MAX), i64::MAX);
        assert_eq!(duration(-5), Duration::ZERO);
    }

    #[test]
    fn counts_and_states_outside_the_model_are_errors() {
        assert_eq!(count(4_294_967_295, "attempts").unwrap(), u32::MAX);
        assert!(count(-1, "attempts").is_err());
        assert!(count(1 << 32, "attempts").is_err());
        assert_eq!(state("delivered").unwrap(), DeliveryState::Delivered);
        assert!(state("lost").is_err());
    }

    #[test]
    fn nul_is_the_only_character_replaced() {
        assert!(matches!(text("busy ☃"), Cow::Borrowed("busy ☃")));
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
    }
}
