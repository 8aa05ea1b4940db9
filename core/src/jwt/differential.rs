//! A differential test of the payload reader against the one it replaced (jwt-simple's
//! `JWTClaims` with a flattened `Custom`, in `old.rs`): on generated, mutated and hand-picked
//! payloads both must accept and refuse the same ones, read the same values and give the same
//! [`Claims`] or error.
#![cfg(test)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed unwrap is a failed test

use serde_json::Value;

use super::payload::Payload;
use super::{check_and_build, old, Algorithm, Claims, TokenError, VerifyOptions};
use crate::mutation::{mutate, Rng};

fn new_read(json: &[u8]) -> Result<Payload, serde_json::Error> {
    serde_json::from_slice(json)
}

/// The audiences as [`check_and_build`] uses them: order and repeats carry no meaning.
fn normalised(mut p: Payload) -> Payload {
    if let Some(aud) = &mut p.aud {
        aud.sort_unstable();
        aud.dedup();
    }
    p
}

/// `check_and_build` on a payload, at clocks around its times, for the issuer it names and
/// another: every check it makes is exercised on both sides.
fn built(json: &[u8]) -> Vec<Result<(Claims, Vec<String>), TokenError>> {
    let p = new_read(json).or_else(|_| old::read(json)).ok();
    let iss = p.as_ref().and_then(|p| p.iss.clone()).unwrap_or_default();
    let mut clocks = vec![0, u64::MAX];
    for t in p.iter().flat_map(|p| [p.exp, p.nbf, p.iat]).flatten() {
        clocks.extend([t.saturating_sub(10), t, t.saturating_add(10)]);
    }
    let mut out = Vec::new();
    for read in [new_read, old::read] {
        for issuer in [iss.as_str(), "https://other.example"] {
            for &now in &clocks {
                let opts = VerifyOptions::new(issuer, now);
                let Ok(payload) = read(json) else { continue };
                out.push(
                    check_and_build(payload, Algorithm::Es256, None, &opts)
                        // The order of `extra`'s members too, which `Map`'s `==` may ignore.
                        .map(|c| {
                            let order = c.extra.keys().cloned().collect();
                            (c, order)
                        }),
                );
            }
        }
    }
    out
}

/// Both readers on `json`: the same verdict, the same values, the same `check_and_build`.
/// Returns whether it was accepted.
fn same(json: &[u8]) -> bool {
    let shown = String::from_utf8_lossy(json);
    let (new, old) = (new_read(json), old::read(json));
    match (new, old) {
        (Ok(n), Ok(o)) => {
            let extra_order = |p: &Payload| p.extra.keys().cloned().collect::<Vec<_>>();
            assert_eq!(extra_order(&n), extra_order(&o), "member order of {shown}");
            assert_eq!(normalised(n), normalised(o), "values of {shown}");
            let b = built(json);
            let (n, o) = b.split_at(b.len() / 2);
            assert_eq!(n, o, "claims built from {shown}");
            true
        }
        (Err(_), Err(_)) => false,
        (n, o) => panic!("{shown}: new reader {n:?}, old reader {o:?}"),
    }
}

// ---- Hand-picked edge cases, each with the verdict both give. ----

const ACCEPTED: &[&str] = &[
    r#"{}"#,
    r#"{"iss":"i","exp":1,"iat":0,"nbf":18446744073709551615}"#,
    // Floats are cast to whole seconds, saturating; a negative float is 0.
    r#"{"exp":1.9,"iat":-1.5,"nbf":1e300}"#,
    r#"{"exp":-0.0}"#,
    // jwt-simple held times as 32.32 fixed point: from 2^32 - 1 on, every time reads as it.
    r#"{"exp":4294967294,"nbf":4294967295,"iat":4294967296}"#,
    r#"{"exp":4294967296.5,"nbf":1e19}"#,
    r#"{"exp":18446744073709551616}"#,
    r#"{"exp":-9223372036854775809}"#,
    r#"{"exp":1e-400}"#,
    r#"{"aud":"a"}"#,
    r#"{"aud":""}"#,
    r#"{"aud":[]}"#,
    r#"{"aud":["b","a","b",""]}"#,
    r#"{"aud":["\u0061"]}"#,
    // Optional strings take null as absent, and so do scope and scp.
    r#"{"iss":null,"sub":null,"jti":null,"nonce":null,"client_id":null,"azp":null,"grant_id":null}"#,
    r#"{"scope":null,"scp":null}"#,
    r#"{"scope":"a b","scp":["c"]}"#,
    r#"{"scope":{"x":[1,{"y":null}]},"scp":7}"#,
    r#"{"nonce":"n","x":1}"#,
    r#"{"x":1,"x":2}"#,
    r#"{"x":{"a":1},"y":[{"b":[true,false,null]}],"x":"last"}"#,
    r#"{"i\u0061t":1,"client\u005fid":"c","\u00e9":"e"}"#,
    r#"{"ia":1,"iatt":2,"IAT":3,"":4}"#,
    r#"{"n":-1,"f":1.5,"big":123456789012345678901234567890,"e":1E2}"#,
    " \t\n{ \"iss\" : \"i\" } \r\n",
];

const REFUSED: &[&str] = &[
    // Not an object: a plain derive would have read an array member by position.
    r#"["i","s"]"#,
    r#"[]"#,
    r#"null"#,
    r#""x""#,
    r#"1"#,
    r#""#,
    // Times: negative integers, null, any other type.
    r#"{"exp":-1}"#,
    r#"{"iat":null}"#,
    r#"{"nbf":"1"}"#,
    r#"{"exp":true}"#,
    r#"{"exp":[1]}"#,
    r#"{"exp":1e400}"#,
    // Audiences: null, other types, a non-string element.
    r#"{"aud":null}"#,
    r#"{"aud":1}"#,
    r#"{"aud":{"a":1}}"#,
    r#"{"aud":["a",1]}"#,
    r#"{"aud":["a",null]}"#,
    r#"{"aud":[["a"]]}"#,
    // Modelled strings of another type.
    r#"{"iss":1}"#,
    r#"{"sub":true}"#,
    r#"{"jti":[]}"#,
    r#"{"nonce":{}}"#,
    r#"{"client_id":1}"#,
    r#"{"azp":["a"]}"#,
    r#"{"grant_id":false}"#,
    // A modelled member twice, even after a null, in either struct of the old reader.
    r#"{"iss":"a","iss":"a"}"#,
    r#"{"iss":null,"iss":"a"}"#,
    r#"{"exp":1,"exp":1}"#,
    r#"{"aud":"a","aud":["a"]}"#,
    r#"{"nonce":"a","nonce":"b"}"#,
    r#"{"client_id":"a","client_id":"b"}"#,
    r#"{"scope":null,"scope":"a"}"#,
    r#"{"scp":[],"scp":[]}"#,
    r#"{"grant_id":"g","grant\u005fid":"g"}"#,
    // Broken JSON.
    r#"{"iss":"a",}"#,
    r#"{"iss":"a"} x"#,
    r#"{"x":"\ud800"}"#,
    r#"{"x":01}"#,
    r#"{"x":1"#,
];

#[test]
fn both_readers_agree_on_hand_picked_payloads() {
    for json in ACCEPTED {
        assert!(same(json.as_bytes()), "refused: {json}");
    }
    for json in REFUSED {
        assert!(!same(json.as_bytes()), "accepted: {json}");
    }
}

#[test]
fn both_readers_agree_at_and_past_the_nesting_limit() {
    let mut verdicts = Vec::new();
    for depth in [120, 126, 127, 128, 129, 140] {
        for member in ["x", "scope", "scp"] {
            let json = format!(
                "{{\"{member}\":{}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            );
            verdicts.push(same(json.as_bytes()));
            let json = format!(
                "{{\"{member}\":{}1{}}}",
                "{\"a\":".repeat(depth),
                "}".repeat(depth)
            );
            verdicts.push(same(json.as_bytes()));
        }
    }
    // The limit lies inside the range tried: both verdicts occur.
    assert!(verdicts.contains(&true) && verdicts.contains(&false));
}

// ---- Generated and mutated payloads. ----

const NAMES: &[&str] = &[
    "iat",
    "exp",
    "nbf",
    "iss",
    "sub",
    "aud",
    "jti",
    "nonce",
    "client_id",
    "azp",
    "scope",
    "scp",
    "grant_id",
    "email",
    "x",
    "i\\u0061t",
    "sc\\u006fpe",
    "",
    "IAT",
];

const VALUES: &[&str] = &[
    "0",
    "1700000000",
    "4294967296",
    "-1",
    "1.5",
    "-2.5",
    "1e20",
    "18446744073709551616",
    "null",
    "true",
    "\"\"",
    "\"a\"",
    "\"https://idp.example.com\"",
    "\"read write read\"",
    "\"\\u00e9\\n\"",
    "[]",
    "[\"a\",\"b\",\"a\"]",
    "[\"a\",1]",
    "[null]",
    "{}",
    "{\"k\":[1,{\"m\":null}],\"k\":2}",
];

/// Values of the type the member takes, so that most generated payloads are accepted.
fn fitting(name: &str) -> &'static [&'static str] {
    match name {
        "iat" | "exp" | "nbf" | "i\\u0061t" => &["0", "1700000000", "4294967296", "1.5", "1e20"],
        "aud" => &["\"a\"", "\"\"", "[]", "[\"b\",\"a\",\"b\"]"],
        "scope" | "scp" | "sc\\u006fpe" => {
            &["null", "\"read write read\"", "[\"a\",\"b\"]", "\"\""]
        }
        "iss" | "sub" | "jti" | "nonce" | "client_id" | "azp" | "grant_id" => &[
            "null",
            "\"a\"",
            "\"https://idp.example.com\"",
            "\"\\u00e9\\n\"",
        ],
        _ => VALUES,
    }
}

/// A payload object as an issuer (or an attacker) might write it.
fn payload(rng: &mut Rng) -> String {
    let sp = if rng.below(4) == 0 { " " } else { "" };
    let mut members: Vec<String> = Vec::new();
    for _ in 0..rng.below(9) {
        let name = *rng.pick(NAMES);
        let value = if rng.below(3) == 0 {
            rng.pick(VALUES)
        } else {
            rng.pick(fitting(name))
        };
        members.push(format!("\"{name}\":{sp}{value}"));
    }
    if rng.below(4) == 0 && !members.is_empty() {
        let again = members[rng.below(members.len())].clone();
        members.push(again);
    }
    format!("{{{sp}{}{sp}}}", members.join(&format!(",{sp}")))
}

const PIECES: &[&[u8]] = &[
    b"\"exp\":1,",
    b"\"aud\":",
    b"\"iss\":\"i\",",
    b"null",
    b"-",
    b".5",
    b"e9",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\"",
    b",",
    b":",
    b"\\u0000",
    b"\"x\":{\"y\":[]},",
];

#[test]
fn both_readers_agree_on_generated_and_mutated_payloads() {
    let (mut accepted, mut refused) = (0, 0);
    for seed in 1..=10_000u64 {
        let mut rng = Rng(seed);
        let mut json = payload(&mut rng).into_bytes();
        // Half as written, half with one to three mutations.
        for _ in 0..rng.below(2) * (1 + rng.below(3)) {
            mutate(&mut rng, &mut json, PIECES);
        }
        if same(&json) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    // Both kinds in numbers, so the agreement is tested on each.
    assert!(
        accepted > 2_000 && refused > 2_000,
        "{accepted} accepted, {refused} refused"
    );
}

/// `extra` holds the unmodelled members (a repeated one's last value) and no modelled one;
/// `nonce` joins it only in `check_and_build`, as before.
#[test]
fn extra_holds_exactly_the_unmodelled_members() {
    let json = br#"{"iss":"i","exp":2,"nonce":"n","email":"e@x","scope":"a","x":{"y":1},"x":[2]}"#;
    let p = new_read(json).unwrap();
    let extra: Vec<(&String, &Value)> = p.extra.iter().collect();
    assert_eq!(
        extra,
        [
            (&"email".to_owned(), &Value::from("e@x")),
            (&"x".to_owned(), &serde_json::json!([2])),
        ]
    );
    assert!(same(json));
}

#[test]
fn times_from_2106_on_read_as_its_first_second() {
    let p = new_read(br#"{"exp":4294967296,"nbf":1e19,"iat":4294967294}"#).unwrap();
    assert_eq!(
        (p.exp, p.nbf, p.iat),
        (
            Some(4_294_967_295),
            Some(4_294_967_295),
            Some(4_294_967_294)
        )
    );
}
