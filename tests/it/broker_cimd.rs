//! Client ID Metadata Documents from a local https host: a full flow, caching, and the refusals
//! (client_id mismatch, private addresses by literal and by resolution, size, host policy).

use scopegate_tests::broker::BrokerStack;
use scopegate_tests::cimd_host::CimdHost;
use scopegate_tests::oauth::{pkce, redeem, Agent, AuthRequest};
use scopegate_tests::procs::log_dir;
use scopegate_tests::stack::SUPPORT;
use serde_json::{json, Value};

const CB: &str = "http://127.0.0.1:1/cimd/cb";

fn setup() -> (CimdHost, BrokerStack) {
    let host = CimdHost::start();
    let ca = log_dir("broker_cimd").join("cimd-ca.pem");
    std::fs::write(&ca, &host.cert_pem).unwrap();
    let s = BrokerStack::start("broker_cimd", 300, None, |d| {
        d["gateways"][0]["clients"]["cimd"] = json!({"allowed_hosts": ["localhost", "127.0.0.1"], "allow_private_hosts": ["localhost"]});
        // The second gateway allows the host but not its loopback address.
        d["gateways"][1]["clients"] = json!({"cimd": {"allowed_hosts": ["localhost"]}});
        d["broker"]["tls_ca_file"] = json!(ca.display().to_string());
    });
    (host, s)
}

fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "CIMD App",
        "redirect_uris": [CB],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none"
    })
}

#[test]
fn cimd_clients_work_and_bad_documents_are_refused_exactly() {
    let (host, s) = setup();
    let resource = s.resource(SUPPORT);
    let meta: Value = reqwest::blocking::get(format!(
        "{}/.well-known/oauth-authorization-server",
        s.issuer
    ))
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(meta["client_id_metadata_document_supported"], json!(true));

    let good = host.url("good.json");
    host.put("good.json", &document(&good));
    let (verifier, challenge) = pkce();
    let req = AuthRequest::new(&s.issuer, &good, CB, &resource, &challenge);
    let agent = Agent::default();
    let page = agent.consent_page(&req);
    assert!(
        page.contains("CIMD App") && page.contains("127.0.0.1:1"),
        "{page}"
    );
    let q = agent.decide(&req, &page, "approve");
    let r = redeem(&s.issuer, &good, &q["code"], CB, &verifier, &resource);
    assert_eq!(r.status, 200, "{}", r.body);
    let c = s.verify(r.json()["access_token"].as_str().unwrap(), &resource);
    assert_eq!(c.client_id.as_deref(), Some(good.as_str()));
    assert_eq!(
        host.fetches(),
        1,
        "authorize and token used the cached document (max-age=300)"
    );

    let refused = |issuer: &str, client_id: &str| -> Value {
        let req = AuthRequest::new(issuer, client_id, CB, &resource, &challenge);
        let g = Agent::default().get(&req.url());
        assert_eq!(
            (g.status, g.location.as_deref()),
            (400, None),
            "{client_id}: {}",
            g.body
        );
        assert_eq!(g.json()["error"], json!("invalid_client"), "{}", g.body);
        g.json()["error_description"].clone()
    };

    let liar = host.url("liar.json");
    host.put("liar.json", &document(&host.url("someone-else.json")));
    assert_eq!(
        refused(&s.issuer, &liar),
        json!("client metadata document's client_id does not equal its URL")
    );

    let literal = format!("https://127.0.0.1:{}/good.json", host.port);
    assert_eq!(
        refused(&s.issuer, &literal),
        json!(format!(
            "client_id `{literal}` points at a private or loopback address"
        ))
    );

    let resolved = refused(&s.other_issuer, &good);
    assert!(
        resolved
            .as_str()
            .unwrap()
            .contains("localhost resolves only to private or loopback addresses"),
        "{resolved}"
    );

    let big = host.url("big.json");
    let mut doc = document(&big);
    doc["client_uri"] = json!(format!("https://x.example/{}", "a".repeat(6000)));
    host.put("big.json", &doc);
    assert_eq!(
        refused(&s.issuer, &big),
        json!("client metadata document is larger than 5120 bytes")
    );

    assert_eq!(
        refused(&s.issuer, "https://clients.example.com/app.json"),
        json!("client metadata documents from `clients.example.com` are not allowed")
    );
    assert_eq!(
        refused(&s.issuer, &format!("https://localhost:{}/", host.port)),
        json!(format!("client_id `https://localhost:{}/` is not a valid metadata document URL: it must have a path", host.port))
    );
}
