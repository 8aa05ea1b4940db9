//! Revoked grants on their way from the broker to every Envoy worker: the page the broker serves
//! at `/internal/revocations?since=<cursor>`, and the set the filter keeps in shared data.
//!
//! A grant stays listed until `until`, when every access token issued for it has expired (the
//! broker issues none after revoking): past that, its tokens fail on `exp` anyway.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the broker publishes revocations on its internal listener.
pub const DEFAULT_PATH: &str = "/internal/revocations";
/// How often the filter polls by default: the bound on how long a revoked grant keeps working.
pub const DEFAULT_POLL_S: u64 = 2;
pub const MAX_POLL_S: u64 = 60;
/// Most entries one page carries; the filter asks again from the new cursor on its next poll.
pub const PAGE_LIMIT: usize = 1000;
/// Longest grant id accepted from the wire.
const MAX_ID_LEN: usize = 128;

/// One page of `/internal/revocations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// Ask for `since=<cursor>` next time.
    pub cursor: u64,
    pub revoked: Vec<Revoked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub grant_id: String,
    /// Unix seconds after which no token of the grant can still be valid.
    pub until: u64,
}

/// The path of the next poll.
pub fn poll_path(path: &str, cursor: u64) -> String {
    format!("{path}?since={cursor}")
}

/// Reads a page; ids that could not be a grant id (empty, too long, not printable ASCII) are
/// refused, since they end up in shared data and logs.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let page: Page = serde_json::from_slice(body).map_err(|e| format!("revocations page: {e}"))?;
    if page.revoked.len() > PAGE_LIMIT {
        return Err(format!(
            "revocations page has more than {PAGE_LIMIT} entries"
        ));
    }
    if let Some(bad) = page.revoked.iter().find(|r| !valid_id(&r.grant_id)) {
        return Err(format!(
            "revocations page has a malformed grant id ({} bytes)",
            bad.grant_id.len()
        ));
    }
    Ok(page)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The revoked grants a filter knows of, and the cursor to poll from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevokedSet {
    pub cursor: u64,
    until: BTreeMap<String, u64>,
}

impl RevokedSet {
    pub fn contains(&self, grant_id: &str) -> bool {
        self.until.contains_key(grant_id)
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Adds a page and forgets entries past their `until`; returns the grant ids new to the set.
    pub fn apply(&mut self, page: &Page, now: u64) -> Vec<String> {
        let mut added = Vec::new();
        for r in &page.revoked {
            if r.until > now && self.until.insert(r.grant_id.clone(), r.until).is_none() {
                added.push(r.grant_id.clone());
            }
        }
        self.until.retain(|_, until| *until > now);
        self.cursor = page.cursor;
        added
    }

    /// Grant ids in `self` that `before` did not have.
    pub fn added_since(&self, before: &RevokedSet) -> Vec<String> {
        self.until
            .keys()
            .filter(|k| !before.contains(k))
            .cloned()
            .collect()
    }

    /// The shared-data form: the cursor, then `until grant_id`, one a line.
    pub fn encode(&self) -> String {
        let mut out = self.cursor.to_string();
        for (id, until) in &self.until {
            out.push('\n');
            out.push_str(&until.to_string());
            out.push(' ');
            out.push_str(id);
        }
        out
    }

    pub fn decode(text: &[u8]) -> Option<RevokedSet> {
        let text = std::str::from_utf8(text).ok()?;
        let mut lines = text.split('\n');
        let cursor = lines.next()?.parse().ok()?;
        let mut until = BTreeMap::new();
        for line in lines {
            let (u, id) = line.split_once(' ')?;
            if !valid_id(id) {
                return None;
            }
            until.insert(id.to_string(), u.parse().ok()?);
        }
        Some(RevokedSet { cursor, until })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(cursor: u64, ids: &[(&str, u64)]) -> Page {
        Page {
            cursor,
            revoked: ids
                .iter()
                .map(|(id, until)| Revoked {
                    grant_id: id.to_string(),
                    until: *until,
                })
                .collect(),
        }
    }

    #[test]
    fn pages_accumulate_and_expire() {
        let mut s = RevokedSet::default();
        assert_eq!(
            s.apply(&page(2, &[("g1", 100), ("g2", 50)]), 10),
            vec!["g1", "g2"]
        );
        assert!(s.contains("g1") && s.contains("g2"));
        assert_eq!(s.cursor, 2);
        assert_eq!(
            s.apply(&page(3, &[("g1", 100), ("g3", 200)]), 60),
            vec!["g3"]
        );
        assert!(!s.contains("g2"), "past its until");
        assert_eq!(s.len(), 2);
        assert_eq!(s.apply(&page(4, &[("old", 5)]), 60), Vec::<String>::new());
        assert!(!s.contains("old"));
    }

    #[test]
    fn shared_form_round_trips() {
        let mut s = RevokedSet::default();
        s.apply(&page(7, &[("a-1", 100), ("b_2", 200)]), 0);
        let back = RevokedSet::decode(s.encode().as_bytes()).unwrap();
        assert_eq!(back, s);
        assert_eq!(RevokedSet::decode(b"0"), Some(RevokedSet::default()));
        assert_eq!(RevokedSet::decode(b"x"), None);
        assert_eq!(RevokedSet::decode(b"1\nnot-a-number g"), None);
        let mut more = back.clone();
        more.apply(&page(8, &[("c", 300)]), 0);
        assert_eq!(more.added_since(&back), vec!["c"]);
    }

    #[test]
    fn wire_pages_are_checked() {
        let p = parse_page(br#"{"cursor":3,"revoked":[{"grant_id":"g","until":9}]}"#).unwrap();
        assert_eq!(p, page(3, &[("g", 9)]));
        assert!(parse_page(b"{}").is_err());
        assert!(parse_page(br#"{"cursor":1,"revoked":[{"grant_id":"a b","until":9}]}"#).is_err());
        assert!(parse_page(br#"{"cursor":1,"revoked":[{"grant_id":"","until":9}]}"#).is_err());
        assert_eq!(
            poll_path(DEFAULT_PATH, 12),
            "/internal/revocations?since=12"
        );
    }
}
