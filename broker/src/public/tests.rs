//! Handler tests in-process: the public router over a real `App` (in-memory SQLite), one request
//! at a time through `tower::ServiceExt::oneshot`. The downstream server is never reached here.

use super::*;
use crate::store::sqlite::Sqlite;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use scopegate_tests::broker::{PREREG, PREREG_REDIRECT};
use tower::ServiceExt;

pub(super) const ISSUER: &str = "http://127.0.0.1:9";

fn app() -> Router {
    router(app_state())
}

/// The broker's state itself, for tests that seed grants or cookies before asking the router.
pub(super) fn app_state() -> Arc<App> {
    app_state_with(|_| {})
}

/// [`app_state`] over the test document after `edit`.
pub(super) fn app_state_with(edit: impl FnOnce(&mut serde_json::Value)) -> Arc<App> {
    // One file per router, gone once the key is read: the tests run in parallel.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let key = std::env::temp_dir().join(format!(
        "scopegate-handler-tests-{}-{}.key",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&key, scopegate_tests::broker::KEY).unwrap();
    let mut doc = scopegate_tests::broker::doc(ISSUER, "http://127.0.0.1:1", ":memory:");
    let broker = doc["broker"].as_object_mut().unwrap();
    broker.remove("encryption_key_env");
    broker.insert("encryption_key_file".into(), json!(key.to_str().unwrap()));
    for g in doc["gateways"].as_array_mut().unwrap() {
        g["downstream"]
            .as_object_mut()
            .unwrap()
            .remove("client_secret_env");
    }
    edit(&mut doc);
    let policy = scopegate_core::validate::load(&doc.to_string()).unwrap();
    let store: Arc<dyn crate::store::Store> = Arc::new(Sqlite::open(":memory:").unwrap());
    let app = App::build(policy, store, Arc::new(crate::clock::SystemClock));
    std::fs::remove_file(&key).unwrap();
    Arc::new(app.unwrap())
}

pub(super) async fn send(router: Router, req: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let r = router.oneshot(req).await.unwrap();
    let (parts, body) = r.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

pub(super) fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

pub(super) fn post(uri: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body.to_string()))
        .unwrap()
}

pub(super) fn body_json(b: &Bytes) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

fn no_store(h: &HeaderMap) -> bool {
    h.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()) == Some("no-store")
}

#[tokio::test]
async fn metadata_is_each_gateways_own() {
    let r = app();
    let (s, _, b) = send(r.clone(), get("/.well-known/oauth-authorization-server")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body_json(&b)["issuer"], ISSUER);
    let (s, _, b) = send(
        r.clone(),
        get("/.well-known/oauth-authorization-server/other"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body_json(&b)["issuer"], format!("{ISSUER}/other"));
    // Under `/other` the other gateway answers: clients of one are unknown to the other.
    let doc = r#"{"redirect_uris":["http://127.0.0.1:7/cb"],"token_endpoint_auth_method":"none"}"#;
    let (s, _, b) = send(r.clone(), post("/other/register", "application/json", doc)).await;
    assert_eq!(s, StatusCode::CREATED);
    let theirs = body_json(&b)["client_id"].as_str().unwrap().to_string();
    let (s, _, b) = send(r.clone(), get(&format!("/authorize?client_id={theirs}"))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&b)["error"], "invalid_client");
    let (s, _, b) = send(r, get(&format!("/other/authorize?client_id={PREREG}"))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&b)["error"], "invalid_client");
}

#[tokio::test]
async fn register_answers_201_415_and_400() {
    let r = app();
    let doc = r#"{"redirect_uris":["http://127.0.0.1:7/cb"],"token_endpoint_auth_method":"none"}"#;
    let (s, h, b) = send(r.clone(), post("/register", "application/json", doc)).await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");
    assert!(no_store(&h));
    assert!(body_json(&b)["client_id"].is_string());

    let (s, h, b) = send(r.clone(), post("/register", "text/plain", doc)).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(no_store(&h));
    assert_eq!(body_json(&b)["error"], "invalid_client_metadata");

    let (s, _, b) = send(r.clone(), post("/register", "application/json", "{nope")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(&b),
        json!({"error": "invalid_client_metadata", "error_description": "the request body is not JSON"})
    );

    let bad = r#"{"redirect_uris":["http://localhost:evil.example/cb"]}"#;
    let (s, _, b) = send(r, post("/register", "application/json", bad)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&b)["error"], "invalid_redirect_uri");
}

#[tokio::test]
async fn authorize_refusals_go_back_to_the_client_with_state_and_iss() {
    let uri = format!(
        "/authorize?client_id={PREREG}&redirect_uri={}&response_type=token&state=s1",
        url::form_urlencoded::byte_serialize(PREREG_REDIRECT.as_bytes()).collect::<String>()
    );
    let (s, h, _) = send(app(), get(&uri)).await;
    assert_eq!(s, StatusCode::FOUND);
    let location = url::Url::parse(h[header::LOCATION].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(PREREG_REDIRECT), "{location}");
    let q: HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "unsupported_response_type");
    assert_eq!(q["state"], "s1");
    assert_eq!(q["iss"], ISSUER);
}

#[tokio::test]
async fn a_repeated_parameter_is_refused_with_its_name() {
    let (s, h, b) = send(app(), get("/authorize?client_id=a&client_id=b")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(no_store(&h));
    assert_eq!(
        body_json(&b),
        json!({"error": "invalid_request", "error_description": "parameter `client_id` is repeated"})
    );
    let form = "grant_type=refresh_token&grant_type=authorization_code";
    let (s, _, b) = send(
        app(),
        post("/token", "application/x-www-form-urlencoded", form),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        body_json(&b)["error_description"],
        "parameter `grant_type` is repeated"
    );
}

#[tokio::test]
async fn token_with_an_unknown_code_is_invalid_grant() {
    let form = format!(
        "grant_type=authorization_code&code=nope&client_id={PREREG}&code_verifier={}",
        "v".repeat(43)
    );
    let (s, h, b) = send(
        app(),
        post("/token", "application/x-www-form-urlencoded", &form),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(no_store(&h));
    assert!(h.get(header::WWW_AUTHENTICATE).is_none());
    assert_eq!(
        body_json(&b),
        json!({"error": "invalid_grant", "error_description": "authorization code is not valid"})
    );
}

#[tokio::test]
async fn token_from_an_unknown_client_is_401_with_a_challenge() {
    let form = "grant_type=authorization_code&code=nope&client_id=nobody";
    let (s, h, b) = send(
        app(),
        post("/token", "application/x-www-form-urlencoded", form),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h[header::WWW_AUTHENTICATE], "Basic realm=\"scopegate\"");
    assert_eq!(body_json(&b)["error"], "invalid_client");
}

#[tokio::test]
async fn consent_needs_the_csrf_cookie_the_page_set() {
    let r = app();
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let uri = format!(
        "/authorize?client_id={PREREG}&response_type=code&code_challenge={challenge}&code_challenge_method=S256&scope=tickets.read&resource={}&state=s2",
        url::form_urlencoded::byte_serialize(
            format!("{ISSUER}{}", scopegate_tests::stack::SUPPORT).as_bytes()
        )
        .collect::<String>()
    );
    let (s, h, b) = send(r.clone(), get(&uri)).await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    let set_cookie = h[header::SET_COOKIE].to_str().unwrap();
    let cookie = Cookie::parse(set_cookie).unwrap();
    assert_eq!(cookie.name(), CSRF_COOKIE);
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site(), Some(SameSite::Strict));
    assert_eq!(cookie.path(), Some(md::CONSENT));
    assert_eq!(cookie.secure(), None, "the issuer is http: no Secure");
    assert_eq!(
        cookie.max_age(),
        Some(cookie::time::Duration::seconds(PENDING_TTL_S as i64))
    );
    let html = String::from_utf8(b.to_vec()).unwrap();
    let hidden = |name: &str| {
        let at = format!("name=\"{name}\" value=\"");
        let start = html.find(&at).unwrap() + at.len();
        html[start..start + html[start..].find('"').unwrap()].to_string()
    };
    let form = format!(
        "request={}&csrf={}&decision=deny",
        hidden("request"),
        hidden("csrf")
    );
    let without = post("/consent", "application/x-www-form-urlencoded", &form);
    let (s, _, b) = send(r.clone(), without).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        body_json(&b)["error_description"],
        "consent form failed the CSRF check"
    );
    let mut with = post("/consent", "application/x-www-form-urlencoded", &form);
    with.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("other=1; {CSRF_COOKIE}={}", cookie.value())).unwrap(),
    );
    let (s, h, _) = send(r, with).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let location = h[header::LOCATION].to_str().unwrap();
    assert!(location.starts_with(PREREG_REDIRECT), "{location}");
    assert!(location.contains("error=access_denied"), "{location}");
    assert!(location.contains("state=s2"), "{location}");
}
