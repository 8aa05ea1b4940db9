//! Signing keys per JWKS source: parsed once per worker, shared across workers through shared data.
//!
//! One worker fetches (whoever wins a compare-and-swap lease in shared data) and stores the
//! document; every worker notices the new CAS value on its next tick or unknown `kid` and parses
//! it. The same lease, with its own key, rate-limits refetches caused by unknown `kid`s so a
//! flood of bogus kids cannot become a flood of fetches.

use crate::host::Host;
use proxy_wasm::types::Status;
use scopegate_core::jwks::KeySet;
use scopegate_core::policy::{JwksLocation, JwksSource, JwksSourceId, Policy};
use std::rc::Rc;
use std::time::Duration;

/// Retry period while a source has no keys at all (governed requests get 503 until then).
const RETRY_MS: u64 = 500;

struct SourceState {
    spec: JwksSource,
    keys: Option<Rc<KeySet>>,
    /// CAS of the shared-data entry the current keys came from.
    cas: Option<u32>,
}

/// A fetch the caller should dispatch.
pub struct Fetch<'a> {
    pub cluster: &'a str,
    pub path: &'a str,
    pub authority: &'a str,
    pub timeout: Duration,
}

#[derive(Default)]
pub struct KeyStore {
    sources: Vec<SourceState>,
}

impl KeyStore {
    pub fn new(policy: &Policy) -> KeyStore {
        let sources = policy
            .jwks_sources
            .iter()
            .map(|spec| {
                let keys = match &spec.location {
                    JwksLocation::Inline(doc) => {
                        KeySet::from_json(doc.as_bytes()).ok().map(Rc::new)
                    }
                    JwksLocation::Fetch { .. } => None,
                };
                SourceState {
                    spec: spec.clone(),
                    keys,
                    cas: None,
                }
            })
            .collect();
        KeyStore { sources }
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn keys(&self, id: JwksSourceId) -> Option<Rc<KeySet>> {
        self.sources.get(id).and_then(|s| s.keys.clone())
    }

    /// Names the key set a source holds now: equal on every worker holding the same keys.
    pub fn generation(&self, id: JwksSourceId) -> u64 {
        let cas = self.sources.get(id).and_then(|s| s.cas).unwrap_or(0);
        (u64::try_from(id).unwrap_or(0) << 32) | u64::from(cas)
    }

    /// Whether every source has keys (until then the root ticks faster).
    pub fn all_loaded(&self) -> bool {
        self.sources.iter().all(|s| s.keys.is_some())
    }

    pub fn fetch_spec(&self, id: JwksSourceId) -> Option<Fetch<'_>> {
        let s = self.sources.get(id)?;
        match &s.spec.location {
            JwksLocation::Fetch {
                cluster,
                path,
                authority,
            } => Some(Fetch {
                cluster,
                path,
                authority,
                timeout: Duration::from_millis(s.spec.timeout_ms),
            }),
            JwksLocation::Inline(_) => None,
        }
    }

    /// Picks up keys another worker stored. Returns true when the keys changed.
    pub fn sync(&mut self, h: &mut impl Host, id: JwksSourceId) -> bool {
        let Some(s) = self.sources.get_mut(id) else {
            return false;
        };
        if matches!(s.spec.location, JwksLocation::Inline(_)) {
            return false;
        }
        match h.shared_data(&s.spec.shared_key) {
            Ok((Some(doc), cas)) if cas != s.cas => match KeySet::from_json(&doc) {
                Ok(keys) => {
                    s.keys = Some(Rc::new(keys));
                    s.cas = cas;
                    true
                }
                Err(e) => {
                    log::warn!("shared JWKS for source {id} is unusable: {e}");
                    false
                }
            },
            Ok(_) => false,
            Err(e) => {
                log::warn!("cannot read shared JWKS: {e:?}");
                false
            }
        }
    }

    /// Parses a fetched document and, if usable and new, publishes it to every worker.
    /// Returns whether the keys changed: an unchanged document keeps its shared-data version, so
    /// no worker drops its verified tokens on a routine refresh.
    pub fn install(
        &mut self,
        h: &mut impl Host,
        id: JwksSourceId,
        doc: &[u8],
    ) -> Result<bool, String> {
        let Some(s) = self.sources.get_mut(id) else {
            return Err("no such JWKS source".into());
        };
        let keys = KeySet::from_json(doc).map_err(|e| e.to_string())?;
        if let Ok((Some(current), cas)) = h.shared_data(&s.spec.shared_key) {
            if current == doc {
                if s.cas != cas || s.keys.is_none() {
                    s.cas = cas;
                    s.keys = Some(Rc::new(keys));
                }
                return Ok(false);
            }
        }
        if let Err(e) = h.set_shared_data(&s.spec.shared_key, doc, None) {
            log::warn!("cannot share JWKS with other workers: {e:?}");
        }
        s.cas = h
            .shared_data(&s.spec.shared_key)
            .ok()
            .and_then(|(_, cas)| cas);
        s.keys = Some(Rc::new(keys));
        Ok(true)
    }

    /// Whether this worker should run the periodic fetch now (a process-wide lease).
    pub fn claim_refresh(&self, h: &mut impl Host, id: JwksSourceId, now_ms: u64) -> bool {
        let Some(s) = self.sources.get(id) else {
            return false;
        };
        if matches!(s.spec.location, JwksLocation::Inline(_)) {
            return false;
        }
        let period = if s.keys.is_some() {
            s.spec.refresh_s.saturating_mul(1000)
        } else {
            RETRY_MS
        };
        claim(
            h,
            &format!("{}.refresh_due", s.spec.shared_key),
            now_ms,
            period,
        )
    }

    /// Whether an unknown `kid` may trigger a refetch now (process-wide rate limit).
    pub fn claim_unknown_kid(&self, h: &mut impl Host, id: JwksSourceId, now_ms: u64) -> bool {
        let Some(s) = self.sources.get(id) else {
            return false;
        };
        if matches!(s.spec.location, JwksLocation::Inline(_)) {
            return false;
        }
        let period = s.spec.unknown_kid_refetch_s.saturating_mul(1000);
        claim(h, &format!("{}.kid_due", s.spec.shared_key), now_ms, period)
    }
}

/// Takes the lease stored under `key` if it is due, pushing it `period_ms` ahead. CAS makes
/// sure only one worker wins when several tick at once.
pub(crate) fn claim(h: &mut impl Host, key: &str, now_ms: u64, period_ms: u64) -> bool {
    let (due, cas) = match h.shared_data(key) {
        Ok((value, cas)) => (
            value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0),
            cas,
        ),
        Err(e) => {
            log::warn!("cannot read lease {key}: {e:?}");
            return false;
        }
    };
    if now_ms < due {
        return false;
    }
    let next = now_ms.saturating_add(period_ms).to_string();
    match h.set_shared_data(key, next.as_bytes(), cas) {
        Ok(()) => true,
        Err(Status::CasMismatch) => false,
        Err(e) => {
            log::warn!("cannot take lease {key}: {e:?}");
            false
        }
    }
}

/// Dispatches a JWKS fetch; the response arrives at the calling context.
/// `trace` is the request's trace context when the fetch is made on a request's behalf.
pub fn dispatch(
    h: &mut impl Host,
    fetch: &Fetch<'_>,
    trace: &[(&'static str, String)],
) -> Result<u32, Status> {
    let mut headers = vec![
        (":method", "GET"),
        (":path", fetch.path),
        (":authority", fetch.authority),
        ("accept", "application/json"),
    ];
    headers.extend(trace.iter().map(|(k, v)| (*k, v.as_str())));
    h.dispatch(fetch.cluster, &headers, None, fetch.timeout)
}

/// Reads a JWKS fetch response: the body on a 200, else why not.
pub fn read_response(h: &mut impl Host, body_size: usize) -> Result<Vec<u8>, String> {
    match h.call_response_status() {
        Some(200) => {}
        Some(status) => return Err(format!("JWKS endpoint answered {status}")),
        None => return Err("JWKS fetch failed (reset or timeout)".into()),
    }
    match h.call_response_body(body_size) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err("JWKS response has no body".into()),
        Err(e) => Err(format!("cannot read JWKS response: {e:?}")),
    }
}
