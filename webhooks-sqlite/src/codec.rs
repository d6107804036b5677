//! How model values are stored: times and durations as integer
//! microseconds, states as their names.

use rusqlite::types::Type;
use webhooks_core::DeliveryState;

// The stores' shared encoding of times and durations.
pub(crate) use webhooks_core::micros::{
    from_duration as duration_micros, from_time as micros, to_time as time,
};

/// The state named `name`, or a conversion error for column `column`.
pub(crate) fn state(name: &str, column: usize) -> rusqlite::Result<DeliveryState> {
    webhooks_core::sql::state(name).map_err(|error| corrupt(column, error))
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
    fn unknown_states_are_errors() {
        assert_eq!(state("delivered", 0).unwrap(), DeliveryState::Delivered);
        assert!(state("lost", 3).is_err());
    }
}
