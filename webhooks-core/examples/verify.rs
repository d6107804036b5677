//! Verifying one received webhook with `webhooks-core` alone, built without
//! its default features: no HTTP client, no TLS, no dispatcher; what a
//! receiver needs.
//!
//! ```text
//! cargo run -p webhooks-core --no-default-features --example verify -- \
//!     --preset smartlyq|deepsmith|standard --secret SECRET [--secret OLD] \
//!     --header 'NAME: VALUE' [--header ...] < body
//! ```
//!
//! The body is read from standard input as raw bytes, exactly as received.
//! It prints `verified` and exits 0, or prints why not and exits 1; wrong
//! arguments exit 2.

use std::io::Read;
use std::process::ExitCode;

use http::{HeaderMap, HeaderName, HeaderValue};
use webhooks_core::{Preset, Secret};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(usage) => {
            eprintln!("verify: {usage}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool, String> {
    let mut preset = None;
    let mut secrets = Vec::new();
    let mut headers = HeaderMap::new();
    let mut arguments = std::env::args().skip(1);
    while let Some(flag) = arguments.next() {
        let value = arguments.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--preset" => {
                preset = Some(match value.as_str() {
                    "smartlyq" => Preset::smartlyq(),
                    "deepsmith" => Preset::deepsmith(),
                    "standard" => Preset::standard(),
                    other => return Err(format!("unknown preset {other:?}")),
                });
            }
            "--secret" => secrets.push(Secret::from(value)),
            "--header" => {
                let (name, header_value) =
                    value.split_once(':').ok_or_else(|| format!("{value:?} is not NAME: VALUE"))?;
                let name =
                    HeaderName::try_from(name.trim()).map_err(|e| format!("header name {name:?}: {e}"))?;
                let header_value =
                    HeaderValue::try_from(header_value.trim()).map_err(|e| format!("header {name}: {e}"))?;
                headers.append(name, header_value);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let preset = preset.ok_or("--preset is required")?;
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body).map_err(|e| format!("reading the body: {e}"))?;
    // The raw bytes as received: never re-serialize before verifying.
    match preset.scheme().verify(&headers, &body, &secrets, chrono::Utc::now()) {
        Ok(()) => {
            println!("verified");
            Ok(true)
        }
        Err(why) => {
            println!("refused: {why}");
            Ok(false)
        }
    }
}
