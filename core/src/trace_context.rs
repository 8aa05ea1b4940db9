//! W3C Trace Context (`traceparent`, `tracestate`) for the filter's callouts: which context a
//! request's callout to the broker carries, checked before it is copied anywhere.
//!
//! Envoy's tracer starts its span before any filter runs but writes `traceparent` only on the
//! upstream request, after the filters. So `render envoy --otlp-collector` has a
//! `header_mutation` filter, ahead of scopegate's, write Envoy's own span as
//! [`ENVOY_SPAN_HEADER`] (`00-%TRACE_ID%-%SPAN_ID%-01`); the router removes it before the
//! upstream. Without it, the client's own `traceparent` (if any) is the parent.

/// The request header carrying Envoy's active span as a `traceparent` value.
pub const ENVOY_SPAN_HEADER: &str = "x-scopegate-traceparent";
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
/// W3C's limit for `tracestate` is 32 members; 512 characters is what a carrier must pass on.
const MAX_TRACESTATE: usize = 512;

/// The parent for a callout: Envoy's span when the header is valid, else the client's.
pub fn parent<'a>(envoy_span: Option<&'a str>, client: Option<&'a str>) -> Option<&'a str> {
    envoy_span
        .filter(|v| is_traceparent(v))
        .or(client.filter(|v| is_traceparent(v)))
}

/// `tracestate` as passed on: printable ASCII, bounded; anything else is dropped.
pub fn tracestate(value: Option<&str>) -> Option<&str> {
    value.filter(|v| {
        !v.is_empty() && v.len() <= MAX_TRACESTATE && v.bytes().all(|b| (0x20..0x7f).contains(&b))
    })
}

/// A version-00 `traceparent`: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, lower
/// case, neither id all zeros.
pub fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let [version, trace_id, span_id, flags] = parts.as_slice() else {
        return false;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    *version == "00"
        && hex(trace_id, 32)
        && nonzero(trace_id)
        && hex(span_id, 16)
        && nonzero(span_id)
        && hex(flags, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENVOY: &str = "00-20fb58057924853fb3f879192806ea7a-75e4e88f2e762438-01";
    const CLIENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn envoy_span_first_then_the_client() {
        assert_eq!(parent(Some(ENVOY), Some(CLIENT)), Some(ENVOY));
        assert_eq!(parent(None, Some(CLIENT)), Some(CLIENT));
        // Envoy renders `-` for a field it has no value for (tracing off for this request).
        assert_eq!(parent(Some("00-----01"), Some(CLIENT)), Some(CLIENT));
        assert_eq!(parent(None, None), None);
    }

    #[test]
    fn only_well_formed_version_00_values_pass() {
        assert!(is_traceparent(ENVOY));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
        ] {
            assert!(!is_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn tracestate_is_bounded_printable_ascii() {
        assert_eq!(tracestate(Some("vendor=abc,x=1")), Some("vendor=abc,x=1"));
        assert_eq!(tracestate(Some("")), None);
        assert_eq!(tracestate(Some("a=b\r\nx: y")), None);
        assert_eq!(tracestate(Some(&"a".repeat(513))), None);
    }
}
