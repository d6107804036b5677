//! A webhook receiver that verifies every request with `webhooks-verify`,
//! the receivers' crate (no sender, no async runtime of its own), as a
//! customer's server would.
//!
//! ```text
//! cargo run --example receiver -- --preset smartlyq|deepsmith|standard --secret SECRET [--secret OLD] [--port 3000]
//! ```
//!
//! It prints `listening on http://127.0.0.1:PORT/hooks`, then one line per
//! request, and answers 204 to a valid signature and 401 to anything else.
//! Give `--secret` twice during a rotation: either secret verifies.

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use webhooks_verify::{DeepSmith, SmartlyQ, Standard, VerifyError};

/// The sender's scheme.
#[derive(Clone, Copy)]
enum Scheme {
    SmartlyQ,
    DeepSmith,
    Standard,
}

struct Receiver {
    scheme: Scheme,
    secrets: Vec<String>,
}

/// A header's value, or why it is missing.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, VerifyError> {
    let value = headers.get(name).ok_or(VerifyError::MissingHeader { name })?;
    value.to_str().map_err(|_| VerifyError::MalformedHeader { name, reason: "not visible ASCII" })
}

/// Verifies one request: the raw body as received, never re-serialized.
fn verify(receiver: &Receiver, headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    let secrets: Vec<&str> = receiver.secrets.iter().map(String::as_str).collect();
    let now = std::time::SystemTime::now();
    match receiver.scheme {
        Scheme::SmartlyQ => {
            SmartlyQ::default().verify(header(headers, SmartlyQ::SIGNATURE)?, body, &secrets, now)
        }
        Scheme::DeepSmith => DeepSmith::verify(header(headers, DeepSmith::SIGNATURE)?, body, &secrets),
        Scheme::Standard => Standard::default().verify(
            header(headers, Standard::ID)?,
            header(headers, Standard::TIMESTAMP)?,
            header(headers, Standard::SIGNATURE)?,
            body,
            &secrets,
            now,
        ),
    }
}

async fn receive(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verdict = verify(&receiver, &headers, &body);
    let id = ["x-smartlyq-delivery", "x-webhook-id", "webhook-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .unwrap_or("-");
    match verdict {
        Ok(()) => {
            println!("verified delivery {id}: {}", String::from_utf8_lossy(&body));
            StatusCode::NO_CONTENT
        }
        Err(why) => {
            println!("refused delivery {id}: {why}");
            StatusCode::UNAUTHORIZED
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<(Scheme, Vec<String>, u16), String> {
    let (mut preset, mut secrets, mut port) = (None, Vec::new(), 3000);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--preset" => {
                let name = value()?;
                preset = Some(match name.as_str() {
                    "smartlyq" => Scheme::SmartlyQ,
                    "deepsmith" => Scheme::DeepSmith,
                    "standard" => Scheme::Standard,
                    _ => return Err(format!("unknown preset {name:?}: use smartlyq, deepsmith or standard")),
                })
            }
            "--secret" => secrets.push(value()?),
            "--port" => port = value()?.parse().map_err(|_| "--port needs a port number".to_owned())?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if secrets.is_empty() {
        return Err("--secret is required".into());
    }
    Ok((preset.ok_or("--preset is required")?, secrets, port))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (scheme, secrets, port) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on port {port}: {error}");
            return ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(address) => println!("listening on http://{address}/hooks"),
        Err(error) => eprintln!("error: {error}"),
    }
    let app = Router::new().route("/hooks", post(receive)).with_state(Arc::new(Receiver { scheme, secrets }));
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        eprintln!("error: {error}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}
