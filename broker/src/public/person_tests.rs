//! Handler tests of the person's side: what the consent page says about who asks, remembered
//! consent and step-ups, exact redirect URIs, and every refusal of the connected-apps page.

use super::tests::{app_state, app_state_with, body_json, get, post, send, ISSUER};
use super::*;
use crate::store::GrantStatus;
use scopegate_tests::broker::{PREREG, PREREG_REDIRECT};
use scopegate_tests::stack::{OPS, SUPPORT};

/// The wall clock, as the test app's own clock reads it.
fn now() -> u64 {
    use crate::clock::Clock;
    crate::clock::SystemClock.now()
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const DCR_REDIRECT: &str = "http://127.0.0.1:7/callback";

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn register(app: &Arc<App>, name: &str) -> String {
    let doc = json!({"client_name": name, "redirect_uris": [DCR_REDIRECT], "token_endpoint_auth_method": "none"});
    let (s, _, b) = send(
        router(Arc::clone(app)),
        post("/register", "application/json", &doc.to_string()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    body_json(&b)["client_id"].as_str().unwrap().to_string()
}

fn authorize_uri(client: &str, redirect: &str, server_path: &str, scope: &str) -> String {
    format!(
        "/authorize?client_id={}&response_type=code&code_challenge={CHALLENGE}&code_challenge_method=S256&scope={}&resource={}&redirect_uri={}&state=s",
        enc(client),
        enc(scope),
        enc(&format!("{ISSUER}{server_path}")),
        enc(redirect)
    )
}

fn with_cookie(mut req: Request<axum::body::Body>, c: &Cookie) -> Request<axum::body::Body> {
    req.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{}={}", c.name(), c.value())).unwrap(),
    );
    req
}

use axum::http::Request;

fn gw(app: &App) -> &crate::app::GatewayRt {
    &app.gateways[0]
}

/// A grant as `/callback` stores it, for `subject`.
fn seed_grant(app: &App, id: &str, client: &str, server: &str, scope: &str, subject: &str) {
    let g = GrantRow {
        id: id.into(),
        gateway: "saas".into(),
        server: server.into(),
        client_id: client.into(),
        subject: subject.into(),
        scope: scope.into(),
        status: GrantStatus::Active,
        downstream: vec![0],
        downstream_expires_at: now() + 600,
        version: 0,
        created_at: now(),
    };
    let code = CodeRow {
        code_hash: format!("code-{id}"),
        grant_id: id.into(),
        client_id: client.into(),
        redirect_uri: DCR_REDIRECT.into(),
        code_challenge: CHALLENGE.into(),
        resource: String::new(),
        expires_at: now() + 60,
        used: true,
    };
    app.store.create_grant(&g, &code).unwrap();
}

fn remembered_cookie(
    app: &App,
    client: &str,
    server: &str,
    scope: &str,
    grant: &str,
) -> Cookie<'static> {
    let r = Remembered {
        client_id: client.into(),
        server: server.into(),
        scope: scope.into(),
        grant_id: grant.into(),
        expires_at: now() + 600,
    };
    person::remember_cookie(app, gw(app), &[r], 600).unwrap()
}

fn session_cookie(app: &App, subject: &str, csrf: &str) -> Cookie<'static> {
    let s = person::Session {
        subject: subject.into(),
        expires_at: now() + 600,
        csrf: csrf.into(),
    };
    person::session_cookie(app, gw(app), &s).unwrap()
}

fn page(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[tokio::test]
async fn a_self_registered_name_is_shown_as_the_apps_unverified_claim() {
    let app = app_state();
    let client = register(&app, "Claude Desktop").await;
    let uri = authorize_uri(&client, DCR_REDIRECT, SUPPORT, "tickets.read accounts.read");
    let (s, h, b) = send(router(Arc::clone(&app)), get(&uri)).await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    let html = page(&b);
    assert!(html.contains("Unverified application"), "{html}");
    assert!(html.contains("“<span id=\"client-name\">Claude Desktop</span>”"));
    assert!(!html.contains("configured by your administrator"));
    assert!(html.contains("<strong id=\"redirect-host\">127.0.0.1:7</strong>"));
    assert!(
        html.contains("id=\"redirect-local\""),
        "a loopback redirect is a local application"
    );
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'nonce-"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
}

#[tokio::test]
async fn a_preregistered_client_is_shown_by_the_operators_name() {
    let app = app_state();
    let uri = authorize_uri(PREREG, PREREG_REDIRECT, SUPPORT, "tickets.read");
    let (s, _, b) = send(router(app), get(&uri)).await;
    assert_eq!(s, StatusCode::OK);
    let html = page(&b);
    assert!(html.contains("<strong id=\"client-name\">Prereg App</strong>"));
    assert!(html.contains("configured by your administrator"));
    assert!(!html.contains("Unverified"));
}

#[tokio::test]
async fn redirect_uris_are_matched_as_sent() {
    let app = app_state();
    let client = register(&app, "x").await;
    for variant in [
        "http://127.0.0.1:7/x/../callback",
        "http://127.0.0.1:7/x/%2e%2e/callback",
        "http://127.0.0.1:7/Callback",
        "http://127.0.0.1:7/callback/",
        "http://127.0.0.1:7/callback?x=1",
    ] {
        let uri = authorize_uri(&client, variant, SUPPORT, "tickets.read");
        let (s, h, b) = send(router(Arc::clone(&app)), get(&uri)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{variant}: {b:?}");
        assert!(
            h.get(header::LOCATION).is_none(),
            "{variant} must not be redirected to"
        );
        assert_eq!(body_json(&b)["error"], "invalid_request", "{variant}");
    }
    // The loopback port alone is free (RFC 8252 §7.3).
    let uri = authorize_uri(
        &client,
        "http://127.0.0.1:61234/callback",
        SUPPORT,
        "tickets.read",
    );
    let (s, _, _) = send(router(app), get(&uri)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn a_remembered_approval_skips_the_page_until_its_grant_is_withdrawn() {
    let app = app_state();
    let client = register(&app, "x").await;
    seed_grant(
        &app,
        "g1",
        &client,
        "support-assistant",
        "tickets.read accounts.read",
        "alice",
    );
    let cookie = remembered_cookie(
        &app,
        &client,
        "support-assistant",
        "tickets.read accounts.read",
        "g1",
    );
    let uri = authorize_uri(&client, DCR_REDIRECT, SUPPORT, "tickets.read");
    let (s, h, b) = send(router(Arc::clone(&app)), with_cookie(get(&uri), &cookie)).await;
    // No page: straight to the downstream leg, which this test's downstream cannot serve.
    assert_eq!(s, StatusCode::FOUND, "{}", page(&b));
    let location = h[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with(DCR_REDIRECT), "{location}");
    assert!(
        location.contains("error=temporarily_unavailable"),
        "{location}"
    );
    // Framed (Fetch Metadata says so), the page is shown, and it refuses to be framed.
    let mut framed = with_cookie(get(&uri), &cookie);
    framed
        .headers_mut()
        .insert("sec-fetch-dest", HeaderValue::from_static("iframe"));
    let (s, h, _) = send(router(Arc::clone(&app)), framed).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    let mut top = with_cookie(get(&uri), &cookie);
    top.headers_mut()
        .insert("sec-fetch-dest", HeaderValue::from_static("document"));
    let (s, _, _) = send(router(Arc::clone(&app)), top).await;
    assert_eq!(s, StatusCode::FOUND);
    // `prompt=consent` asks anyway.
    let (s, _, _) = send(
        router(Arc::clone(&app)),
        with_cookie(get(&format!("{uri}&prompt=consent")), &cookie),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Another client, or the same one on another server, is asked.
    let other = register(&app, "y").await;
    let (s, _, _) = send(
        router(Arc::clone(&app)),
        with_cookie(
            get(&authorize_uri(
                &other,
                DCR_REDIRECT,
                SUPPORT,
                "tickets.read",
            )),
            &cookie,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = send(
        router(Arc::clone(&app)),
        with_cookie(
            get(&authorize_uri(&client, DCR_REDIRECT, OPS, "admin.read")),
            &cookie,
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Withdrawn: asked again.
    app.store.revoke_family("g1", now(), now() + 60).unwrap();
    let (s, _, b) = send(router(app), with_cookie(get(&uri), &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page(&b).contains("What it will be allowed to do"));
}

#[tokio::test]
async fn a_forged_or_foreign_consent_cookie_is_ignored() {
    let app = app_state();
    let client = register(&app, "x").await;
    seed_grant(
        &app,
        "g1",
        &client,
        "support-assistant",
        "tickets.read",
        "alice",
    );
    let cookie = remembered_cookie(&app, &client, "support-assistant", "tickets.read", "g1");
    let uri = authorize_uri(&client, DCR_REDIRECT, SUPPORT, "tickets.read");
    // Not sealed by us, or sealed for another purpose (a session's value under the consent name).
    let forged = Cookie::new(cookie.name().to_string(), "AAAA".to_string());
    let foreign = Cookie::new(
        cookie.name().to_string(),
        session_cookie(&app, "alice", "c").value().to_string(),
    );
    for c in [&forged, &foreign] {
        let (s, _, _) = send(router(Arc::clone(&app)), with_cookie(get(&uri), c)).await;
        assert_eq!(s, StatusCode::OK, "the page is shown");
    }
}

#[tokio::test]
async fn an_operator_can_ask_every_time() {
    // Per gateway.
    let app = app_state_with(|d| d["gateways"][0]["consent"] = json!({"remember": false}));
    let client = register(&app, "x").await;
    seed_grant(
        &app,
        "g1",
        &client,
        "support-assistant",
        "tickets.read",
        "alice",
    );
    let cookie = remembered_cookie(&app, &client, "support-assistant", "tickets.read", "g1");
    let uri = authorize_uri(&client, DCR_REDIRECT, SUPPORT, "tickets.read");
    let (s, _, _) = send(router(Arc::clone(&app)), with_cookie(get(&uri), &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    // Per preregistered client.
    let app = app_state_with(|d| {
        d["gateways"][0]["clients"]["preregistered"][0]["always_ask"] = json!(true)
    });
    seed_grant(
        &app,
        "g2",
        PREREG,
        "support-assistant",
        "tickets.read",
        "alice",
    );
    let cookie = remembered_cookie(&app, PREREG, "support-assistant", "tickets.read", "g2");
    let uri = authorize_uri(PREREG, PREREG_REDIRECT, SUPPORT, "tickets.read");
    let (s, _, _) = send(router(Arc::clone(&app)), with_cookie(get(&uri), &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    // The same cookie without always_ask skips the page.
    let app2 = app_state();
    seed_grant(
        &app2,
        "g2",
        PREREG,
        "support-assistant",
        "tickets.read",
        "alice",
    );
    let cookie = remembered_cookie(&app2, PREREG, "support-assistant", "tickets.read", "g2");
    let (s, _, _) = send(router(app2), with_cookie(get(&uri), &cookie)).await;
    assert_eq!(s, StatusCode::FOUND);
}

#[tokio::test]
async fn a_step_up_asks_only_for_the_new_scope() {
    let app = app_state();
    let client = register(&app, "x").await;
    seed_grant(&app, "g1", &client, "ops-console", "admin.read", "alice");
    let cookie = remembered_cookie(&app, &client, "ops-console", "admin.read", "g1");
    let uri = authorize_uri(&client, DCR_REDIRECT, OPS, "tickets.write admin.read");
    let (s, _, b) = send(router(app), with_cookie(get(&uri), &cookie)).await;
    assert_eq!(s, StatusCode::OK);
    let html = page(&b);
    assert!(html.contains("What more it asks to do"), "{html}");
    let (asked, kept) = html.split_once("id=\"scopes-kept\"").unwrap();
    let asked = asked.split_once("id=\"scopes\"").unwrap().1;
    assert!(
        asked.contains("data-scope=\"tickets.write\"")
            && !asked.contains("data-scope=\"admin.read\"")
    );
    assert!(kept.contains("data-scope=\"admin.read\""));
}

#[tokio::test]
async fn the_apps_page_signs_in_first_and_lists_only_the_persons_grants() {
    let app = app_state();
    // No session: off to the identity provider (unreachable here: the page says so, nothing listed).
    let (s, _, b) = send(router(Arc::clone(&app)), get("/apps")).await;
    assert_ne!(s, StatusCode::OK);
    assert!(!page(&b).contains("Connected applications"));
    seed_grant(
        &app,
        "mine-1",
        PREREG,
        "support-assistant",
        "tickets.read",
        "alice",
    );
    seed_grant(&app, "mine-2", PREREG, "ops-console", "admin.read", "alice");
    seed_grant(
        &app,
        "theirs",
        PREREG,
        "support-assistant",
        "tickets.read",
        "bob",
    );
    let (s, h, b) = send(
        router(Arc::clone(&app)),
        with_cookie(get("/apps"), &session_cookie(&app, "alice", "c")),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let html = page(&b);
    assert!(html.contains("data-grant=\"mine-1\"") && html.contains("data-grant=\"mine-2\""));
    assert!(
        !html.contains("theirs"),
        "another person's grant is never shown"
    );
    assert!(html.contains("Prereg App"));
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    // A session sealed for another purpose (the consent cookie's key) is not a session.
    let fake = Cookie::new(
        session_cookie(&app, "alice", "c").name().to_string(),
        remembered_cookie(&app, "c", "s", "x", "g")
            .value()
            .to_string(),
    );
    let (s, _, _) = send(router(app), with_cookie(get("/apps"), &fake)).await;
    assert_ne!(s, StatusCode::OK);
}

#[tokio::test]
async fn withdrawal_refusals_and_a_withdrawal() {
    let app = app_state();
    seed_grant(
        &app,
        "mine",
        PREREG,
        "support-assistant",
        "tickets.read",
        "alice",
    );
    seed_grant(
        &app,
        "theirs",
        PREREG,
        "support-assistant",
        "tickets.read",
        "bob",
    );
    let alice = session_cookie(&app, "alice", "right-csrf");
    let withdraw = |grant: &str, csrf: &str| {
        post(
            "/apps/withdraw",
            "application/x-www-form-urlencoded",
            &format!("grant={grant}&csrf={csrf}"),
        )
    };
    // No session.
    let (s, _, b) = send(router(Arc::clone(&app)), withdraw("mine", "right-csrf")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        body_json(&b)["error_description"],
        "sign in again to withdraw access"
    );
    // Bad CSRF.
    let (s, _, b) = send(
        router(Arc::clone(&app)),
        with_cookie(withdraw("mine", "wrong"), &alice),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        body_json(&b)["error_description"],
        "withdrawal form failed the CSRF check"
    );
    // Another person's grant: refused, and untouched.
    let (s, _, b) = send(
        router(Arc::clone(&app)),
        with_cookie(withdraw("theirs", "right-csrf"), &alice),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        body_json(&b)["error_description"],
        "no such access among yours"
    );
    assert_eq!(
        app.store.grant("theirs").unwrap().unwrap().status,
        GrantStatus::Active
    );
    // The withdrawal: revoked, listed for the filter's revocation feed, gone from the page.
    let (s, h, _) = send(
        router(Arc::clone(&app)),
        with_cookie(withdraw("mine", "right-csrf"), &alice),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], format!("{ISSUER}/apps?done=withdrawn"));
    assert_eq!(
        app.store.grant("mine").unwrap().unwrap().status,
        GrantStatus::Revoked
    );
    let (_, listed) = app.store.revocations_since(0, 10).unwrap();
    assert!(listed.iter().any(|(id, _)| id == "mine"));
    // Replayed: refused like an unknown grant.
    let (s, _, _) = send(
        router(Arc::clone(&app)),
        with_cookie(withdraw("mine", "right-csrf"), &alice),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = send(
        router(app),
        with_cookie(get("/apps?done=withdrawn"), &alice),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let html = page(&b);
    assert!(html.contains("Access withdrawn"));
    assert!(html.contains("id=\"no-grants\""));
}
