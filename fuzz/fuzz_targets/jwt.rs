//! JWT/JOSE: header and claims parsing of any token, and JWKS documents.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scopegate_core::{jwks, jwt};

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = jwt::decode_verified(
            token,
            &jwt::VerifyOptions::new("https://issuer.example", 1_800_000_000),
        );
    }
    let _ = jwks::KeySet::from_json(data);
});
