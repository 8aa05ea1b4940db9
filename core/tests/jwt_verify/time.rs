//! Issuer and time: the exact issuer, expiry and its leeway, `nbf`/`iat` ahead, extreme values.

use super::fixture::*;
use jwt_simple::prelude::*;
use scopegate_core::jwt::{verify, TokenError, VerifyOptions};
use serde_json::json;

#[test]
fn issuer_must_match_exactly() {
    let s = signer("es256");
    let mut c = claims(json!({}));
    c.issuer = Some(format!("{ISS}/"));
    assert_eq!(check(&s.sign(c)), Err(TokenError::WrongIssuer));
    let mut c = claims(json!({}));
    c.issuer = None;
    assert_eq!(check(&s.sign(c)), Err(TokenError::MissingIssuer));
    let other = VerifyOptions::new("https://other.example.com", NOW);
    let token = s.sign(claims(json!({})));
    assert_eq!(
        verify(&token, &fx().keys, &other),
        Err(TokenError::WrongIssuer)
    );
}

fn with_exp(exp: Option<u64>) -> String {
    let mut c = claims(json!({}));
    c.expires_at = exp.map(UnixTimeStamp::from_secs);
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW - 3600));
    c.invalid_before = None;
    signer("es256").sign(c)
}

#[test]
fn expiry_is_enforced_with_a_small_leeway() {
    let leeway = opts().leeway;
    assert_eq!(leeway, 5);
    assert_eq!(
        check(&with_exp(Some(NOW - leeway - 1))),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(&with_exp(Some(NOW - leeway))),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(&with_exp(Some(NOW - leeway + 1))).unwrap().exp,
        NOW - leeway + 1
    );
    let strict = VerifyOptions {
        leeway: 0,
        ..opts()
    };
    assert_eq!(
        verify(&with_exp(Some(NOW)), &fx().keys, &strict),
        Err(TokenError::Expired)
    );
    assert!(verify(&with_exp(Some(NOW + 1)), &fx().keys, &strict).is_ok());
    // jwt-simple's own default tolerance is 15 minutes: it must not apply.
    assert_eq!(check(&with_exp(Some(NOW - 600))), Err(TokenError::Expired));
}

#[test]
fn missing_exp_is_refused() {
    assert_eq!(check(&with_exp(None)), Err(TokenError::MissingExp));
}

#[test]
fn not_before_and_issued_at_in_the_future_are_refused() {
    let s = signer("eddsa");
    let mut c = claims(json!({}));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 60));
    assert_eq!(check(&s.sign(c)), Err(TokenError::NotYetValid));
    let mut c = claims(json!({}));
    c.invalid_before = Some(UnixTimeStamp::from_secs(NOW + 5));
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW + 5));
    assert!(check(&s.sign(c)).is_ok(), "within leeway");
    let mut c = claims(json!({}));
    c.invalid_before = None;
    c.issued_at = Some(UnixTimeStamp::from_secs(NOW + 6));
    assert_eq!(check(&s.sign(c)), Err(TokenError::NotYetValid));
}

#[test]
fn extreme_clock_and_claim_values_do_not_panic() {
    let token = ed_payload(with(base_payload(), json!({"exp": u64::MAX, "nbf": 0})));
    let far = VerifyOptions {
        now: u64::MAX,
        leeway: u64::MAX,
        issuer: ISS,
    };
    let _ = verify(&token, &fx().keys, &far);
    assert!(verify(&token, &fx().keys, &opts()).is_ok());
    let zero = VerifyOptions {
        now: 0,
        leeway: 0,
        issuer: ISS,
    };
    assert_eq!(
        verify(&token, &fx().keys, &zero),
        Err(TokenError::NotYetValid)
    );
}
