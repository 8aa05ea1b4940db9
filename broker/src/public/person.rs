//! What the broker keeps in a person's browser (remembered approvals, the connected-apps session)
//! and how it presents clients, servers and scopes to them.

use super::*;
use crate::clients::Client;
use crate::pages::{Requester, ScopeLine};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use scopegate_core::config::GatewayDoc;
use scopegate_core::oauth::consent::Remembered;

/// A connected-apps session lasts this long.
pub(super) const SESSION_TTL_S: u64 = 3600;

/// The gateway's document section (consent settings, servers' display names).
pub(super) fn doc<'a>(app: &'a App, gw: &crate::app::GatewayRt) -> Option<&'a GatewayDoc> {
    app.policy.document.gateways.get(gw.id)
}

/// A cookie name for this gateway: `__Host-` where the issuer is https (Secure, `Path=/`, no
/// `Domain`: no other host or path can set or read it), a plain name on plain-http loopback labs.
fn cookie_name(gw: &crate::app::GatewayRt, what: &str) -> String {
    if gw.issuer.starts_with("https://") {
        format!("__Host-scopegate-{what}-{}", gw.name)
    } else {
        format!("scopegate-{what}-{}", gw.name)
    }
}

/// A sealed, HttpOnly, `SameSite=Lax` cookie: Lax because both arrive on top-level navigations
/// that start on another site (the client's `/authorize` link, the identity provider's redirect).
fn sealed_cookie(
    app: &App,
    gw: &crate::app::GatewayRt,
    what: &str,
    plain: &[u8],
    max_age: u64,
) -> Result<Cookie<'static>, String> {
    let sealed = app.sealer.seal(&format!("{what}:{}", gw.name), plain)?;
    Ok(
        Cookie::build((cookie_name(gw, what), URL_SAFE_NO_PAD.encode(sealed)))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(gw.issuer.starts_with("https://"))
            .max_age(cookie::time::Duration::seconds(
                max_age.min(i64::MAX as u64) as i64,
            ))
            .build(),
    )
}

/// The cookie's content if it is ours, for this gateway and this purpose (sealed with its name).
fn open_cookie(
    app: &App,
    gw: &crate::app::GatewayRt,
    jar: &CookieJar,
    what: &str,
) -> Option<Vec<u8>> {
    let c = jar.get(&cookie_name(gw, what))?;
    let sealed = URL_SAFE_NO_PAD.decode(c.value()).ok()?;
    app.sealer
        .open(&format!("{what}:{}", gw.name), &sealed)
        .ok()
}

/// The approvals this browser remembers for the gateway (unreadable or foreign: none).
pub(super) fn remembered(
    app: &App,
    gw: &crate::app::GatewayRt,
    jar: &CookieJar,
) -> Vec<Remembered> {
    open_cookie(app, gw, jar, "consent")
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The cookie that remembers `list`.
pub(super) fn remember_cookie(
    app: &App,
    gw: &crate::app::GatewayRt,
    list: &[Remembered],
    max_age: u64,
) -> Result<Cookie<'static>, String> {
    let plain = serde_json::to_vec(list).map_err(|e| e.to_string())?;
    sealed_cookie(app, gw, "consent", &plain, max_age)
}

/// The remembered approvals for `client_id` on `server` whose grants are still active: a
/// withdrawn (or otherwise revoked) grant takes its approval with it.
pub(super) async fn still_granted(
    app: &App,
    list: Vec<Remembered>,
    client_id: &str,
    server: &str,
) -> Result<Vec<Remembered>, crate::store::StoreError> {
    let mut out = Vec::new();
    for r in list {
        if r.client_id != client_id || r.server != server {
            continue;
        }
        let id = r.grant_id.clone();
        let g = app.db(move |s| s.grant(&id)).await?;
        if g.is_some_and(|g| {
            g.status == GrantStatus::Active && g.client_id == r.client_id && g.server == r.server
        }) {
            out.push(r);
        }
    }
    Ok(out)
}

/// A signed-in person on the connected-apps page.
#[derive(Serialize, Deserialize)]
pub(super) struct Session {
    pub subject: String,
    pub expires_at: u64,
    /// Withdrawal forms carry it; compared in constant time.
    pub csrf: String,
}

pub(super) fn session(
    app: &App,
    gw: &crate::app::GatewayRt,
    jar: &CookieJar,
    now: u64,
) -> Option<Session> {
    open_cookie(app, gw, jar, "session")
        .and_then(|b| serde_json::from_slice::<Session>(&b).ok())
        .filter(|s| s.expires_at > now)
}

pub(super) fn session_cookie(
    app: &App,
    gw: &crate::app::GatewayRt,
    s: &Session,
) -> Result<Cookie<'static>, String> {
    let plain = serde_json::to_vec(s).map_err(|e| e.to_string())?;
    sealed_cookie(app, gw, "session", &plain, SESSION_TTL_S)
}

/// Who a client is, as far as the broker can vouch: the operator's name for a preregistered
/// client, the metadata URL's host for a CIMD client, an unverified claim for a DCR client.
pub(super) fn requester(gw: &crate::app::GatewayRt, client: &Client) -> Requester {
    requester_of(gw, &client.id, client.meta.client_name.as_deref())
}

pub(super) fn requester_of(
    gw: &crate::app::GatewayRt,
    client_id: &str,
    claimed: Option<&str>,
) -> Requester {
    if gw.prereg.contains_key(client_id) {
        return Requester::Operator {
            name: claimed.unwrap_or(client_id).to_string(),
        };
    }
    if scopegate_core::oauth::cimd::is_document_url(client_id) {
        let host = scopegate_core::oauth::redirect::display_host(client_id);
        return Requester::Cimd {
            host,
            name: claimed.map(str::to_string),
        };
    }
    Requester::SelfRegistered {
        name: claimed.map(str::to_string),
    }
}

/// Whether the operator asks every time for this client (or for everyone on this gateway).
pub(super) fn may_remember(doc: Option<&GatewayDoc>, client_id: &str) -> bool {
    doc.is_some_and(|d| {
        d.consent.remember
            && !d
                .clients
                .preregistered
                .iter()
                .any(|c| c.client_id == client_id && c.always_ask)
    })
}

/// Scopes in the operator's words where the document has them.
pub(super) fn scope_lines(doc: Option<&GatewayDoc>, scopes: &[String]) -> Vec<ScopeLine> {
    scopes
        .iter()
        .map(|s| ScopeLine {
            name: s.clone(),
            description: doc.and_then(|d| d.consent.scope_descriptions.get(s).cloned()),
        })
        .collect()
}

/// A server's display name and description (default: its name, none).
pub(super) fn server_title(doc: Option<&GatewayDoc>, server: &str) -> (String, Option<String>) {
    let s = doc.and_then(|d| d.servers.iter().find(|s| s.name == server));
    (
        s.and_then(|s| s.display_name.clone())
            .unwrap_or_else(|| server.to_string()),
        s.and_then(|s| s.description.clone()),
    )
}

/// The name a client gave itself, where the broker has one without fetching anything: the
/// operator's for a preregistered client, the registration's for a DCR client (CIMD: none here).
pub(super) async fn claimed_name(
    app: &App,
    gw: &crate::app::GatewayRt,
    client_id: &str,
) -> Option<String> {
    if let Some(p) = gw.prereg.get(client_id) {
        return p.meta.client_name.clone();
    }
    if scopegate_core::oauth::cimd::is_document_url(client_id) {
        return None;
    }
    let id = client_id.to_string();
    let row = app.db(move |s| s.client(&id)).await.ok()??;
    serde_json::from_str::<scopegate_core::oauth::client::ClientMetadata>(&row.metadata)
        .ok()?
        .client_name
}
