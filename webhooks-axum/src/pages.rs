//! The server-rendered pages. Every value is interpolated by `maud`, which
//! escapes it; nothing is written as raw HTML but the fixed markup here.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Duration, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use webhooks_core::{
    AttemptResult, Catalogue, Delivery, DeliveryState, OperationalEvent, Owner, RetryChoice, Subscription,
    SubscriptionStatus, SubscriptionUpdate,
};

use crate::api::Listing;
use crate::csrf::Session;
use crate::health::{HOURS, Health, LastDay, health};
use crate::policy::PolicyChange;
use crate::{AppState, Failure, OPERATIONAL_EVENTS_WINDOW, mount_path, owned_delivery, owned_subscription};

/// No script from anywhere, styles only inline, forms only to this site,
/// never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = r#"
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.8em 2em;display:flex;gap:2em;align-items:baseline}
header a{color:#cfd8ff;text-decoration:none}header h1{font-size:1.15em;margin:0}
header .who{margin-left:auto;color:#aab}
main{max-width:1100px;margin:1.5em auto;padding:0 2em}
h2{font-size:1.2em;margin:1.6em 0 .6em}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:1em 1.3em;margin:1em 0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.45em .6em;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#5a6272;font-size:.85em;text-transform:uppercase;letter-spacing:.03em}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f3f4f7;padding:.6em .8em;border-radius:6px;white-space:pre-wrap;word-break:break-all;max-height:18em;overflow:auto;margin:.2em 0}
.url{word-break:break-all}.muted{color:#6b7280}.small{font-size:.85em}
.ok{color:#13795b;font-weight:600}.bad{color:#b42318;font-weight:600}.warn{color:#9a6700;font-weight:600}
.badge{display:inline-block;border-radius:999px;padding:.05em .6em;font-size:.8em;font-weight:600}
.badge.ok{background:#e3f6ee}.badge.bad{background:#fde8e6}.badge.warn{background:#fff4d6}.badge.muted{background:#eef0f3}
form.inline{display:inline}label{display:block;margin:.4em 0}
input[type=text],input[type=url]{font:inherit;padding:.35em .5em;border:1px solid #c9ced8;border-radius:6px;min-width:24em}
input[type=number]{font:inherit;padding:.35em .5em;border:1px solid #c9ced8;border-radius:6px;width:9em}
select{font:inherit;padding:.3em .4em;border:1px solid #c9ced8;border-radius:6px;background:#fff;max-width:24em}
button{font:inherit;padding:.35em .9em;border-radius:6px;border:1px solid #3650d6;background:#3650d6;color:#fff;cursor:pointer}
button.plain{background:#fff;color:#3650d6}button.danger{border-color:#b42318;background:#fff;color:#b42318}
.events{display:flex;flex-wrap:wrap;gap:.2em 1.4em}.events label{display:inline-block;margin:0}
.secret{font-size:1.05em;background:#fff8e1;border:1px dashed #d4a017;padding:.6em .8em;border-radius:6px;display:inline-block}
.notice{background:#e8f0ff;border:1px solid #b9cbff;padding:.6em 1em;border-radius:6px}
.actions{display:flex;gap:.6em;flex-wrap:wrap;align-items:end}
section.actions form{display:flex;gap:.4em;align-items:center}section.actions label{display:inline;margin:0}
svg.chart rect.attempts{fill:#9db2ff}svg.chart rect.failures{fill:#e5484d}svg.chart text{font-size:10px;fill:#6b7280}
"#;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/endpoints", post(create))
        .route("/endpoints/{id}", get(endpoint))
        .route("/endpoints/{id}/update", post(update))
        .route("/endpoints/{id}/policy", post(change_policy))
        .route("/endpoints/{id}/enable", post(enable))
        .route("/endpoints/{id}/disable", post(disable))
        .route("/endpoints/{id}/rotate", post(rotate))
        .route("/endpoints/{id}/test", post(send_test))
        .route("/endpoints/{id}/recover", post(recover))
        .route("/endpoints/{id}/delete", get(confirm_delete).post(delete))
        .route("/deliveries", get(deliveries))
        .route("/event-types", get(event_types))
        .route("/deliveries/{id}", get(delivery))
        .route("/deliveries/{id}/resend", post(resend))
}

/// Who is looking, in which of the host's sessions, where the portal is
/// mounted, and the token their forms carry.
struct Viewer {
    owner: Owner,
    /// `None` when the host names sessions and this request is in none.
    session: Option<Session>,
    base: String,
    /// Empty without a session: such forms are refused anyway.
    csrf: String,
    title: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let base = mount_path(parts);
        let owner =
            state.owner(parts).ok_or(PageFailure { failure: Failure::Unauthorized, base: base.clone() })?;
        let session = state.session(parts);
        let csrf = session.as_ref().map(|session| state.csrf_token(&owner, session)).unwrap_or_default();
        Ok(Self { owner, session, base, csrf, title: state.title.clone() })
    }
}

impl Viewer {
    /// A path of the portal's as the browser must ask for it. The index of
    /// a nested router is the mount path itself, without a trailing slash.
    fn link(&self, path: &str) -> String {
        match path.strip_prefix('/') {
            Some(rest) if !self.base.is_empty() && (rest.is_empty() || rest.starts_with('?')) => {
                format!("{}{rest}", self.base)
            }
            _ => format!("{}{path}", self.base),
        }
    }

    fn fail(&self, failure: impl Into<Failure>) -> PageFailure {
        PageFailure { failure: failure.into(), base: self.base.clone() }
    }

    /// The submitted form, if it carries this viewer's unexpired CSRF token
    /// for this session.
    fn form(&self, state: &AppState, bytes: &Bytes) -> Result<Form, PageFailure> {
        let form = Form(form_urlencoded::parse(bytes).into_owned().collect());
        if state.csrf_ok(&self.owner, self.session.as_ref(), form.get("csrf").unwrap_or_default()) {
            Ok(form)
        } else {
            Err(self.fail(Failure::Csrf))
        }
    }

    /// The viewer's endpoint `id` and the form that acts on it, which must
    /// carry the viewer's token; another owner's endpoint is not found.
    async fn endpoint_form(
        &self,
        state: &AppState,
        id: &str,
        bytes: &Bytes,
    ) -> Result<(Subscription, Form), PageFailure> {
        let form = self.form(state, bytes)?;
        let subscription =
            owned_subscription(&state.webhooks, &self.owner, id).await.map_err(|e| self.fail(e))?;
        Ok((subscription, form))
    }

    /// A form that posts to `action` with the CSRF token.
    fn post_form(&self, action: &str, class: &str, fields: Markup, button: Markup) -> Markup {
        html! {
            form.(class) method="post" action=(self.link(action)) {
                input type="hidden" name="csrf" value=(self.csrf);
                (fields)
                (button)
            }
        }
    }

    fn page(&self, status: StatusCode, heading: &str, content: Markup) -> Response {
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="referrer" content="no-referrer";
                    title { (heading) " · " (self.title) }
                    style { (maud::PreEscaped(STYLE)) }
                }
                body {
                    header {
                        h1 { a href=(self.link("/")) { (self.title) } }
                        a href=(self.link("/")) { "Endpoints" }
                        a href=(self.link("/deliveries")) { "Delivery log" }
                        a href=(self.link("/event-types")) { "Event types" }
                        span.who { "Signed in as " strong { (self.owner) } }
                    }
                    main { h2 { (heading) } (content) }
                }
            }
        };
        html_response(status, markup)
    }
}

/// A page with the headers every page gets: no caching (a secret may be on
/// it), the policy that forbids script, no sniffing.
fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A failure shown as a page.
struct PageFailure {
    failure: Failure,
    base: String,
}

impl IntoResponse for PageFailure {
    fn into_response(self) -> Response {
        let (status, code, message) = self.failure.parts();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let back = if self.base.is_empty() { "/".to_owned() } else { self.base.clone() };
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Error" } style { (maud::PreEscaped(STYLE)) } }
                body { main {
                    h2 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    section { p.bad data-code=(code) { (message) } p { a href=(back) { "Back to your endpoints" } } }
                } }
            }
        };
        html_response(status, markup)
    }
}

type PageResult = Result<Response, PageFailure>;

/// A submitted form; a field may repeat (event types).
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(key, _)| key == name).map(|(_, value)| value.clone()).collect()
    }

    /// The channels typed, separated by commas or spaces.
    fn channels(&self) -> Vec<String> {
        let typed = self.get("channels").unwrap_or_default();
        typed.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
    }

    /// The event types picked: checkboxes, and for an open catalogue a text
    /// field of names separated by commas or spaces.
    fn event_types(&self) -> Vec<String> {
        let mut names = self.all("event_type");
        if let Some(typed) = self.get("event_types_text") {
            names.extend(
                typed.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(String::from),
            );
        }
        names
    }
}

fn redirect(to: String) -> Response {
    Redirect::to(&to).into_response()
}

fn when(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn optional_time(time: Option<DateTime<Utc>>, none: &str) -> Markup {
    match time {
        Some(time) => html! { (when(time)) },
        None => html! { span.muted { (none) } },
    }
}

fn status_badge(subscription: &Subscription) -> Markup {
    match &subscription.status {
        SubscriptionStatus::Enabled => html! { span.badge.ok { "enabled" } },
        SubscriptionStatus::Disabled { reason, at } => html! {
            span.badge.bad { "disabled" } " " span.small { (reason) } br; span.small.muted { "since " (when(*at)) }
        },
    }
}

/// The facade reports a delivery waiting for a disabled endpoint as held.
fn state_badge(delivery: &Delivery) -> Markup {
    match delivery.state {
        DeliveryState::Delivered => html! { span.badge.ok { "delivered" } },
        DeliveryState::Dropped => html! { span.badge.bad { "dropped" } },
        DeliveryState::Held => html! { span.badge.muted { "held" } },
        DeliveryState::Pending if delivery.attempts > 0 => html! { span.badge.warn { "retrying" } },
        DeliveryState::Pending => html! { span.badge.muted { "pending" } },
    }
}

fn success_rate(health: &Health) -> Markup {
    match health.stats.success_rate() {
        None => html! { span.muted { "no attempts yet" } },
        Some(rate) => {
            let class = if rate >= 0.95 {
                "ok"
            } else if rate >= 0.5 {
                "warn"
            } else {
                "bad"
            };
            html! { span class=(class) { (format!("{:.1} %", rate * 100.0)) } span.small.muted { " of " (health.stats.attempts) } }
        }
    }
}

/// Attempts (blue) and failures (red) per hour over the last day, as bars.
fn chart(last_day: &LastDay, width: u32, height: u32) -> Markup {
    let most = last_day.hours.iter().map(|hour| hour.attempts).max().unwrap_or(0).max(1);
    let slot = width / HOURS as u32;
    let plot = height - 14;
    let scale = |n: u32| (f64::from(n) / f64::from(most) * f64::from(plot)).round() as u32;
    let total: u32 = last_day.hours.iter().map(|hour| hour.attempts).sum();
    let failed: u32 = last_day.hours.iter().map(|hour| hour.failures).sum();
    let label = format!("Last 24 hours: {total} attempts, {failed} failed");
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label=(label) {
            title { (label) (if last_day.partial { " (busiest deliveries left out)" } else { "" }) }
            line x1="0" y1=(plot) x2=(width) y2=(plot) stroke="#d0d4dc" {}
            @for (i, hour) in last_day.hours.iter().enumerate() {
                @let x = i as u32 * slot;
                g {
                    title { (hour.start.format("%H:00")) ": " (hour.attempts) " attempts, " (hour.failures) " failed" }
                    rect.attempts x=(x + 1) y=(plot - scale(hour.attempts)) width=(slot.saturating_sub(2).max(1)) height=(scale(hour.attempts)) {}
                    rect.failures x=(x + 1) y=(plot - scale(hour.failures)) width=(slot.saturating_sub(2).max(1)) height=(scale(hour.failures)) {}
                }
            }
            text x="0" y=(height - 2) { "24 h ago" }
            text x=(width) y=(height - 2) text-anchor="end" { "now" }
        }
    }
}

/// The event types to pick from: the preset's catalogue as checkboxes, or a
/// text field when any name is accepted.
/// A subscription's retry policy, as the owner reads it.
fn retry_text(choice: Option<&RetryChoice>, preset: &str) -> String {
    match choice {
        Some(RetryChoice::Named(name)) => format!("the {name} schedule"),
        Some(RetryChoice::WaitsMs(waits)) => {
            let waits: Vec<String> = waits.iter().map(|ms| format!("{} s", ms / 1000)).collect();
            format!("after {}", waits.join(", "))
        }
        Some(_) | None => format!("the {preset} schedule"),
    }
}

/// When failures disable a subscription, as the owner reads it.
fn disable_text(subscription: &Subscription, preset: &webhooks_core::Preset) -> String {
    let rule = preset.disable_policy_for(subscription);
    let failures = match rule.threshold() {
        Some(failures) => format!("{failures} failed attempts in a row"),
        None => "never for failures".to_owned(),
    };
    let gone = if rule.on_gone() { "; at once on 410 Gone" } else { "" };
    format!("{failures}{gone}")
}

fn event_type_picker(catalogue: &Catalogue, chosen: &[String]) -> Markup {
    if catalogue.is_open() {
        return html! {
            label { "Event types, separated by commas " br;
                input type="text" name="event_types_text" value=(chosen.join(", ")) placeholder="invoice.paid, invoice.voided";
            }
        };
    }
    html! {
        div.events {
            @for event_type in catalogue.event_types() {
                @let name = event_type.name();
                label {
                    input type="checkbox" name="event_type" value=(name) checked[chosen.iter().any(|c| c == name)];
                    " " code { (name) }
                    @if !event_type.description().is_empty() { " " span.small.muted { (event_type.description()) } }
                }
            }
        }
    }
}

/// The channels an endpoint listens on, typed.
fn channels_field(chosen: &[String]) -> Markup {
    html! {
        label { "Channels (optional), separated by commas " br;
            input type="text" name="channels" value=(chosen.join(", ")) placeholder="store-eu, store-us";
        }
        p.small.muted { "With channels, only events published on one of them are sent here; without, events on every channel." }
    }
}

/// What each event type means and carries, for a customer writing a
/// receiver.
async fn event_types(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let catalogue = state.webhooks.preset().catalogue();
    let pretty = |value: &serde_json::Value| serde_json::to_string_pretty(value).unwrap_or_default();
    let content = html! {
        @if catalogue.is_open() {
            section { p.muted { "Any event type may be sent; ask us which ones we publish." } }
        }
        @for event_type in catalogue.event_types() {
            section.event-type id=(event_type.name()) {
                h3 { code { (event_type.name()) } }
                @if !event_type.description().is_empty() { p { (event_type.description()) } }
                @if let Some(example) = event_type.example() {
                    p.small.muted { "Example data:" }
                    pre { code { (pretty(example)) } }
                }
                @if let Some(schema) = event_type.schema() {
                    details { summary { "JSON Schema of the data" } pre { code { (pretty(schema)) } } }
                }
            }
        }
    };
    Ok(viewer.page(StatusCode::OK, "Event types", content))
}

/// How a receiver checks the signature, for the host's preset.
fn verify_help(preset_name: &str) -> Markup {
    match preset_name {
        "SmartlyQ" => html! {
            p { "Each request carries " code { "X-SmartlyQ-Signature: t=<unix time>,v1=<hex>" } ": the hex HMAC-SHA256, under this secret, of the timestamp, a dot and the raw request body. Compute it over the body bytes as received, compare in constant time, and refuse timestamps more than 5 minutes off. During a secret rotation a request carries one " code { "v1=" } " per valid secret." }
            pre { "webhooks_core::SmartlyQScheme::default().verify_header(header, raw_body, &secret, now)" }
        },
        "DeepSmith" => html! {
            p { "Each request carries " code { "X-Webhook-Signature: sha256=<hex>" } ": the hex HMAC-SHA256 of the raw request body under this secret. Compute it over the body bytes as received and compare in constant time; drop repeats by " code { "X-Webhook-Id" } "." }
            pre { "webhooks_core::DeepSmithScheme.verify_header(header, raw_body, &secret)" }
        },
        "Standard Webhooks" => html! {
            p { "Requests follow the Standard Webhooks specification: " code { "webhook-signature: v1,<base64>" } " is the HMAC-SHA256 of " code { "<webhook-id>.<webhook-timestamp>.<raw body>" } " under the base64 key after " code { "whsec_" } ". Any Standard Webhooks library verifies it." }
            pre { "webhooks_core::StandardScheme::default().verify_values(id, timestamp, signatures, raw_body, &[secret], now)" }
        },
        _ => {
            html! { p { "Each request is signed with this secret; check the signature over the raw request body before trusting it." } }
        }
    }
}

fn notice(done: Option<&str>) -> Markup {
    let text = match done {
        Some("enabled") => "The endpoint is enabled; its held deliveries are being sent.",
        Some("disabled") => "The endpoint is disabled; new deliveries wait until it is enabled.",
        Some("updated") => "The endpoint is updated.",
        Some("policy") => "The delivery policy is saved; it applies from the endpoint's next failure.",
        Some("resent") => "The delivery is queued to be sent again.",
        Some("recovered") => "The endpoint is enabled and its failed deliveries are queued again.",
        Some("deleted") => "The endpoint is deleted.",
        Some("test") => "A test event is on its way.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

#[derive(Default, Deserialize)]
struct Done {
    done: Option<String>,
}

async fn index(State(state): State<AppState>, viewer: Viewer, Query(done): Query<Done>) -> PageResult {
    let webhooks = &state.webhooks;
    let subscriptions = webhooks.subscriptions(&viewer.owner).await.map_err(|e| viewer.fail(e))?;
    let mut rows = Vec::new();
    for subscription in subscriptions {
        let health = health(webhooks, &subscription).await.map_err(|e| viewer.fail(e))?;
        rows.push((subscription, health));
    }
    let content = html! {
        (notice(done.done.as_deref()))
        section {
            @if rows.is_empty() {
                p.muted { "No endpoints yet. Add one below to start receiving webhooks." }
            } @else {
                table {
                    thead { tr { th { "Endpoint" } th { "Status" } th { "Success" } th { "Last failure" } th { "Last 24 hours" } } }
                    tbody {
                        @for (subscription, health) in &rows {
                            tr {
                                td {
                                    a.url href=(viewer.link(&format!("/endpoints/{}", subscription.id))) { (subscription.url) }
                                    br; span.small.muted { @for (i, name) in subscription.event_types.iter().enumerate() { @if i > 0 { ", " } (name) } }
                                }
                                td { (status_badge(subscription)) }
                                td { (success_rate(health)) }
                                td { (optional_time(health.stats.last_failure_at, "never")) }
                                td { (chart(&health.last_day, 192, 44)) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add an endpoint" }
        section {
            (viewer.post_form("/endpoints", "", html! {
                label { "URL " br; input type="url" name="url" required placeholder="https://example.com/webhooks"; }
                p.small.muted { "Events to send:" }
                (event_type_picker(webhooks.preset().catalogue(), &[]))
                (channels_field(&[]))
            }, html! { p { button type="submit" { "Add endpoint" } } }))
        }
    };
    Ok(viewer.page(StatusCode::OK, "Endpoints", content))
}

async fn create(State(state): State<AppState>, viewer: Viewer, bytes: Bytes) -> PageResult {
    let form = viewer.form(&state, &bytes)?;
    let url = form.get("url").unwrap_or_default().trim().to_owned();
    let builder = Subscription::builder(url)
        .owner(viewer.owner.clone())
        .event_types(form.event_types())
        .channels(form.channels());
    let subscription = state.webhooks.subscribe(builder).await.map_err(|e| viewer.fail(e))?;
    let content = html! {
        section {
            p { "Endpoint " a.url href=(viewer.link(&format!("/endpoints/{}", subscription.id))) { (subscription.url) } " is added." }
            p { strong { "Its signing secret, shown only this once:" } }
            p { code.secret id="secret" { (subscription.secret.expose()) } }
            p.warn { "Copy it now and keep it with the receiver: this page will not show it again." }
            h2 { "Verifying requests" }
            (verify_help(state.webhooks.preset().name()))
            p { a href=(viewer.link("/")) { "Back to your endpoints" } }
        }
    };
    Ok(viewer.page(StatusCode::CREATED, "Endpoint added", content))
}

async fn endpoint(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> PageResult {
    let webhooks = &state.webhooks;
    let subscription = owned_subscription(webhooks, &viewer.owner, &id).await.map_err(|e| viewer.fail(e))?;
    let health = health(webhooks, &subscription).await.map_err(|e| viewer.fail(e))?;
    let counts = webhooks.delivery_counts(subscription.id).await.map_err(|e| viewer.fail(e))?;
    let events = webhooks
        .operational_events(subscription.id, Utc::now() - OPERATIONAL_EVENTS_WINDOW)
        .await
        .map_err(|e| viewer.fail(e))?;
    let path = |action: &str| format!("/endpoints/{}/{action}", subscription.id);
    let chosen: Vec<String> = subscription.event_types.iter().cloned().collect();
    let content = html! {
        (notice(done.done.as_deref()))
        section {
            table {
                tr { th { "URL" } td.url { code { (subscription.url) } } }
                tr { th { "Status" } td { (status_badge(&subscription)) } }
                tr { th { "Events" } td { @for (i, name) in chosen.iter().enumerate() { @if i > 0 { ", " } code { (name) } } } }
                tr { th { "Channels" } td {
                    @if subscription.channels.is_empty() { span.muted { "every channel" } }
                    @for (i, name) in subscription.channels.iter().enumerate() { @if i > 0 { ", " } code { (name) } }
                } }
                tr { th { "Success rate" } td { (success_rate(&health)) } }
                tr { th { "Last success" } td { (optional_time(health.stats.last_success_at, "never")) } }
                tr { th { "Last failure" } td { (optional_time(health.stats.last_failure_at, "never")) } }
                tr { th { "Failures in a row" } td { (health.stats.consecutive_failures) } }
                tr { th { "Deliveries" } td {
                    a href=(viewer.link(&format!("/deliveries?endpoint={}", subscription.id))) {
                        (counts.pending) " pending, " (counts.delivered) " delivered, " (counts.dropped) " dropped"
                    }
                } }
                tr { th { "Created" } td { (when(subscription.created_at)) } }
                tr { th { "Retries" } td { (retry_text(subscription.settings.retry.as_ref(), webhooks.preset().name())) } }
                tr { th { "Disabled after" } td { (disable_text(&subscription, webhooks.preset())) } }
                tr { th { "Kept while disabled" } td {
                    "up to " (subscription.settings.held_limit_or_default()) " deliveries"
                } }
            }
        }
        h2 { "Operational events" }
        section { (operational_list(&viewer, &events)) }
        h2 { "Attempts over the last 24 hours" }
        section { (chart(&health.last_day, 720, 120)) p.small.muted { "Blue: attempts; red: failed attempts; one bar an hour." } }
        h2 { "Actions" }
        section.actions {
            (viewer.post_form(&path("test"), "inline", html! {}, html! { button.plain type="submit" { "Send a test event" } }))
            @if subscription.is_enabled() {
                (viewer.post_form(&path("disable"), "inline", html! {}, html! { button.plain type="submit" { "Disable" } }))
            } @else {
                (viewer.post_form(&path("enable"), "inline", html! {}, html! { button.plain type="submit" { "Enable" } }))
            }
            (viewer.post_form(&path("recover"), "inline", html! {
                label.small { "Enable and resend failures from the last " select name="hours" {
                    option value="1" { "hour" } option value="24" selected { "day" } option value="168" { "week" }
                } }
            }, html! { button type="submit" { "Recover" } }))
            (viewer.post_form(&path("rotate"), "inline", html! {}, html! { button.plain type="submit" { "Rotate secret" } }))
            form.inline method="get" action=(viewer.link(&path("delete"))) { button.danger type="submit" { "Delete…" } }
        }
        h2 { "Change" }
        section {
            (viewer.post_form(&path("update"), "", html! {
                label { "URL " br; input type="url" name="url" required value=(subscription.url); }
                (event_type_picker(webhooks.preset().catalogue(), &chosen))
                (channels_field(&subscription.channels.iter().cloned().collect::<Vec<_>>()))
            }, html! { p { button type="submit" { "Save" } } }))
        }
        h2 { "Delivery policy" }
        section {
            (viewer.post_form(&path("policy"), "", policy_fields(&state, &subscription), html! {
                p { button type="submit" { "Save policy" } }
            }))
        }
    };
    Ok(viewer.page(StatusCode::OK, "Endpoint", content))
}

async fn update(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, form) = viewer.endpoint_form(&state, &id, &bytes).await?;
    let mut change = SubscriptionUpdate::new().event_types(form.event_types()).channels(form.channels());
    if let Some(url) = form.get("url") {
        change = change.url(url.trim());
    }
    state.webhooks.update_subscription(subscription.id, change).await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link(&format!("/endpoints/{}?done=updated", subscription.id))))
}

/// An endpoint's operational events, newest first, as its owner reads them.
fn operational_list(viewer: &Viewer, events: &[OperationalEvent]) -> Markup {
    if events.is_empty() {
        return html! { p.muted { "Nothing to report: not disabled, not failing, nothing dropped in the last 7 days." } };
    }
    html! {
        table {
            tr { th { "When" } th { "What happened" } }
            @for event in events {
                tr {
                    td.small { (when(event.at())) }
                    td { @match event {
                        OperationalEvent::EndpointDisabled { reason, .. } => {
                            span.bad { "Disabled" } ": " (reason)
                        }
                        OperationalEvent::EndpointFailing { consecutive_failures, .. } => {
                            span.warn { "Failing" } ": " (consecutive_failures) " failed attempts in a row"
                        }
                        OperationalEvent::DeliveryDropped { delivery_id, .. } => {
                            span.bad { "Dropped" } " after its last retry: "
                            a href=(viewer.link(&format!("/deliveries/{delivery_id}"))) { code { (delivery_id) } }
                        }
                        OperationalEvent::HeldDropped { dropped, limit, .. } => {
                            span.bad { "Held deliveries dropped" } ": " (dropped)
                            " unsent, over the " (limit) " kept while disabled"
                        }
                        OperationalEvent::EndpointEnabled { .. } => { span.ok { "Enabled" } }
                        other => { code { (other.kind()) } }
                    } }
                }
            }
        }
    }
}

/// The fields of an endpoint's delivery policy form, showing what it is now.
fn policy_fields(state: &AppState, subscription: &Subscription) -> Markup {
    let preset = state.webhooks.preset();
    let current = match &subscription.settings.retry {
        Some(RetryChoice::Named(name)) => Some(name.as_str()),
        _ => None,
    };
    let threshold = preset.disable_policy_for(subscription).threshold();
    html! {
        @if !state.offered.is_empty() {
            label { "Retry schedule " br; select name="retry_policy" {
                @if current.is_none_or(|name| !state.offered.iter().any(|offered| offered == name)) {
                    option value="" selected { "keep " (retry_text(subscription.settings.retry.as_ref(), preset.name())) }
                }
                @for name in &state.offered {
                    option value=(name) selected[current == Some(name.as_str())] { "the " (name) " schedule" }
                }
            } }
        }
        label { "Disable after this many failed attempts in a row " br;
            input type="number" name="disable_after_failures" min="1" value=[threshold];
        }
        label { "Deliveries kept while disabled (at most " (state.held_limit_at_most) ") " br;
            input type="number" name="held_limit" min="0" max=(state.held_limit_at_most)
                value=(subscription.settings.held_limit_or_default());
        }
    }
}

/// A whole number from the policy form; empty keeps the setting.
fn number_field(form: &Form, name: &str) -> Result<Option<u32>, Failure> {
    match form.get(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| Failure::BadRequest(format!("{name}: {text:?} is not a whole number"))),
    }
}

async fn change_policy(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, form) = viewer.endpoint_form(&state, &id, &bytes).await?;
    // A field left as shown changes nothing: an endpoint that follows the
    // preset's rule keeps following it.
    let preset = state.webhooks.preset();
    let retry_policy = form
        .get("retry_policy")
        .filter(|name| !name.is_empty())
        .filter(|name| subscription.settings.retry != Some(RetryChoice::named(*name)))
        .map(str::to_owned);
    let disable_after_failures = number_field(&form, "disable_after_failures")
        .map_err(|e| viewer.fail(e))?
        .filter(|failures| preset.disable_policy_for(&subscription).threshold() != Some(*failures));
    let held_limit = number_field(&form, "held_limit")
        .map_err(|e| viewer.fail(e))?
        .filter(|held| *held != subscription.settings.held_limit_or_default());
    let change = PolicyChange { retry_policy, disable_after_failures, held_limit };
    if !change.is_empty() {
        let settings = change.apply(&state, &subscription).map_err(|e| viewer.fail(e))?;
        let update = SubscriptionUpdate::new().settings(settings);
        state.webhooks.update_subscription(subscription.id, update).await.map_err(|e| viewer.fail(e))?;
    }
    Ok(redirect(viewer.link(&format!("/endpoints/{}?done=policy", subscription.id))))
}

async fn enable(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, _) = viewer.endpoint_form(&state, &id, &bytes).await?;
    state.webhooks.enable(subscription.id).await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link(&format!("/endpoints/{}?done=enabled", subscription.id))))
}

async fn disable(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, _) = viewer.endpoint_form(&state, &id, &bytes).await?;
    state.webhooks.disable(subscription.id, "disabled by its owner").await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link(&format!("/endpoints/{}?done=disabled", subscription.id))))
}

async fn rotate(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, _) = viewer.endpoint_form(&state, &id, &bytes).await?;
    let grace = std::time::Duration::from_secs(24 * 3600);
    let secret = state.webhooks.rotate_secret(subscription.id, grace).await.map_err(|e| viewer.fail(e))?;
    let content = html! {
        section {
            p { "The new signing secret of " code.url { (subscription.url) } ", shown only this once:" }
            p { code.secret id="secret" { (secret.expose()) } }
            @if state.webhooks.preset().scheme().signs_with_every_secret() {
                p { "Requests are signed with the old secret too for the next 24 hours, so the receiver can switch over." }
            } @else {
                p { "Requests are signed with the new secret from now on: this format carries one signature. Until the receiver has the new secret, have it accept a signature made with either." }
            }
            (verify_help(state.webhooks.preset().name()))
            p { a href=(viewer.link(&format!("/endpoints/{}", subscription.id))) { "Back to the endpoint" } }
        }
    };
    Ok(viewer.page(StatusCode::OK, "Secret rotated", content))
}

async fn send_test(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, _) = viewer.endpoint_form(&state, &id, &bytes).await?;
    let delivery = state.webhooks.send_test(subscription.id).await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link(&format!("/deliveries/{delivery}?done=test"))))
}

async fn recover(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, form) = viewer.endpoint_form(&state, &id, &bytes).await?;
    let hours: i64 = form
        .get("hours")
        .and_then(|hours| hours.parse().ok())
        .filter(|hours| (1..=24 * 30).contains(hours))
        .ok_or_else(|| viewer.fail(Failure::BadRequest("pick how far back to recover".into())))?;
    let since = state.webhooks.clock().now() - Duration::hours(hours);
    state.webhooks.recover(subscription.id, since).await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link(&format!("/endpoints/{}?done=recovered", subscription.id))))
}

/// The page that asks before an endpoint is deleted: one click on the
/// endpoint's page deletes nothing.
async fn confirm_delete(State(state): State<AppState>, viewer: Viewer, Path(id): Path<String>) -> PageResult {
    let webhooks = &state.webhooks;
    let subscription = owned_subscription(webhooks, &viewer.owner, &id).await.map_err(|e| viewer.fail(e))?;
    let counts = webhooks.delivery_counts(subscription.id).await.map_err(|e| viewer.fail(e))?;
    let back = viewer.link(&format!("/endpoints/{}", subscription.id));
    let content = html! {
        section {
            p { "Delete " code.url { (subscription.url) } "?" }
            p.warn {
                "Its " (counts.pending + counts.delivered + counts.dropped) " deliveries and their logs go with it, "
                "and nothing pending is sent. This cannot be undone."
            }
            (viewer.post_form(&format!("/endpoints/{}/delete", subscription.id), "inline", html! {
                input type="hidden" name="confirm" value="yes";
            }, html! { button.danger type="submit" { "Delete for good" } }))
            " " a href=(back) { "Keep it" }
        }
    };
    Ok(viewer.page(StatusCode::OK, "Delete endpoint", content))
}

async fn delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    let (subscription, form) = viewer.endpoint_form(&state, &id, &bytes).await?;
    if form.get("confirm") != Some("yes") {
        return Err(viewer.fail(Failure::BadRequest("confirm the deletion on its page first".into())));
    }
    state.webhooks.delete_subscription(subscription.id).await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link("/?done=deleted")))
}

async fn deliveries(
    State(state): State<AppState>,
    viewer: Viewer,
    listing: Result<Query<Listing>, QueryRejection>,
) -> PageResult {
    let Query(mut listing) =
        listing.map_err(|rejection| viewer.fail(Failure::BadRequest(rejection.body_text())))?;
    listing.limit = Some(listing.limit.unwrap_or(50).clamp(1, 200));
    let query = listing.query(&state, &viewer.owner).await.map_err(|e| viewer.fail(e))?;
    let page = state.webhooks.deliveries(query).await.map_err(|e| viewer.fail(e))?;
    let subscriptions = state.webhooks.subscriptions(&viewer.owner).await.map_err(|e| viewer.fail(e))?;
    let endpoint_of = |delivery: &Delivery| subscriptions.iter().find(|s| s.id == delivery.subscription_id);
    let filter = |value: &Option<String>| value.clone().unwrap_or_default();
    let (endpoint, state_filter, event_type) =
        (filter(&listing.endpoint), filter(&listing.state), filter(&listing.event_type));
    let next = page.next.map(|next| {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("endpoint", &endpoint)
            .append_pair("state", &state_filter)
            .append_pair("event_type", &event_type)
            .append_pair("after", &next.to_string())
            .finish();
        viewer.link(&format!("/deliveries?{query}"))
    });
    let content = html! {
        section {
            form method="get" action=(viewer.link("/deliveries")) .actions {
                label.small { "Endpoint " br; select name="endpoint" {
                    option value="" { "all" }
                    @for subscription in &subscriptions {
                        @let id = subscription.id.to_string();
                        option value=(id) selected[id == endpoint] { (subscription.url) }
                    }
                } }
                label.small { "State " br; select name="state" {
                    @for (value, label) in [("", "all"), ("pending", "pending"), ("held", "held"), ("delivered", "delivered"), ("dropped", "dropped")] {
                        option value=(value) selected[value == state_filter] { (label) }
                    }
                } }
                label.small { "Event type " br; input type="text" name="event_type" value=(event_type); }
                button.plain type="submit" { "Filter" }
            }
        }
        section {
            @if page.deliveries.is_empty() {
                p.muted { "No deliveries match." }
            } @else {
                table {
                    thead { tr { th { "Created" } th { "Event" } th { "Endpoint" } th { "State" } th { "Attempts" } th { "Next attempt" } } }
                    tbody {
                        @for delivery in &page.deliveries {
                            @let subscription = endpoint_of(delivery);
                            tr {
                                td { a href=(viewer.link(&format!("/deliveries/{}", delivery.id))) { (when(delivery.created_at)) } }
                                td { code { (delivery.event_type) } }
                                td.url.small { @if let Some(subscription) = subscription { (subscription.url) } }
                                td { (state_badge(delivery)) }
                                td { (delivery.attempts) }
                                td { (optional_time(delivery.next_attempt_at, "—")) }
                            }
                        }
                    }
                }
                @if let Some(next) = next { p { a href=(next) { "Older deliveries follow: next page →" } } }
            }
        }
    };
    Ok(viewer.page(StatusCode::OK, "Delivery log", content))
}

async fn delivery(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(done): Query<Done>,
) -> PageResult {
    let (delivery, subscription) =
        owned_delivery(&state.webhooks, &viewer.owner, &id).await.map_err(|e| viewer.fail(e))?;
    let attempts = state.webhooks.attempts(delivery.id).await.map_err(|e| viewer.fail(e))?;
    let body = serde_json::from_slice::<serde_json::Value>(&delivery.body)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&delivery.body).into_owned());
    let content = html! {
        (notice(done.done.as_deref()))
        section {
            table {
                tr { th { "Delivery" } td { code { (delivery.id) } } }
                tr { th { "Event" } td { code { (delivery.event_type) } " " span.small.muted { (delivery.event_id) } } }
                tr { th { "Endpoint" } td { a.url href=(viewer.link(&format!("/endpoints/{}", subscription.id))) { (subscription.url) } } }
                tr { th { "State" } td { (state_badge(&delivery)) } }
                tr { th { "Next attempt" } td { (optional_time(delivery.next_attempt_at, "none")) } }
                tr { th { "Created" } td { (when(delivery.created_at)) } }
            }
            p { (viewer.post_form(&format!("/deliveries/{}/resend", delivery.id), "inline", html! {}, html! { button type="submit" { "Resend" } })) }
        }
        h2 { "Attempts" }
        section {
            @if attempts.is_empty() {
                p.muted { "No attempt yet." }
            } @else {
                table.attempts {
                    thead { tr { th { "#" } th { "Started" } th { "Duration" } th { "Result" } th { "Receiver's answer" } } }
                    tbody {
                        @for attempt in &attempts {
                            tr {
                                td { (attempt.number) }
                                td { (when(attempt.started_at)) }
                                td { (attempt.duration.as_millis()) " ms" }
                                @match &attempt.result {
                                    AttemptResult::Response { status, body } => {
                                        td { span class=(if attempt.succeeded() { "badge ok" } else { "badge bad" }) { (status) } }
                                        td { @if body.is_empty() { span.muted { "(empty)" } } @else { pre.response { (body) } } }
                                    }
                                    AttemptResult::Error(error) => {
                                        td { span.badge.bad { "no response" } }
                                        td { pre.response { (error) } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Payload" }
        section { pre { (body) } }
    };
    Ok(viewer.page(StatusCode::OK, "Delivery", content))
}

async fn resend(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    bytes: Bytes,
) -> PageResult {
    viewer.form(&state, &bytes)?;
    let (delivery, _) =
        owned_delivery(&state.webhooks, &viewer.owner, &id).await.map_err(|e| viewer.fail(e))?;
    state.webhooks.resend(delivery.id).await.map_err(|e| viewer.fail(e))?;
    Ok(redirect(viewer.link(&format!("/deliveries/{}?done=resent", delivery.id))))
}
