//! JSON Web Key Sets: the verification keys of an issuer, each bound to one algorithm by the key itself.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::es256::KeyTable;

#[cfg(test)]
mod differential;
mod jwk;

/// Largest JWKS document accepted. Real sets with `x5c` chains stay well under 64 KiB.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Entries beyond this are counted as skipped, so a hostile document cannot make us parse
/// (and later try) an unbounded number of keys.
pub const MAX_KEYS: usize = 64;

/// A signature algorithm we verify. Chosen by the key (`kty`/`crv`/`alg`), never by a token.
///
/// Each one links its own verifier into the filter's .wasm, so the set is kept to what
/// access-token issuers use: ES384 alone would add about 59 KB, RS/PS384 and RS/PS512
/// about 11 KB together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Ps256,
    Es256,
    EdDsa,
}

impl Algorithm {
    /// The JOSE name, as written in a JWK's or a token header's `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// Reads a token header's `alg`. Anything unlisted (`none`, every `HS*`, ES384, ...) is
    /// `None`, so it can never reach a verifier. `Ed25519` is RFC 9864's fully-specified
    /// name for the only EdDSA curve we accept.
    pub fn from_header(alg: &str) -> Option<Algorithm> {
        Some(match alg {
            "RS256" => Algorithm::Rs256,
            "PS256" => Algorithm::Ps256,
            "ES256" => Algorithm::Es256,
            "EdDSA" | "Ed25519" => Algorithm::EdDsa,
            _ => return None,
        })
    }

    /// Length of the base64url signature segment when it is fixed by the algorithm. Checked
    /// before verification because jwt-simple reports a wrong-length Ed25519 signature as a
    /// decoding error rather than as a bad signature.
    pub(crate) fn signature_b64_len(self) -> Option<usize> {
        match self {
            Algorithm::Es256 | Algorithm::EdDsa => Some(86),
            Algorithm::Rs256 | Algorithm::Ps256 => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verifier of each key, ready for [`crate::jwt`]'s signature check, built from the JWK by
/// [`jwk`] with the signature crates themselves (jwt-simple's `from_jwk` and `verify_token` are
/// not linked: BENCHMARKS.md "The module").
#[derive(Clone)]
pub(crate) enum PublicKey {
    /// PKCS#1 v1.5 with SHA-256.
    Rs256(rsa::pkcs1v15::VerifyingKey<hmac_sha256::Hash>),
    /// PSS with SHA-256, MGF1 with SHA-256 and a 32-byte salt, as jwt-simple verifies it.
    Ps256(rsa::pss::VerifyingKey<hmac_sha256::Hash>),
    /// The table is shared: key sets are cloned per worker and on refresh, the table is ~19 KB.
    Es256(Arc<KeyTable>),
    EdDsa(ed25519_compact::PublicKey),
}

/// One usable verification key.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    alg: Algorithm,
    pub(crate) public: PublicKey,
}

impl Key {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl fmt::Debug for Key {
    // Key material is public but long; kid and alg are what a log reader needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// A parsed JWKS: the usable keys, plus how many entries were left out.
#[derive(Clone, Debug)]
pub struct KeySet {
    keys: Vec<Key>,
    skipped: usize,
}

/// Why a JWKS document was refused as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksError {
    TooLarge {
        len: usize,
    },
    /// Not JSON at all; carries serde_json's message (with line and column).
    NotJson(String),
    /// JSON, but without a `keys` array.
    NotAKeySet,
    /// A JWKS in which no key is usable; `skipped` keys were present.
    NoUsableKeys {
        skipped: usize,
    },
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge { len } => write!(
                f,
                "JWKS document is {len} bytes, more than the {MAX_JWKS_LEN} accepted"
            ),
            JwksError::NotJson(msg) => write!(f, "JWKS document is not valid JSON: {msg}"),
            JwksError::NotAKeySet => {
                f.write_str("JWKS document is not a key set: no \"keys\" array")
            }
            JwksError::NoUsableKeys { skipped } => write!(
                f,
                "JWKS has no usable signature key ({skipped} skipped: supported are RSA 2048-4096 \
                 bits with e=65537 for RS256/PS256, EC P-256, OKP Ed25519, with use \"sig\")"
            ),
        }
    }
}

impl std::error::Error for JwksError {}

impl KeySet {
    /// Parses a JWKS document (`{"keys":[...]}`). Keys that are unusable (unknown kty/crv/alg,
    /// `use` other than `sig`, RSA outside 2048..=4096 bits or with e != 65537, private
    /// material, ...) are skipped and counted, not fatal; a document with zero usable keys, or
    /// that is not a JWKS at all, is an error.
    pub fn from_json(bytes: &[u8]) -> Result<KeySet, JwksError> {
        if bytes.len() > MAX_JWKS_LEN {
            return Err(JwksError::TooLarge { len: bytes.len() });
        }
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| JwksError::NotJson(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NotAKeySet)?;
        let mut keys = Vec::with_capacity(entries.len().min(MAX_KEYS));
        for entry in entries.iter().take(MAX_KEYS) {
            if let Some(key) = jwk::parse_key(entry) {
                keys.push(key);
            }
        }
        let skipped = entries.len().saturating_sub(keys.len());
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys { skipped });
        }
        Ok(KeySet { keys, skipped })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Entries of the document that were not usable (or beyond [`MAX_KEYS`]).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}
