//! Limits on dynamic client registration per gateway: a rate (a fixed one-minute window), a cap on
//! live clients, and how long a client that never completed an authorization is kept.

use crate::config::RegistrationLimitsDoc;

/// Most registrations per minute allowed by validation (beyond, set none: `per_minute: 0` is refused).
pub const MAX_PER_MINUTE: u32 = 100_000;
/// Shortest time an unused client is kept: longer than an authorization request lives.
pub const MIN_UNUSED_TTL_S: u64 = 3600;

/// Each problem as (field under `clients.registration`, message).
pub fn check(l: &RegistrationLimitsDoc) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if l.per_minute == 0 || l.per_minute > MAX_PER_MINUTE {
        out.push((
            "per_minute",
            format!("must be between 1 and {MAX_PER_MINUTE}"),
        ));
    }
    if l.max_clients == 0 {
        out.push(("max_clients", "must be at least 1".to_string()));
    }
    if l.unused_client_ttl_s < MIN_UNUSED_TTL_S {
        out.push((
            "unused_client_ttl_s",
            format!("must be at least {MIN_UNUSED_TTL_S} seconds"),
        ));
    }
    out
}

/// A fixed one-minute window of registrations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    start: u64,
    count: u32,
}

impl Window {
    /// Counts one registration at `now`, or says how many seconds until the window reopens.
    pub fn admit(&mut self, now: u64, per_minute: u32) -> Result<(), u64> {
        if now >= self.start.saturating_add(60) || now < self.start {
            *self = Window {
                start: now - now % 60,
                count: 0,
            };
        }
        if self.count >= per_minute {
            return Err(self.start.saturating_add(60).saturating_sub(now).max(1));
        }
        self.count += 1;
        Ok(())
    }
}

/// Whether one more client fits under the cap.
pub fn room_for_one(live: u64, max_clients: u64) -> bool {
    live < max_clients
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window() {
        let mut w = Window::default();
        for _ in 0..3 {
            assert_eq!(w.admit(125, 3), Ok(()));
        }
        assert_eq!(w.admit(130, 3), Err(50));
        assert_eq!(w.admit(179, 3), Err(1));
        assert_eq!(w.admit(180, 3), Ok(()), "a new minute");
    }

    #[test]
    fn limits_are_validated() {
        let ok = RegistrationLimitsDoc::default();
        assert!(check(&ok).is_empty());
        assert!(room_for_one(ok.max_clients - 1, ok.max_clients));
        assert!(!room_for_one(ok.max_clients, ok.max_clients));
        let bad = RegistrationLimitsDoc {
            per_minute: 0,
            max_clients: 0,
            unused_client_ttl_s: 60,
        };
        let fields: Vec<&str> = check(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["per_minute", "max_clients", "unused_client_ttl_s"]);
    }
}
