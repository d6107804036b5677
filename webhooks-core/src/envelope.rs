//! How an event becomes the body bytes that are signed and sent.

use std::fmt::Debug;

use bytes::Bytes;
use chrono::SecondsFormat;
use serde::Serialize;

use crate::error::Error;
use crate::model::{Event, EventData};

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
/// use webhooks_core::{Envelope, Event, JsonEnvelope};
///
/// let at = "2026-03-02T14:30:00Z".parse().unwrap();
/// let event = Event::new("job.completed", serde_json::json!({"job_id": "job_abc123"}), at);
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
    data: &'a EventData,
}

impl Envelope for JsonEnvelope {
    fn render(&self, event: &Event) -> Result<Bytes, Error> {
        let body = Body {
            event: &event.name,
            timestamp: event.occurred_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            data: &event.data,
        };
        to_json(&body)
    }
}

/// `{"type":"<name>","timestamp":"<RFC 3339 UTC>","data":{...}}`, the payload
/// structure the Standard Webhooks specification recommends.
///
/// ```
/// use webhooks_core::{Envelope, Event, StandardEnvelope};
///
/// let at = "2026-03-02T14:30:00.25Z".parse().unwrap();
/// let event = Event::new("invoice.paid", serde_json::json!({"id": 7}), at);
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
    data: &'a EventData,
}

impl Envelope for StandardEnvelope {
    fn render(&self, event: &Event) -> Result<Bytes, Error> {
        let body = StandardBody {
            event_type: &event.name,
            timestamp: event.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            data: &event.data,
        };
        to_json(&body)
    }
}

/// Serializes `body` into a buffer the thread keeps, then copies it into a
/// body of exactly its size: one allocation per event, where a fresh `Vec`
/// would grow (and copy) several times and keep its slack for as long as
/// the delivery waits.
fn to_json(body: &impl Serialize) -> Result<Bytes, Error> {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        // A body being rendered on this thread already (a `Serialize` that
        // renders another event) gets a buffer of its own.
        let mut own = Vec::new();
        let mut kept = buffer.try_borrow_mut().ok();
        let buffer = kept.as_deref_mut().unwrap_or(&mut own);
        buffer.clear();
        let rendered = serde_json::to_writer(&mut *buffer, body).map_err(Error::Render);
        // A rare huge body does not stay with the thread: it leaves as the
        // body itself, uncopied.
        if buffer.capacity() > KEPT_BUFFER {
            let huge = std::mem::take(buffer);
            return rendered.map(|()| Bytes::from(huge));
        }
        rendered.map(|()| Bytes::copy_from_slice(buffer))
    })
}

/// The most a rendering buffer keeps between events.
const KEPT_BUFFER: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use serde::Serializer;

    use super::*;

    /// Renders another body while it is itself being rendered.
    struct Nested;

    impl Serialize for Nested {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let inner = to_json(&"inner").map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(std::str::from_utf8(&inner).map_err(serde::ser::Error::custom)?)
        }
    }

    #[test]
    fn bodies_come_out_whole_whatever_was_rendered_before() {
        let huge = "x".repeat(KEPT_BUFFER * 2);
        assert_eq!(to_json(&huge).unwrap().len(), huge.len() + 2);
        assert_eq!(&to_json(&[1, 2]).unwrap()[..], b"[1,2]");
        assert_eq!(&to_json(&Nested).unwrap()[..], br#""\"inner\"""#);
        assert_eq!(&to_json(&"after").unwrap()[..], br#""after""#);
    }
}
