//! What the filter reads from the broker (exchange answers, revocation pages, shared-data forms)
//! and the broker's RFC 8693 request checks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scopegate_core::{exchange, revocation};

fuzz_target!(|data: &[u8]| {
    for status in [Some(200), Some(400), None] {
        if let Ok(c) = exchange::parse_response(status, data, 1_000) {
            assert!(c.access_token.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
    let _ = exchange::Credential::decode(data);
    if let Ok(page) = revocation::parse_page(data) {
        let mut set = revocation::RevokedSet::default();
        set.apply(&page, 0);
        assert_eq!(
            revocation::RevokedSet::decode(set.encode().as_bytes()),
            Some(set)
        );
    }
    let _ = revocation::RevokedSet::decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let mut f = text.split('&');
        let p = scopegate_core::oauth::token_exchange::Params {
            grant_type: f.next(),
            subject_token: f.next(),
            subject_token_type: f.next(),
            resource: f.next(),
            requested_token_type: f.next(),
        };
        let _ = scopegate_core::oauth::token_exchange::check(&p);
    }
});
