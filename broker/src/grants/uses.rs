//! A grant's last use, written to the store once per grant and minute (what the connected-apps page shows).

use std::collections::HashMap;
use std::sync::Mutex;

/// How many grants' minutes one process remembers before it forgets the stale ones.
const MAX_TRACKED: usize = 65_536;

/// The minute in which this process last recorded each grant's use.
///
/// Every token exchange and refresh is a use, but the page shows a use to the minute: writing
/// the first use of each minute keeps what a person sees exact and spares the store a write
/// per exchange (which took the single SQLite connection away from the exchanges' reads).
#[derive(Default)]
pub struct Uses {
    minutes: Mutex<HashMap<String, u64>>,
}

impl Uses {
    /// Whether a use at `now` (unix seconds) still has to be written: the grant's first in its
    /// minute here. An unusable memory answers yes, so a use is never lost to it.
    pub fn to_record(&self, grant_id: &str, now: u64) -> bool {
        let minute = now / 60;
        let Ok(mut minutes) = self.minutes.lock() else {
            return true;
        };
        if let Some(last) = minutes.get_mut(grant_id) {
            if *last >= minute {
                return false;
            }
            *last = minute;
            return true;
        }
        if minutes.len() >= MAX_TRACKED {
            // Grants not used this minute are written again on their next use anyway.
            minutes.retain(|_, last| *last >= minute);
            if minutes.len() >= MAX_TRACKED {
                minutes.clear();
            }
        }
        minutes.insert(grant_id.to_owned(), minute);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_use_of_each_minute_is_written() {
        let uses = Uses::default();
        assert!(uses.to_record("g1", 600), "first use");
        assert!(!uses.to_record("g1", 600), "same second");
        assert!(!uses.to_record("g1", 659), "same minute");
        assert!(uses.to_record("g2", 630), "another grant");
        assert!(uses.to_record("g1", 660), "next minute");
        assert!(!uses.to_record("g1", 630), "an earlier minute is not newer");
    }

    #[test]
    fn a_full_memory_forgets_the_stale_minutes_and_still_records() {
        let uses = Uses::default();
        for i in 0..MAX_TRACKED {
            assert!(uses.to_record(&format!("old{i}"), 60));
        }
        assert!(uses.to_record("g", 120), "room is made for a new grant");
        assert!(
            uses.to_record("old1", 120),
            "a forgotten grant is written again"
        );
        assert!(!uses.to_record("g", 179));
        let len = uses.minutes.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 2, "only this minute's grants are kept");
    }
}
