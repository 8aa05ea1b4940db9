//! The `WWW-Authenticate` builder: whatever goes in, the value stays one header-safe line.
#![no_main]
use libfuzzer_sys::fuzz_target;
use scopegate_core::challenge::{www_authenticate, ChallengeKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\u{1f}');
    let (rm, scope, desc) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    for kind in [
        ChallengeKind::NoToken,
        ChallengeKind::InvalidToken,
        ChallengeKind::InsufficientScope,
    ] {
        let h = www_authenticate(kind, rm, scope, desc);
        assert!(
            !h.chars().any(|c| c.is_control()),
            "control character in {h:?}"
        );
    }
});
