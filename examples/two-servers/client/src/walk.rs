//! The story, step by step, with a check after each step.

use crate::browser::Browser;
use crate::steps::{
    challenge_param, describe_seen, downstream_of, last_token, now, scope_set, Conn, Walk,
};
use crate::summary::Summary;
use crate::{show, Options};
use rmcp::transport::auth::AuthorizationCallback;
use serde_json::json;

const SUPPORT_SCOPES: &str = "tickets.read accounts.read";
const OPS_SCOPES: &str = "tickets.write admin.read";

pub async fn run(opts: &Options) -> Summary {
    let (browser, loopback) = match (Browser::new(), std::net::TcpListener::bind("127.0.0.1:0")) {
        (Ok(b), Ok(l)) => (b, l),
        (Err(e), _) => return failed(&e),
        (_, Err(e)) => return failed(&format!("loopback listener: {e}")),
    };
    let port = loopback.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut w = Walk {
        s: Summary::default(),
        browser,
        redirect_uri: format!("http://127.0.0.1:{port}/callback"),
        _loopback: loopback,
    };
    println!("scopegate walkthrough: an MCP client (rmcp) meets two servers behind one gateway");
    println!("   support-assistant  {}", opts.support);
    println!("   ops-console        {}", opts.ops);
    println!("   redirect URI       {}", w.redirect_uri);
    let mut conns = Vec::new();
    let result = story(&mut w, opts, &mut conns).await;
    if let Err(e) = result {
        w.check("the walkthrough ran to the end", false, &e);
    }
    for c in &conns {
        w.s.registrations += c
            .log
            .count(|s| s.method == "POST" && s.path.ends_with("/register") && s.status == 201);
        w.s.refreshes += c
            .log
            .count(|s| s.grant_type.as_deref() == Some("refresh_token") && s.status == 200);
    }
    for mut c in conns {
        c.close().await;
    }
    w.s
}

fn failed(e: &str) -> Summary {
    println!("error: {e}");
    Summary {
        failed: vec![e.to_string()],
        ..Summary::default()
    }
}

async fn story(w: &mut Walk, opts: &Options, conns: &mut Vec<Conn>) -> Result<(), String> {
    // 1. support-assistant: the whole reactive flow, scopes chosen from the challenge.
    show::title("1. support-assistant: a client with no token meets a 401 and follows it");
    let h = w
        .meet_401("support-assistant", &opts.support, SUPPORT_SCOPES)
        .await
        .ok_or("no challenge from support-assistant")?;
    let mut support = w
        .authorize_and_connect("support-assistant", &opts.support, &h, None)
        .await?;
    let granted = last_token(&support.log)
        .and_then(|t| t.body["scope"].as_str().map(str::to_string))
        .unwrap_or_default();
    w.check(
        &format!("support-assistant's client was granted its subset: {granted}"),
        scope_set(&granted) == scope_set(SUPPORT_SCOPES),
        &granted,
    );

    show::title("2. support-assistant: tools called with the token; the server gets the brokered credential");
    let token = support.auth.get_access_token().await.unwrap_or_default();
    let mut first_downstream = None;
    for (tool, args) in [
        ("list_tickets", json!({})),
        ("get_account", json!({"account_id": "acme"})),
    ] {
        let r = w.call(&mut support, tool, args).await;
        let ok = r.is_ok();
        w.check(
            &format!("{tool} allowed"),
            ok,
            r.as_ref().err().map_or("", |e| e),
        );
        if let Ok(seen) = r {
            let auth = seen["authorization"].as_str().unwrap_or("");
            w.check(
                "the server got a downstream credential, never the client's token",
                auth.starts_with("Bearer ") && !auth.contains(&token),
                auth,
            );
            w.check(
                "scopegate told the server the effective scopes and the client",
                seen["scopegate_scopes"] == json!(SUPPORT_SCOPES)
                    && seen["scopegate_client_id"] == json!(support.client_id),
                &seen.to_string(),
            );
            first_downstream = downstream_of(&seen).or(first_downstream);
        }
    }

    // 2. ops-console: a separate client registration, least privilege first, then step-up.
    show::title("3. ops-console: its own 401, its own registration, a narrower first grant");
    let h = w
        .meet_401("ops-console", &opts.ops, OPS_SCOPES)
        .await
        .ok_or("no challenge from ops-console")?;
    show::note("this client asks only for what its first task needs: admin.read");
    let mut ops = w
        .authorize_and_connect("ops-console", &opts.ops, &h, Some(&["admin.read"]))
        .await?;
    let granted = last_token(&ops.log)
        .and_then(|t| t.body["scope"].as_str().map(str::to_string))
        .unwrap_or_default();
    w.check(
        "ops-console's client was granted admin.read",
        granted == "admin.read",
        &granted,
    );
    let r = w.call(&mut ops, "admin_report", json!({})).await;
    w.check(
        "admin_report allowed",
        r.is_ok(),
        r.as_ref().err().map_or("", |e| e),
    );
    show::note("ops-console hides what the token does not grant (listings.hide: not_granted)");
    let names = w.list_tools(&mut ops).await;
    w.check(
        "tools/list before step-up: admin_report shown, update_ticket hidden",
        names.as_ref().is_ok_and(|n| {
            n.iter().any(|t| t == "admin_report") && !n.iter().any(|t| t == "update_ticket")
        }),
        &format!("{names:?}"),
    );

    show::title("4. ops-console: update_ticket needs tickets.write: 403, then step-up");
    let args = json!({"ticket_id": "T-42", "status": "closed"});
    let r = w.call(&mut ops, "update_ticket", args.clone()).await;
    let challenge = r.as_ref().err().cloned().unwrap_or_default();
    let needed = challenge_param(&challenge, "scope").unwrap_or_default();
    w.check(
        "403 insufficient_scope naming tickets.write admin.read",
        challenge.contains("insufficient_scope") && scope_set(&needed) == scope_set(OPS_SCOPES),
        &challenge,
    );
    // rmcp's scope upgrade: the union of what was granted and what the challenge names, same
    // client (no new registration), through the browser again.
    let upgrade = {
        let m = ops.auth.auth_manager.lock().await;
        m.request_scope_upgrade(&needed).await
    };
    let auth_url = upgrade.map_err(|e| format!("scope upgrade: {e}"))?;
    ops.grant_used = false;
    w.s.grants_used += 1; // the admin.read grant carried admin_report
    w.show_auth_url(&auth_url);
    let callback = w.browser.authorize(&auth_url, &w.redirect_uri).await?;
    w.show_callback(&callback);
    let cb = AuthorizationCallback::from_redirect_url(&callback).map_err(|e| e.to_string())?;
    show::note("code exchange (rmcp):");
    {
        let m = ops.auth.auth_manager.lock().await;
        m.exchange_code_for_token_with_issuer(&cb.code, &cb.csrf_token, cb.issuer.as_deref())
            .await
            .map_err(|e| format!("step-up code exchange: {e}"))?;
    }
    w.s.authorizations += 1;
    let granted = last_token(&ops.log)
        .and_then(|t| t.body["scope"].as_str().map(str::to_string))
        .unwrap_or_default();
    w.check(
        &format!("stepped up to {granted}"),
        scope_set(&granted) == scope_set(OPS_SCOPES),
        &granted,
    );
    let r = w.call(&mut ops, "update_ticket", args).await;
    w.check(
        "update_ticket allowed after step-up, on the same MCP session",
        r.as_ref().is_ok_and(|seen| {
            scope_set(seen["scopegate_scopes"].as_str().unwrap_or("")) == scope_set(OPS_SCOPES)
        }),
        &format!("{r:?}"),
    );
    let names = w.list_tools(&mut ops).await;
    w.check(
        "tools/list after step-up: update_ticket shown too",
        names.as_ref().is_ok_and(|n| {
            n.iter().any(|t| t == "admin_report") && n.iter().any(|t| t == "update_ticket")
        }),
        &format!("{names:?}"),
    );

    show::title("5. support-assistant's token at ops-console: refused, it names another audience");
    let token = support.auth.get_access_token().await.unwrap_or_default();
    show::request(
        "POST",
        &opts.ops,
        &format!(
            "initialize  (Bearer {} — support-assistant's token)",
            show::token(&token)
        ),
    );
    let r = reqwest::Client::new()
        .post(&opts.ops)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "scopegate-walkthrough", "version": "0"}}})
            .to_string(),
        )
        .send()
        .await
        .map_err(|e| format!("POST {}: {e}", opts.ops))?;
    let status = r.status().as_u16();
    let h = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    show::response(status, &format!("WWW-Authenticate: {h}"));
    w.check(
        "401 invalid_token: the audience is support-assistant",
        status == 401 && h.contains("invalid_token"),
        &format!("{status} {h}"),
    );

    // ops-console's part is done: close its session now, while its credential is fresh (the
    // closing DELETE goes through the gateway like any request).
    ops.close().await;

    show::title("6. support-assistant: the access token expires; rmcp refreshes it (rotation)");
    let before = last_token(&support.log);
    let refreshes_before = support
        .log
        .count(|s| s.grant_type.as_deref() == Some("refresh_token"));
    let left = (support.expires_in + 1).saturating_sub(support.token_at.elapsed().as_secs());
    if w.wait("the access token to expire", left, opts.max_wait)
        .await
    {
        let r = w.call(&mut support, "list_tickets", json!({})).await;
        let after = last_token(&support.log);
        let refreshed = support
            .log
            .count(|s| s.grant_type.as_deref() == Some("refresh_token") && s.status == 200)
            > refreshes_before;
        let old_rt = before.map(|t| t.body["refresh_token"].clone());
        let new_rt = after.map(|t| t.body["refresh_token"].clone());
        w.check(
            "refreshed with the refresh token, which rotated",
            refreshed && new_rt.as_ref().is_some_and(|n| n.is_string()) && old_rt != new_rt,
            "no refresh_token grant, or the same refresh token came back",
        );
        w.check(
            "list_tickets allowed with the refreshed token",
            r.is_ok(),
            r.as_ref().err().map_or("", |e| e),
        );
        if let Ok(seen) = &r {
            w.check(
                "the downstream credential was reused: the grant did not change",
                downstream_of(seen).map(|d| d.0) == first_downstream.as_ref().map(|d| d.0.clone()),
                "a different downstream credential",
            );
        }
    }

    show::title(
        "7. support-assistant: the downstream credential expires; the broker refreshes it once",
    );
    match first_downstream {
        Some((old, exp)) => {
            let left = (exp + 1).saturating_sub(now());
            if w.wait("the downstream credential to expire", left, opts.max_wait)
                .await
            {
                let mut renewed = None;
                for tool in ["list_tickets", "list_tickets"] {
                    let r = w.call(&mut support, tool, json!({})).await;
                    w.check(
                        &format!("{tool} allowed after the downstream expiry"),
                        r.is_ok(),
                        r.as_ref().err().map_or("", |e| e),
                    );
                    if let Ok(seen) = r {
                        let d = downstream_of(&seen);
                        if renewed.is_none() {
                            renewed = d.clone();
                            w.check(
                                "the server got a new downstream credential with a later expiry",
                                d.as_ref().is_some_and(|(t, e)| *t != old && *e > exp),
                                &describe_seen(&seen),
                            );
                        } else {
                            w.check(
                                "the next call reuses it",
                                d.map(|x| x.0) == renewed.as_ref().map(|x| x.0.clone()),
                                &describe_seen(&seen),
                            );
                        }
                    }
                }
                if renewed.as_ref().is_some_and(|(t, _)| *t != old) {
                    w.s.downstream_renewals += 1;
                }
            }
        }
        None => w.skip(
            "downstream expiry",
            "the server did not report a JWT credential",
        ),
    }

    show::title("8. one registration per client, whatever happened since");
    for c in [&support, &ops] {
        let n = c
            .log
            .count(|s| s.method == "POST" && s.path.ends_with("/register") && s.status == 201);
        w.check(
            &format!("{}: registered once (client_id {})", c.name, c.client_id),
            n == 1,
            &format!("{n} registrations"),
        );
    }
    for c in [&support, &ops] {
        if c.grant_used {
            w.s.grants_used += 1;
        }
    }
    remembered_and_withdrawn(w, &mut support).await?;
    conns.push(support);
    conns.push(ops);
    Ok(())
}

/// 9 and 10: the person's side of the broker. Asked again for what they already allowed, the
/// broker does not show the page; withdrawn on the connected-apps page, the grant stops working.
async fn remembered_and_withdrawn(w: &mut Walk, support: &mut Conn) -> Result<(), String> {
    show::title("9. support-assistant's client asks again for what it holds: no consent page");
    let auth_url = {
        let m = support.auth.auth_manager.lock().await;
        m.request_scope_upgrade(SUPPORT_SCOPES).await
    }
    .map_err(|e| format!("authorization again: {e}"))?;
    let issuer = auth_url
        .split("/authorize")
        .next()
        .unwrap_or_default()
        .to_string();
    w.show_auth_url(&auth_url);
    let pages = w.browser.consent_pages();
    let callback = w.browser.authorize(&auth_url, &w.redirect_uri).await?;
    w.show_callback(&callback);
    w.check(
        "the broker remembered the approval: the person saw no consent page",
        w.browser.consent_pages() == pages,
        &format!("{} consent pages shown", w.browser.consent_pages() - pages),
    );
    let cb = AuthorizationCallback::from_redirect_url(&callback).map_err(|e| e.to_string())?;
    {
        let m = support.auth.auth_manager.lock().await;
        m.exchange_code_for_token_with_issuer(&cb.code, &cb.csrf_token, cb.issuer.as_deref())
            .await
            .map_err(|e| format!("code exchange: {e}"))?;
    }
    w.s.authorizations += 1;
    support.grant_used = false;
    let r = w.call(support, "list_tickets", json!({})).await;
    w.check(
        "list_tickets with the new grant",
        r.is_ok(),
        &format!("{r:?}"),
    );
    if support.grant_used {
        w.s.grants_used += 1;
    }

    show::title("10. the person withdraws support-assistant's access on the connected-apps page");
    let page = w.browser.connected_apps(&issuer).await?;
    let rows: Vec<&str> = page.split("<tr data-grant=\"").skip(1).collect();
    let theirs: Vec<String> = rows
        .iter()
        .filter(|row| {
            row.split("</tr>")
                .next()
                .unwrap_or("")
                .contains("support-assistant")
        })
        .filter_map(|row| row.split('"').next().map(str::to_string))
        .collect();
    w.check(
        &format!(
            "the page lists support-assistant's {} grants among all {}",
            theirs.len(),
            rows.len()
        ),
        theirs.len() == 2 && rows.len() == 4,
        &format!("{} grants listed", rows.len()),
    );
    let mut withdrawn = 0;
    for id in &theirs {
        if w.browser.withdraw(&page, id).await? == 303 {
            withdrawn += 1;
        }
    }
    w.check(
        "each withdrawal answered 303",
        withdrawn == theirs.len(),
        &format!("{withdrawn} of {}", theirs.len()),
    );
    // The revocation feed reaches every Envoy within its poll period plus a second; by then the
    // demo's short-lived access token has expired too, so the client tries its refresh token.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let refused_refreshes = |c: &Conn| {
        c.log.count(|s| {
            s.path.ends_with("/token")
                && s.grant_type.as_deref() == Some("refresh_token")
                && s.status == 400
                && s.body["error"] == "invalid_grant"
        })
    };
    let before = refused_refreshes(support);
    let r = w.call(support, "list_tickets", json!({})).await;
    let refused = r.as_ref().err().cloned().unwrap_or_default();
    w.check(
        "the withdrawn grant's refresh is refused at the broker (invalid_grant), and Envoy answers \
         401: the client must ask the person again",
        refused_refreshes(support) > before && refused.starts_with("Bearer "),
        &refused,
    );
    Ok(())
}
