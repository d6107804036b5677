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

/// Ids as a JSON array of their hex, for a statement to read with
/// `json_each` as one parameter however many there are.
pub(crate) fn hex_ids(ids: impl IntoIterator<Item = uuid::Uuid>) -> String {
    let mut json = String::from("[");
    for (n, id) in ids.into_iter().enumerate() {
        if n > 0 {
            json.push(',');
        }
        json.push('"');
        json.push_str(id.simple().encode_lower(&mut uuid::Uuid::encode_buffer()));
        json.push('"');
    }
    json.push(']');
    json
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
    fn ids_are_a_json_array_of_hex() {
        let id = uuid::Uuid::from_u128(0xab);
        assert_eq!(hex_ids([]), "[]");
        assert_eq!(hex_ids([id, id]), format!(r#"["{0}","{0}"]"#, id.simple()));
        let parsed: Vec<String> = serde_json::from_str(&hex_ids([id])).unwrap();
        assert_eq!(parsed, [id.simple().to_string()]);
    }

    #[test]
    fn unknown_states_are_errors() {
        assert_eq!(state("delivered", 0).unwrap(), DeliveryState::Delivered);
        assert!(state("lost", 3).is_err());
    }
}
