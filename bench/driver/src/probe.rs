//! The probes: each case's Envoy must answer every probe token as its auth should before any load.

use super::cases::{Case, Probe};
use super::outcome::{CaseResult, Check};
use super::request::{self, Shape, HOST};
use scopegate_tests::envoy::Envoy;
use std::time::{Duration, Instant};

pub(super) fn send_probe(
    client: &reqwest::blocking::Client,
    url: &str,
    token: Option<&str>,
    shape: Shape,
) -> Result<u16, String> {
    let mut req = client
        .post(url)
        .header("host", HOST)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(shape.body());
    for (k, v) in shape.headers() {
        req = req.header(*k, *v);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Waits until the filter has its keys, then sends every probe and checks its status.
pub(super) fn probe_all(
    case: &Case,
    envoy: &Envoy,
    probes: &[Probe],
    result: &mut CaseResult,
) -> Result<(), String> {
    let url = envoy.url(request::PATH);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    // Until the filter has its keys it answers 503.
    let valid = probes[0].token.as_deref();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match send_probe(&client, &url, valid, case.shape) {
            Ok(503) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            _ => break,
        }
    }
    for p in probes {
        let want = p.expected(case.kind);
        let got = send_probe(&client, &url, p.token.as_deref(), case.shape);
        let ok = got == Ok(want);
        result.checks.push(Check {
            what: format!("probe `{}`: want {want}, got {}", p.what, show(&got)),
            ok,
        });
    }
    Ok(())
}

fn show(r: &Result<u16, String>) -> String {
    match r {
        Ok(s) => s.to_string(),
        Err(e) => format!("error ({e})"),
    }
}
