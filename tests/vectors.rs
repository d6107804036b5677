//! The signers against signatures computed by an independent implementation
//! (Node's `crypto`), byte for byte. `tests/data/signatures.json` is a copy of
//! the shared vectors.

use chrono::DateTime;
use serde::Deserialize;
use webhooks_core::{DeepSmithScheme, Secret, SmartlyQScheme};

#[derive(Deserialize)]
struct Vectors {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    secret: String,
    body: String,
    timestamp: String,
    smartlyq_header: String,
    deepsmith_header: String,
}

fn cases() -> Vec<Case> {
    let text = include_str!("data/signatures.json");
    let vectors: Vectors = serde_json::from_str(text).expect("the vectors file parses");
    assert!(vectors.cases.len() >= 6, "the vectors file has its cases");
    vectors.cases
}

fn time(case: &Case) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp(case.timestamp.parse().expect("unix seconds"), 0).expect("a valid time")
}

#[test]
fn smartlyq_signatures_match_every_vector() {
    for case in cases() {
        let header = SmartlyQScheme::default().signature(
            case.body.as_bytes(),
            time(&case),
            &Secret::from(case.secret.as_str()),
        );
        assert_eq!(header, case.smartlyq_header, "secret {:?}", case.secret);
    }
}

#[test]
fn deepsmith_signatures_match_every_vector() {
    for case in cases() {
        let header = DeepSmithScheme.signature(case.body.as_bytes(), &Secret::from(case.secret.as_str()));
        assert_eq!(header, case.deepsmith_header, "secret {:?}", case.secret);
    }
}

#[test]
fn every_vector_verifies_on_the_receiving_side() {
    for case in cases() {
        let secret = Secret::from(case.secret.as_str());
        let body = case.body.as_bytes();
        SmartlyQScheme::default().verify_header(&case.smartlyq_header, body, &secret, time(&case)).unwrap();
        DeepSmithScheme.verify_header(&case.deepsmith_header, body, &secret).unwrap();
        let wrong = Secret::from(format!("{}x", case.secret));
        assert!(
            SmartlyQScheme::default()
                .verify_header(&case.smartlyq_header, body, &wrong, time(&case))
                .is_err()
        );
        assert!(DeepSmithScheme.verify_header(&case.deepsmith_header, body, &wrong).is_err());
    }
}

/// `webhooks-verify` alone, as a receiver without the sender's crates uses
/// it, against the same independent vectors.
#[test]
fn the_receivers_crate_verifies_every_vector() {
    use std::time::{Duration, SystemTime};
    use webhooks_verify::{DeepSmith, SmartlyQ, VerifyError};
    for case in cases() {
        let body = case.body.as_bytes();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(case.timestamp.parse().expect("unix seconds"));
        let secret = case.secret.as_str();
        assert_eq!(SmartlyQ::sign(body, at, &[secret]), case.smartlyq_header);
        assert_eq!(DeepSmith::sign(body, secret), case.deepsmith_header);
        SmartlyQ::default().verify(&case.smartlyq_header, body, &["other", secret], at).unwrap();
        DeepSmith::verify(&case.deepsmith_header, body, &[secret]).unwrap();
        let wrong = format!("{secret}x");
        let refused = SmartlyQ::default().verify(&case.smartlyq_header, body, &[&wrong], at);
        assert_eq!(refused, Err(VerifyError::SignatureMismatch));
        let late = at + Duration::from_secs(301);
        let stale = SmartlyQ::default().verify(&case.smartlyq_header, body, &[secret], late);
        assert!(matches!(stale, Err(VerifyError::TimestampOutOfTolerance { .. })), "{stale:?}");
    }
}
