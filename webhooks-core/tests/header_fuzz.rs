//! Property tests of the receiver-side header parsers: no input makes them
//! panic, every signature they make verifies, and any change to one fails.
//! Failing cases are kept in `proptest-regressions/` beside this file.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use webhooks_core::{DeepSmithScheme, Secret, SmartlyQScheme, VerifyError};

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_461_800, 0).unwrap()
}

/// Header-like text: the scheme's own tokens mixed with arbitrary characters.
fn header_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("t=".to_owned()),
        Just("v1=".to_owned()),
        Just(",".to_owned()),
        Just("=".to_owned()),
        Just("sha256=".to_owned()),
        "[0-9]{0,12}",
        "[0-9a-f]{0,70}",
        any::<String>(),
    ];
    prop::collection::vec(token, 0..8).prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn smartlyq_parser_never_panics(header in header_text(), body in any::<Vec<u8>>()) {
        let _ = SmartlyQScheme::default().verify_header(&header, &body, &Secret::from("k"), now());
    }

    #[test]
    fn deepsmith_parser_never_panics(header in header_text(), body in any::<Vec<u8>>()) {
        let _ = DeepSmithScheme.verify_header(&header, &body, &Secret::from("k"));
    }

    #[test]
    fn smartlyq_signatures_verify_and_any_flipped_digit_fails(
        secret in ".{1,40}",
        body in any::<Vec<u8>>(),
        offset in -300i64..=300,
        flip in 0usize..64,
    ) {
        let scheme = SmartlyQScheme::default();
        let secret = Secret::from(secret);
        let signed_at = now() + chrono::Duration::seconds(offset);
        let header = scheme.signature(&body, signed_at, &secret);
        prop_assert_eq!(scheme.verify_header(&header, &body, &secret, now()), Ok(()));

        let (prefix, digest) = header.split_once(",v1=").unwrap();
        let mut digits: Vec<char> = digest.chars().collect();
        digits[flip] = if digits[flip] == '0' { '1' } else { '0' };
        let tampered = format!("{prefix},v1={}", digits.into_iter().collect::<String>());
        prop_assert_eq!(scheme.verify_header(&tampered, &body, &secret, now()), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn deepsmith_signatures_verify_and_another_body_fails(
        secret in ".{1,40}",
        body in any::<Vec<u8>>(),
        extra in any::<u8>(),
    ) {
        let secret = Secret::from(secret);
        let header = DeepSmithScheme.signature(&body, &secret);
        prop_assert_eq!(DeepSmithScheme.verify_header(&header, &body, &secret), Ok(()));
        let mut other = body.clone();
        other.push(extra);
        prop_assert_eq!(DeepSmithScheme.verify_header(&header, &other, &secret), Err(VerifyError::SignatureMismatch));
    }
}
