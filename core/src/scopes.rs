//! Scope sets as bitmasks over a gateway's allowed scopes, so enforcement is a few AND/OR ops.

/// Most scopes one gateway may allow; each maps to one bit.
pub const MAX_ALLOWED_SCOPES: usize = 128;

/// A set of a gateway's allowed scopes. Bit `i` is `allowed_scopes[i]` of that gateway; a
/// `ScopeSet` is meaningless without the gateway's [`ScopeIndex`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(u128);

impl ScopeSet {
    pub const EMPTY: ScopeSet = ScopeSet(0);

    pub fn union(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 | other.0)
    }
    pub fn intersect(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & other.0)
    }
    pub fn minus(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 & !other.0)
    }
    pub fn is_subset_of(self, other: ScopeSet) -> bool {
        self.0 & !other.0 == 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn contains_index(self, i: usize) -> bool {
        i < MAX_ALLOWED_SCOPES && self.0 & (1u128 << i) != 0
    }
    fn with_index(self, i: usize) -> ScopeSet {
        if i < MAX_ALLOWED_SCOPES {
            ScopeSet(self.0 | (1u128 << i))
        } else {
            self
        }
    }
    pub fn bits(self) -> u128 {
        self.0
    }
}

/// A gateway's allowed scopes in a fixed order: the names behind the bits of a [`ScopeSet`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeIndex {
    names: Vec<String>,
}

/// A token's scopes split against the allowed set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classified {
    pub granted: ScopeSet,
    /// Scopes the token carries that the gateway never grants (named in the audit record).
    pub foreign: Vec<String>,
}

impl ScopeIndex {
    /// Builds the index; duplicates and overflow are the validator's job to report.
    pub fn new<S: AsRef<str>>(names: &[S]) -> ScopeIndex {
        let mut out: Vec<String> = Vec::with_capacity(names.len());
        for n in names {
            let n = n.as_ref();
            if !out.iter().any(|x| x == n) && out.len() < MAX_ALLOWED_SCOPES {
                out.push(n.to_string());
            }
        }
        ScopeIndex { names: out }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    pub fn all(&self) -> ScopeSet {
        (0..self.names.len()).fold(ScopeSet::EMPTY, |s, i| s.with_index(i))
    }

    pub fn position(&self, scope: &str) -> Option<usize> {
        self.names.iter().position(|n| n == scope)
    }

    /// The set of the given names, or the first name that is not allowed.
    pub fn set_of<S: AsRef<str>>(&self, names: &[S]) -> Result<ScopeSet, String> {
        let mut set = ScopeSet::EMPTY;
        for n in names {
            match self.position(n.as_ref()) {
                Some(i) => set = set.with_index(i),
                None => return Err(n.as_ref().to_string()),
            }
        }
        Ok(set)
    }

    /// Splits a token's scopes into the allowed ones (as a set) and the foreign ones.
    pub fn classify<S: AsRef<str>>(&self, scopes: &[S]) -> Classified {
        let mut out = Classified::default();
        for s in scopes {
            let s = s.as_ref();
            if s.is_empty() {
                continue;
            }
            match self.position(s) {
                Some(i) => out.granted = out.granted.with_index(i),
                None => {
                    if !out.foreign.iter().any(|f| f == s) {
                        out.foreign.push(s.to_string());
                    }
                }
            }
        }
        out
    }

    /// Space-separated names in allowed-set order, as `scope` parameters and headers carry them.
    pub fn render(&self, set: ScopeSet) -> String {
        let mut out = String::new();
        for (i, n) in self.names.iter().enumerate() {
            if set.contains_index(i) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(n);
            }
        }
        out
    }

    pub fn names(&self, set: ScopeSet) -> Vec<&str> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| set.contains_index(*i))
            .map(|(_, n)| n.as_str())
            .collect()
    }
}

/// Splits an OAuth `scope` string (RFC 6749 §3.3: space-delimited) into its tokens.
pub fn split_scope(s: &str) -> impl Iterator<Item = &str> {
    s.split(' ').filter(|x| !x.is_empty())
}

/// RFC 6749 §3.3 `scope-token`: printable ASCII except space, `"` and `\`.
pub fn is_valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> ScopeIndex {
        ScopeIndex::new(&[
            "tickets.read",
            "tickets.write",
            "accounts.read",
            "admin.read",
        ])
    }

    #[test]
    fn set_algebra() {
        let i = idx();
        let a = i.set_of(&["tickets.read", "accounts.read"]).unwrap();
        let b = i.set_of(&["tickets.read"]).unwrap();
        assert!(b.is_subset_of(a));
        assert!(!a.is_subset_of(b));
        assert_eq!(i.render(a.minus(b)), "accounts.read");
        assert_eq!(
            i.render(a.union(i.set_of(&["admin.read"]).unwrap())),
            "tickets.read accounts.read admin.read"
        );
        assert!(a.intersect(i.set_of(&["admin.read"]).unwrap()).is_empty());
        assert_eq!(
            i.render(i.all()),
            "tickets.read tickets.write accounts.read admin.read"
        );
    }

    #[test]
    fn unknown_names_are_reported() {
        assert_eq!(
            idx().set_of(&["tickets.read", "billing.write"]),
            Err("billing.write".into())
        );
    }

    #[test]
    fn classify_drops_foreign_scopes_and_names_them_once() {
        let c = idx().classify(&["openid", "tickets.read", "offline_access", "openid", ""]);
        assert_eq!(idx().render(c.granted), "tickets.read");
        assert_eq!(
            c.foreign,
            vec!["openid".to_string(), "offline_access".to_string()]
        );
    }

    #[test]
    fn scope_tokens_follow_rfc6749() {
        assert!(is_valid_scope_token("tickets.read"));
        assert!(is_valid_scope_token("https://api.example.com/x:read"));
        assert!(!is_valid_scope_token("a b"));
        assert!(!is_valid_scope_token("a\"b"));
        assert!(!is_valid_scope_token(""));
        assert_eq!(split_scope(" a  b ").collect::<Vec<_>>(), vec!["a", "b"]);
    }

    #[test]
    fn index_is_bounded() {
        let names: Vec<String> = (0..200).map(|i| format!("s{i}")).collect();
        assert_eq!(ScopeIndex::new(&names).len(), MAX_ALLOWED_SCOPES);
    }
}
