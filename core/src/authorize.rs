//! The request-path rules: from bearer header, verified claims and MCP calls to a [`Decision`].
//!
//! The filter calls these in order: [`bearer_token`], then (after verifying) [`admit`], then
//! [`decide`] with whatever calls the body held. Each step returns a ready-made refusal, so the
//! adapter only translates decisions into host calls.

use crate::challenge::{www_authenticate, ChallengeKind};
use crate::config::BodyMode;
use crate::decision::{Audit, Decision, Denial, Grant, Outcome, Reason};
use crate::jwt::{Claims, TokenError};
use crate::mcp::{self, Call, McpError, NativeMetadata};
use crate::oauth::OAuthErrorCode;
use crate::policy::{Gateway, Policy, Server, ServerId};
use crate::scopes::ScopeSet;

/// Who the token speaks for, and what it may do on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub client_id: String,
    /// Token scopes within the gateway's allowed set.
    pub granted: ScopeSet,
    /// `granted` ∩ the server's subset: what requests to this server may use.
    pub effective: ScopeSet,
    /// Token scopes the gateway never grants, space-separated (for the audit record).
    pub foreign: String,
    pub grant_id: Option<String>,
}

/// The server and gateway a decision is about, looked up once.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub server: &'a Server,
    pub gateway: &'a Gateway,
}

impl<'a> Target<'a> {
    pub fn of(policy: &'a Policy, id: ServerId) -> Option<Target<'a>> {
        let server = policy.server(id)?;
        let gateway = policy.gateway_of(server)?;
        Some(Target { server, gateway })
    }

    /// A fresh audit record for this server.
    fn audit(&self, reason: Reason) -> Audit {
        Audit::new(self.server.name.as_str(), reason)
    }

    /// The 401 refusal with a challenge for this server, recorded on a fresh audit record.
    fn unauthorized(&self, kind: ChallengeKind, reason: Reason, description: &str) -> Decision {
        self.unauthorized_as(self.audit(reason), kind, reason, description)
    }

    /// The 401 refusal with a challenge for this server, recorded on `audit` (which may already
    /// name the subject and client).
    pub fn unauthorized_as(
        &self,
        audit: Audit,
        kind: ChallengeKind,
        reason: Reason,
        description: &str,
    ) -> Decision {
        let desc = (kind != ChallengeKind::NoToken).then_some(description);
        let www = www_authenticate(
            kind,
            &self.server.metadata_url,
            &self.server.challenge_scope,
            desc,
        );
        let error = if kind == ChallengeKind::NoToken {
            OAuthErrorCode::Unauthorized
        } else {
            OAuthErrorCode::InvalidToken
        };
        let denial = Denial::oauth(401, error, description).challenge(www);
        Decision::refusal(reason, denial, audit)
    }
}

/// The credentials of a `Bearer` authorization value, trimmed, without [`bearer_token`]'s
/// syntax checks: only for looking up tokens that already passed them (a cache of verified
/// tokens). Anything else goes through [`bearer_token`].
pub fn bearer_credentials(authorization: &str) -> Option<&str> {
    let value = authorization.trim();
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// Extracts the bearer token (RFC 6750 §2.1: header only; the scheme is case-insensitive).
pub fn bearer_token<'h>(
    target: Target<'_>,
    authorization: Option<&'h str>,
) -> Result<&'h str, Box<Decision>> {
    let Some(value) = authorization else {
        return Err(Box::new(target.unauthorized(
            ChallengeKind::NoToken,
            Reason::NoToken,
            "a bearer token is required",
        )));
    };
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Box::new(target.unauthorized(
            ChallengeKind::NoToken,
            Reason::NoToken,
            "a bearer token is required",
        )));
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(Box::new(target.unauthorized(
            ChallengeKind::InvalidToken,
            Reason::Malformed,
            "the bearer token is malformed",
        )));
    }
    Ok(token)
}

/// The refusal for a token that did not verify.
pub fn token_rejected(target: Target<'_>, err: &TokenError) -> Decision {
    let description = match err {
        TokenError::Expired => "the access token expired",
        TokenError::WrongIssuer | TokenError::MissingIssuer => {
            "the access token is from another issuer"
        }
        TokenError::MissingExp => "the access token has no expiry",
        TokenError::NotYetValid => "the access token is not valid yet",
        TokenError::UnsupportedAlgorithm => "the access token's algorithm is not accepted",
        TokenError::UnknownKid(_) | TokenError::NoMatchingKey | TokenError::BadSignature => {
            "the access token's signature does not verify"
        }
        _ => "the access token is malformed",
    };
    target.unauthorized(ChallengeKind::InvalidToken, err.reason(), description)
}

/// The refusal while no signing keys are loaded yet: fail closed, and say it is temporary.
pub fn keys_unavailable(target: Target<'_>) -> Decision {
    let denial = Denial::oauth(
        503,
        OAuthErrorCode::TemporarilyUnavailable,
        "signing keys are not loaded yet; retry shortly",
    );
    Decision::refusal(
        Reason::JwksUnavailable,
        denial,
        target.audit(Reason::JwksUnavailable),
    )
}

/// Checks a verified token against this server: expiry (claims may come from a cache),
/// audience, and the scopes it may use here.
pub fn admit(
    target: Target<'_>,
    claims: &Claims,
    now: u64,
    leeway: u64,
) -> Result<Principal, Box<Decision>> {
    if claims.exp.saturating_add(leeway) <= now {
        return Err(Box::new(token_rejected(target, &TokenError::Expired)));
    }
    // Verified claims are cached per token across gateways: the issuer must be this gateway's.
    if claims.iss != target.gateway.issuer {
        return Err(Box::new(token_rejected(target, &TokenError::WrongIssuer)));
    }
    let resource = target.server.resource.as_str();
    if !claims.aud.iter().any(|a| a == resource) {
        return Err(Box::new(target.unauthorized(
            ChallengeKind::InvalidToken,
            Reason::WrongAudience,
            "the access token is not for this resource",
        )));
    }
    let classified = target.gateway.scopes.classify(&claims.scopes);
    let foreign = classified.foreign.join(" ");
    let subject = subject_of(target.gateway, claims);
    let client_id = claims.client_id.clone().unwrap_or_default();
    if target.gateway.reject_foreign_scopes && !foreign.is_empty() {
        let audit = Audit {
            foreign_scopes: foreign,
            subject,
            client_id: Some(client_id),
            ..target.audit(Reason::ForeignScope)
        };
        return Err(Box::new(target.unauthorized_as(
            audit,
            ChallengeKind::InvalidToken,
            Reason::ForeignScope,
            "the access token carries scopes this gateway does not allow",
        )));
    }
    // Both go into request headers upstream: a control character could split a header.
    if subject
        .as_deref()
        .unwrap_or("")
        .chars()
        .any(char::is_control)
        || client_id.chars().any(char::is_control)
    {
        return Err(Box::new(target.unauthorized(
            ChallengeKind::InvalidToken,
            Reason::Malformed,
            "the access token's subject or client_id is not header-safe",
        )));
    }
    let Some(subject) = subject else {
        return Err(Box::new(target.unauthorized(
            ChallengeKind::InvalidToken,
            Reason::NoSubject,
            "the access token has no subject",
        )));
    };
    Ok(Principal {
        subject,
        client_id,
        granted: classified.granted,
        effective: classified.granted.intersect(target.server.scopes),
        foreign,
        grant_id: claims.grant_id.clone(),
    })
}

/// What a verified token earns on one server before any message is read: the principal, the
/// decision on the token alone, and that decision's audit record as access-log JSON.
///
/// It depends on the claims and the policy only (expiry aside, which the caller checks on every
/// request), so the filter computes it once per cached token and server, and a cache hit
/// re-decides nothing.
#[derive(Debug, Clone)]
pub struct Admission {
    pub principal: Principal,
    /// [`decide`] with no calls: final when the body is not read, else the token's part.
    pub decision: Decision,
    /// [`crate::upstream::record_json`] of `decision.audit`.
    pub record: String,
}

/// [`admit`], then [`decide`] on the token alone.
pub fn admission(
    target: Target<'_>,
    claims: &Claims,
    now: u64,
    leeway: u64,
) -> Result<Admission, Box<Decision>> {
    let principal = admit(target, claims, now, leeway)?;
    let decision = decide(target, &principal, &[]);
    let record = crate::upstream::record_json(&decision.audit);
    Ok(Admission {
        principal,
        decision,
        record,
    })
}

/// What a cached token keeps of its claims beyond the registered ones: only those the policy
/// reads (each gateway's `subject_claim`). Identity providers' tokens carry dozens more (names,
/// groups, tenant and session ids) that would otherwise sit in every worker's token cache until
/// `exp`. A new policy starts a new cache, so a claim it reads is never missing from an entry.
pub fn keep_read_claims(policy: &Policy, claims: &mut Claims) {
    let all = std::mem::take(&mut claims.extra);
    for g in &policy.gateways {
        if let Some(value) = all.get(&g.subject_claim) {
            claims.extra.insert(g.subject_claim.clone(), value.clone());
        }
    }
}

/// The identity mapping rule: the gateway's subject claim, as a string.
fn subject_of(gateway: &Gateway, claims: &Claims) -> Option<String> {
    let value = if gateway.subject_claim == "sub" {
        claims.sub.clone()
    } else {
        claims
            .extra
            .get(&gateway.subject_claim)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    value.filter(|s| !s.is_empty())
}

/// Scopes the calls need on this server: base scopes, then per-method and per-tool needs.
pub fn required_scopes(server: &Server, calls: &[Call]) -> ScopeSet {
    let mut needs = server.base_scopes;
    for call in calls {
        if let Some(s) = server.methods.get(&call.method) {
            needs = needs.union(*s);
        }
        if call.method == "tools/call" {
            if let Some(s) = call.name.as_deref().and_then(|n| server.tools.get(n)) {
                needs = needs.union(*s);
            }
        }
        needs = needs.union(crate::reach::call_scopes(server, call));
    }
    needs
}

/// What the rules say of an admitted principal's calls, before any decision is built.
enum Verdict<'c> {
    Allowed,
    /// A call the document denies outright.
    Denied(&'c Call),
    /// The scopes the calls need, not all granted.
    Insufficient(ScopeSet),
}

/// The checks [`decide`] makes, without the audit record, strings or challenge it builds: a
/// declared call that is allowed ([`early_refusal`]) costs no allocation.
fn verdict<'c>(server: &Server, principal: &Principal, calls: &'c [Call]) -> Verdict<'c> {
    if let Some(call) = crate::reach::denied_call(server, calls) {
        return Verdict::Denied(call);
    }
    let needs = required_scopes(server, calls);
    if needs.is_subset_of(principal.effective) {
        Verdict::Allowed
    } else {
        Verdict::Insufficient(needs)
    }
}

/// The final decision for a request whose token was admitted.
pub fn decide(target: Target<'_>, principal: &Principal, calls: &[Call]) -> Decision {
    let index = &target.gateway.scopes;
    let verdict = verdict(target.server, principal, calls);
    let tool = calls
        .iter()
        .find(|c| c.method == "tools/call")
        .and_then(|c| c.name.clone());
    let mut audit = target.audit(Reason::Ok);
    audit.subject = Some(principal.subject.clone());
    audit.client_id = Some(principal.client_id.clone());
    audit.foreign_scopes = principal.foreign.clone();
    audit.tool = tool;
    let scopes = index.render(principal.effective);

    if let Verdict::Denied(call) = verdict {
        return denied(target, audit, call, scopes);
    }
    if let Verdict::Insufficient(needs) = verdict {
        // Name needed ∪ granted: clients that replace rather than union their scopes keep what they had.
        let ask = index.render(needs.union(principal.effective));
        let missing = index.render(needs.minus(principal.effective));
        let description = match &audit.tool {
            _ if calls.len() > 1 => format!("this batch needs scope `{missing}`"),
            Some(t) => format!("tool `{t}` needs scope `{missing}`"),
            None => format!("this request needs scope `{missing}`"),
        };
        let www = www_authenticate(
            ChallengeKind::InsufficientScope,
            &target.server.metadata_url,
            &ask,
            Some(&description),
        );
        audit.scopes = scopes;
        let denial =
            Denial::oauth(403, OAuthErrorCode::InsufficientScope, &description).challenge(www);
        return Decision::refusal(Reason::InsufficientScope, denial, audit);
    }

    audit.scopes = scopes.clone();
    Decision {
        outcome: Outcome::Allow(Grant {
            subject: principal.subject.clone(),
            client_id: principal.client_id.clone(),
            scopes,
            forward_client_token: target.server.forward_client_token,
            grant_id: principal.grant_id.clone(),
        }),
        audit,
    }
}

/// The refusal for a call the document denies outright: no scope helps, so no OAuth challenge
/// (the body becomes a JSON-RPC error with the request's id, see `jsonrpc`).
fn denied(target: Target<'_>, mut audit: Audit, call: &Call, scopes: String) -> Decision {
    let what = match call.name.as_deref() {
        Some(n) => format!("`{}` of `{n}`", call.method),
        None => format!("`{}`", call.method),
    };
    let message = format!(
        "{what} is not available through server `{}`",
        target.server.name
    );
    audit.scopes = scopes;
    let body = crate::jsonrpc::error_body(None, crate::jsonrpc::DENIED, &message, None);
    Decision::refusal(Reason::Denied, Denial::with_body(403, body), audit)
}

/// The refusal for a body that cannot be classified or whose `Mcp-*` headers disagree with it.
/// No `id` member here: the filter's reply puts in the request's id through
/// [`crate::jsonrpc::refusal`], from the body or as `envoy.filters.http.mcp` recorded it
/// (`null` only when neither can be read, JSON-RPC 2.0 §5).
pub fn bad_request(target: Target<'_>, err: &McpError) -> Decision {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "error": { "code": err.code(), "message": err.describe() },
    })
    .to_string();
    let reason = err.reason();
    Decision::refusal(reason, Denial::with_body(400, body), target.audit(reason))
}

/// The refusal for a body larger than the filter reads.
pub fn body_too_large(target: Target<'_>) -> Decision {
    let denial = Denial::oauth(
        413,
        OAuthErrorCode::InvalidRequest,
        "request body too large to classify",
    );
    Decision::refusal(
        Reason::BodyTooLarge,
        denial,
        target.audit(Reason::BodyTooLarge),
    )
}

/// What happens to a governed request once its token is admitted, by body mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No per-call rule can apply (not a POST, or the server has none): decide now, no body.
    DecideNow,
    /// `hold_headers`: keep the headers until the body is complete, then [`decide_body`].
    HoldHeaders,
    /// `hold_body`: refuse now what the `Mcp-*` headers already show is refused
    /// ([`early_refusal`]); else forward the headers with identity and credential, hold the
    /// body, and [`decide_body`] once it is complete.
    HoldBody,
    /// `mcp_metadata`: [`decide_metadata`] now, on what `envoy.filters.http.mcp` parsed.
    FromMetadata,
}

/// Chooses the plan. Requests that need no body never wait for one, whatever the mode.
pub fn body_plan(server: &Server, mode: BodyMode, is_post: bool) -> BodyPlan {
    if !is_post || !server.needs_body() {
        return BodyPlan::DecideNow;
    }
    match mode {
        BodyMode::HoldBody => BodyPlan::HoldBody,
        BodyMode::HoldHeaders => BodyPlan::HoldHeaders,
        BodyMode::McpMetadata => BodyPlan::FromMetadata,
    }
}

/// `hold_body`, before the headers go upstream: the refusal for the call the
/// `Mcp-Method`/`Mcp-Name` headers declare (base scopes included). With neither header there is
/// nothing to decide beyond the token's own decision ([`admission`]), which the caller enforces.
/// `None` means "forward the headers", never "allowed": the body is still decided on its own calls.
pub fn early_refusal(
    target: Target<'_>,
    principal: &Principal,
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Option<Decision> {
    if mcp_method.is_none() && mcp_name.is_none() {
        // Nothing declared: the token's own decision (its admission) is the early one.
        return None;
    }
    let calls = mcp::declared(mcp_method, mcp_name).unwrap_or_default();
    // An allowed declaration is forgotten at once: build nothing for it.
    if let Verdict::Allowed = verdict(target.server, principal, &calls) {
        return None;
    }
    Some(decide(target, principal, &calls))
}

/// The decision on a complete JSON-RPC body (`hold_body`, `hold_headers`): the body's own
/// calls decide, and the `Mcp-*` headers, when sent, must agree with every one of them.
pub fn decide_body(
    target: Target<'_>,
    principal: &Principal,
    body: &[u8],
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> (Decision, Vec<Call>) {
    match body_calls(target, body, mcp_method, mcp_name) {
        Ok(calls) => (decide(target, principal, &calls), calls),
        Err(refusal) => (*refusal, Vec::new()),
    }
}

/// The first half of [`decide_body`]: the body's calls, checked against the `Mcp-*` headers,
/// or the refusal of a body that is not JSON-RPC or disagrees with them. The decision on the
/// calls is [`decide`], which depends on the server, the principal and the calls only (a
/// caller may keep it for the next request with the same three).
pub fn body_calls(
    target: Target<'_>,
    body: &[u8],
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Result<Vec<Call>, Box<Decision>> {
    mcp::classify(body, mcp_method, mcp_name).map_err(|e| Box::new(bad_request(target, &e)))
}

/// The decision on what `envoy.filters.http.mcp` wrote (`mcp_metadata`): missing or partial
/// metadata is refused, and the `Mcp-*` headers, when sent, must agree with it.
pub fn decide_metadata(
    target: Target<'_>,
    principal: &Principal,
    metadata: &NativeMetadata,
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> (Decision, Vec<Call>) {
    let calls = mcp::from_metadata(metadata)
        .and_then(|calls| mcp::check_declared(&calls, mcp_method, mcp_name).map(|()| calls));
    match calls {
        Ok(calls) => (decide(target, principal, &calls), calls),
        Err(e) => (bad_request(target, &e), Vec::new()),
    }
}
