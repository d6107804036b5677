//! The JSON admin API: the same actions as the pages, for the host's own
//! front end or its customers' scripts.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use webhooks_core::{
    Attempt, AttemptResult, Delivery, DeliveryId, DeliveryQuery, Owner, StateFilter, Subscription,
    SubscriptionStatus, SubscriptionUpdate,
};

use crate::health::health;
use crate::policy::PolicyChange;
use crate::{AppState, Failure, OPERATIONAL_EVENTS_WINDOW, owned_delivery, owned_subscription};

/// A secret rotated out stays valid this long unless the request says.
const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/event-types", get(event_types))
        .route("/stats", get(owner_stats))
        .route("/endpoints", get(list_endpoints).post(create_endpoint))
        .route("/endpoints/{id}", get(endpoint).patch(update_endpoint).delete(delete_endpoint))
        .route("/endpoints/{id}/enable", post(enable))
        .route("/endpoints/{id}/disable", post(disable))
        .route("/endpoints/{id}/rotate-secret", post(rotate_secret))
        .route("/endpoints/{id}/test", post(send_test))
        .route("/endpoints/{id}/stats", get(endpoint_stats))
        .route("/endpoints/{id}/recover", post(recover))
        .route("/endpoints/{id}/operational-events", get(operational_events))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/resend", post(resend))
}

/// A failure as the API answers it: `{"code", "message"}`.
pub(crate) struct ApiFailure(Failure);

impl<E: Into<Failure>> From<E> for ApiFailure {
    fn from(failure: E) -> Self {
        Self(failure.into())
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (status, code, message) = self.0.parts();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(json!({ "code": code, "message": message }))).into_response()
    }
}

type ApiResult = Result<Response, ApiFailure>;

/// The owner an API request acts for; refuses anonymous requests, and
/// state-changing ones that are not JSON (a cross-site form cannot send
/// JSON without a CORS preflight the host never grants).
struct ApiOwner(Owner);

impl FromRequestParts<AppState> for ApiOwner {
    type Rejection = ApiFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let owner = state.owner(parts).ok_or(Failure::Unauthorized)?;
        if ![Method::GET, Method::HEAD].contains(&parts.method) {
            let json = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.split(';').next())
                .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
            if !json {
                return Err(Failure::JsonRequired.into());
            }
        }
        Ok(Self(owner))
    }
}

/// The request's JSON body; an empty body is the default value.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|error| Failure::BadRequest(format!("request body: {error}")))
}

fn json(status: StatusCode, value: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(value)).into_response()
}

pub(crate) fn endpoint_json(subscription: &Subscription) -> Value {
    let (disabled_reason, disabled_at) = match &subscription.status {
        SubscriptionStatus::Enabled => (None, None),
        SubscriptionStatus::Disabled { reason, at } => (Some(reason.clone()), Some(*at)),
    };
    json!({
        "id": subscription.id,
        "url": subscription.url,
        "event_types": subscription.event_types,
        "channels": subscription.channels,
        "enabled": subscription.is_enabled(),
        "disabled_reason": disabled_reason,
        "disabled_at": disabled_at,
        "consecutive_failures": subscription.consecutive_failures,
        "created_at": subscription.created_at,
        "retry": subscription.settings.retry,
        "disable": subscription.settings.disable,
        "held_limit": subscription.settings.held_limit_or_default(),
    })
}

fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "endpoint_id": delivery.subscription_id,
        "state": delivery.state.as_str(),
        "cycle": delivery.cycle,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
    })
}

fn attempt_json(attempt: &Attempt) -> Value {
    let response_body = match &attempt.result {
        AttemptResult::Response { body, .. } => Some(body.as_str()),
        AttemptResult::Error(_) => None,
    };
    json!({
        "cycle": attempt.cycle,
        "number": attempt.number,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration.as_millis() as u64,
        "status": attempt.status(),
        "error": attempt.error(),
        "response_body": response_body,
    })
}

async fn event_types(State(state): State<AppState>, ApiOwner(_): ApiOwner) -> ApiResult {
    let catalogue = state.webhooks.preset().catalogue();
    let event_types: Vec<_> = catalogue
        .event_types()
        .map(|event_type| {
            json!({
                "name": event_type.name(),
                "description": event_type.description(),
                "schema": event_type.schema(),
                "example": event_type.example(),
            })
        })
        .collect();
    let body = json!({ "fixed": !catalogue.is_open(), "event_types": event_types });
    Ok(json(StatusCode::OK, body))
}

async fn owner_stats(State(state): State<AppState>, ApiOwner(owner): ApiOwner) -> ApiResult {
    let stats = state.webhooks.owner_stats(&owner).await?;
    Ok(json(
        StatusCode::OK,
        json!({
            "endpoints": stats.subscriptions,
            "disabled": stats.disabled,
            "deliveries": {
                "pending": stats.deliveries.pending,
                "delivered": stats.deliveries.delivered,
                "dropped": stats.deliveries.dropped,
            },
            "attempts": stats.attempts,
            "succeeded": stats.succeeded,
            "last_success_at": stats.last_success_at,
            "last_failure_at": stats.last_failure_at,
        }),
    ))
}

async fn list_endpoints(State(state): State<AppState>, ApiOwner(owner): ApiOwner) -> ApiResult {
    let listed: Vec<Value> = state.webhooks.subscriptions(&owner).await?.iter().map(endpoint_json).collect();
    Ok(json(StatusCode::OK, json!({ "endpoints": listed })))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEndpoint {
    url: String,
    event_types: Vec<String>,
    /// The channels it listens on; none: every channel.
    #[serde(default)]
    channels: Vec<String>,
}

async fn create_endpoint(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    bytes: Bytes,
) -> ApiResult {
    let new: NewEndpoint = body(&bytes)?;
    let builder =
        Subscription::builder(new.url).owner(owner).event_types(new.event_types).channels(new.channels);
    let subscription = state.webhooks.subscribe(builder).await?;
    let mut created = endpoint_json(&subscription);
    // The only time the secret leaves the store through the API.
    created["secret"] = json!(subscription.secret.expose());
    Ok(json(StatusCode::CREATED, created))
}

async fn endpoint(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    Ok(json(StatusCode::OK, endpoint_json(&subscription)))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointChange {
    url: Option<String>,
    event_types: Option<Vec<String>>,
    /// The channels it listens on, replacing the old ones.
    channels: Option<Vec<String>>,
    /// One of the policies the host offers.
    retry_policy: Option<String>,
    /// Failures in a row that disable the endpoint.
    disable_after_failures: Option<u32>,
    /// Deliveries kept while the endpoint is disabled.
    held_limit: Option<u32>,
}

async fn update_endpoint(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let change: EndpointChange = body(&bytes)?;
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let mut update = SubscriptionUpdate::new();
    if let Some(url) = change.url {
        update = update.url(url);
    }
    if let Some(event_types) = change.event_types {
        update = update.event_types(event_types);
    }
    if let Some(channels) = change.channels {
        update = update.channels(channels);
    }
    let policy = PolicyChange {
        retry_policy: change.retry_policy,
        disable_after_failures: change.disable_after_failures,
        held_limit: change.held_limit,
    };
    if !policy.is_empty() {
        update = update.settings(policy.apply(&state, &subscription)?);
    }
    let updated = state.webhooks.update_subscription(subscription.id, update).await?;
    Ok(json(StatusCode::OK, endpoint_json(&updated)))
}

async fn delete_endpoint(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    state.webhooks.delete_subscription(subscription.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn enable(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    state.webhooks.enable(subscription.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disable {
    reason: Option<String>,
}

async fn disable(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let request: Disable = body(&bytes)?;
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let reason = request.reason.unwrap_or_else(|| "disabled by its owner".to_owned());
    state.webhooks.disable(subscription.id, &reason).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace_seconds: Option<u64>,
}

async fn rotate_secret(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let request: Rotate = body(&bytes)?;
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let grace = request.grace_seconds.map_or(DEFAULT_GRACE, Duration::from_secs);
    let secret = state.webhooks.rotate_secret(subscription.id, grace).await?;
    Ok(json(
        StatusCode::OK,
        json!({ "secret": secret.expose(), "previous_valid_for_seconds": grace.as_secs() }),
    ))
}

async fn send_test(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let delivery = state.webhooks.send_test(subscription.id).await?;
    Ok(json(StatusCode::ACCEPTED, json!({ "delivery_id": delivery })))
}

async fn endpoint_stats(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let health = health(&state.webhooks, &subscription).await?;
    let counts = state.webhooks.delivery_counts(subscription.id).await?;
    let stats = health.stats;
    Ok(json(
        StatusCode::OK,
        json!({
            "attempts": stats.attempts,
            "succeeded": stats.succeeded,
            "success_rate": stats.success_rate(),
            "last_success_at": stats.last_success_at,
            "last_failure_at": stats.last_failure_at,
            "consecutive_failures": stats.consecutive_failures,
            "deliveries": { "pending": counts.pending, "delivered": counts.delivered, "dropped": counts.dropped },
            "last_day": health.last_day,
        }),
    ))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recover {
    since: Option<DateTime<Utc>>,
}

async fn recover(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let request: Recover = body(&bytes)?;
    let since =
        request.since.ok_or_else(|| Failure::BadRequest("request body: `since` is required".into()))?;
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let recovered = state.webhooks.recover(subscription.id, since).await?;
    Ok(json(StatusCode::OK, json!({ "recovered": recovered })))
}

/// The filters of a delivery listing, shared with the log page.
#[derive(Default, Deserialize)]
pub(crate) struct Listing {
    pub(crate) endpoint: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) created_from: Option<DateTime<Utc>>,
    pub(crate) created_until: Option<DateTime<Utc>>,
    pub(crate) after: Option<String>,
    pub(crate) limit: Option<usize>,
}

impl Listing {
    /// The query for `owner`, with an endpoint filter checked to be theirs.
    pub(crate) async fn query(&self, state: &AppState, owner: &Owner) -> Result<DeliveryQuery, Failure> {
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let subscription = match non_empty(&self.endpoint) {
            Some(id) => Some(owned_subscription(&state.webhooks, owner, &id).await?.id),
            None => None,
        };
        let filter = match non_empty(&self.state).as_deref() {
            None => None,
            Some("pending") => Some(StateFilter::Pending),
            Some("held") => Some(StateFilter::Held),
            Some("delivered") => Some(StateFilter::Delivered),
            Some("dropped") => Some(StateFilter::Dropped),
            Some(other) => return Err(Failure::BadRequest(format!("unknown state {other:?}"))),
        };
        let after = non_empty(&self.after)
            .map(|id| id.parse::<DeliveryId>())
            .transpose()
            .map_err(|_| Failure::BadRequest("`after` is not a delivery id".into()))?;
        let query = DeliveryQuery::new()
            .owner(owner.clone())
            .subscription(subscription)
            .state(filter)
            .created_from(self.created_from)
            .created_until(self.created_until)
            .after(after)
            .limit(self.limit.unwrap_or(0));
        Ok(match non_empty(&self.event_type) {
            Some(name) => query.event_type(name),
            None => query,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    since: Option<DateTime<Utc>>,
}

/// What the store shows of an endpoint's operational events, newest first,
/// each shaped like its operational webhook's data with its `type`.
async fn operational_events(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
    since: Result<Query<Since>, QueryRejection>,
) -> ApiResult {
    let Query(Since { since }) = since.map_err(|rejection| Failure::BadRequest(rejection.body_text()))?;
    let subscription = owned_subscription(&state.webhooks, &owner, &id).await?;
    let since = since.unwrap_or_else(|| Utc::now() - OPERATIONAL_EVENTS_WINDOW);
    let events = state.webhooks.operational_events(subscription.id, since).await?;
    let events: Vec<Value> = events
        .iter()
        .map(|event| {
            let mut shown = event.data(Some(&owner));
            shown["type"] = json!(event.kind());
            shown
        })
        .collect();
    Ok(json(StatusCode::OK, json!({ "events": events })))
}

async fn list_deliveries(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    listing: Result<Query<Listing>, QueryRejection>,
) -> ApiResult {
    let Query(listing) = listing.map_err(|rejection| Failure::BadRequest(rejection.body_text()))?;
    let query = listing.query(&state, &owner).await?;
    let page = state.webhooks.deliveries(query).await?;
    let deliveries: Vec<Value> = page.deliveries.iter().map(delivery_json).collect();
    Ok(json(StatusCode::OK, json!({ "deliveries": deliveries, "next": page.next })))
}

async fn delivery(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let (delivery, _) = owned_delivery(&state.webhooks, &owner, &id).await?;
    let attempts = state.webhooks.attempts(delivery.id).await?;
    let mut shown = delivery_json(&delivery);
    shown["body"] = serde_json::from_slice(&delivery.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&delivery.body).into_owned()));
    shown["log"] = attempts.iter().map(attempt_json).collect();
    Ok(json(StatusCode::OK, shown))
}

async fn resend(
    State(state): State<AppState>,
    ApiOwner(owner): ApiOwner,
    Path(id): Path<String>,
) -> ApiResult {
    let (delivery, _) = owned_delivery(&state.webhooks, &owner, &id).await?;
    state.webhooks.resend(delivery.id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
