//! How model values are stored: times and durations as `BIGINT`
//! microseconds, counts as `BIGINT`, states as their names, and text with
//! the one character PostgreSQL cannot store replaced.

use std::borrow::Cow;

use webhooks_core::DeliveryState;

use crate::error::Abort;

/// Times and durations as microseconds: core's one encoding for every
/// store, clamping at chrono's ends so `MAX_UTC` ("never") round-trips.
pub(crate) use webhooks_core::micros::{
    from_duration as duration_micros, from_time as micros, to_time as time,
};

/// A stored count (attempts, attempt number, failures) as the model's `u32`.
pub(crate) fn count(value: i64, column: &str) -> Result<u32, Abort> {
    Ok(webhooks_core::sql::count(value, column)?)
}

/// The state named `name`.
pub(crate) fn state(name: &str) -> Result<DeliveryState, Abort> {
    Ok(webhooks_core::sql::state(name)?)
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
