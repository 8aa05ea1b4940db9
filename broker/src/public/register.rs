//! `/register`: RFC 7591 dynamic client registration, JSON only, within the gateway's limits.

use super::*;
use scopegate_core::oauth::client::RegistrationResponse;

pub(super) fn register(app: Arc<App>, gi: usize, req: Req) -> Fut {
    Box::pin(async move {
        let Some(gw) = app.gateways.get(gi) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if !gw.dcr {
            return StatusCode::NOT_FOUND.into_response();
        }
        // Only JSON: the content types a page can make a browser send cross-origin without a
        // preflight (text/plain, forms, multipart) are refused.
        if !http::is_json(&req.headers) {
            let mut r = error(&OAuthError::invalid_client_metadata(
                "the request body must be sent as Content-Type: application/json",
            ));
            *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
            return r;
        }
        let body: serde_json::Value = match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(_) => {
                return error(&OAuthError::invalid_client_metadata(
                    "the request body is not JSON",
                ))
            }
        };
        let meta = match validate_registration(&body) {
            Ok(m) => m,
            Err(e) => return error(&e),
        };
        if let Err(r) = registration_admitted(&app, gw).await {
            return r;
        }
        let (Ok(client_id), Ok(secret)) = (crypto::id(), crypto::token()) else {
            return error(&server_error("no randomness"));
        };
        let secret = (!meta.is_public()).then_some(secret);
        let now = crate::now();
        let row = ClientRow {
            client_id: client_id.clone(),
            gateway: gw.name.clone(),
            metadata: serde_json::to_string(&meta).unwrap_or_default(),
            secret_hash: secret.as_deref().map(crypto::hash),
            created_at: now,
        };
        if let Err(e) = app.db(move |s| s.put_client(&row)).await {
            return error(&server_error(&e));
        }
        tracing::info!(gateway = %gw.name, client_id = %client_id, kind = "dcr", "client registered");
        app.metrics
            .registrations
            .with_label_values(&[gw.name.as_str()])
            .inc();
        let out = RegistrationResponse::new(&meta, &client_id, now, secret.as_deref());
        json(
            StatusCode::CREATED,
            serde_json::to_value(out).unwrap_or_default(),
        )
    })
}

/// The gateway's registration limits (core's window and cap): 429 with `Retry-After` beyond them.
async fn registration_admitted(app: &Arc<App>, gw: &crate::app::GatewayRt) -> Result<(), Response> {
    use scopegate_core::oauth::registration::room_for_one;
    let limits = gw.registration.clone();
    let name = gw.name.clone();
    let live = app
        .db(move |s| s.count_clients(&name))
        .await
        .map_err(|e| error(&server_error(&e)))?;
    let verdict = if !room_for_one(live, limits.max_clients) {
        Err(3600)
    } else {
        match gw.registrations.lock() {
            Ok(mut w) => w.admit(crate::now(), limits.per_minute),
            Err(_) => return Err(error(&server_error("registration window lock poisoned"))),
        }
    };
    verdict.map_err(|retry_after| {
        tracing::warn!(gateway = %gw.name, live, "registration refused: limit reached");
        let mut r = error(&OAuthError::new(
            "temporarily_unavailable",
            "too many client registrations for this gateway; retry later",
        ));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    })
}
