//! The user's browser, played without a screen: open the authorization URL, read the broker's
//! consent page, press "Allow", follow the redirects through the identity provider (which logs
//! the demo user in by itself) and back, and stop at the redirect to the client's own URI.
//!
//! A desktop MCP client would open a real browser and receive the redirect on a loopback
//! listener; here the redirect is taken from the `Location` header instead of being delivered.

use crate::show;
use reqwest::redirect::Policy;
use url::Url;

pub struct Browser {
    http: reqwest::Client,
    /// Consent pages shown so far (a remembered approval shows none).
    pages: std::sync::atomic::AtomicUsize,
}

/// `name="NAME" value="..."` in the consent form (values are HTML-escaped by the broker).
fn form_value(html: &str, name: &str) -> Result<String, String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .ok_or_else(|| format!("the consent page has no `{name}` field"))?
        + marker.len();
    let value = html[start..].split('"').next().unwrap_or_default();
    Ok(unescape(value))
}

fn form_action(html: &str) -> Result<String, String> {
    let marker = "<form method=\"post\" action=\"";
    let start = html.find(marker).ok_or("the consent page has no form")? + marker.len();
    Ok(unescape(
        html[start..].split('"').next().unwrap_or_default(),
    ))
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Visible text of the consent page's heading and list, for one line of output.
fn page_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let body = html.split("<body").nth(1).unwrap_or(html);
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    show::clip(&unescape(&out), 220)
}

impl Browser {
    pub fn new() -> Result<Browser, String> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .map_err(|e| format!("browser: {e}"))?;
        Ok(Browser {
            http,
            pages: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Runs the front channel for `auth_url` and returns the URL the browser was finally sent
    /// to (the client's redirect URI with `code`, `state` and `iss`).
    pub async fn authorize(&self, auth_url: &str, redirect_uri: &str) -> Result<String, String> {
        show::request("GET", auth_url, "(the browser opens the authorization URL)");
        let r = self
            .http
            .get(auth_url)
            .send()
            .await
            .map_err(|e| format!("GET {auth_url}: {e}"))?;
        let status = r.status().as_u16();
        let (mut r, mut here) = if (300..400).contains(&status) {
            // The person approved this client for this server and these scopes before: the
            // broker remembers it and goes straight on to the identity provider.
            show::response(
                status,
                "no consent page: the broker remembers this approval",
            );
            let here = Url::parse(auth_url).map_err(|e| format!("{auth_url}: {e}"))?;
            (r, here)
        } else {
            let html = r.text().await.unwrap_or_default();
            if status != 200 {
                return Err(format!(
                    "authorization endpoint answered {status}: {}",
                    show::clip(&html, 300)
                ));
            }
            self.approve(auth_url, &html).await?
        };
        for _ in 0..15 {
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let Some(location) = location else {
                let body = r.text().await.unwrap_or_default();
                return Err(format!(
                    "expected a redirect, got {status}: {}",
                    show::clip(&body, 300)
                ));
            };
            let next = here
                .join(&location)
                .map_err(|e| format!("bad Location {location}: {e}"))?;
            show::response(
                status,
                &format!("Location: {}", show::clip(next.as_str(), 160)),
            );
            if next.as_str().starts_with(redirect_uri) {
                return Ok(next.to_string());
            }
            show::request("GET", &show::clip(next.as_str(), 160), "");
            r = self
                .http
                .get(next.as_str())
                .send()
                .await
                .map_err(|e| format!("GET {next}: {e}"))?;
            here = next;
        }
        Err("too many redirects".into())
    }

    /// How many consent pages the person has been shown.
    pub fn consent_pages(&self) -> usize {
        self.pages.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens the broker's connected-apps page, signing in through the identity provider (which
    /// logs the demo user in by itself) when there is no session yet; returns the page.
    pub async fn connected_apps(&self, issuer: &str) -> Result<String, String> {
        let mut here = Url::parse(&format!("{issuer}/apps")).map_err(|e| e.to_string())?;
        show::request(
            "GET",
            here.as_str(),
            "(the person opens their connected apps)",
        );
        for _ in 0..15 {
            let r = self
                .http
                .get(here.as_str())
                .send()
                .await
                .map_err(|e| format!("GET {here}: {e}"))?;
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match location {
                Some(l) => {
                    here = here
                        .join(&l)
                        .map_err(|e| format!("bad Location {l}: {e}"))?;
                    show::response(
                        status,
                        &format!("Location: {}", show::clip(here.as_str(), 160)),
                    );
                }
                None if status == 200 => {
                    let html = r.text().await.unwrap_or_default();
                    show::response(200, &format!("connected apps: {}", page_text(&html)));
                    return Ok(html);
                }
                None => return Err(format!("connected apps answered {status}")),
            }
        }
        Err("too many redirects".into())
    }

    /// Presses a grant's Withdraw button on the connected-apps page; returns the status.
    pub async fn withdraw(&self, page: &str, grant: &str) -> Result<u16, String> {
        let action = form_action(page)?;
        let csrf = form_value(page, "csrf")?;
        show::request(
            "POST",
            &action,
            &format!("grant={grant} (the person clicks Withdraw)"),
        );
        let r = self
            .http
            .post(&action)
            .form(&[("grant", grant), ("csrf", csrf.as_str())])
            .send()
            .await
            .map_err(|e| format!("POST {action}: {e}"))?;
        let status = r.status().as_u16();
        show::response(status, "");
        Ok(status)
    }

    /// Shows the consent page and presses Allow; returns the answer and where it came from.
    async fn approve(
        &self,
        auth_url: &str,
        html: &str,
    ) -> Result<(reqwest::Response, Url), String> {
        self.pages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        show::response(200, &format!("consent page: {}", page_text(html)));
        let action_rel = form_action(html)?;
        let action = Url::parse(auth_url)
            .and_then(|base| base.join(&action_rel))
            .map_err(|e| format!("consent form action {action_rel}: {e}"))?;
        let form = [
            ("request", form_value(html, "request")?),
            ("csrf", form_value(html, "csrf")?),
            ("decision", "approve".to_string()),
        ];
        show::request(
            "POST",
            action.as_str(),
            "decision=approve (the user clicks Allow)",
        );
        let r = self
            .http
            .post(action.as_str())
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("POST {action}: {e}"))?;
        Ok((r, action))
    }
}
