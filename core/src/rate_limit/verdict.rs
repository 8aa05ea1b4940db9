//! What the rate limit service's answer decides: go on, the budget is spent (429 with the
//! service's reset time), or nobody could count it (`filter.rate_limit.on_error`).

use super::proto::{decode_response, Code};
use crate::authorize::Target;
use crate::decision::{Audit, Decision, Denial, Reason};
use crate::oauth::OAuthErrorCode;

/// The service's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Counted, and within every budget.
    Allowed,
    /// A budget is spent: retry after this many seconds.
    Exceeded { retry_after: u64 },
    /// The call failed, timed out, or the answer cannot be read: `on_error` decides.
    Unavailable(Failure),
}

/// Why no answer could be used (for the log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The gRPC call ended with this status (4: deadline exceeded, 14: unavailable, ...).
    Status(u32),
    /// The response is not a `RateLimitResponse`.
    Malformed,
    /// `overall_code` is UNKNOWN.
    Unknown,
}

/// Reads the answer: `grpc_status` as the host reports it (0 when a message arrived), `message`
/// the response bytes, `windows` each descriptor's `per_seconds` (the fallback `Retry-After`).
pub fn verdict(grpc_status: u32, message: &[u8], windows: &[u64]) -> Verdict {
    if grpc_status != 0 {
        return Verdict::Unavailable(Failure::Status(grpc_status));
    }
    let Ok(response) = decode_response(message) else {
        return Verdict::Unavailable(Failure::Malformed);
    };
    match response.overall {
        Code::Ok => Verdict::Allowed,
        Code::Unknown => Verdict::Unavailable(Failure::Unknown),
        Code::OverLimit => {
            let over = response
                .statuses
                .iter()
                .enumerate()
                .filter(|(_, s)| s.code == Code::OverLimit);
            let mut retry_after = None;
            for (i, s) in over {
                let wait = match s.until_reset {
                    // Rounded up: a client retrying on time must find the window reset.
                    Some((secs, nanos)) => secs.saturating_add(u64::from(nanos > 0)),
                    None => windows.get(i).copied().unwrap_or(0),
                };
                retry_after = Some(retry_after.unwrap_or(0).max(wait));
            }
            let retry_after =
                retry_after.unwrap_or_else(|| windows.iter().copied().max().unwrap_or(1));
            Verdict::Exceeded {
                retry_after: retry_after.max(1),
            }
        }
    }
}

/// The refusal when the service cannot count a budgeted call and `on_error` is `deny`.
pub fn unavailable(target: Target<'_>, audit: &Audit) -> Decision {
    let description = format!(
        "the request budget of server `{}` cannot be counted right now; retry shortly",
        target.server.name
    );
    let denial = Denial::oauth(503, OAuthErrorCode::TemporarilyUnavailable, &description);
    Decision::refusal(Reason::RateLimitUnavailable, denial, audit.clone())
}
