//! How the walkthrough prints what happens: one line per request and per answer, tokens shortened.

use serde_json::Value;

pub fn title(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m");
}

pub fn note(text: &str) {
    println!("   {text}");
}

pub fn request(method: &str, url: &str, extra: &str) {
    if extra.is_empty() {
        println!("   → {method} {url}");
    } else {
        println!("   → {method} {url}  {extra}");
    }
}

pub fn response(status: impl std::fmt::Display, extra: &str) {
    if extra.is_empty() {
        println!("   ← {status}");
    } else {
        println!("   ← {status}  {extra}");
    }
}

/// `eyJhbGciOi…(812 chars)`: enough to tell tokens apart, never the whole secret.
pub fn token(t: &str) -> String {
    let head: String = t.chars().take(12).collect();
    format!("{head}…({} chars)", t.len())
}

/// A JSON body on one line, tokens and secrets shortened, at most `max` characters.
pub fn json(v: &Value, max: usize) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for key in ["access_token", "refresh_token", "id_token", "client_secret"] {
            if let Some(Value::String(s)) = o.get(key) {
                let short = token(s);
                o.insert(key.to_string(), Value::String(short));
            }
        }
    }
    clip(&v.to_string(), max)
}

pub fn clip(s: &str, max: usize) -> String {
    let one_line: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// The claims of a JWT, without verifying it (for display and comparison only).
pub fn jwt_claims(jwt: &str) -> Option<Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
