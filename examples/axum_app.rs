//! A small multi-customer backend that embeds the library: each customer
//! adds its own endpoints and sees only its own deliveries, and an order a
//! customer places is announced to that customer's endpoints alone, once
//! however often the request is retried. SQLite queue, the dispatcher on the
//! app's own runtime, stopped gracefully on Ctrl-C.
//!
//! ```text
//! cargo run --example axum_app -- [--db webhooks.db] [--port 8080] [--allow-private]
//! ```
//!
//! Open `http://127.0.0.1:8080/` in a browser: a toy login picks the
//! customer (no password: it is a demonstration), and `/portal` is the
//! webhook portal of `webhooks-axum` for that customer: endpoints, secrets
//! shown once, the delivery log, resend and recover, and the JSON API under
//! `/portal/api`. The portal takes the customer from the login cookie and
//! binds its forms' CSRF tokens to the session the login starts; in a real
//! service both come from the host's session layer.
//!
//! The JSON routes below take the customer from the path instead; in a real
//! service the customer comes from the login, and the library's owner is
//! that id.
//!
//! | route | what it does |
//! | --- | --- |
//! | `POST /subscriptions` `{"url", "event_types", "secret"?}` | 201, the endpoint with its secret, shown this once |
//! | `GET /subscriptions` | 200 `{"subscriptions"}`, the customer's endpoints, secrets redacted |
//! | `POST /orders` `{"id", "total"}` | 202 `{"event_id", "deliveries", "repeated"}`: `order.created` for this customer, keyed by the order id |
//! | `GET /deliveries?state=&event_type=&subscription=&created_from=&created_until=&after=&limit=` | 200 `{"deliveries", "next"}`, the customer's only |
//! | `GET /deliveries/{id}` | 200 `{"delivery", "attempts"}`: the delivery, its body as JSON, with its attempts |
//! | `POST /deliveries/{id}/resend` | 202 |
//! | `GET /stats` | 200, what the customer's endpoints add up to |
//! | `DELETE /` | 200 `{"deleted_subscriptions"}`: the customer's account is gone, with its endpoints and logs |
//!
//! The answers are the library's own types serialized (`Subscription`,
//! `Published`, `DeliveryPage`, `DeliveryLog`, `OwnerStats`): secrets read
//! `<redacted>` except in the answer that creates an endpoint, which asks
//! for them with `with_secrets`. Errors are `{"error": "..."}` with 400 for
//! bad input, 404 for an unknown id (another customer's ids are unknown
//! here) and 500 for a store failure.

use std::process::ExitCode;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use webhooks_core::{
    DeliveryId, DeliveryLog, DeliveryPage, DeliveryQuery, Error, Owner, OwnerStats, Preset, Publish,
    Published, Subscription, Webhooks,
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
            Error::SubscriptionNotFound { .. } | Error::DeliveryNotFound { .. } => StatusCode::NOT_FOUND,
            Error::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError(Error::Invalid { field: "request", reason: message })
}

/// The customer a route acts for: the library's owner.
fn customer(id: &str) -> Result<Owner, ApiError> {
    Owner::new(id).map_err(|error| bad_request(format!("customer: {error}")))
}

#[derive(Deserialize)]
struct NewSubscription {
    url: String,
    event_types: Vec<String>,
    secret: Option<String>,
}

async fn create_subscription(
    State(webhooks): State<Webhooks>,
    Path(id): Path<String>,
    Json(new): Json<NewSubscription>,
) -> Result<Response, ApiError> {
    let owner = customer(&id)?;
    let mut builder = Subscription::builder(new.url).owner(owner).event_types(new.event_types);
    if let Some(secret) = new.secret {
        builder = builder.secret(secret);
    }
    let subscription = webhooks.subscribe(builder).await?;
    // The one answer that carries the secret: the customer's receiver needs it.
    Ok((StatusCode::CREATED, Json(subscription.with_secrets())).into_response())
}

/// The customer's endpoints, secrets redacted.
#[derive(Serialize)]
struct Subscriptions {
    subscriptions: Vec<Subscription>,
}

async fn list_subscriptions(
    State(webhooks): State<Webhooks>,
    Path(id): Path<String>,
) -> Result<Json<Subscriptions>, ApiError> {
    let subscriptions = webhooks.subscriptions(&customer(&id)?).await?;
    Ok(Json(Subscriptions { subscriptions }))
}

/// An order, as the event's data.
#[derive(Deserialize, Serialize)]
struct Order {
    id: String,
    total: u64,
}

async fn place_order(
    State(webhooks): State<Webhooks>,
    Path(id): Path<String>,
    Json(order): Json<Order>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let owner = customer(&id)?;
    let key = order.id.clone();
    let published = webhooks
        .publish_event(Publish::new("order.created", &order).owner(owner).idempotency_key(key))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(published)))
}

/// The query string is the library's `DeliveryQuery`; the customer's view
/// lists the customer's deliveries only, whatever the query says.
async fn list_deliveries(
    State(webhooks): State<Webhooks>,
    Path(id): Path<String>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let Query(query) = query.map_err(|rejection| bad_request(rejection.body_text()))?;
    Ok(Json(webhooks.owner(customer(&id)?).deliveries(query).await?))
}

/// A delivery id from the path; whose it is, the customer's view decides:
/// another customer's delivery is as unknown as one that never existed.
fn delivery_id(id: &str) -> Result<DeliveryId, ApiError> {
    id.parse().map_err(|_| bad_request(format!("{id:?} is not a delivery id")))
}

async fn delivery(
    State(webhooks): State<Webhooks>,
    Path((customer_id, id)): Path<(String, String)>,
) -> Result<Json<DeliveryLog>, ApiError> {
    let log = webhooks.owner(customer(&customer_id)?).delivery_log(delivery_id(&id)?).await?;
    Ok(Json(log))
}

async fn resend(
    State(webhooks): State<Webhooks>,
    Path((customer_id, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    webhooks.owner(customer(&customer_id)?).resend(delivery_id(&id)?).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn stats(
    State(webhooks): State<Webhooks>,
    Path(id): Path<String>,
) -> Result<Json<OwnerStats>, ApiError> {
    Ok(Json(webhooks.owner_stats(&customer(&id)?).await?))
}

async fn delete_customer(
    State(webhooks): State<Webhooks>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let deleted = webhooks.delete_owner(&customer(&id)?).await?;
    Ok(Json(json!({ "deleted_subscriptions": deleted })))
}

/// The toy login page: pick a customer, then open the portal as them.
async fn home() -> Html<&'static str> {
    Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Shop</title></head>\
         <body style=\"font-family:system-ui;max-width:40em;margin:3em auto\"><h1>Shop</h1>\
         <p>A toy login: sign in as a customer to manage their webhooks.</p>\
         <form method=\"get\" action=\"/login\"><select name=\"customer\">\
         <option>alice</option><option>bob</option></select> <button>Sign in</button></form></body></html>",
    )
}

#[derive(Deserialize)]
struct Login {
    customer: String,
}

/// Signs in as whoever is asked for (a toy: a real service checks a
/// password), starts a session, and opens the portal.
async fn login(Query(login): Query<Login>) -> Result<Response, ApiError> {
    let owner = customer(&login.customer)?;
    if !owner.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(bad_request("a customer id is letters, digits, - and _".into()));
    }
    // A new id each sign-in, so a form rendered before it is not accepted
    // after; a real service has its session layer's.
    let session = uuid::Uuid::now_v7().simple();
    Ok((
        StatusCode::SEE_OTHER,
        // Appended: an array of headers keeps only the last of a name.
        AppendHeaders([
            (header::SET_COOKIE, format!("customer={owner}; Path=/; HttpOnly; SameSite=Lax")),
            (header::SET_COOKIE, format!("session={session}; Path=/; HttpOnly; SameSite=Lax")),
            (header::LOCATION, "/portal".into()),
        ]),
    )
        .into_response())
}

/// The value of the cookie `name`.
fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    let cookies = parts.headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|cookie| cookie.trim().strip_prefix(name)?.strip_prefix('='))
}

/// The customer the login cookie names: the owner the portal acts for.
fn signed_in(parts: &Parts) -> Option<Owner> {
    Owner::new(cookie(parts, "customer")?).ok()
}

/// The session the login started: the portal's forms pass only in it.
fn session(parts: &Parts) -> Option<String> {
    cookie(parts, "session").map(str::to_owned)
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
    let preset = Preset::deepsmith().with_event_types(["order.created"]);
    let webhooks = Webhooks::builder().store(store).preset(preset).build()?;
    let dispatcher = webhooks.dispatcher().allow_private_networks(options.allow_private).build()?;

    // The dispatcher runs on this app's runtime, beside the HTTP server.
    let shutdown = CancellationToken::new();
    let delivering = tokio::spawn(dispatcher.run(shutdown.clone()));

    let customer_routes = Router::new()
        .route("/", delete(delete_customer))
        .route("/subscriptions", post(create_subscription).get(list_subscriptions))
        .route("/orders", post(place_order))
        .route("/deliveries", get(list_deliveries))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/resend", post(resend))
        .route("/stats", get(stats));
    // The portal sits in the host's own router, whatever its state, and
    // answers `/portal/` too.
    let portal = webhooks_axum::Portal::new(webhooks.clone(), signed_in).session(session);
    let app = portal
        .nest_in(Router::new().nest("/customers/{customer}", customer_routes), "/portal")
        .with_state(webhooks)
        .route("/", get(home))
        .route("/login", get(login));
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
