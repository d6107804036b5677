//! The error type of the facade and the dispatcher.

use std::sync::Arc;

use crate::model::{DeliveryId, SubscriptionId};
use crate::store::StoreError;

/// What went wrong, naming the input or the part that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is plain `http://` and the preset demands `https://`.
    #[error("{preset} requires an https:// endpoint URL, got {url}")]
    InsecureUrl {
        /// The URL given (credentials removed).
        url: String,
        /// The preset's name.
        preset: String,
    },
    /// The endpoint URL is not one a webhook can be sent to.
    #[error("invalid endpoint URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given (credentials removed where it parsed).
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The event type is not in the preset's catalogue.
    #[error(
        "unknown event type {name:?}: {preset} does not define it (a host declares its own with Preset::with_catalogue)"
    )]
    UnknownEventType {
        /// The event type given.
        name: String,
        /// The preset's name.
        preset: String,
    },
    /// The event's data does not match the JSON Schema its event type
    /// declares.
    #[error("data of {event_type} does not match its schema at {path}: {reason}")]
    DataDoesNotMatchSchema {
        /// The event type.
        event_type: String,
        /// Where in the data, as a JSON Pointer (`/` for the whole).
        path: String,
        /// What the schema asks there.
        reason: String,
    },
    /// A value is out of range or empty.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field or setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The rendered body is larger than the configured maximum.
    #[error("event body is {size} bytes, over the {limit}-byte limit")]
    BodyTooLarge {
        /// The body's size in bytes.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// No subscription has this id.
    #[error("subscription {id} not found")]
    SubscriptionNotFound {
        /// The id asked for.
        id: SubscriptionId,
    },
    /// No delivery has this id.
    #[error("delivery {id} not found")]
    DeliveryNotFound {
        /// The id asked for.
        id: DeliveryId,
    },
    /// The event's data is not JSON the library can send: its `Serialize`
    /// failed (a map with keys that are not strings, say), or its text is
    /// not one JSON value.
    #[error("the event data is not one JSON value")]
    InvalidData(#[source] Arc<serde_json::Error>),
    /// The event could not be rendered into a body.
    #[error("could not render the event body")]
    Render(#[source] serde_json::Error),
    /// The dispatcher's HTTP client could not be built: a proxy URL it
    /// refuses, or a TLS backend that cannot start.
    #[cfg(feature = "dispatch")]
    #[error("could not build the HTTP client: {what}")]
    HttpClient {
        /// The part that failed, e.g. "egress proxy".
        what: &'static str,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// A store's "not found" becomes the facade's, so a caller matches one
/// error whichever layer noticed.
impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::SubscriptionNotFound(id) => Self::SubscriptionNotFound { id },
            StoreError::DeliveryNotFound(id) => Self::DeliveryNotFound { id },
            other => Self::Store(other),
        }
    }
}

impl Error {
    /// Whether the same call may succeed if made again in a moment: the
    /// store was unavailable.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_transient())
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid { field, reason: reason.into() }
    }
}

/// An error with every cause under it, on one line (`outer: inner: root`),
/// for logs and messages: each error of this library says only its own
/// part in `Display` and leaves its cause to [`source`](std::error::Error::source),
/// so `{}` alone drops the detail, and a reporter (`anyhow`'s `{:#}`, this)
/// never repeats it.
///
/// ```
/// use webhooks_core::{ErrorChain, StoreError};
///
/// let error = StoreError::unavailable(std::io::Error::other("connection refused"));
/// assert_eq!(error.to_string(), "the store is unavailable");
/// assert_eq!(ErrorChain(&error).to_string(), "the store is unavailable: connection refused");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

impl std::fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
