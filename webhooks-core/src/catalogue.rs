//! The event catalogue: the event types a host declares, each with a
//! description for its customers, and optionally a JSON Schema its data must
//! match and an example of it.

use std::collections::BTreeMap;
use std::fmt;
#[cfg(feature = "json-schema")]
use std::sync::Arc;

use serde_json::Value;

use crate::error::Error;
use crate::model::EventData;

/// One event type of a host's catalogue.
///
/// ```
/// use serde_json::json;
/// use webhooks_core::EventType;
///
/// let order_created = EventType::new("order.created")
///     .with_description("A customer placed an order.")
///     .with_schema(json!({
///         "type": "object",
///         "required": ["order_id", "total"],
///         "properties": { "order_id": { "type": "string" }, "total": { "type": "number" } }
///     }))
///     .with_example(json!({ "order_id": "A-1", "total": 42.5 }));
/// assert_eq!(order_created.name(), "order.created");
/// ```
///
/// Serialized (for a host's or the portal's API) as
/// `{"name", "description", "schema", "example"}`, the last two `null` when
/// not given.
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[must_use]
pub struct EventType {
    name: String,
    description: String,
    schema: Option<Value>,
    example: Option<Value>,
    #[cfg(feature = "json-schema")]
    #[cfg_attr(feature = "serde", serde(skip))]
    validator: Option<Arc<jsonschema::Validator>>,
}

impl EventType {
    /// An event type named `name`: dotted, 1 to 255 visible ASCII
    /// characters (it travels in headers), checked by [`Catalogue::of`].
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            schema: None,
            example: None,
            #[cfg(feature = "json-schema")]
            validator: None,
        }
    }

    /// What it means, in a sentence a customer reads in the portal.
    pub fn with_description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// A JSON Schema its data must match: publishing data that does not is
    /// refused with [`Error::DataDoesNotMatchSchema`], naming the place.
    /// Compiled by [`Catalogue::of`] (drafts 4 to 2020-12; references to
    /// other documents are not fetched; `pattern`s are regular expressions
    /// of the `regex` crate, matched in linear time, so no look-around). Needs the `json-schema` feature (on
    /// by default).
    pub fn with_schema(mut self, schema: Value) -> Self {
        self.schema = Some(schema);
        self
    }

    /// An example of its data, shown to customers; checked against the
    /// schema by [`Catalogue::of`].
    pub fn with_example(mut self, example: Value) -> Self {
        self.example = Some(example);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it means (empty when not given).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The schema its data must match.
    pub fn schema(&self) -> Option<&Value> {
        self.schema.as_ref()
    }

    /// An example of its data.
    pub fn example(&self) -> Option<&Value> {
        self.example.as_ref()
    }

    /// Compiles the schema and checks the example against it.
    #[cfg_attr(not(feature = "json-schema"), allow(unused_mut))]
    fn compiled(mut self) -> Result<Self, Error> {
        let invalid = |reason: String| Error::invalid("event type", format!("{}: {reason}", self.name));
        if !is_event_name(&self.name) {
            return Err(invalid(
                "a name is dotted parts of ASCII letters, digits, '_' and '-', 255 bytes at most".into(),
            ));
        }
        let Some(schema) = &self.schema else {
            return Ok(self);
        };
        #[cfg(feature = "json-schema")]
        {
            // The `regex` engine: linear time whatever the data, and faster
            // than backtracking on the patterns schemas use.
            let validator = jsonschema::options()
                .with_pattern_options(jsonschema::PatternOptions::regex())
                .build(schema)
                .map_err(|error| invalid(format!("its schema is not a valid JSON Schema: {error}")))?;
            self.validator = Some(Arc::new(validator));
            if let Some(example) = &self.example {
                self.check(example)
                    .map_err(|error| invalid(format!("its example does not match: {error}")))?;
            }
            Ok(self)
        }
        #[cfg(not(feature = "json-schema"))]
        {
            let _ = schema;
            Err(invalid("checking data against a schema needs webhooks-core's json-schema feature".into()))
        }
    }

    /// Checks data against the compiled schema, if any.
    fn check(&self, data: &Value) -> Result<(), Error> {
        #[cfg(feature = "json-schema")]
        if let Some(validator) = &self.validator
            && let Err(error) = validator.validate(data)
        {
            let path = error.instance_path().to_string();
            return Err(Error::DataDoesNotMatchSchema {
                event_type: self.name.clone(),
                path: if path.is_empty() { "/".to_owned() } else { path },
                reason: shortened(&error.to_string()),
            });
        }
        let _ = data;
        Ok(())
    }
}

impl fmt::Debug for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventType")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("schema", &self.schema)
            .field("example", &self.example)
            .finish()
    }
}

impl PartialEq for EventType {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.description, &self.schema, &self.example)
            == (&other.name, &other.description, &other.schema, &other.example)
    }
}

impl From<&str> for EventType {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for EventType {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

/// A reason is shown cut: a validator's message quotes the data, which may
/// be large.
#[cfg(feature = "json-schema")]
fn shortened(reason: &str) -> String {
    const SHOWN: usize = 300;
    match reason.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", &reason[..end]),
        None => reason.to_owned(),
    }
}

/// The event types a preset knows: the host's own, declared with
/// [`Catalogue::of`], or any dotted name ([`Catalogue::open`]).
///
/// ```
/// use serde_json::json;
/// use webhooks_core::{Catalogue, EventType, Preset};
///
/// let catalogue = Catalogue::of([
///     EventType::new("order.created")
///         .with_description("A customer placed an order.")
///         .with_schema(json!({"type": "object", "required": ["order_id"]}))
///         .with_example(json!({"order_id": "A-1"})),
///     EventType::new("order.shipped").with_description("An order left the warehouse."),
/// ])?;
/// let preset = Preset::neutral().with_catalogue(catalogue);
/// assert!(preset.catalogue().contains("order.shipped"));
/// assert!(!preset.catalogue().contains("order.craeted"));
///
/// // A schema that cannot compile, or an example it refuses, fails here, not at publish.
/// let wrong = Catalogue::of([EventType::new("order.created")
///     .with_schema(json!({"type": "object", "required": ["order_id"]}))
///     .with_example(json!({"id": "A-1"}))]);
/// assert!(wrong.unwrap_err().to_string().contains("example"));
/// # Ok::<(), webhooks_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Catalogue {
    /// `None`: open.
    fixed: Option<BTreeMap<String, EventType>>,
}

impl Catalogue {
    /// Exactly these event types. Fails, naming the event type, on a name
    /// that is not dotted visible ASCII, a name given twice, a schema that
    /// is not a valid JSON Schema, or an example its schema refuses.
    pub fn of<I, T>(event_types: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<EventType>,
    {
        let mut fixed = BTreeMap::new();
        for event_type in event_types {
            let event_type = event_type.into().compiled()?;
            let name = event_type.name.clone();
            if fixed.insert(name.clone(), event_type).is_some() {
                return Err(Error::invalid("event type", format!("{name} is declared twice")));
            }
        }
        Ok(Self { fixed: Some(fixed) })
    }

    /// Exactly these names, unchecked: publishing one that is not dotted
    /// visible ASCII is refused then.
    pub(crate) fn from_names<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let fixed = names.into_iter().map(|name| EventType::new(name)).map(|t| (t.name.clone(), t));
        Self { fixed: Some(fixed.collect()) }
    }

    /// No event types at all: the neutral preset's, until the host declares
    /// its own.
    pub(crate) fn empty() -> Self {
        Self { fixed: Some(BTreeMap::new()) }
    }

    /// Any dotted name of letters, digits, `_` and `-`.
    pub fn open() -> Self {
        Self { fixed: None }
    }

    /// Whether any dotted name is accepted.
    pub fn is_open(&self) -> bool {
        self.fixed.is_none()
    }

    /// Whether `name` is a known event type.
    pub fn contains(&self, name: &str) -> bool {
        match &self.fixed {
            Some(fixed) => fixed.contains_key(name),
            None => is_event_name(name),
        }
    }

    /// A declared event type.
    pub fn get(&self, name: &str) -> Option<&EventType> {
        self.fixed.as_ref()?.get(name)
    }

    /// The declared event types, by name (none when open).
    pub fn event_types(&self) -> impl Iterator<Item = &EventType> {
        self.fixed.iter().flat_map(|fixed| fixed.values())
    }

    /// The declared names, in order (none when open).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.event_types().map(EventType::name)
    }

    /// Checks an event's data against its type's schema, if it has one.
    /// Data given as JSON text is parsed only then.
    pub(crate) fn check_data(&self, name: &str, data: &EventData) -> Result<(), Error> {
        let Some(event_type) = self.get(name).filter(|t| t.schema.is_some()) else {
            return Ok(());
        };
        match data {
            EventData::Value(value) => event_type.check(value),
            EventData::Json(text) => {
                let value: Value = serde_json::from_str(text.get())
                    .map_err(|error| Error::invalid("data", format!("not one JSON value: {error}")))?;
                event_type.check(&value)
            }
        }
    }
}

/// Whether `name` is dotted parts of ASCII letters, digits, `_` and `-`.
pub(crate) fn is_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order_created() -> EventType {
        EventType::new("order.created").with_schema(json!({
            "type": "object",
            "required": ["order_id"],
            "properties": {
                "order_id": {"type": "string"},
                "lines": {"type": "array", "items": {"type": "object", "properties": {"qty": {"type": "integer"}}}}
            }
        }))
    }

    #[test]
    fn open_catalogue_takes_dotted_names_only() {
        let open = Catalogue::open();
        assert!(open.contains("invoice.paid"));
        assert!(!open.contains(""));
        assert!(!open.contains("a..b"));
        assert!(!open.contains("naïve.event"));
        assert_eq!(open.event_types().count(), 0);
    }

    #[test]
    fn data_that_does_not_match_is_refused_naming_the_place() {
        let catalogue = Catalogue::of([order_created()]).unwrap();
        let good = json!({"order_id": "A-1", "lines": [{"qty": 2}]});
        assert!(catalogue.check_data("order.created", &EventData::Value(good)).is_ok());
        let bad = EventData::json(r#"{"order_id": "A-1", "lines": [{"qty": 2}, {"qty": "two"}]}"#).unwrap();
        let error = catalogue.check_data("order.created", &bad).unwrap_err();
        match &error {
            Error::DataDoesNotMatchSchema { event_type, path, reason } => {
                assert_eq!((event_type.as_str(), path.as_str()), ("order.created", "/lines/1/qty"));
                assert!(reason.contains("integer"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(error.to_string().contains("/lines/1/qty"), "{error}");
        let missing = catalogue.check_data("order.created", &EventData::Value(json!({}))).unwrap_err();
        assert!(
            matches!(missing, Error::DataDoesNotMatchSchema { ref path, .. } if path == "/"),
            "{missing}"
        );
    }

    #[test]
    fn a_long_reason_is_cut() {
        let catalogue =
            Catalogue::of([EventType::new("blob.saved").with_schema(json!({"type": "string"}))]).unwrap();
        let huge = EventData::Value(json!({ "x": "y".repeat(100_000) }));
        let error = catalogue.check_data("blob.saved", &huge).unwrap_err();
        assert!(error.to_string().len() < 1000, "{} bytes", error.to_string().len());
    }

    #[test]
    fn bad_declarations_fail_naming_the_event_type() {
        let cases = [
            (vec![EventType::new("bad name")], "dotted"),
            (vec![EventType::new("a.b"), EventType::new("a.b")], "twice"),
            (vec![EventType::new("a.b").with_schema(json!({"type": 12}))], "not a valid JSON Schema"),
            (vec![order_created().with_example(json!({"order_id": 7}))], "example"),
        ];
        for (types, expected) in cases {
            let error = Catalogue::of(types).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(Catalogue::of([order_created().with_example(json!({"order_id": "A-1"}))]).is_ok());
    }

    #[test]
    fn types_without_a_schema_take_any_data() {
        let catalogue = Catalogue::of(["order.shipped"]).unwrap();
        assert!(catalogue.check_data("order.shipped", &EventData::Value(json!([1, "x"]))).is_ok());
        assert!(catalogue.contains("order.shipped"));
        assert_eq!(catalogue.names().collect::<Vec<_>>(), ["order.shipped"]);
    }
}
