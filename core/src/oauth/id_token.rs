//! The audience rules of a downstream ID token (OpenID Connect Core §3.1.3.7, items 3 to 5).

/// `aud` must name our client; with several audiences `azp` must be present; when `azp` is
/// present it must be our client.
pub fn check_audience(aud: &[String], azp: Option<&str>, client_id: &str) -> Result<(), String> {
    if !aud.iter().any(|a| a == client_id) {
        return Err("ID token is not for our client_id (aud)".into());
    }
    match azp {
        Some(a) if a != client_id => Err("ID token was issued to another party (azp)".into()),
        None if aud.len() > 1 => Err("ID token has several audiences and no azp".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_and_authorized_party() {
        let one = vec!["me".to_string()];
        let two = vec!["me".to_string(), "api".to_string()];
        assert_eq!(check_audience(&one, None, "me"), Ok(()));
        assert_eq!(check_audience(&one, Some("me"), "me"), Ok(()));
        assert_eq!(check_audience(&two, Some("me"), "me"), Ok(()));
        assert!(check_audience(&two, None, "me")
            .unwrap_err()
            .contains("no azp"));
        assert!(check_audience(&one, Some("other"), "me")
            .unwrap_err()
            .contains("azp"));
        assert!(check_audience(&["x".to_string()], None, "me")
            .unwrap_err()
            .contains("aud"));
    }
}
