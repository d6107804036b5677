//! How model values are stored: times and durations as integer
//! microseconds, states as their names.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use webhooks_core::DeliveryState;

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

/// The state named `name`, or a conversion error for column `column`.
pub(crate) fn state(name: &str, column: usize) -> rusqlite::Result<DeliveryState> {
    match name {
        "pending" => Ok(DeliveryState::Pending),
        "delivered" => Ok(DeliveryState::Delivered),
        "dropped" => Ok(DeliveryState::Dropped),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            column,
            Type::Text,
            format!("unknown delivery state {other:?}").into(),
        )),
    }
}

/// A decoding failure of column `column`, for values SQLite's types do not
/// check.
pub(crate) fn corrupt(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, Type::Text, Box::new(error))
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
    fn unknown_states_are_errors() {
        assert_eq!(state("delivered", 0).unwrap(), DeliveryState::Delivered);
        assert!(state("lost", 3).is_err());
    }
}
