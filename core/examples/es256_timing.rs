//! Where a cold ES256 verification spends its time, natively or under V8 (`make es256-timing`).
//!
//! Not a test: it prints per-operation averages over distinct tokens, so the miss path's parts
//! (SHA-256, base64 and JSON, the ECDSA verification old and new, the whole `jwt::verify`) can
//! be compared on one machine. Built for wasm32-wasip1 and run by Node's WASI, it runs in V8,
//! the engine Envoy's wasm runtime uses.

use std::error::Error;
use std::hint::black_box;
use std::time::Instant;

use jwt_simple::prelude::*;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use scopegate_core::es256::{self, KeyTable};
use scopegate_core::jwks::KeySet;
use scopegate_core::jwt::{self, VerifyOptions};
use serde_json::json;

const ISSUER: &str = "https://issuer.example";

fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let pair = ES256KeyPair::generate().with_key_id("k1");
    let jwk: serde_json::Value = serde_json::from_str(&pair.public_key().to_jwk())?;
    let jwks = serde_json::to_vec(&json!({ "keys": [jwk] }))?;

    let tokens = (0..n)
        .map(|i| {
            let claims = Claims::create(jwt_simple::prelude::Duration::from_hours(1))
                .with_issuer(ISSUER)
                .with_subject(format!("user-{i}"))
                .with_audience("https://mcp.example/mcp")
                .with_jwt_id(format!("jti-{i}"));
            pair.sign(claims)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
    let opts = VerifyOptions::new(ISSUER, now);

    // The parts each token is made of, split once.
    let parts: Vec<(&str, [u8; 32], Vec<u8>)> = tokens
        .iter()
        .map(|t| {
            let dot = t.rfind('.').unwrap_or(0);
            let signed = &t[..dot];
            let sig =
                Base64UrlSafeNoPadding::decode_to_vec(&t[dot + 1..], None).unwrap_or_default();
            (signed, hmac_sha256::Hash::hash(signed.as_bytes()), sig)
        })
        .collect();

    let verifying =
        VerifyingKey::from_affine(*pair.public_key().public_key().as_ref().as_affine())?;
    let q = *verifying.as_affine();

    println!("tokens: {n} distinct ES256, {} bytes each", tokens[0].len());
    println!(
        "table per key (and one for the generator): {} bytes",
        KeyTable::SIZE
    );
    // The fastest of five batches: the machine is shared, and other work only adds time.
    let time = |name: &str, runs: usize, f: &mut dyn FnMut(usize) -> bool| {
        let mut best = f64::MAX;
        let mut ok = 0usize;
        for _ in 0..5 {
            ok = 0;
            let start = Instant::now();
            for i in 0..runs {
                ok += usize::from(black_box(f(i)));
            }
            best = best.min(start.elapsed().as_secs_f64() * 1e6 / runs as f64);
        }
        println!("{name:<44} {best:>9.1} µs  ({ok}/{runs} ok)");
    };

    time("KeySet::from_json (1 key, table build)", 20, &mut |_| {
        KeySet::from_json(&jwks).is_ok()
    });
    let keys = KeySet::from_json(&jwks)?;
    time("KeyTable::new alone", 20, &mut |_| {
        KeyTable::new(&q);
        true
    });
    let table = KeyTable::new(&q);
    time("sha256 of header.payload", n, &mut |i| {
        black_box(hmac_sha256::Hash::hash(parts[i].0.as_bytes()));
        true
    });
    time("sha256 of the whole token (filter's digest)", n, &mut |i| {
        black_box(hmac_sha256::Hash::hash(tokens[i].as_bytes()));
        true
    });
    time(
        "decode_verified (base64 + JSON, no signature)",
        n,
        &mut |i| jwt::decode_verified(&tokens[i], &opts).is_ok(),
    );
    time("ecdsa verify_prehash (p256, generic wNAF)", n, &mut |i| {
        Signature::try_from(parts[i].2.as_slice())
            .map(|s| verifying.verify_prehash(&parts[i].1, &s).is_ok())
            .unwrap_or(false)
    });
    time("es256::verify_prehashed (per-key table)", n, &mut |i| {
        es256::verify_prehashed(&table, &parts[i].1, &parts[i].2)
    });
    time("jwt-simple ES256PublicKey::verify_token", n, &mut |i| {
        pair.public_key()
            .verify_token::<NoCustomClaims>(&tokens[i], None)
            .is_ok()
    });
    time("jwt::verify (full, as the filter calls it)", n, &mut |i| {
        jwt::verify(&tokens[i], &keys, &opts).is_ok()
    });
    Ok(())
}
