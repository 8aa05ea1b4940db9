//! An MCP client's side of OAuth against the broker, with a cookie-keeping user agent that
//! clicks "Allow" and follows redirects through the downstream server's automatic login.

use reqwest::blocking::{Client, Response};
use reqwest::redirect::Policy;
use reqwest::Url;
use serde_json::{json, Value};
use std::collections::HashMap;

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let mut b = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    let verifier = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let challenge = scopegate_core::oauth::pkce::s256(&verifier).unwrap();
    (verifier, challenge)
}

/// Status, headers and body of one exchange.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Got {
    fn read(r: Response) -> Got {
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Got {
            status,
            location,
            body: r.text().unwrap_or_default(),
        }
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// The query parameters of a URL.
pub fn query(url: &str) -> HashMap<String, String> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// A browser: keeps cookies, never follows redirects by itself.
pub struct Agent {
    pub http: Client,
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            http: Client::builder()
                .cookie_store(true)
                .redirect(Policy::none())
                .build()
                .unwrap(),
        }
    }
}

/// What one authorization needs from the client.
#[derive(Clone)]
pub struct AuthRequest {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub challenge: String,
    pub method: String,
    pub state: String,
}

impl AuthRequest {
    pub fn new(
        issuer: &str,
        client_id: &str,
        redirect_uri: &str,
        resource: &str,
        challenge: &str,
    ) -> AuthRequest {
        AuthRequest {
            issuer: issuer.into(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            resource: Some(resource.into()),
            scope: None,
            challenge: challenge.into(),
            method: "S256".into(),
            state: "st-123".into(),
        }
    }

    pub fn url(&self) -> String {
        let mut u = Url::parse(&format!("{}/authorize", self.issuer)).unwrap();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.client_id)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("code_challenge", &self.challenge)
                .append_pair("code_challenge_method", &self.method)
                .append_pair("state", &self.state);
            if let Some(r) = &self.resource {
                q.append_pair("resource", r);
            }
            if let Some(s) = &self.scope {
                q.append_pair("scope", s);
            }
        }
        u.to_string()
    }
}

/// The value of `<input name="NAME" value="...">` in the consent page.
pub fn form_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in consent page:\n{html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

impl Agent {
    pub fn get(&self, url: &str) -> Got {
        Got::read(self.http.get(url).send().expect("GET"))
    }

    /// `/authorize`, expecting the consent page.
    pub fn consent_page(&self, req: &AuthRequest) -> String {
        let g = self.get(&req.url());
        assert_eq!(
            g.status, 200,
            "authorize: {} {:?} {}",
            g.status, g.location, g.body
        );
        g.body
    }

    /// Submits the consent form with `decision` and follows redirects until one targets the
    /// client's redirect URI; returns that URI's query.
    pub fn decide(&self, req: &AuthRequest, page: &str, decision: &str) -> HashMap<String, String> {
        let action = form_value_action(page);
        let r = self
            .http
            .post(&action)
            .form(&[
                ("request", form_value(page, "request")),
                ("csrf", form_value(page, "csrf")),
                ("decision", decision.to_string()),
            ])
            .send()
            .unwrap();
        self.follow(req, Got::read(r), Url::parse(&action).unwrap())
    }

    /// Follows redirects from `got` (an answer to `here`) until one targets the client's
    /// redirect URI; returns that URI's query.
    fn follow(&self, req: &AuthRequest, mut got: Got, mut here: Url) -> HashMap<String, String> {
        for _ in 0..12 {
            let loc = got
                .location
                .clone()
                .unwrap_or_else(|| panic!("no redirect: {} {}", got.status, got.body));
            let next = here.join(&loc).unwrap();
            if next.as_str().starts_with(&req.redirect_uri) {
                return query(next.as_str());
            }
            here = next.clone();
            got = self.get(next.as_str());
        }
        panic!("too many redirects");
    }

    /// The whole front channel: authorize, allow, downstream login, callback; returns the code.
    /// A consent the broker remembers (same client, server, and the same or fewer scopes, in
    /// this agent's cookies) skips the page.
    pub fn authorize(&self, req: &AuthRequest) -> String {
        let g = self.get(&req.url());
        let q = if g.status == 200 {
            self.decide(req, &g.body, "approve")
        } else {
            assert_eq!(
                g.status, 302,
                "authorize: {} {:?} {}",
                g.status, g.location, g.body
            );
            self.follow(req, g, Url::parse(&req.url()).unwrap())
        };
        assert_eq!(q.get("state"), Some(&req.state), "{q:?}");
        assert_eq!(q.get("iss"), Some(&req.issuer), "{q:?}");
        q.get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code: {q:?}"))
    }
}

fn form_value_action(html: &str) -> String {
    let marker = "<form method=\"post\" action=\"";
    let start = html.find(marker).expect("consent form") + marker.len();
    html[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&")
}

/// POSTs a form to `/token` (or anywhere), optionally with Basic credentials.
pub fn post_form(url: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> Got {
    let mut r = Client::new().post(url).form(form);
    if let Some((id, secret)) = basic {
        r = r.basic_auth(id, Some(secret));
    }
    Got::read(r.send().unwrap())
}

/// Registers a public client by DCR with both grant types.
pub fn register(issuer: &str, redirect_uri: &str) -> String {
    let r = Client::new()
        .post(format!("{issuer}/register"))
        .json(&json!({
            "client_name": "Test MCP Client",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native"
        }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().unwrap();
    v["client_id"].as_str().unwrap().to_string()
}

/// A new public client's first grant for `resource`, as a client gets one: registration, PKCE,
/// the person's consent, the code redeemed. Returns the client id and the token response.
pub fn first_grant(issuer: &str, redirect_uri: &str, resource: &str) -> (String, Value) {
    let client = register(issuer, redirect_uri);
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(issuer, &client, redirect_uri, resource, &challenge);
    let code = Agent::default().authorize(&req);
    let t = redeem(issuer, &client, &code, redirect_uri, &verifier, resource).json();
    (client, t)
}

/// `authorization_code` at `/token` for a public client.
pub fn redeem(
    issuer: &str,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    resource: &str,
) -> Got {
    post_form(
        &format!("{issuer}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
            ("resource", resource),
        ],
        None,
    )
}

pub fn refresh(issuer: &str, client_id: &str, refresh_token: &str, resource: &str) -> Got {
    post_form(
        &format!("{issuer}/token"),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", client_id),
            ("refresh_token", refresh_token),
            ("resource", resource),
        ],
        None,
    )
}
