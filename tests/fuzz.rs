//! Property-based fuzzing of what untrusted input reaches first: the protobuf request
//! decoders, e-mail and token parsing, and the password policy. Bounded by
//! PROPTEST_CASES (256 by default), so it runs in CI on every push.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use prost::Message;
use pwreset::domain::model::email::Email;
use pwreset::domain::model::password::{Password, PasswordPolicy};
use pwreset::domain::model::token::RawToken;
use pwreset::proto;

proptest! {
    #[test]
    fn request_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = proto::RequestTokenRequest::decode(bytes.as_slice());
        let _ = proto::ValidateTokenRequest::decode(bytes.as_slice());
        let _ = proto::ConfirmRequest::decode(bytes.as_slice());
        let _ = proto::SubscribeEventsRequest::decode(bytes.as_slice());
        let _ = proto::CreateAccountRequest::decode(bytes.as_slice());
        let _ = proto::VerifyPasswordRequest::decode(bytes.as_slice());
        let _ = proto::SetActiveRequest::decode(bytes.as_slice());
    }

    #[test]
    fn decoded_requests_round_trip(email in ".{0,64}", locale in "[a-zA-Z-]{0,12}") {
        let request = proto::RequestTokenRequest { email, locale, ..Default::default() };
        let decoded = proto::RequestTokenRequest::decode(request.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(decoded, request);
    }

    #[test]
    fn login_parsing_is_total_and_idempotent(raw in "\\PC{0,80}|\\+[0-9 ]{4,16}|[a-zA-Z0-9._-]{1,70}") {
        if let Ok(login) = pwreset::domain::model::login::Login::parse(&raw, "login") {
            let again = pwreset::domain::model::login::Login::parse(&login.to_string(), "login").expect("a normal login parses");
            prop_assert_eq!(again, login);
        }
    }

    #[test]
    fn email_parsing_is_total_and_idempotent(raw in "\\PC{0,80}|[a-zA-Z0-9.+_-]{1,20}@[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
        if let Ok(email) = Email::parse(&raw) {
            let again = Email::parse(email.as_str()).expect("a normalised address parses");
            prop_assert_eq!(again.as_str(), email.as_str());
            prop_assert!(email.as_str().len() <= 254);
        }
    }

    #[test]
    fn the_password_policy_is_total(raw in "\\PC{0,200}", local in "[a-z]{1,10}") {
        let email = Email::parse(&format!("{local}@example.com")).unwrap();
        let policy = PasswordPolicy::default();
        if policy.check(&Password::new(raw.clone()), &email, "new_password").is_ok() {
            let length = unicode_normalization::UnicodeNormalization::nfc(raw.as_str()).count();
            prop_assert!((policy.min_length..=policy.max_length).contains(&length));
        }
    }

    #[test]
    fn token_parsing_enforces_its_limits(raw in "\\PC{0,300}") {
        let ok = RawToken::parse(raw.clone()).is_ok();
        prop_assert_eq!(ok, !raw.is_empty() && raw.len() <= 256);
    }
}
