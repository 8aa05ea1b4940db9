//! Malformed input: broken tokens, validly signed garbage payloads, `crit`, and `typ`.

use super::fixture::*;
use scopegate_core::jwt::{TokenError, MAX_TOKEN_LEN};
use serde_json::json;

#[test]
fn malformed_tokens_are_malformed() {
    let good = signer("es256").sign(claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        String::new(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!("{}.{}.", parts[0], parts[1]),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}*.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"{not json"), parts[1], parts[2]),
        format!("{}.{}.{}", b64(br#"{"kid":"es256"}"#), parts[1], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
        format!("{} .{}.{}", parts[0], parts[1], parts[2]),
        "a".repeat(MAX_TOKEN_LEN + 1),
    ];
    for token in &cases {
        assert_eq!(check(token), Err(TokenError::Malformed), "{token:.80}");
    }
}

#[test]
fn validly_signed_garbage_payloads_are_malformed() {
    let h = json!({"alg": "EdDSA", "kid": "eddsa"});
    assert!(check(&ed_raw(h.clone(), base_payload().to_string().as_bytes())).is_ok());
    for payload in [
        &b"not json"[..],
        b"[1]",
        br#"{"iss":1,"exp":1800000600}"#,
        br#"{"iss":"x","exp":"tomorrow"}"#,
        br#"{"iss":"x","exp":-1}"#,
        br#"{"iss":"x","exp":1800000600,"aud":7}"#,
    ] {
        assert_eq!(
            check(&ed_raw(h.clone(), payload)),
            Err(TokenError::Malformed),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    let bad_scope = with(base_payload(), json!({"scope": 42}));
    assert_eq!(check(&ed_payload(bad_scope)), Err(TokenError::Malformed));
    let bad_scp = with(base_payload(), json!({"scp": ["a", 1]}));
    assert_eq!(check(&ed_payload(bad_scp)), Err(TokenError::Malformed));
}

#[test]
fn critical_header_extensions_are_refused() {
    let h = json!({"alg": "EdDSA", "kid": "eddsa", "crit": ["exp"], "exp": 1});
    let token = ed_raw(h, base_payload().to_string().as_bytes());
    assert_eq!(check(&token), Err(TokenError::Malformed));
}

#[test]
fn typ_must_name_a_jwt_access_token() {
    // Every algorithm: the header checks are shared, the signature check is per key type.
    for (s, _, kid) in &fx().signers {
        for ok in [
            "JWT",
            "jwt",
            "at+jwt",
            "application/at+jwt",
            "AT+JWT",
            "At+JwT",
        ] {
            let token = s.sign_typ(claims(json!({})), Some(ok));
            assert!(check(&token).is_ok(), "{kid}: {ok}");
        }
        // `application/jwt` passes the access-token rule but not jwt-simple's `JWT`/`+JWT` one.
        for bad in [
            "dpop+jwt",
            "secevent+jwt",
            "JOSE",
            "logout+jwt",
            "application/jwt",
            "at+jwt ",
            "",
        ] {
            let token = s.sign_typ(claims(json!({})), Some(bad));
            assert_eq!(check(&token), Err(TokenError::Malformed), "{kid}: {bad}");
        }
    }
    let no_typ = ed_raw(
        json!({"alg": "EdDSA", "kid": "eddsa"}),
        base_payload().to_string().as_bytes(),
    );
    assert!(check(&no_typ).is_ok());
}
