//! The pages a person sees (consent, connected applications): askama templates that escape by
//! default, served with a nonce-based Content-Security-Policy, no script and no framing.

use askama::Template;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

/// Who is asking, as far as the broker can vouch for it.
#[derive(Clone, Debug, PartialEq)]
pub enum Requester {
    /// A preregistered client: the operator configured its name.
    Operator { name: String },
    /// A Client ID Metadata Document client: shown by the host its metadata was fetched from,
    /// which is the one thing the fetch proved; the name inside the document is its own claim.
    Cimd { host: String, name: Option<String> },
    /// A dynamically registered client: its name, if any, is its own unchecked claim.
    SelfRegistered { name: Option<String> },
}

impl Requester {
    /// A short label for the connected-apps list and accessible names.
    pub fn label(&self) -> String {
        match self {
            Requester::Operator { name } => name.clone(),
            Requester::Cimd { host, .. } => host.clone(),
            Requester::SelfRegistered { name: Some(n) } => n.clone(),
            Requester::SelfRegistered { name: None } => "An unnamed application".to_string(),
        }
    }

    /// What vouches for the label, in a few words.
    pub fn badge(&self) -> &'static str {
        match self {
            Requester::Operator { .. } => "configured by your administrator",
            Requester::Cimd { .. } => "verified: described by this host",
            Requester::SelfRegistered { .. } => "unverified: a name the application gave itself",
        }
    }

    pub fn is_verified(&self) -> bool {
        !matches!(self, Requester::SelfRegistered { .. })
    }
}

/// A scope as the person reads it: the operator's words when there are some.
#[derive(Clone, Debug)]
pub struct ScopeLine {
    pub name: String,
    pub description: Option<String>,
}

/// The consent page's content.
#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub nonce: &'a str,
    pub requester: Requester,
    pub client_id: &'a str,
    pub redirect_host: &'a str,
    /// The redirect goes to the person's own machine (a loopback address).
    pub redirect_local: bool,
    pub server_name: &'a str,
    pub server_title: &'a str,
    pub server_description: Option<&'a str>,
    /// What the person is asked for now (on a step-up: only what is new).
    pub asked: Vec<ScopeLine>,
    /// What this client already holds on this server with the person's earlier consent.
    pub kept: Vec<ScopeLine>,
    pub action: &'a str,
    pub request: &'a str,
    pub csrf: &'a str,
    pub apps_url: &'a str,
}

/// One grant on the connected-apps page.
#[derive(Clone, Debug)]
pub struct GrantLine {
    pub id: String,
    pub requester: Requester,
    pub label: String,
    pub client_id: String,
    pub server_title: String,
    pub scopes: Vec<ScopeLine>,
    pub granted_at: String,
    pub last_used: String,
}

/// The connected-apps page: the signed-in person's grants, each with a withdraw button.
#[derive(Template)]
#[template(path = "apps.html")]
pub struct AppsPage<'a> {
    pub nonce: &'a str,
    pub subject: &'a str,
    pub notice: Option<&'a str>,
    pub grants: Vec<GrantLine>,
    pub withdraw_action: &'a str,
    pub csrf: &'a str,
}

/// A rendered page with the headers every person-facing page carries: the style allowed by its
/// nonce only (no script at all), no framing, no caching, no referrer.
pub fn respond(html: String, nonce: &str) -> Response {
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; frame-ancestors 'none'"
    );
    let mut r = Html(html).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// A UNIX time as the pages show it (UTC, to the minute); `never` for 0.
pub fn show_time(unix: u64) -> String {
    if unix == 0 {
        return "never".to_string();
    }
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(name: &str, d: Option<&str>) -> ScopeLine {
        ScopeLine {
            name: name.into(),
            description: d.map(str::to_string),
        }
    }

    fn page(requester: Requester) -> ConsentPage<'static> {
        ConsentPage {
            nonce: "n0nce",
            requester,
            client_id: "abc\"<x>",
            redirect_host: "127.0.0.1:9000",
            redirect_local: true,
            server_name: "support-assistant",
            server_title: "Support <assistant>",
            server_description: Some("Reads tickets & accounts"),
            asked: vec![
                line("tickets.read", Some("Read your <tickets>")),
                line("x.y", None),
            ],
            kept: vec![],
            action: "https://mcp.example.com/consent",
            request: "r\"",
            csrf: "c'",
            apps_url: "https://mcp.example.com/apps",
        }
    }

    #[test]
    fn a_self_registered_name_is_marked_unverified_and_everything_is_escaped() {
        let html = page(Requester::SelfRegistered {
            name: Some("Claude Desktop<script>".into()),
        })
        .render()
        .unwrap();
        assert!(html.contains("Unverified application"));
        assert!(
            html.contains("Claude Desktop&#60;script&#62;")
                || html.contains("Claude Desktop&lt;script&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script"));
        assert!(!html.contains("(configured by your administrator)"));
        assert!(html.contains("id=\"redirect-local\""));
        assert!(
            html.contains("Read your &#60;tickets&#62;")
                || html.contains("Read your &lt;tickets&gt;")
        );
        assert!(html.contains("<code>x.y</code>"));
        assert!(!html.contains("value=\"r\"\""));
        assert!(html.contains("nonce=\"n0nce\""));
        assert!(!html.contains("id=\"scopes-kept\""));
    }

    #[test]
    fn operator_and_cimd_clients_are_shown_by_what_vouches_for_them() {
        let html = page(Requester::Operator {
            name: "Acme IDE".into(),
        })
        .render()
        .unwrap();
        assert!(html.contains("Acme IDE"));
        assert!(html.contains("configured by your administrator"));
        assert!(!html.contains("Unverified"));
        let html = page(Requester::Cimd {
            host: "app.example.com".into(),
            name: Some("Claude Desktop".into()),
        })
        .render()
        .unwrap();
        assert!(html.contains("<strong id=\"client-name\">app.example.com</strong>"));
        assert!(html.contains("It calls itself"));
        assert!(!html.contains("Unverified"));
    }

    #[test]
    fn a_step_up_shows_what_is_new_apart_from_what_is_kept() {
        let mut p = page(Requester::SelfRegistered { name: None });
        p.kept = vec![line("accounts.read", None)];
        let html = p.render().unwrap();
        assert!(html.contains("What more it asks to do"));
        let asked = html.split("id=\"scopes\"").nth(1).unwrap();
        let (asked, kept) = asked.split_once("id=\"scopes-kept\"").unwrap();
        assert!(asked.contains("tickets.read") && !asked.contains("accounts.read"));
        assert!(kept.contains("accounts.read"));
    }

    #[test]
    fn pages_forbid_script_and_framing() {
        let r = respond("<p>x</p>".into(), "abc");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("default-src 'none'"));
        assert!(csp.contains("style-src 'nonce-abc'"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn times() {
        assert_eq!(show_time(0), "never");
        assert_eq!(show_time(1_796_000_000), "2026-11-30 00:53 UTC");
        assert_eq!(show_time(951_782_400), "2000-02-29 00:00 UTC");
    }
}
