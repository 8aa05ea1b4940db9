//! Remembered consent: whether a person's earlier approval for a client on a server covers a new
//! authorization request, and what the consent page asks when it does not.

use std::collections::BTreeSet;

/// One approval a person's browser remembers: this client, on this server, for these scopes,
/// through the grant it produced (a withdrawn grant voids it), until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Remembered {
    #[serde(rename = "c")]
    pub client_id: String,
    #[serde(rename = "s")]
    pub server: String,
    /// Space-separated, as in the grant.
    #[serde(rename = "sc")]
    pub scope: String,
    #[serde(rename = "g")]
    pub grant_id: String,
    #[serde(rename = "e")]
    pub expires_at: u64,
}

/// At most this many approvals are remembered per browser and gateway (the cookie stays small).
pub const MAX_REMEMBERED: usize = 12;

/// What an authorization request needs from the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentNeed {
    /// An earlier approval covers every requested scope: no page.
    Remembered,
    /// Ask for `new`; `kept` were approved before for this client and server (a step-up).
    Ask { new: Vec<String>, kept: Vec<String> },
}

/// Decides the consent page for `requested` scopes of `client_id` on `server`.
///
/// `remembered` are the browser's approvals whose grants the caller found still active;
/// `may_remember` is false where the operator asks every time (gateway setting or an
/// always-ask client): then the page shows everything, and nothing counts as kept.
pub fn consent_need(
    remembered: &[Remembered],
    client_id: &str,
    server: &str,
    requested: &[&str],
    now: u64,
    may_remember: bool,
) -> ConsentNeed {
    let all = || ConsentNeed::Ask {
        new: requested.iter().map(|s| s.to_string()).collect(),
        kept: Vec::new(),
    };
    if !may_remember {
        return all();
    }
    let approved: BTreeSet<&str> = remembered
        .iter()
        .filter(|r| r.client_id == client_id && r.server == server && r.expires_at > now)
        .flat_map(|r| r.scope.split(' ').filter(|s| !s.is_empty()))
        .collect();
    if approved.is_empty() {
        return all();
    }
    let (kept, new): (Vec<&str>, Vec<&str>) =
        requested.iter().partition(|s| approved.contains(**s));
    if new.is_empty() {
        return ConsentNeed::Remembered;
    }
    ConsentNeed::Ask {
        new: new.into_iter().map(str::to_string).collect(),
        kept: kept.into_iter().map(str::to_string).collect(),
    }
}

/// The remembered approvals after `approval`: it replaces the earlier ones for its client and
/// server (its scope already holds what they covered, or the person was asked again), expired
/// ones are dropped, and the newest [`MAX_REMEMBERED`] are kept.
pub fn remember(mut list: Vec<Remembered>, approval: Remembered, now: u64) -> Vec<Remembered> {
    list.retain(|r| {
        r.expires_at > now && !(r.client_id == approval.client_id && r.server == approval.server)
    });
    list.push(approval);
    let excess = list.len().saturating_sub(MAX_REMEMBERED);
    list.drain(..excess);
    list
}

/// The scope to remember for a new grant: what it holds plus what the person approved before
/// for the same client and server (a step-up asked only for the new part). Space-separated.
pub fn union_scope(granted: &str, approved_before: &str) -> String {
    let all: BTreeSet<&str> = granted
        .split(' ')
        .chain(approved_before.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    all.into_iter().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(client: &str, server: &str, scope: &str, exp: u64) -> Remembered {
        Remembered {
            client_id: client.into(),
            server: server.into(),
            scope: scope.into(),
            grant_id: format!("g-{client}-{server}"),
            expires_at: exp,
        }
    }

    #[test]
    fn the_same_or_fewer_scopes_skip_the_page() {
        let mem = [r("c1", "support", "tickets.read accounts.read", 100)];
        for req in [
            &["tickets.read", "accounts.read"][..],
            &["tickets.read"][..],
        ] {
            assert_eq!(
                consent_need(&mem, "c1", "support", req, 50, true),
                ConsentNeed::Remembered
            );
        }
    }

    #[test]
    fn a_step_up_asks_only_for_what_is_new() {
        let mem = [r("c1", "ops", "admin.read", 100)];
        assert_eq!(
            consent_need(
                &mem,
                "c1",
                "ops",
                &["tickets.write", "admin.read"],
                50,
                true
            ),
            ConsentNeed::Ask {
                new: vec!["tickets.write".into()],
                kept: vec!["admin.read".into()]
            }
        );
    }

    #[test]
    fn another_client_server_expiry_or_always_ask_asks_everything() {
        let mem = [r("c1", "support", "tickets.read", 100)];
        let everything = ConsentNeed::Ask {
            new: vec!["tickets.read".into()],
            kept: vec![],
        };
        assert_eq!(
            consent_need(&mem, "c2", "support", &["tickets.read"], 50, true),
            everything
        );
        assert_eq!(
            consent_need(&mem, "c1", "ops", &["tickets.read"], 50, true),
            everything
        );
        assert_eq!(
            consent_need(&mem, "c1", "support", &["tickets.read"], 100, true),
            everything
        );
        assert_eq!(
            consent_need(&mem, "c1", "support", &["tickets.read"], 50, false),
            everything
        );
        assert_eq!(
            consent_need(&[], "c1", "support", &["tickets.read"], 50, true),
            everything
        );
    }

    #[test]
    fn remembering_replaces_the_pair_drops_expired_and_stays_bounded() {
        let mut list = vec![r("c1", "s", "a", 100), r("old", "s", "a", 10)];
        list = remember(list, r("c1", "s", "a b", 200), 50);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].scope, "a b");
        for i in 0..(MAX_REMEMBERED + 5) {
            list = remember(list, r(&format!("c{i}"), "t", "a", 500), 50);
        }
        assert_eq!(list.len(), MAX_REMEMBERED);
        assert_eq!(list.last().map(|r| r.client_id.as_str()), Some("c16"));
    }

    #[test]
    fn the_remembered_scope_is_the_union() {
        assert_eq!(
            union_scope("tickets.write", "admin.read"),
            "admin.read tickets.write"
        );
        assert_eq!(union_scope("a b", ""), "a b");
        assert_eq!(union_scope("b", "a b"), "a b");
    }
}
