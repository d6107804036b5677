//! A small backend that embeds the library: HTTP routes to create a
//! subscription, publish an event, list deliveries and resend one, on a
//! SQLite queue, with the dispatcher running on the app's own runtime and
//! stopped gracefully on Ctrl-C.
//!
//! ```text
//! cargo run --example axum_app -- [--db webhooks.db] [--port 8080] [--allow-private]
//! ```
//!
//! | route | what it does |
//! | --- | --- |
//! | `POST /subscriptions` `{"url", "event_types", "secret"?}` | 201 `{"id", "secret"}` |
//! | `POST /events` `{"event", "data"}` | 202 `{"event_id", "deliveries"}` |
//! | `GET /deliveries?subscription=&state=&event_type=&after=&limit=` | 200 `{"deliveries", "next"}` |
//! | `GET /deliveries/{id}` | 200, the delivery with its attempts |
//! | `POST /deliveries/{id}/resend` | 202 |
//!
//! Errors are `{"error": "..."}` with 400 for bad input, 404 for an unknown
//! id and 500 for a store failure.

use std::process::ExitCode;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use webhooks_core::{
    Delivery, DeliveryId, DeliveryQuery, Error, Preset, StateFilter, StoreError, Subscription,
    SubscriptionId, Webhooks,
};
use webhooks_sqlite::SqliteStore;

/// A library error as an HTTP answer.
struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::SubscriptionNotFound { .. }
            | Error::Store(StoreError::DeliveryNotFound(_) | StoreError::SubscriptionNotFound(_)) => {
                StatusCode::NOT_FOUND
            }
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

#[derive(Deserialize)]
struct NewSubscription {
    url: String,
    event_types: Vec<String>,
    secret: Option<String>,
}

async fn create_subscription(
    State(webhooks): State<Webhooks>,
    Json(new): Json<NewSubscription>,
) -> Result<Response, ApiError> {
    let mut builder = Subscription::builder(new.url).event_types(new.event_types);
    if let Some(secret) = new.secret {
        builder = builder.secret(secret);
    }
    let subscription = webhooks.subscribe(builder).await?;
    let body = json!({ "id": subscription.id, "secret": subscription.secret.expose() });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct NewEvent {
    event: String,
    data: Value,
}

async fn publish(
    State(webhooks): State<Webhooks>,
    Json(event): Json<NewEvent>,
) -> Result<Response, ApiError> {
    let published = webhooks.publish(&event.event, event.data).await?;
    let body = json!({ "event_id": published.event_id, "deliveries": published.deliveries });
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct Listing {
    subscription: Option<String>,
    state: Option<String>,
    event_type: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

fn delivery_json(delivery: &Delivery) -> Value {
    json!({
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "subscription_id": delivery.subscription_id,
        "state": delivery.state.as_str(),
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "created_at": delivery.created_at,
    })
}

async fn list_deliveries(State(webhooks): State<Webhooks>, Query(listing): Query<Listing>) -> Response {
    let state = match listing.state.as_deref() {
        None => None,
        Some("pending") => Some(StateFilter::Pending),
        Some("held") => Some(StateFilter::Held),
        Some("delivered") => Some(StateFilter::Delivered),
        Some("dropped") => Some(StateFilter::Dropped),
        Some(other) => return bad_request(format!("unknown state {other:?}")),
    };
    let subscription = match listing.subscription.map(|id| id.parse::<SubscriptionId>()).transpose() {
        Ok(id) => id,
        Err(error) => return bad_request(format!("subscription: {error}")),
    };
    let after = match listing.after.map(|id| id.parse::<DeliveryId>()).transpose() {
        Ok(id) => id,
        Err(error) => return bad_request(format!("after: {error}")),
    };
    let query = DeliveryQuery {
        subscription,
        state,
        event_type: listing.event_type,
        after,
        limit: listing.limit.unwrap_or(0),
        ..DeliveryQuery::default()
    };
    match webhooks.deliveries(query).await {
        Ok(page) => {
            let deliveries: Vec<Value> = page.deliveries.iter().map(delivery_json).collect();
            Json(json!({ "deliveries": deliveries, "next": page.next })).into_response()
        }
        Err(error) => ApiError(error).into_response(),
    }
}

async fn delivery(State(webhooks): State<Webhooks>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<DeliveryId>() else { return bad_request(format!("{id:?} is not a delivery id")) };
    match webhooks.delivery_log(id).await {
        Ok(log) => {
            let attempts: Vec<Value> = log
                .attempts
                .iter()
                .map(|a| {
                    json!({
                        "number": a.number,
                        "started_at": a.started_at,
                        "duration_ms": a.duration.as_millis() as u64,
                        "status": a.status(),
                        "error": a.error(),
                    })
                })
                .collect();
            let mut body = delivery_json(&log.delivery);
            body["log"] = Value::Array(attempts);
            Json(body).into_response()
        }
        Err(error) => ApiError(error).into_response(),
    }
}

async fn resend(State(webhooks): State<Webhooks>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<DeliveryId>() else { return bad_request(format!("{id:?} is not a delivery id")) };
    match webhooks.resend(id).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => ApiError(error).into_response(),
    }
}

struct Options {
    db: String,
    port: u16,
    allow_private: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options { db: "webhooks.db".into(), port: 8080, allow_private: false };
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--db" => options.db = args.next().ok_or("--db needs a path")?,
            "--port" => {
                options.port = args.next().and_then(|p| p.parse().ok()).ok_or("--port needs a port number")?
            }
            "--allow-private" => options.allow_private = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(options)
}

async fn serve(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let store = SqliteStore::open(&options.db).await?;
    let webhooks = Webhooks::builder().store(store).preset(Preset::deepsmith()).build()?;
    let dispatcher = webhooks.dispatcher().allow_private_networks(options.allow_private).build()?;

    // The dispatcher runs on this app's runtime, beside the HTTP server.
    let shutdown = CancellationToken::new();
    let delivering = tokio::spawn(dispatcher.run(shutdown.clone()));

    let app = Router::new()
        .route("/subscriptions", post(create_subscription))
        .route("/events", post(publish))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/resend", post(resend))
        .with_state(webhooks);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port)).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        })
        .await?;
    // Attempts in flight finish and are recorded; the rest waits in the file.
    shutdown.cancel();
    delivering.await?;
    println!("stopped");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(1)
        }
    }
}
