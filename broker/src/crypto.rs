//! Secrets at rest and random values: XChaCha20-Poly1305 sealing, SHA-256 lookup hashes, tokens.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Why sealing, opening or drawing randomness failed (the text names no secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CryptoError(String);

impl From<&str> for CryptoError {
    fn from(s: &str) -> CryptoError {
        CryptoError(s.to_string())
    }
}

impl From<String> for CryptoError {
    fn from(s: String) -> CryptoError {
        CryptoError(s)
    }
}

/// Callers that report errors as text (startup, key maintenance).
impl From<CryptoError> for String {
    fn from(e: CryptoError) -> String {
        e.0
    }
}

/// Format byte of sealed values, so a future key or algorithm change can be told apart.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// The encryption key for everything the broker stores encrypted.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// From 32 bytes written as base64 (standard or url-safe) or 64 hex digits.
    pub fn from_text(text: &str) -> Result<Sealer, CryptoError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(t.get(i * 2..i * 2 + 2).unwrap_or(""), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| CryptoError::from("encryption key is not valid hex"))?
        } else {
            STANDARD
                .decode(t)
                .or_else(|_| URL_SAFE_NO_PAD.decode(t))
                .map_err(|_| CryptoError::from("encryption key is neither base64 nor hex"))?
        };
        if bytes.len() != 32 {
            return Err(CryptoError(format!(
                "encryption key must be 32 bytes, got {}",
                bytes.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| CryptoError::from("bad key length"))?;
        Ok(Sealer { cipher })
    }

    /// Encrypts `plain`, bound to `context` (e.g. the grant id) so a sealed value moved to another
    /// row does not open.
    pub fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let ct = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::from("encryption failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (version, rest) = sealed.split_first().ok_or("sealed value is empty")?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err("sealed value has an unknown format".into());
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "sealed value does not open with this key (wrong key or tampered)".into())
    }
}

pub fn random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::getrandom(buf).map_err(|e| CryptoError(format!("no randomness: {e}")))
}

/// A fresh opaque token: 32 random bytes, base64url. Used for codes, refresh tokens, handles.
pub fn token() -> Result<String, CryptoError> {
    let mut b = [0u8; 32];
    random(&mut b)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// A shorter random identifier (grant ids, jti, kids): 16 bytes.
pub fn id() -> Result<String, CryptoError> {
    let mut b = [0u8; 16];
    random(&mut b)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Lookup key for a secret we issued: the table holds this, never the secret.
pub fn hash(secret: &str) -> String {
    let d = Sha256::digest(secret.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_binding() {
        let s = Sealer::from_text(&"ab".repeat(32)).unwrap();
        let sealed = s.seal("grant:1", b"secret").unwrap();
        assert_eq!(s.open("grant:1", &sealed).unwrap(), b"secret");
        assert!(s.open("grant:2", &sealed).is_err());
        let other = Sealer::from_text(&STANDARD.encode([7u8; 32])).unwrap();
        assert!(other.open("grant:1", &sealed).is_err());
        assert!(Sealer::from_text("short").is_err());
    }
}
