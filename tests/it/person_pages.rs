//! The person's side of the broker in a real browser (headless Chromium through Envoy, the real
//! broker and identity provider): a consent page for a self-registered client calling itself
//! "Claude Desktop", a remembered approval that skips the page, a step-up that asks only for
//! what is new, the connected-apps page, and a withdrawal that the data path and the broker obey.
//! With `SCOPEGATE_UPDATE_SCREENSHOTS=1` the screenshots it takes replace `docs/screenshots/`.

use scopegate_tests::brokered::Brokered;
use scopegate_tests::mcp::Client;
use scopegate_tests::oauth::{pkce, redeem, refresh, AuthRequest};
use scopegate_tests::procs::{log_dir, Proc};
use scopegate_tests::repo_root;
use scopegate_tests::stack::{OPS, SUPPORT};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const DIR: &str = "person_pages";

type Captured = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// The client's loopback redirect URI: keeps what arrives, in memory only.
fn redirect_target(captured: Captured) -> u16 {
    use axum::extract::Query;
    use axum::response::Html;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/callback",
        get(move |Query(q): Query<HashMap<String, String>>| {
            let captured = Arc::clone(&captured);
            async move {
                captured.lock().unwrap().push(q);
                Html("<p>Authorization finished.</p>")
            }
        }),
    );
    scopegate_tests::serve_in_background(app)
}

/// One part of chromium-person.mjs over the shared profile; its JSON line.
fn browse(cfg: Value, logs: &Path, part: &str) -> Value {
    let config = logs.join(format!("chromium-{part}.json"));
    std::fs::write(&config, cfg.to_string()).unwrap();
    let mut cmd = Command::new("node");
    cmd.current_dir(repo_root().join("tests/clients"))
        .arg("chromium-person.mjs")
        .arg(&config);
    let mut proc = Proc::start(&format!("chromium-{part}"), cmd, logs);
    let status = proc.wait_exit(Duration::from_secs(240));
    let stdout = std::fs::read_to_string(&proc.stdout_path).unwrap_or_default();
    let out: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no result (exit {status:?}):\n{}", proc.stderr()));
    assert_eq!(out["ok"], true, "{}", out["error"]);
    out
}

fn set(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    s.sort();
    s
}

#[test]
fn a_person_consents_is_remembered_steps_up_and_withdraws() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make sdk-clients` (apt-get install -y chromium chromium-driver)"
    );
    assert!(
        repo_root()
            .join("tests/clients/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing: run `make sdk-clients` (npm ci in tests/clients)"
    );
    let b = Brokered::start_with(DIR, 600, None, 1, |doc| {
        let g = &mut doc["gateways"][0];
        g["consent"] = json!({"scope_descriptions": {
            "tickets.read": "Read your support tickets",
            "tickets.write": "Create and update support tickets",
            "accounts.read": "Read your account's profile",
            "admin.read": "Read the administrators' reports"
        }});
        g["servers"][0]["display_name"] = json!("Support assistant");
        g["servers"][0]["description"] =
            json!("Answers questions about your tickets and your account");
    });
    let logs = log_dir(DIR);
    let captured: Captured = Arc::default();
    let port = redirect_target(Arc::clone(&captured));
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    // A self-registered client naming itself after a well-known one.
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/register", b.public_url))
        .json(&json!({
            "client_name": "Claude Desktop",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "application_type": "native"
        }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let client_id = r.json::<Value>().unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Four authorizations: support-assistant, the same again (fewer scopes), ops-console's
    // admin.read, then its step-up.
    let plan = [
        (
            "first",
            SUPPORT,
            "tickets.read accounts.read",
            Some("consent.png"),
        ),
        ("again", SUPPORT, "tickets.read", None),
        ("ops", OPS, "admin.read", None),
        (
            "step_up",
            OPS,
            "tickets.write admin.read",
            Some("step-up.png"),
        ),
    ];
    let mut verifiers = HashMap::new();
    let mut authorizations = Vec::new();
    for (name, path, scope, shot) in plan {
        let (verifier, challenge) = pkce();
        let mut req = AuthRequest::new(
            &b.public_url,
            &client_id,
            &redirect_uri,
            &b.resource(path),
            &challenge,
        );
        req.scope = Some(scope.into());
        req.state = format!("st-{name}");
        verifiers.insert(format!("st-{name}"), (verifier, b.resource(path)));
        authorizations.push(json!({"name": name, "url": req.url(), "screenshot": shot}));
    }
    let profile = logs.join("chromium-profile");
    let _ = std::fs::remove_dir_all(&profile);
    let base = json!({
        "chromium": CHROMIUM,
        "profile": profile,
        "shots": logs,
        "redirect_uri": redirect_uri,
    });
    let mut cfg = base.clone();
    cfg["part"] = json!("consent");
    cfg["authorizations"] = json!(authorizations);
    let out = browse(cfg, &logs, "consent");
    let steps = out["steps"].as_array().unwrap();

    // What the person was shown first: who asks (marked unverified), where the browser goes
    // (a local application, warned), which server, what each scope allows.
    let first = &steps[0];
    assert_eq!(first["page"], true, "{first}");
    assert_eq!(first["heading"], "Allow access to Support assistant?");
    assert_eq!(first["client_name"], "Claude Desktop");
    assert!(
        first["verified"]
            .as_str()
            .is_some_and(|v| v.starts_with("Unverified application.")),
        "{first}"
    );
    assert_eq!(first["redirect_host"], json!(format!("127.0.0.1:{port}")));
    assert_eq!(first["redirect_local"], true);
    assert_eq!(first["server"], "Support assistant");
    assert_eq!(
        first["server_description"],
        "Answers questions about your tickets and your account"
    );
    assert_eq!(set(&first["scopes"]), ["accounts.read", "tickets.read"]);
    assert!(set(&first["kept"]).is_empty());
    assert!(
        first["scope_texts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t.as_str().unwrap().starts_with("Read your support tickets")),
        "{first}"
    );
    // By keyboard: the first stops are the two decisions, Allow first.
    assert_eq!(first["focus"][0], "button:Allow", "{first}");
    assert_eq!(first["focus"][1], "button:Deny", "{first}");
    assert_eq!(first["landed"], true);
    // The same client for fewer scopes on the same server: no page.
    assert_eq!(steps[1]["page"], false, "{}", steps[1]);
    assert_eq!(steps[1]["landed"], true);
    // Another server: asked.
    assert_eq!(steps[2]["page"], true);
    assert_eq!(set(&steps[2]["scopes"]), ["admin.read"]);
    // The step-up: only what is new is asked; what was allowed is listed apart.
    let up = &steps[3];
    assert_eq!(up["page"], true);
    assert_eq!(up["heading"], "Allow access to ops-console?");
    assert_eq!(set(&up["scopes"]), ["tickets.write"], "{up}");
    assert_eq!(set(&up["kept"]), ["admin.read"], "{up}");

    // Every authorization ended at the client with a code that works.
    let got = captured.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "{got:?}");
    let mut tokens = HashMap::new();
    for q in &got {
        let state = q["state"].clone();
        let (verifier, resource) = &verifiers[&state];
        let r = redeem(
            &b.public_url,
            &client_id,
            &q["code"],
            &redirect_uri,
            verifier,
            resource,
        );
        assert_eq!(r.status, 200, "{state}: {}", r.body);
        tokens.insert(state, r.json());
    }
    let access = |state: &str| tokens[state]["access_token"].as_str().unwrap().to_string();
    let call = |path: &str, token: &str| {
        let mut c = Client::new(&b.envoy.url(path), Some(token));
        let init = c.initialize();
        if init.status != 200 {
            return init;
        }
        c.call_tool("list_tickets", json!({}))
    };
    assert_eq!(call(SUPPORT, &access("st-first")).status, 200);
    assert_eq!(call(SUPPORT, &access("st-again")).status, 200);

    // Another person's grant, for the same client and server, straight into the broker's
    // database (the demo identity provider signs in one person only).
    let db = logs.join("broker.sqlite");
    let insert = format!(
        "import sqlite3, time; c = sqlite3.connect({db:?}); now = int(time.time()); \
         c.execute(\"INSERT INTO grants (id, gateway, server, client_id, subject, scope, status, \
         downstream, downstream_expires_at, version, created_at, updated_at, last_used_at) VALUES \
         ('someone-elses-grant', 'saas', 'support-assistant', ?, 'someone-else', 'tickets.read', \
         'active', x'00', 0, 0, ?, ?, 0)\", ({client_id:?}, now, now)); c.commit(); \
         print(c.execute(\"SELECT count(*) FROM grants WHERE subject = 'someone-else' \
         AND status = 'active'\").fetchone()[0])",
    );
    let seeded = Command::new("python3")
        .arg("-c")
        .arg(&insert)
        .output()
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&seeded.stdout).trim(),
        "1",
        "the other person's grant is stored"
    );

    // The connected-apps page: signed in through the identity provider, the person's four
    // grants and not the other person's; support-assistant's two withdrawn.
    let mut cfg = base.clone();
    cfg["part"] = json!("apps");
    cfg["apps_url"] = json!(format!("{}/apps", b.public_url));
    cfg["withdraw_server"] = json!("Support assistant");
    let apps = browse(cfg, &logs, "apps");
    assert_eq!(apps["final_path"], "/apps", "{apps}");
    assert_eq!(apps["subject"], "demo-user");
    let grants = apps["grants"].as_array().unwrap();
    assert_eq!(grants.len(), 4, "{apps}");
    assert!(
        grants.iter().all(|g| g["id"] != "someone-elses-grant"),
        "another person's grant is shown: {apps}"
    );
    assert!(grants.iter().all(|g| g["client"]
        .as_str()
        .is_some_and(|c| c.contains("Claude Desktop") && c.contains("unverified"))));
    assert_eq!(apps["withdrawn"].as_array().unwrap().len(), 2, "{apps}");
    assert_eq!(
        apps["notice"],
        "Access withdrawn. The application can no longer use it."
    );
    let after: Vec<&str> = apps["after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["server"].as_str().unwrap())
        .collect();
    assert_eq!(after, ["ops-console", "ops-console"], "{apps}");

    // The data path obeys within the revocation feed's bound (poll period 2 s, plus a second).
    let withdrawn_at = Instant::now();
    for state in ["st-first", "st-again"] {
        let token = access(state);
        let refused = loop {
            let r = call(SUPPORT, &token);
            if r.status == 401 {
                break r;
            }
            assert!(
                withdrawn_at.elapsed() < Duration::from_secs(10),
                "{state}'s token still answered {} after the withdrawal",
                r.status
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let challenge = refused.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("invalid_token"), "{challenge}");
        // And the broker refuses the grant's refresh.
        let rt = tokens[state]["refresh_token"].as_str().unwrap();
        let r = refresh(&b.public_url, &client_id, rt, &b.resource(SUPPORT));
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"], "invalid_grant");
    }
    // ops-console's grant is untouched.
    let mut c = Client::new(&b.envoy.url(OPS), Some(&access("st-step_up")));
    assert_eq!(c.initialize().status, 200);

    if std::env::var_os("SCOPEGATE_UPDATE_SCREENSHOTS").is_some() {
        let dest = repo_root().join("docs/screenshots");
        std::fs::create_dir_all(&dest).unwrap();
        for shot in ["consent.png", "step-up.png", "apps.png"] {
            std::fs::copy(logs.join(shot), dest.join(shot)).unwrap();
        }
    }
}

/// How the consent page presents the clients the broker can vouch for: a CIMD client by the host
/// its metadata came from (its own name beside it, as its claim), a preregistered client by the
/// operator's name. Read in Chromium from the broker itself.
#[test]
fn cimd_and_preregistered_clients_are_shown_by_what_vouches_for_them() {
    use scopegate_tests::broker::{BrokerStack, PREREG, PREREG_REDIRECT};
    use scopegate_tests::cimd_host::CimdHost;
    const DIR: &str = "person_pages_clients";
    const CB: &str = "http://127.0.0.1:1/cimd/cb";
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: run `make sdk-clients`"
    );
    let host = CimdHost::start();
    let logs = log_dir(DIR);
    let ca = logs.join("cimd-ca.pem");
    std::fs::write(&ca, &host.cert_pem).unwrap();
    let s = BrokerStack::start(DIR, 300, None, |d| {
        d["gateways"][0]["clients"]["cimd"] =
            json!({"allowed_hosts": ["localhost"], "allow_private_hosts": ["localhost"]});
        d["broker"]["tls_ca_file"] = json!(ca.display().to_string());
    });
    let cimd = host.url("person.json");
    host.put(
        "person.json",
        &json!({
            "client_id": cimd,
            "client_name": "Claude Desktop",
            "redirect_uris": [CB],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none"
        }),
    );
    let (_, challenge) = pkce();
    let url = |client: &str, redirect: &str| {
        AuthRequest::new(
            &s.issuer,
            client,
            redirect,
            &s.resource(SUPPORT),
            &challenge,
        )
        .url()
    };
    let cfg = json!({
        "chromium": CHROMIUM,
        "profile": logs.join("chromium-profile"),
        "shots": logs,
        "redirect_uri": "http://127.0.0.1:1/",
        "part": "read",
        "pages": [
            {"name": "cimd", "url": url(&cimd, CB), "screenshot": "cimd.png"},
            {"name": "prereg", "url": url(PREREG, PREREG_REDIRECT)},
        ],
    });
    let out = browse(cfg, &logs, "read");
    let (c, p) = (&out["steps"][0], &out["steps"][1]);
    let cimd_host = reqwest::Url::parse(&cimd).unwrap();
    let shown_host = format!(
        "{}:{}",
        cimd_host.host_str().unwrap(),
        cimd_host.port().unwrap()
    );
    assert_eq!(c["status"], 200, "{c}");
    assert_eq!(c["client_name"], json!(shown_host), "{c}");
    assert_eq!(c["claimed_name"], "Claude Desktop", "{c}");
    assert!(
        c["verified"]
            .as_str()
            .is_some_and(|v| v.starts_with("(verified")),
        "{c}"
    );
    assert_eq!(c["redirect_local"], true);
    assert_eq!(p["status"], 200, "{p}");
    assert_eq!(p["client_name"], "Prereg App", "{p}");
    assert_eq!(p["verified"], "(configured by your administrator)", "{p}");
    assert_eq!(p["claimed_name"], Value::Null);
    for page in [c, p] {
        assert!(
            !page["verified"]
                .as_str()
                .unwrap_or("")
                .contains("Unverified"),
            "{page}"
        );
    }
}
