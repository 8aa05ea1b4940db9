//! Checks of what the broker shows a person: each gateway's `consent` section and its servers'
//! `display_name`/`description`. Called by `validate` where the broker's sections are read.

use crate::config::Document;

/// Longest scope or server description: a sentence or two on the page, not an essay.
pub const MAX_DESCRIPTION: usize = 300;
/// Longest server display name.
pub const MAX_DISPLAY_NAME: usize = 80;

/// Each problem as (field path, message).
pub fn check(doc: &Document) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (gi, g) in doc.gateways.iter().enumerate() {
        let at = |f: &str| format!("gateways[{gi}].{f}");
        let c = &g.consent;
        if !(60..=366 * 86_400).contains(&c.remember_for_s) {
            out.push((
                at("consent.remember_for_s"),
                "must be between 60 seconds and a year".into(),
            ));
        }
        for (scope, text) in &c.scope_descriptions {
            let f = at(&format!("consent.scope_descriptions.{scope}"));
            if !g.allowed_scopes.contains(scope) {
                out.push((
                    f.clone(),
                    format!("`{scope}` is not in the gateway's allowed_scopes"),
                ));
            }
            if let Err(e) = page_text(text, MAX_DESCRIPTION) {
                out.push((f, e));
            }
        }
        for (si, s) in g.servers.iter().enumerate() {
            if let Some(n) = &s.display_name {
                if let Err(e) = page_text(n, MAX_DISPLAY_NAME) {
                    out.push((at(&format!("servers[{si}].display_name")), e));
                }
            }
            if let Some(d) = &s.description {
                if let Err(e) = page_text(d, MAX_DESCRIPTION) {
                    out.push((at(&format!("servers[{si}].description")), e));
                }
            }
        }
    }
    out
}

/// Text shown on a page: not blank, bounded, one line of printable characters (escaping keeps
/// markup harmless; control characters and line breaks would still garble what a person reads).
fn page_text(text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must be one line without control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(extra_gateway: &str, extra_server: &str) -> Document {
        let text = format!(
            r#"{{"gateways":[{{"name":"g","public_url":"https://a.example","issuer":"https://a.example",
            "allowed_scopes":["t.read","t.write"]{extra_gateway},
            "servers":[{{"name":"s","cluster":"c","path":"/s/mcp","scopes":["t.read"]{extra_server}}}]}}]}}"#
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn good_descriptions_pass() {
        let d = doc(
            r#","consent":{"remember":false,"remember_for_s":3600,"scope_descriptions":{"t.read":"Read your tickets"}}"#,
            r##","display_name":"Support","description":"Answers questions about tickets""##,
        );
        assert_eq!(check(&d), vec![]);
        assert!(!d.gateways[0].consent.remember);
    }

    #[test]
    fn each_mistake_names_its_field() {
        let d = doc(
            r#","consent":{"remember_for_s":10,"scope_descriptions":{"x.y":"Something","t.write":"two\nlines"}}"#,
            &format!(
                r#","display_name":"  ","description":"{}""#,
                "x".repeat(301)
            ),
        );
        let errs = check(&d);
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "gateways[0].consent.remember_for_s",
                "gateways[0].consent.scope_descriptions.t.write",
                "gateways[0].consent.scope_descriptions.x.y",
                "gateways[0].servers[0].display_name",
                "gateways[0].servers[0].description",
            ],
            "{errs:?}"
        );
        assert!(errs[2].1.contains("not in the gateway's allowed_scopes"));
        assert!(errs[1].1.contains("control characters"));
        assert!(errs[4].1.contains("at most 300"));
    }

    #[test]
    fn defaults_remember_for_thirty_days() {
        let d = doc("", "");
        assert!(d.gateways[0].consent.remember);
        assert_eq!(d.gateways[0].consent.remember_for_s, 30 * 86_400);
        assert_eq!(check(&d), vec![]);
    }
}
