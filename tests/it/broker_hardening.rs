//! The broker's second cut, through the real Envoy: redirect URIs parsed as URLs (any port for
//! loopback IP literals), registration only as JSON, oversized bodies always answered 413,
//! revocation reaching the data path within the poll bound (and the downstream grant revoked at the
//! identity provider), and the internal listener on a Unix socket only Envoy's cluster reaches.
//! Nothing here asserts on time: every wait is a poll with a generous deadline.

use scopegate_tests::brokered::{Brokered, CLIENT_CB};
use scopegate_tests::envoy::cluster_on_socket;
use scopegate_tests::mcp::Client;
use scopegate_tests::oauth::{pkce, post_form, redeem, register, Agent, AuthRequest};
use scopegate_tests::procs::{log_dir, wait_for};
use scopegate_tests::stack::SUPPORT;
use serde_json::{json, Value};
use std::sync::OnceLock;
use std::time::Duration;

const NAME: &str = "broker_hardening";

fn socket() -> String {
    log_dir(NAME).join("internal.sock").display().to_string()
}

/// One stack for the file: the broker's internal listener on a Unix socket, Envoy's internal
/// cluster on that socket, revocations polled every second.
fn stack() -> &'static Brokered {
    static S: OnceLock<Brokered> = OnceLock::new();
    S.get_or_init(|| {
        let sock = socket();
        let _ = std::fs::remove_file(&sock);
        let for_envoy = sock.clone();
        Brokered::start_edited(
            NAME,
            300,
            None,
            2,
            |doc| {
                doc["broker"]["internal_listen"] = json!(format!("unix:{sock}"));
                doc["filter"]["broker"]["revocation_poll_s"] = json!(1);
            },
            &move |boot| cluster_on_socket(boot, "scopegate_broker_internal", &for_envoy),
        )
    })
}

fn post_register(s: &Brokered, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/register", s.public_url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .expect("POST /register through Envoy");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn registration(redirect: &str) -> Vec<u8> {
    json!({
        "client_name": "Hardening Client",
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "application_type": "native"
    })
    .to_string()
    .into_bytes()
}

#[test]
fn malformed_redirect_uris_are_refused_at_registration() {
    let s = stack();
    for bad in [
        "http://localhost:evil.example/cb",
        "http://127.0.0.1:80x/cb",
        "http://[::1]evil.example/cb",
        "https:///cb",
        "https://user@app.example/cb",
        "https://app.example/cb#frag",
    ] {
        let (status, body) = post_register(s, "application/json", registration(bad));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "invalid_redirect_uri", "{bad}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(bad)),
            "{bad}: {body}"
        );
    }
}

#[test]
fn a_loopback_ip_redirect_uri_matches_any_port_localhost_does_not() {
    let s = stack();
    // Registered with port 1; the client comes back on another free port, as native clients do.
    let client_id = register(&s.public_url, CLIENT_CB);
    let resource = s.resource(SUPPORT);
    let other_port = CLIENT_CB.replace(":1/", ":49152/");
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(
        &s.public_url,
        &client_id,
        &other_port,
        &resource,
        &challenge,
    );
    let code = Agent::default().authorize(&req);
    let r = redeem(
        &s.public_url,
        &client_id,
        &code,
        &other_port,
        &verifier,
        &resource,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // A path or host that differs is still refused, without a redirect.
    for wrong in [
        "http://127.0.0.1:49152/elsewhere",
        "http://127.0.0.2:1/walkthrough/cb",
    ] {
        let req = AuthRequest::new(&s.public_url, &client_id, wrong, &resource, &challenge);
        let g = Agent::default().get(&req.url());
        assert_eq!(g.status, 400, "{wrong}: {}", g.body);
        assert!(g.location.is_none(), "{wrong} redirected");
    }

    // localhost (RFC 8252 §8.3: NOT RECOMMENDED) is accepted, but only on its registered port.
    let local = "http://localhost:6274/oauth/callback";
    let (status, body) = post_register(s, "application/json", registration(local));
    assert_eq!(status, 201, "{body}");
    let id = body["client_id"].as_str().unwrap();
    let req = AuthRequest::new(&s.public_url, id, local, &resource, &challenge);
    assert_eq!(Agent::default().get(&req.url()).status, 200);
    let req = AuthRequest::new(
        &s.public_url,
        id,
        "http://localhost:6275/oauth/callback",
        &resource,
        &challenge,
    );
    assert_eq!(Agent::default().get(&req.url()).status, 400);
}

#[test]
fn registration_accepts_only_json() {
    let s = stack();
    let body = registration(CLIENT_CB);
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
    ] {
        let (status, b) = post_register(s, ct, body.clone());
        assert_eq!(status, 415, "{ct}: {b}");
        assert_eq!(b["error"], "invalid_client_metadata", "{ct}: {b}");
    }
    let (status, b) = post_register(s, "application/json; charset=utf-8", body);
    assert_eq!(status, 201, "{b}");
}

#[test]
fn an_oversized_registration_always_gets_the_brokers_413() {
    let s = stack();
    let mut big = br#"{"client_name":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    big.extend(br#"","redirect_uris":["http://127.0.0.1:1/cb"]}"#);
    for i in 0..20 {
        let (status, b) = post_register(s, "application/json", big.clone());
        assert_eq!(status, 413, "attempt {i}: {b}");
        assert_eq!(b["error"], "invalid_request", "attempt {i}: {b}");
    }
}

/// A token whose grant is revoked stops working at the upstream: polls until it gets 401.
fn wait_refused(c: &mut Client) -> scopegate_tests::mcp::Reply {
    wait_for(
        "the revoked grant's token to be refused",
        Duration::from_secs(30),
        || {
            let r = c.call_tool("list_tickets", json!({}));
            (r.status != 200).then_some(r)
        },
    )
}

fn assert_revoked(r: &scopegate_tests::mcp::Reply) {
    assert_eq!(r.status, 401, "{}", r.body);
    let h = r.header("www-authenticate").unwrap_or_default();
    assert!(h.starts_with("Bearer error=\"invalid_token\""), "{h}");
}

#[test]
fn revocation_reaches_the_data_path_and_the_identity_provider() {
    let s = stack();
    let session = s.authorize(SUPPORT, Some("tickets.read"));
    let mut c = s.mcp(SUPPORT, &session);
    assert_eq!(c.call_tool("list_tickets", json!({})).status, 200);
    // The credential is now cached in Envoy; the client revokes its refresh token (RFC 7009).
    let r = post_form(
        &format!("{}/revoke", s.public_url),
        &[
            ("token", session.refresh_token.as_deref().unwrap()),
            ("client_id", &session.client_id),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_revoked(&wait_refused(&mut c));
    let line = s.envoy.wait_access_log(|l| {
        l["reason"] == "grant_revoked" && l["client_id"] == json!(session.client_id)
    });
    assert_eq!(line["status"], 401);
    // The downstream grant is revoked at the identity provider too.
    wait_for(
        "the identity provider to see the revocation",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(&s.stack.authz.proc.stderr_path)
                .ok()
                .filter(|log| log.contains("authz: grant.revoked"))
        },
    );
}

#[test]
fn a_replayed_code_revokes_a_grant_already_in_use() {
    let s = stack();
    let client_id = register(&s.public_url, CLIENT_CB);
    let resource = s.resource(SUPPORT);
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(&s.public_url, &client_id, CLIENT_CB, &resource, &challenge);
    let code = Agent::default().authorize(&req);
    let r = redeem(
        &s.public_url,
        &client_id,
        &code,
        CLIENT_CB,
        &verifier,
        &resource,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["access_token"].as_str().unwrap().to_string();
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&token));
    assert_eq!(c.initialize().status, 200);
    assert_eq!(c.call_tool("list_tickets", json!({})).status, 200);
    let replay = redeem(
        &s.public_url,
        &client_id,
        &code,
        CLIENT_CB,
        &verifier,
        &resource,
    );
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert_eq!(replay.json()["error"], "invalid_grant");
    assert_revoked(&wait_refused(&mut c));
}

#[test]
fn the_internal_listener_is_a_socket_only_envoy_reaches() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let s = stack();
    assert!(
        s.stack.broker.internal.starts_with("unix:"),
        "{}",
        s.stack.broker.internal
    );
    let meta = std::fs::metadata(socket()).expect("the internal socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    // Through the socket (Envoy's cluster) the exchange works: the upstream gets a credential.
    let session = s.authorize(SUPPORT, None);
    let mut c = s.mcp(SUPPORT, &session);
    let r = c.call_tool("list_tickets", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.tool_json()["authorization"]
        .as_str()
        .is_some_and(|a| a.starts_with("Bearer ")));
    // From outside it is not there: not through Envoy's public routes, not on the public listener.
    for base in [
        s.public_url.clone(),
        format!("http://127.0.0.1:{}", s.stack.broker.port),
    ] {
        let (status, body) =
            scopegate_tests::broker::exchange(&base, &session.access_token, &session.resource);
        assert_eq!(status, 404, "{base}: {body}");
        let g = reqwest::blocking::get(format!("{base}/internal/revocations?since=0")).unwrap();
        assert_eq!(g.status().as_u16(), 404, "{base}");
    }
}

#[test]
fn no_token_code_or_secret_reaches_a_log() {
    let s = stack();
    let client_id = register(&s.public_url, CLIENT_CB);
    let resource = s.resource(SUPPORT);
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(&s.public_url, &client_id, CLIENT_CB, &resource, &challenge);
    let code = Agent::default().authorize(&req);
    let t = redeem(
        &s.public_url,
        &client_id,
        &code,
        CLIENT_CB,
        &verifier,
        &resource,
    )
    .json();
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh = t["refresh_token"].as_str().unwrap().to_string();
    let mut c = Client::new(&s.envoy.url(SUPPORT), Some(&access));
    assert_eq!(c.initialize().status, 200);
    let r = c.call_tool("list_tickets", json!({}));
    assert_eq!(r.status, 200, "{}", r.body);
    let downstream = r.tool_json()["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("the downstream credential")
        .to_string();
    let rotated = scopegate_tests::oauth::refresh(&s.public_url, &client_id, &refresh, &resource);
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let r = post_form(
        &format!("{}/revoke", s.public_url),
        &[
            ("token", rotated.json()["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
        ],
        None,
    );
    assert_eq!(r.status, 200);
    assert_revoked(&wait_refused(&mut c));
    let rotated_refresh = rotated.json()["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The downstream client's credential as it travels (HTTP Basic), not only the bare secret.
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            scopegate_tests::downstream::CLIENT_ID,
            scopegate_tests::downstream::CLIENT_SECRET
        ))
    };
    let secrets = [
        ("access token", access.as_str()),
        ("refresh token", refresh.as_str()),
        ("rotated refresh token", rotated_refresh.as_str()),
        ("authorization code", code.as_str()),
        ("PKCE verifier", verifier.as_str()),
        ("downstream access token", downstream.as_str()),
        (
            "downstream client secret",
            scopegate_tests::downstream::CLIENT_SECRET,
        ),
        ("downstream client credential", basic.as_str()),
        ("broker key", scopegate_tests::broker::KEY),
    ];
    let logs = logs_under(&log_dir(NAME));
    for want in [
        "broker.stderr",
        "envoy.stderr",
        "authz.stdout",
        "access.log",
    ] {
        assert!(
            logs.iter().any(|(n, _)| n.ends_with(want)),
            "the log {want} to search is missing: {:?}",
            logs.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
    }
    for (what, secret) in secrets {
        assert!(!secret.is_empty(), "no {what} to look for");
        for fragment in fragments(secret) {
            for (name, text) in &logs {
                assert!(
                    !text.contains(&fragment),
                    "part of the {what} ({} characters of it) appears in {name}",
                    fragment.len()
                );
            }
        }
    }
}

/// What of a secret must not appear in a log: all of it, its first and last 12 characters (a
/// log line that truncates a token still leaks it), and for a JWT its payload, its signature
/// and header.payload (the header alone is the same for every token of a signer, so not that).
fn fragments(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let segments: Vec<&str> = secret.split('.').collect();
    let ends = |s: &str, out: &mut Vec<String>| {
        if s.len() >= 24 && s.is_ascii() {
            out.push(s[..12].to_string());
            out.push(s[s.len() - 12..].to_string());
        }
    };
    let jwt = match segments[..] {
        [header, payload, signature] if header.starts_with("eyJ") => {
            Some((header, payload, signature))
        }
        _ => None,
    };
    if let Some((header, payload, signature)) = jwt {
        out.push(format!("{header}.{payload}"));
        out.push(payload.to_string());
        out.push(signature.to_string());
        // A JWT's first characters are its header's: only the signature's ends are its own.
        ends(signature, &mut out);
    } else {
        ends(secret, &mut out);
    }
    out
}

/// Every log file under `dir`, its subdirectories included: processes' stdout and stderr, and
/// access logs. `(path relative to dir, text)`.
fn logs_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if name.ends_with(".stderr") || name.ends_with(".stdout") || name.ends_with(".log") {
                let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push((rel, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}
