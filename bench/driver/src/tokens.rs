//! The run's tokens: the pools the cases send and the probes' (forged, expired, wrong audience...).

use super::cases::{Pool, Probe};
use super::options::Options;
use super::request::PUBLIC_URL;
use scopegate_tests::issuer::Issuer;
use scopegate_tests::now;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Instant;

pub(super) struct Tokens {
    pub(super) pools: BTreeMap<&'static str, Vec<String>>,
    pub(super) probes: Vec<Probe>,
}

fn claims(issuer: &Issuer, aud: &str, scope: &str, i: usize, tag: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer.url, "sub": format!("bench-user-{i}"), "aud": aud, "scope": scope,
        "client_id": "bench-client", "iat": now, "exp": now + 4 * 3600,
        "jti": format!("{tag}-{i}-{now}"),
    })
}

pub(super) fn mint(issuer: &Issuer, opts: &Options, resource: &str, needed: &[Pool]) -> Tokens {
    let scope = "tickets.read accounts.read";
    let many = |kid: &str, n: usize, tag: &str| {
        let t = Instant::now();
        let c: Vec<Value> = (0..n)
            .map(|i| claims(issuer, resource, scope, i, tag))
            .collect();
        let tokens = issuer.sign_many(kid, c);
        println!("    {n} {kid} tokens in {:.1} s", t.elapsed().as_secs_f64());
        tokens
    };
    // The hit pool always: its first token is the probes' valid one.
    let mut pools = BTreeMap::new();
    pools.insert(Pool::Hit.name(), many("es256", opts.hit_tokens, "hit"));
    if needed.contains(&Pool::MissEs256) {
        pools.insert(
            Pool::MissEs256.name(),
            many("es256", opts.miss_tokens, "mes"),
        );
    }
    if needed.contains(&Pool::MissRs256) {
        pools.insert(
            Pool::MissRs256.name(),
            many("rs256", opts.miss_tokens, "mrs"),
        );
    }

    let valid = pools[Pool::Hit.name()][0].clone();
    let mut forged = valid.clone();
    if let Some(dot) = forged.rfind('.') {
        let sig: String = forged[dot + 1..].chars().rev().collect();
        forged.replace_range(dot + 1.., &sig);
    }
    let wrong_aud = issuer.sign(
        "es256",
        claims(issuer, &format!("{PUBLIC_URL}/other/mcp"), scope, 0, "aud"),
    );
    let mut expired = claims(issuer, resource, scope, 0, "exp");
    expired["exp"] = json!(now() - 120);
    expired["iat"] = json!(now() - 600);
    let expired = issuer.sign("es256", expired);
    let no_scope = issuer.sign("es256", claims(issuer, resource, "accounts.read", 0, "scp"));
    let probe = |what, token, sg, ja| Probe {
        what,
        token,
        expect_scopegate: sg,
        expect_jwt_authn: ja,
    };
    Tokens {
        pools,
        probes: vec![
            probe("valid token", Some(valid), 200, 200),
            probe("no token", None, 401, 401),
            probe("forged signature", Some(forged), 401, 401),
            // jwt_authn answers a wrong audience with 403; scopegate with 401 invalid_token.
            probe("wrong audience", Some(wrong_aud), 401, 403),
            probe("expired", Some(expired), 401, 401),
            probe("without the required scope", Some(no_scope), 403, 403),
        ],
    }
}
