//! `/register`: RFC 7591 dynamic client registration, JSON only, within the gateway's limits.

use super::*;
use scopegate_core::oauth::client::RegistrationResponse;

pub(super) async fn register(
    State(app): State<Arc<App>>,
    gw: Gateway,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    if !gw.dcr {
        return Ok(StatusCode::NOT_FOUND.into_response());
    }
    // Only JSON: the content types a page can make a browser send cross-origin without a
    // preflight (text/plain, forms, multipart) are refused.
    if !http::is_json(&headers) {
        return Err(Error::from(OAuthError::invalid_client_metadata(
            "the request body must be sent as Content-Type: application/json",
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    let body: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| OAuthError::invalid_client_metadata("the request body is not JSON"))?;
    let meta = validate_registration(&body)?;
    registration_admitted(&app, &gw).await?;
    let client_id = crypto::id()?;
    let secret = crypto::token()?;
    let secret = (!meta.is_public()).then_some(secret);
    let now = app.now();
    let row = ClientRow {
        client_id: client_id.clone(),
        gateway: gw.name.clone(),
        metadata: serde_json::to_string(&meta).unwrap_or_default(),
        secret_hash: secret.as_deref().map(crypto::hash),
        created_at: now,
    };
    app.db(move |s| s.put_client(&row)).await?;
    tracing::info!(gateway = %gw.name, client_id = %client_id, kind = "dcr", "client registered");
    crate::telemetry::note("client_id", &client_id);
    app.metrics
        .registrations
        .with_label_values(&[gw.name.as_str()])
        .inc();
    let out = RegistrationResponse::new(&meta, &client_id, now, secret.as_deref());
    Ok(json(
        StatusCode::CREATED,
        serde_json::to_value(out).unwrap_or_default(),
    ))
}

/// The gateway's registration limits (core's window and cap): 429 with `Retry-After` beyond them.
async fn registration_admitted(app: &App, gw: &crate::app::GatewayRt) -> Result<(), Error> {
    use scopegate_core::oauth::registration::room_for_one;
    let limits = gw.registration.clone();
    let name = gw.name.clone();
    let live = app.db(move |s| s.count_clients(&name)).await?;
    let verdict = if !room_for_one(live, limits.max_clients) {
        Err(3600)
    } else {
        gw.registrations
            .lock()
            .map_err(|_| Error::internal("registration window lock poisoned"))?
            .admit(app.now(), limits.per_minute)
    };
    verdict.map_err(|retry_after| {
        tracing::warn!(gateway = %gw.name, live, "registration refused: limit reached");
        Error::unavailable("too many client registrations for this gateway; retry later")
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .retry_after(retry_after)
    })
}
