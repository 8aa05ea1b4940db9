//! Crash safety: SIGKILL the broker while its downstream refresh is in flight, restart it on the
//! same database, and the grant still works. Then a downstream grant that is gone (the downstream
//! server restarted and forgot it) is reported as `invalid_grant`.

use scopegate_tests::broker::{exchange, BrokerStack};
use scopegate_tests::downstream::{self, Spec};
use scopegate_tests::oauth::{first_grant, refresh};
use scopegate_tests::proxy::Proxy;
use scopegate_tests::stack::SUPPORT;
use serde_json::json;
use std::time::Duration;

const CB: &str = "http://127.0.0.1:1/client/cb";

#[test]
fn sigkill_during_downstream_refresh_then_restart_keeps_the_grant() {
    let proxy = Proxy::start();
    let mut s = BrokerStack::start("broker_crash", 3, Some(&proxy), |_| {});
    let resource = s.resource(SUPPORT);
    let (client, t) = first_grant(&s.issuer, CB, &resource);
    let access = t["access_token"].as_str().unwrap().to_string();
    let (status, first) = s.broker.exchange(&access, &resource);
    assert_eq!(status, 200, "{first}");
    std::thread::sleep(Duration::from_secs(
        first["expires_in"].as_u64().unwrap() + 1,
    ));

    // The next downstream refresh is held at the proxy; kill the broker while it waits.
    let held = proxy.hold_next_refresh();
    let internal = s.broker.internal.clone();
    let (a, r) = (access.clone(), resource.clone());
    let inflight = std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::new()
            .post(format!("{internal}/internal/token-exchange"))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", a.as_str()),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("resource", r.as_str()),
            ])
            .send();
    });
    held.recv_timeout(Duration::from_secs(30))
        .expect("the broker started a downstream refresh");
    s.broker.kill9();
    let _ = inflight.join();

    s.broker.restart();
    let (status, after) = s.broker.exchange(&access, &resource);
    assert_eq!(status, 200, "the grant survives the crash: {after}");
    assert_ne!(after["access_token"], first["access_token"]);
    let r2 = refresh(
        &s.issuer,
        &client,
        t["refresh_token"].as_str().unwrap(),
        &resource,
    );
    assert_eq!(r2.status, 200, "{}", r2.body);

    // The downstream server restarts and forgets every grant: the next refresh finds it gone.
    s.authz.proc.kill();
    let spec = Spec {
        redirect_uris: vec![
            format!("{}/callback", s.issuer),
            format!("{}/other/callback", s.issuer),
        ],
        access_ttl: 3,
        issuer: Some(proxy.url.clone()),
    };
    let (authz, _) = downstream::start("broker_crash_authz2", &spec);
    proxy.set_target(authz.port);
    std::thread::sleep(Duration::from_secs(
        after["expires_in"].as_u64().unwrap() + 1,
    ));
    let (status, dead) = exchange(&s.broker.internal, &access, &resource);
    assert_eq!(
        (status, &dead["error"]),
        (400, &json!("invalid_grant")),
        "{dead}"
    );
    let rt = r2.json()["refresh_token"].as_str().unwrap().to_string();
    let r3 = refresh(&s.issuer, &client, &rt, &resource);
    assert_eq!(
        (r3.status, r3.json()["error_description"].clone()),
        (400, json!("refresh token is revoked"))
    );
}
