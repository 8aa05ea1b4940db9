//! Spends request budgets from windows kept in shared data, one counter per Envoy (all workers).

use crate::host::Host;
use proxy_wasm::types::Status;
use scopegate_core::budget::{applies, spend, window_key, Spend, Window};
use scopegate_core::decision::Grant;
use scopegate_core::mcp::Call;
use scopegate_core::policy::Server;

/// Compare-and-swap attempts before giving up on a contended window (and refusing: fail closed).
const ATTEMPTS: usize = 8;

/// Spends one request from every budget that counts it; `Err(retry_after)` when one is spent.
pub fn spend_all(
    h: &mut impl Host,
    server: &Server,
    calls: &[Call],
    grant: &Grant,
    now: u64,
) -> Result<(), u64> {
    for (i, budget) in server.budgets.iter().enumerate() {
        if !applies(budget, calls) {
            continue;
        }
        let key = window_key(&server.name, i, budget, grant);
        let mut spent = false;
        for _ in 0..ATTEMPTS {
            let (current, cas) = match h.shared_data(&key) {
                Ok((value, cas)) => (value.and_then(|v| Window::decode(&v)), cas),
                Err(e) => {
                    log::warn!("cannot read budget window: {e:?}");
                    return Err(1);
                }
            };
            match spend(budget, current, now) {
                Spend::Exceeded { retry_after } => return Err(retry_after),
                Spend::Allowed(w) => match h.set_shared_data(&key, w.encode().as_bytes(), cas) {
                    Ok(()) => {
                        spent = true;
                        break;
                    }
                    Err(Status::CasMismatch) => continue,
                    Err(e) => {
                        log::warn!("cannot write budget window: {e:?}");
                        return Err(1);
                    }
                },
            }
        }
        if !spent {
            return Err(1);
        }
    }
    Ok(())
}
