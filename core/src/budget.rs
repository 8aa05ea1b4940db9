//! Request budgets per server (and optionally per tool): fixed windows counted per subject, client
//! or server, refused with 429 and `Retry-After` once spent.
//!
//! The arithmetic lives here; the filter keeps each window in Envoy's shared data (one counter
//! per Envoy, updated with compare-and-swap) and asks [`spend`] what to do.

use crate::authorize::Target;
pub use crate::config::{Budget, BudgetKey};
use crate::decision::{Audit, Decision, Denial, Grant, Reason};
use crate::mcp::Call;
use crate::oauth::OAuthErrorCode;

/// A window's state: when it started and how much of it is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub count: u32,
}

impl Window {
    pub fn encode(&self) -> String {
        format!("{} {}", self.start, self.count)
    }

    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (start, count) = text.split_once(' ')?;
        Some(Window {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        })
    }
}

/// What spending one request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Allowed; store this window.
    Allowed(Window),
    /// Spent: answer 429, retry after this many seconds.
    Exceeded { retry_after: u64 },
}

/// Spends one request from `current` (absent or stale windows start afresh at `now`).
pub fn spend(budget: &Budget, current: Option<Window>, now: u64) -> Spend {
    let window = budget.per_seconds.max(1);
    let live = current.filter(|w| now < w.start.saturating_add(window) && now >= w.start);
    let w = live.unwrap_or(Window {
        start: now,
        count: 0,
    });
    if w.count >= budget.requests {
        return Spend::Exceeded {
            retry_after: w.start.saturating_add(window).saturating_sub(now).max(1),
        };
    }
    Spend::Allowed(Window {
        start: w.start,
        count: w.count.saturating_add(1),
    })
}

/// Whether a budget counts this request.
pub fn applies(budget: &Budget, calls: &[Call]) -> bool {
    match &budget.tool {
        None => true,
        Some(tool) => calls
            .iter()
            .any(|c| c.method == "tools/call" && c.name.as_deref() == Some(tool.as_str())),
    }
}

/// The shared-data key of the window a request spends from. Identities are hashed: keys are
/// visible to every plugin in the VM and must not carry user identifiers.
pub fn window_key(server: &str, index: usize, budget: &Budget, grant: &Grant) -> String {
    let who = match budget.per {
        BudgetKey::Subject => grant.subject.as_str(),
        BudgetKey::ClientId => grant.client_id.as_str(),
        BudgetKey::Server => "",
    };
    let digest = hmac_sha256::Hash::hash(who.as_bytes());
    let mut key = format!("scopegate.budget.{server}.{index}.");
    for b in digest.iter().take(12) {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

/// The refusal once a budget is spent.
pub fn exceeded(target: Target<'_>, audit: &Audit, retry_after: u64) -> Decision {
    let description = format!(
        "the request budget of server `{}` is spent; retry after {retry_after} s",
        target.server.name
    );
    let denial =
        Denial::oauth(429, OAuthErrorCode::RateLimited, &description).retry_after(retry_after);
    Decision::refusal(Reason::BudgetExceeded, denial, audit.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(requests: u32, per_seconds: u64) -> Budget {
        Budget {
            tool: None,
            requests,
            per_seconds,
            per: BudgetKey::Subject,
        }
    }

    #[test]
    fn a_window_allows_its_requests_then_says_when_to_retry() {
        let b = budget(2, 60);
        let Spend::Allowed(w1) = spend(&b, None, 1000) else {
            panic!()
        };
        let Spend::Allowed(w2) = spend(&b, Some(w1), 1010) else {
            panic!()
        };
        assert_eq!(
            w2,
            Window {
                start: 1000,
                count: 2
            }
        );
        assert_eq!(
            spend(&b, Some(w2), 1030),
            Spend::Exceeded { retry_after: 30 }
        );
        // The next window starts afresh.
        assert_eq!(
            spend(&b, Some(w2), 1060),
            Spend::Allowed(Window {
                start: 1060,
                count: 1
            })
        );
    }

    #[test]
    fn a_window_from_the_future_is_not_trusted() {
        let b = budget(1, 60);
        let future = Window {
            start: 5000,
            count: 1,
        };
        assert_eq!(
            spend(&b, Some(future), 1000),
            Spend::Allowed(Window {
                start: 1000,
                count: 1
            })
        );
    }

    #[test]
    fn tool_budgets_count_only_their_tool() {
        let mut b = budget(1, 60);
        b.tool = Some("update_ticket".into());
        let call = |n: &str| Call {
            method: "tools/call".into(),
            name: Some(n.into()),
        };
        assert!(applies(&b, &[call("update_ticket")]));
        assert!(!applies(&b, &[call("admin_report")]));
        assert!(!applies(&b, &[]));
        assert!(applies(&budget(1, 1), &[]));
    }

    #[test]
    fn windows_round_trip_and_keys_hide_identities() {
        let w = Window { start: 7, count: 3 };
        assert_eq!(Window::decode(w.encode().as_bytes()), Some(w));
        assert_eq!(Window::decode(b"x"), None);
        let g = Grant {
            subject: "alice@example.com".into(),
            client_id: "c".into(),
            scopes: String::new(),
            forward_client_token: false,
            grant_id: None,
        };
        let k = window_key("ops-console", 0, &budget(1, 1), &g);
        assert!(k.starts_with("scopegate.budget.ops-console.0."));
        assert!(!k.contains("alice"));
        let mut per_server = budget(1, 1);
        per_server.per = BudgetKey::Server;
        let other = Grant {
            subject: "bob".into(),
            ..g.clone()
        };
        assert_eq!(
            window_key("s", 0, &per_server, &g),
            window_key("s", 0, &per_server, &other)
        );
        assert_ne!(
            window_key("s", 0, &budget(1, 1), &g),
            window_key("s", 0, &budget(1, 1), &other)
        );
    }
}
