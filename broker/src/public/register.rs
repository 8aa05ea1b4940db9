//! `/register`: RFC 7591 dynamic client registration, JSON only, within the gateway's limits.

use super::*;
use scopegate_core::oauth::client::RegistrationResponse;

pub(super) async fn register(
    State(app): State<Arc<App>>,
    gw: Gateway,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !gw.dcr {
        return StatusCode::NOT_FOUND.into_response();
    }
    // Only JSON: the content types a page can make a browser send cross-origin without a
    // preflight (text/plain, forms, multipart) are refused.
    if !http::is_json(&headers) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            OAuthReply(OAuthError::invalid_client_metadata(
                "the request body must be sent as Content-Type: application/json",
            )),
        )
            .into_response();
    }
    let body: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return OAuthReply(OAuthError::invalid_client_metadata(
                "the request body is not JSON",
            ))
            .into_response()
        }
    };
    let meta = match validate_registration(&body) {
        Ok(m) => m,
        Err(e) => return OAuthReply(e).into_response(),
    };
    if let Err(r) = registration_admitted(&app, &gw).await {
        return r;
    }
    let (Ok(client_id), Ok(secret)) = (crypto::id(), crypto::token()) else {
        return OAuthReply(server_error("no randomness")).into_response();
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
        return OAuthReply(server_error(&e)).into_response();
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
}

/// The gateway's registration limits (core's window and cap): 429 with `Retry-After` beyond them.
async fn registration_admitted(app: &Arc<App>, gw: &crate::app::GatewayRt) -> Result<(), Response> {
    use scopegate_core::oauth::registration::room_for_one;
    let limits = gw.registration.clone();
    let name = gw.name.clone();
    let live = app
        .db(move |s| s.count_clients(&name))
        .await
        .map_err(|e| OAuthReply(server_error(&e)).into_response())?;
    let verdict = if !room_for_one(live, limits.max_clients) {
        Err(3600)
    } else {
        match gw.registrations.lock() {
            Ok(mut w) => w.admit(crate::now(), limits.per_minute),
            Err(_) => {
                return Err(
                    OAuthReply(server_error("registration window lock poisoned")).into_response(),
                )
            }
        }
    };
    verdict.map_err(|retry_after| {
        tracing::warn!(gateway = %gw.name, live, "registration refused: limit reached");
        let e = OAuthError::new(
            OAuthErrorCode::TemporarilyUnavailable,
            "too many client registrations for this gateway; retry later",
        );
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(retry_after))],
            OAuthReply(e),
        )
            .into_response()
    })
}
