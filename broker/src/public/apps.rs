//! The connected-apps page: a person signs in through the downstream identity provider (the
//! broker as its OpenID relying party), sees the grants they hold, and withdraws them.

use super::front::to_downstream;
use super::*;
use crate::pages::{AppsPage, GrantLine};

pub(super) const APPS: &str = md::APPS;
pub(super) const WITHDRAW: &str = md::APPS_WITHDRAW;

/// `/apps`'s query: which notice to show after a withdrawal (fixed texts, never echoed).
#[derive(Deserialize)]
pub(super) struct AppsQuery {
    done: Option<String>,
}

/// The withdrawal form.
#[derive(Deserialize)]
pub(super) struct WithdrawForm {
    grant: Option<String>,
    csrf: Option<String>,
}

/// A refusal on the person's pages, with its status.
fn refused(status: StatusCode, why: &str) -> ErrorPage {
    ErrorPage(Error::from(OAuthError::invalid_request(why)).with_status(status))
}

pub(super) async fn apps(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthQuery(q): OAuthQuery<AppsQuery>,
) -> Result<Response, ErrorPage> {
    let now = app.now();
    let Some(session) = person::session(&app, &gw, &jar, now) else {
        return start_sign_in(&app, &gw, now).await;
    };
    let subject = session.subject.clone();
    let gateway = gw.name.clone();
    let listed = app.db(move |s| s.grants_of(&gateway, &subject)).await?;
    let doc = person::doc(&app, &gw);
    let mut grants = Vec::new();
    for g in listed {
        let claimed = person::claimed_name(&app, &gw, &g.client_id).await;
        let requester = person::requester_of(&gw, &g.client_id, claimed.as_deref());
        let scopes: Vec<String> = g
            .scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        grants.push(GrantLine {
            id: g.id,
            label: requester.label(),
            requester,
            client_id: g.client_id,
            server_title: person::server_title(doc, &g.server).0,
            scopes: person::scope_lines(doc, &scopes),
            granted_at: pages::show_time(g.created_at),
            last_used: pages::show_time(g.last_used_at),
        });
    }
    let notice = match q.done.as_deref() {
        Some("withdrawn") => Some("Access withdrawn. The application can no longer use it."),
        _ => None,
    };
    let nonce = crypto::token()?;
    let action = format!("{}{}", gw.issuer, WITHDRAW);
    let html = AppsPage {
        nonce: &nonce,
        subject: &session.subject,
        notice,
        grants,
        withdraw_action: &action,
        csrf: &session.csrf,
    }
    .render()
    .map_err(Error::internal)?;
    Ok(pages::respond(html, &nonce))
}

pub(super) async fn withdraw(
    State(app): State<Arc<App>>,
    gw: Gateway,
    jar: CookieJar,
    OAuthForm(form): OAuthForm<WithdrawForm>,
) -> Result<Response, ErrorPage> {
    let (Some(grant_id), Some(csrf)) = (&form.grant, &form.csrf) else {
        return Err(OAuthError::invalid_request("withdrawal form is incomplete").into());
    };
    let session = person::session(&app, &gw, &jar, app.now())
        .ok_or_else(|| refused(StatusCode::FORBIDDEN, "sign in again to withdraw access"))?;
    if !pkce::ct_eq(session.csrf.as_bytes(), csrf.as_bytes()) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "withdrawal form failed the CSRF check",
        ));
    }
    let (gateway, subject) = (gw.name.clone(), session.subject.clone());
    let mine = app
        .db(move |s| s.grants_of(&gateway, &subject))
        .await?
        .into_iter()
        .any(|g| &g.id == grant_id);
    // Another person's grant, an unknown id and one already withdrawn get the same answer.
    if !mine {
        return Err(refused(StatusCode::NOT_FOUND, "no such access among yours"));
    }
    revoke_grant(&app, grant_id, "withdrawn by the person").await;
    tracing::info!(gateway = %gw.name, grant_id = %grant_id, "access withdrawn on the connected-apps page");
    Ok(redirect(
        StatusCode::SEE_OTHER,
        &format!("{}{}?done=withdrawn", gw.issuer, APPS),
    ))
}

/// Sends the person to the identity provider to sign in (only the gateway's extra scopes, such
/// as `openid`: no API access is asked), back through `/callback`.
async fn start_sign_in(
    app: &App,
    gw: &crate::app::GatewayRt,
    now: u64,
) -> Result<Response, ErrorPage> {
    let handle = crypto::token()?;
    let unused_csrf = crypto::token()?;
    let data = PendingData {
        client_id: String::new(),
        redirect_uri: String::new(),
        state: None,
        server: String::new(),
        scope: String::new(),
        code_challenge: String::new(),
        approved_before: String::new(),
        login: true,
    };
    let id_hash = crypto::hash(&handle);
    let row = PendingRow {
        id_hash: id_hash.clone(),
        gateway: gw.name.clone(),
        data: serde_json::to_string(&data).unwrap_or_default(),
        csrf_hash: crypto::hash(&unused_csrf),
        state_hash: None,
        secret: None,
        expires_at: now + PENDING_TTL_S,
    };
    app.db(move |s| s.put_pending(&row)).await?;
    to_downstream(app, gw, id_hash, &data, StatusCode::FOUND).await
}
