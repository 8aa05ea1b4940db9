//! Access-token verification: signature against a [`KeySet`], issuer and lifetime, then claims.

use std::fmt;

use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::es256;
use crate::jwks::{Algorithm, Key, KeySet, PublicKey};
use crate::reason::Reason;

mod payload;
use payload::Payload;

#[cfg(test)]
mod differential;
#[cfg(test)]
mod old;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Key ids are short labels; a long one is garbage we would otherwise carry into logs.
pub const MAX_KID_LEN: usize = 256;
/// Without a `kid`, at most this many keys of the header's algorithm are tried, bounding the
/// work one forged token can cause.
pub const MAX_KIDLESS_ATTEMPTS: usize = 4;
/// Clock skew tolerated by [`VerifyOptions::new`].
pub const DEFAULT_LEEWAY: u64 = 5;

/// What [`verify`] holds a token to; `now` comes from the caller so this module has no clock.
#[derive(Clone, Copy, Debug)]
pub struct VerifyOptions<'a> {
    /// The token's `iss` must equal it exactly.
    pub issuer: &'a str,
    /// Unix seconds, from the caller's clock.
    pub now: u64,
    /// Seconds of clock skew tolerated on exp/nbf/iat. Keep it small: clients refresh on a 401.
    pub leeway: u64,
}

impl<'a> VerifyOptions<'a> {
    pub fn new(issuer: &'a str, now: u64) -> Self {
        VerifyOptions {
            issuer,
            now,
            leeway: DEFAULT_LEEWAY,
        }
    }
}

/// The verified contents of an access token.
#[derive(Clone, Debug, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: Option<String>,
    /// `aud` as a string or an array; sorted, since an array's order carries no meaning.
    pub aud: Vec<String>,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub jti: Option<String>,
    /// `client_id` (RFC 9068), else `azp`.
    pub client_id: Option<String>,
    /// `scope` (space-separated), else `scp` (array or string); in order, without duplicates.
    pub scopes: Vec<String>,
    pub kid: Option<String>,
    /// The algorithm of the key that verified the token.
    pub alg: Algorithm,
    pub grant_id: Option<String>,
    /// Every other claim, for identity mapping (e.g. `subject_claim: email`).
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url JSON parts, bad JSON, wrong claim types, unexpected `typ`, ...
    Malformed,
    /// Header `alg` is `none`, HMAC or anything else not allowed, or not the selected key's.
    UnsupportedAlgorithm,
    /// The `kid` is not in the set; distinct so the caller can refetch the JWKS.
    UnknownKid(String),
    /// No `kid`, and no key of the header's algorithm verifies the token.
    NoMatchingKey,
    BadSignature,
    MissingExp,
    Expired,
    /// `nbf` or `iat` in the future beyond the leeway.
    NotYetValid,
    WrongIssuer,
    MissingIssuer,
}

impl TokenError {
    /// Short snake_case code for audit logs and filter state.
    pub fn reason(&self) -> Reason {
        match self {
            TokenError::Malformed => Reason::Malformed,
            TokenError::UnsupportedAlgorithm => Reason::UnsupportedAlgorithm,
            TokenError::UnknownKid(_) => Reason::UnknownKid,
            TokenError::NoMatchingKey => Reason::NoMatchingKey,
            TokenError::BadSignature => Reason::BadSignature,
            TokenError::MissingExp => Reason::MissingExp,
            TokenError::Expired => Reason::Expired,
            TokenError::NotYetValid => Reason::NotYetValid,
            TokenError::WrongIssuer => Reason::WrongIssuer,
            TokenError::MissingIssuer => Reason::MissingIssuer,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed => f.write_str("token is malformed"),
            TokenError::UnsupportedAlgorithm => f.write_str("token algorithm is not allowed"),
            TokenError::UnknownKid(kid) => write!(f, "token key id {kid:?} is not in the key set"),
            TokenError::NoMatchingKey => f.write_str("no key in the key set verifies the token"),
            TokenError::BadSignature => f.write_str("token signature is invalid"),
            TokenError::MissingExp => f.write_str("token has no exp claim"),
            TokenError::Expired => f.write_str("token has expired"),
            TokenError::NotYetValid => f.write_str("token is not valid yet"),
            TokenError::WrongIssuer => f.write_str("token issuer is not the expected one"),
            TokenError::MissingIssuer => f.write_str("token has no iss claim"),
        }
    }
}

impl std::error::Error for TokenError {}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

/// Verifies `token` against `keys`: signature by a key whose algorithm the key set fixes,
/// `iss`, `exp` (required), `nbf` and `iat`. The audience is left to the caller, because
/// verified claims are cached per token and reused across servers.
pub fn verify(token: &str, keys: &KeySet, opts: &VerifyOptions) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (header_b64, payload_b64, sig_b64) = parts(token)?;
    let header_json = decode_b64(header_b64)?;
    let header: Header = serde_json::from_slice(&header_json).map_err(|_| TokenError::Malformed)?;
    let alg = Algorithm::from_header(&header.alg).ok_or(TokenError::UnsupportedAlgorithm)?;
    if !typ_allowed(header.typ.as_deref()) {
        return Err(TokenError::Malformed);
    }
    // Checked before any key is tried, so that an undecodable part is reported as malformed
    // even when the signature (computed over the text) would not match either.
    if !is_b64url(payload_b64) || sig_b64.is_empty() || !is_b64url(sig_b64) {
        return Err(TokenError::Malformed);
    }
    let sig_len_ok = alg.signature_b64_len().is_none_or(|n| n == sig_b64.len());

    let claims = match &header.kid {
        Some(kid) => {
            if kid.len() > MAX_KID_LEN {
                return Err(TokenError::Malformed);
            }
            let mut same_kid = keys.keys().iter().filter(|k| k.kid() == Some(kid.as_str()));
            let key =
                same_kid
                    .clone()
                    .find(|k| k.algorithm() == alg)
                    .ok_or_else(|| match same_kid.next() {
                        Some(_) => TokenError::UnsupportedAlgorithm,
                        None => TokenError::UnknownKid(kid.clone()),
                    })?;
            if !sig_len_ok {
                return Err(TokenError::BadSignature);
            }
            verify_with(key, token)?
        }
        None => {
            let mut found = None;
            let same_alg = keys.keys().iter().filter(|k| k.algorithm() == alg);
            for key in same_alg.take(if sig_len_ok { MAX_KIDLESS_ATTEMPTS } else { 0 }) {
                match verify_with(key, token) {
                    Ok(claims) => {
                        found = Some(claims);
                        break;
                    }
                    Err(TokenError::BadSignature) => continue,
                    Err(e) => return Err(e),
                }
            }
            found.ok_or(TokenError::NoMatchingKey)?
        }
    };
    check_and_build(claims, alg, header.kid, opts)
}

/// Reads the claims of a token whose signature another worker already verified (the caller
/// proves that with a digest of the whole token), re-checking `iss` and the times. Skipping the
/// signature is the point: it saves the verification each Envoy worker would otherwise repeat.
pub fn decode_verified(token: &str, opts: &VerifyOptions) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (header_b64, payload_b64, _) = parts(token)?;
    let header: Header =
        serde_json::from_slice(&decode_b64(header_b64)?).map_err(|_| TokenError::Malformed)?;
    let alg = Algorithm::from_header(&header.alg).ok_or(TokenError::UnsupportedAlgorithm)?;
    let claims: Payload =
        serde_json::from_slice(&decode_b64(payload_b64)?).map_err(|_| TokenError::Malformed)?;
    check_and_build(claims, alg, header.kid, opts)
}

/// A compact token's three dot-separated parts: header, payload, signature.
fn parts(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(payload), Some(signature), None) => Ok((header, payload, signature)),
        _ => Err(TokenError::Malformed),
    }
}

fn check_and_build(
    claims: Payload,
    alg: Algorithm,
    kid: Option<String>,
    opts: &VerifyOptions,
) -> Result<Claims, TokenError> {
    let iss = claims.iss.ok_or(TokenError::MissingIssuer)?;
    if iss != opts.issuer {
        return Err(TokenError::WrongIssuer);
    }
    let exp = claims.exp.ok_or(TokenError::MissingExp)?;
    if opts.now >= exp.saturating_add(opts.leeway) {
        return Err(TokenError::Expired);
    }
    let horizon = opts.now.saturating_add(opts.leeway);
    let (nbf, iat) = (claims.nbf, claims.iat);
    if nbf.is_some_and(|t| t > horizon) || iat.is_some_and(|t| t > horizon) {
        return Err(TokenError::NotYetValid);
    }

    // An array's order and repeats carry no meaning (jwt-simple read it into a set).
    let mut aud = claims.aud.unwrap_or_default();
    aud.sort_unstable();
    aud.dedup();

    let scopes = match (claims.scope, claims.scp) {
        (Some(scope), _) => scope_list(scope)?,
        (None, Some(scp)) => scope_list(scp)?,
        (None, None) => Vec::new(),
    };
    let mut extra = claims.extra;
    // jwt-simple modelled `nonce`, but it is an ordinary claim to us.
    if let Some(nonce) = claims.nonce {
        extra.insert("nonce".to_owned(), Value::String(nonce));
    }
    Ok(Claims {
        iss,
        sub: claims.sub,
        aud,
        exp,
        nbf,
        iat,
        jti: claims.jti,
        client_id: claims.client_id.or(claims.azp),
        scopes,
        kid,
        alg,
        grant_id: claims.grant_id,
        extra,
    })
}

/// jwt-simple's `Token::verify`, check for check and in its order (header size, parts, header
/// members and types, `crit`, `typ`, `alg`, `salt`, signature, claims), written once for every
/// key type with only the signature check per algorithm: jwt-simple's generic `verify_token`
/// would build its header and claims checks once per key type (27 KB of the `.wasm`,
/// BENCHMARKS.md "The module"). Its clock checks are left out, as they were neutralised before
/// (time 0, no tolerance, future accepted, which makes them pass): [`check_and_build`] does them
/// with saturating arithmetic and the caller's `now`.
fn verify_with(key: &Key, token: &str) -> Result<Payload, TokenError> {
    let (header_b64, payload_b64, sig_b64) = parts(token)?;
    if header_b64.len() > MAX_HEADER_LEN {
        return Err(TokenError::Malformed);
    }
    let header: FullHeader =
        serde_json::from_slice(&decode_b64_any(header_b64)?).map_err(|_| TokenError::Malformed)?;
    if header.crit.is_some_and(|crit| !crit.is_empty()) {
        return Err(TokenError::Malformed);
    }
    if header.typ.is_some_and(|typ| !is_jwt_typ(&typ)) {
        return Err(TokenError::Malformed);
    }
    if Algorithm::from_header(&header.alg) != Some(key.algorithm()) {
        return Err(TokenError::Malformed);
    }
    if let Some(salt) = header.salt {
        decode_b64_any(&salt)?;
    }
    let signature = decode_b64_any(sig_b64)?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    if !signature_verifies(&key.public, signed.as_bytes(), &signature)? {
        return Err(TokenError::BadSignature);
    }
    serde_json::from_slice(&decode_b64_any(payload_b64)?).map_err(|_| TokenError::Malformed)
}

/// The signature check of each key type, as jwt-simple makes it: RSA and ECDSA over the SHA-256
/// digest of the signed text, Ed25519 over the text. An Ed25519 signature that is not 64 bytes
/// is malformed (jwt-simple's decoding error), every other failure a bad signature.
fn signature_verifies(
    public: &PublicKey,
    signed: &[u8],
    signature: &[u8],
) -> Result<bool, TokenError> {
    use rsa::signature::hazmat::PrehashVerifier;
    Ok(match public {
        PublicKey::Rs256(key) => {
            let digest = hmac_sha256::Hash::hash(signed);
            rsa::pkcs1v15::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok())
        }
        PublicKey::Ps256(key) => {
            let digest = hmac_sha256::Hash::hash(signed);
            rsa::pss::Signature::try_from(signature)
                .is_ok_and(|sig| key.verify_prehash(&digest, &sig).is_ok())
        }
        PublicKey::Es256(table) => {
            es256::verify_prehashed(table, &hmac_sha256::Hash::hash(signed), signature)
        }
        PublicKey::EdDsa(key) => {
            let sig = ed25519_compact::Signature::from_slice(signature)
                .map_err(|_| TokenError::Malformed)?;
            key.verify(signed, &sig).is_ok()
        }
    })
}

/// jwt-simple's `typ` rule, `JWT` or `...+JWT` in any case, which it checks on the upper-cased
/// text. Compared byte-wise here: no character outside ASCII upper-cases to `J`, `W`, `T` or `+`
/// alone (`ǰ` becomes `J` and a combining mark, the `ﬅ` ligature `ST`), so both agree on every
/// string, and `str::to_uppercase` with its 16 KB Unicode table stays out of the `.wasm`.
fn is_jwt_typ(typ: &str) -> bool {
    let bytes = typ.as_bytes();
    bytes.eq_ignore_ascii_case(b"JWT")
        || bytes
            .len()
            .checked_sub(4)
            .and_then(|start| bytes.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(b"+JWT"))
}

/// jwt-simple's limit on the encoded header.
const MAX_HEADER_LEN: usize = 8192;

/// Every header member jwt-simple reads, with its types, so that a header it would refuse
/// (a `jwk` object, a non-string `cty`, ...) is refused here too.
#[derive(Deserialize)]
#[allow(dead_code)] // Parsed for their types only.
struct FullHeader {
    alg: String,
    #[serde(default)]
    cty: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
    #[serde(default)]
    jku: Option<String>,
    #[serde(default)]
    jwk: Option<String>,
    #[serde(default)]
    x5u: Option<String>,
    #[serde(default)]
    x5t: Option<String>,
    #[serde(default, rename = "x5t#S256")]
    x5t_s256: Option<String>,
    #[serde(default)]
    salt: Option<String>,
}

/// RFC 9068 `at+jwt` (with or without its `application/` prefix), plain `JWT`, or none: other
/// JWT kinds (ID tokens aside, which carry `JWT`) must not pass as access tokens.
fn typ_allowed(typ: Option<&str>) -> bool {
    match typ {
        None => true,
        Some(t) => {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt")
        }
    }
}

fn is_b64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn decode_b64(s: &str) -> Result<Vec<u8>, TokenError> {
    if s.is_empty() {
        return Err(TokenError::Malformed);
    }
    Base64UrlSafeNoPadding::decode_to_vec(s, None).map_err(|_| TokenError::Malformed)
}

/// jwt-simple's decoding, empty input included.
fn decode_b64_any(s: &str) -> Result<Vec<u8>, TokenError> {
    Base64UrlSafeNoPadding::decode_to_vec(s, None).map_err(|_| TokenError::Malformed)
}

fn scope_list(value: Value) -> Result<Vec<String>, TokenError> {
    let mut scopes: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !s.is_empty() && !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_owned());
        }
    };
    match value {
        Value::String(s) => s.split(' ').for_each(&mut add),
        Value::Array(items) => {
            for item in items {
                add(item.as_str().ok_or(TokenError::Malformed)?);
            }
        }
        Value::Null => {}
        _ => return Err(TokenError::Malformed),
    }
    Ok(scopes)
}

#[cfg(test)]
mod tests {
    use super::is_jwt_typ;

    /// jwt-simple's rule as it states it, on the upper-cased text.
    fn upper_cased_rule(typ: &str) -> bool {
        let upper = typ.to_uppercase();
        upper == "JWT" || upper.ends_with("+JWT")
    }

    #[test]
    fn the_byte_wise_typ_rule_agrees_with_the_upper_cased_one_for_every_character() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            for typ in [
                format!("{c}"),
                format!("{c}wt"),
                format!("j{c}t"),
                format!("jw{c}"),
                format!("{c}jwt"),
                format!("+jw{c}"),
                format!("+j{c}t"),
                format!("+{c}wt"),
                format!("{c}+jwt"),
                format!("at{c}jwt"),
                format!("jwt{c}"),
            ] {
                assert_eq!(is_jwt_typ(&typ), upper_cased_rule(&typ), "{typ:?}");
            }
        }
    }
}
