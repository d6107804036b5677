//! How an event becomes the body bytes that are signed and sent.

use std::fmt::Debug;

use bytes::Bytes;
use chrono::SecondsFormat;
use serde::Serialize;

use crate::error::Error;
use crate::model::Event;

/// Renders an event into the body sent to every subscription.
///
/// It runs once per event, at publish; the bytes are stored and sent as they
/// are on every attempt, never re-serialized.
pub trait Envelope: Send + Sync + Debug {
    /// The body for `event`.
    fn render(&self, event: &Event) -> Result<Bytes, Error>;
}

/// `{"event":"<name>","timestamp":"<RFC 3339 UTC>","data":{...}}`, the body of
/// both built-in presets.
///
/// ```
/// use webhooks_core::{Audience, Envelope, Event, EventId, Owner, JsonEnvelope};
///
/// let event = Event {
///     id: EventId::new(),
///     audience: Audience::Owner(Owner::default()),
///     idempotency_key: None,
///     name: "job.completed".into(),
///     occurred_at: "2026-03-02T14:30:00Z".parse().unwrap(),
///     data: serde_json::json!({"job_id": "job_abc123"}),
/// };
/// let body = JsonEnvelope.render(&event).unwrap();
/// assert_eq!(
///     &body[..],
///     br#"{"event":"job.completed","timestamp":"2026-03-02T14:30:00Z","data":{"job_id":"job_abc123"}}"#
/// );
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonEnvelope;

#[derive(Serialize)]
struct Body<'a> {
    event: &'a str,
    timestamp: String,
    data: &'a serde_json::Value,
}

impl Envelope for JsonEnvelope {
    fn render(&self, event: &Event) -> Result<Bytes, Error> {
        let body = Body {
            event: &event.name,
            timestamp: event.occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            data: &event.data,
        };
        serde_json::to_vec(&body).map(Bytes::from).map_err(Error::Render)
    }
}

/// `{"type":"<name>","timestamp":"<RFC 3339 UTC>","data":{...}}`, the payload
/// structure the Standard Webhooks specification recommends.
///
/// ```
/// use webhooks_core::{Audience, Envelope, Event, EventId, Owner, StandardEnvelope};
///
/// let event = Event {
///     id: EventId::new(),
///     audience: Audience::Owner(Owner::default()),
///     idempotency_key: None,
///     name: "invoice.paid".into(),
///     occurred_at: "2026-03-02T14:30:00.25Z".parse().unwrap(),
///     data: serde_json::json!({"id": 7}),
/// };
/// let body = StandardEnvelope.render(&event).unwrap();
/// assert_eq!(&body[..], br#"{"type":"invoice.paid","timestamp":"2026-03-02T14:30:00.250000Z","data":{"id":7}}"#);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardEnvelope;

#[derive(Serialize)]
struct StandardBody<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a serde_json::Value,
}

impl Envelope for StandardEnvelope {
    fn render(&self, event: &Event) -> Result<Bytes, Error> {
        let body = StandardBody {
            event_type: &event.name,
            timestamp: event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            data: &event.data,
        };
        serde_json::to_vec(&body).map(Bytes::from).map_err(Error::Render)
    }
}
