//! A real host app for the portal's tests: a toy login that sets a cookie
//! naming the owner and one naming the session, the portal nested under
//! `/portal` with its forms bound to that session, a dispatcher on the
//! same runtime, and a real local receiver whose answers the test changes
//! as it goes.

#![allow(dead_code)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use webhooks_core::{Catalogue, Clock, EventType, Owner, Preset, Schedule, SystemClock, Webhooks};

/// The status and body the receiver answers with.
type Answer = Arc<Mutex<(u16, String)>>;
/// Each request's headers and body.
type Log = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A receiver on 127.0.0.1 that records each body and answers with the
/// status and body it is set to.
pub struct Receiver {
    pub url: String,
    answer: Answer,
    received: Log,
}

impl Receiver {
    pub async fn start() -> Self {
        let answer: Answer = Arc::new(Mutex::new((200, "thanks".to_owned())));
        let received: Log = Arc::default();
        let state = (answer.clone(), received.clone());
        let app = Router::new()
            .route(
                "/hooks",
                post(
                    |State((answer, received)): State<(Answer, Log)>,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        received
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push((headers, body.to_vec()));
                        let (status, body) = answer.lock().unwrap_or_else(PoisonError::into_inner).clone();
                        (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, "text/html")], body)
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Self { url, answer, received }
    }

    /// Answers every request from now on with `status` and `body`.
    pub fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) = (status, body.to_owned());
    }

    pub fn received(&self) -> Vec<(axum::http::HeaderMap, Vec<u8>)> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// The session the tests' requests are in unless they name another.
pub const SESSION: &str = "session-1";

#[derive(Deserialize)]
struct Login {
    r#as: String,
    next: Option<String>,
    session: Option<String>,
}

/// The toy login: whoever asks is signed in as the owner they name, in the
/// session they name ([`SESSION`] unless they do). A real host checks a
/// password and starts a fresh session here.
async fn login(Query(login): Query<Login>) -> Response {
    let next = login.next.filter(|next| next.starts_with('/') && !next.starts_with("//"));
    let session = login.session.unwrap_or_else(|| SESSION.to_owned());
    (
        StatusCode::SEE_OTHER,
        // Appended: an array of headers keeps only the last of a name.
        AppendHeaders([
            (header::SET_COOKIE, format!("owner={}; Path=/; HttpOnly; SameSite=Lax", login.r#as)),
            (header::SET_COOKIE, format!("session={session}; Path=/; HttpOnly; SameSite=Lax")),
            (header::LOCATION, next.unwrap_or_else(|| "/portal".to_owned())),
        ]),
    )
        .into_response()
}

/// The value of the cookie `name`.
fn cookie(parts: &Parts, name: &str) -> Option<String> {
    let cookies = parts.headers.get(header::COOKIE)?.to_str().ok()?;
    let value = cookies.split(';').find_map(|cookie| cookie.trim().strip_prefix(name)?.strip_prefix('='))?;
    Some(value.to_owned())
}

/// The owner named by the login cookie.
pub fn owner_of(parts: &Parts) -> Option<Owner> {
    Owner::new(cookie(parts, "owner")?).ok()
}

/// The session named by the session cookie.
pub fn session_of(parts: &Parts) -> Option<String> {
    cookie(parts, "session")
}

/// A page of the host's that shows a receiver's text without escaping it and
/// without a script policy: the control that proves the browser in these
/// tests runs injected script when a page lets it.
async fn unsafe_page(Query(text): Query<std::collections::HashMap<String, String>>) -> Response {
    let body = text.get("text").cloned().unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/html")], format!("<!doctype html><html><body><p>{body}</p></body></html>"))
        .into_response()
}

pub struct Host {
    pub base: String,
    pub webhooks: Webhooks,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Host {
    /// The host on 127.0.0.1: DeepSmith's events and `order.created` (with
    /// a description, a schema and an example), one retry after 200 ms, so a failing receiver drops a delivery quickly;
    /// owners may pick its policy or "premium" (two retries).
    pub async fn start() -> Self {
        Self::start_with_clock(SystemClock).await
    }

    /// The host of [`Host::start`] on `clock`: a `ManualClock` moves the
    /// forms' tokens towards their expiry without waiting.
    pub async fn start_with_clock(clock: impl Clock + 'static) -> Self {
        // The host's catalogue replaces the preset's: keeping DeepSmith's
        // events means naming them too.
        let deepsmith = Preset::deepsmith().catalogue().names().map(EventType::new).collect::<Vec<_>>();
        let order_created = EventType::new("order.created")
            .with_description("A customer placed an order.")
            .with_schema(serde_json::json!({"type": "object", "required": ["order"]}))
            .with_example(serde_json::json!({"order": 1}));
        let catalogue = Catalogue::of(deepsmith.into_iter().chain([order_created])).unwrap();
        let preset = Preset::deepsmith()
            .with_catalogue(catalogue)
            .with_retry(Schedule::new([Duration::from_millis(200)]).unwrap());
        let premium = Schedule::new([Duration::from_millis(100), Duration::from_millis(200)]).unwrap();
        let webhooks = Webhooks::builder()
            .store(webhooks_memory::MemoryStore::new())
            .preset(preset)
            .retry_policy("premium", premium)
            .clock(clock)
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        let dispatcher = webhooks
            .dispatcher()
            .allow_private_networks(true)
            .poll_interval(Duration::from_millis(50))
            .build()
            .unwrap();
        tokio::spawn(dispatcher.run(shutdown.clone()));
        let app = webhooks_axum::Portal::new(webhooks.clone(), owner_of)
            .session(session_of)
            .offer_retry_policies(["DeepSmith", "premium"])
            .nest_in(Router::new().route("/login", get(login)).route("/unsafe", get(unsafe_page)), "/portal");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await.ok();
        });
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base, webhooks, client, shutdown }
    }

    /// A request as `owner` (by the login cookie) in [`SESSION`].
    pub fn request(&self, owner: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_in(owner, Some(SESSION), method, path)
    }

    /// A request as `owner` in `session`, or with no session cookie.
    pub fn request_in(
        &self,
        owner: &str,
        session: Option<&str>,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let cookies = match session {
            Some(session) => format!("owner={owner}; session={session}"),
            None => format!("owner={owner}"),
        };
        self.client.request(method, format!("{}{path}", self.base)).header("cookie", cookies)
    }

    /// A page's status and HTML, as `owner`.
    pub async fn page(&self, owner: &str, path: &str) -> (u16, String) {
        self.page_in(owner, Some(SESSION), path).await
    }

    /// A page's status and HTML, as `owner` in `session`.
    pub async fn page_in(&self, owner: &str, session: Option<&str>, path: &str) -> (u16, String) {
        let response = self.request_in(owner, session, reqwest::Method::GET, path).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Submits a form of the portal's as `owner`, with the CSRF token its
    /// pages carry; returns the status, the redirect target and the body.
    pub async fn submit(&self, owner: &str, action: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
        let (_, index) = self.page(owner, "/portal").await;
        let token = csrf_of(&index);
        self.submit_with(owner, action, &token, fields).await
    }

    /// Submits a form as `owner` in [`SESSION`] with `token`.
    pub async fn submit_with(
        &self,
        owner: &str,
        action: &str,
        token: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, String) {
        self.submit_in(owner, Some(SESSION), action, token, fields).await
    }

    /// Submits a form as `owner` in `session` with `token`.
    pub async fn submit_in(
        &self,
        owner: &str,
        session: Option<&str>,
        action: &str,
        token: &str,
        fields: &[(&str, &str)],
    ) -> (u16, String, String) {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("csrf", token);
        for (name, value) in fields {
            form.append_pair(name, value);
        }
        let response = self
            .request_in(owner, session, reqwest::Method::POST, action)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location =
            response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
        (status, location, response.text().await.unwrap())
    }

    /// A JSON API call as `owner`; state-changing calls are sent as JSON.
    pub async fn api(
        &self,
        owner: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.request(owner, method.clone(), &format!("/portal/api{path}"));
        if method != reqwest::Method::GET {
            request = request.header("content-type", "application/json");
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// Polls a delivery through the API until `done` holds of it (10 s at most).
    pub async fn wait_delivery(
        &self,
        owner: &str,
        id: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..500 {
            let (status, delivery) =
                self.api(owner, reqwest::Method::GET, &format!("/deliveries/{id}"), None).await;
            assert_eq!(status, 200, "{delivery}");
            if done(&delivery) {
                return delivery;
            }
            last = delivery;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("delivery {id} never got there: {last}");
    }
}

/// The CSRF token in a page's forms.
pub fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a form with a CSRF token");
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}
