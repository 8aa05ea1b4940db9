//! One broker exchange per grant at a time: the requests of a worker parked on another's exchange.
//!
//! The first request to miss a grant's credential exchanges; later ones for the same grant are
//! parked here. When the exchange ends, [`wake`] visits each parked request in its own context
//! (the caller says how it goes on) and keeps the state it ended in until that request's next
//! callback takes it ([`Parking::unpark`]).

use crate::host::Host;
use crate::phase::{BodySeen, Decided, Head, Phase};
use std::cell::RefCell;
use std::collections::HashMap;

/// A request parked on another request's exchange: what it needs to go on.
pub struct Parked {
    pub decided: Decided,
    pub head: Head,
    pub body: BodySeen,
    /// The request's clock reading (seconds since the epoch).
    pub now: u64,
}

/// A parked request, before and after its exchange ended.
enum Slot {
    Waiting(Parked),
    /// Woken: the phase (and head) the request goes on with at its next callback.
    Woken {
        phase: Phase,
        head: Head,
    },
}

#[derive(Default)]
pub struct Parking {
    /// Exchanges in flight, by credential cache key: the requests parked on each.
    in_flight: HashMap<String, Vec<u32>>,
    /// Parked requests, by context id.
    parked: HashMap<u32, Slot>,
}

impl Parking {
    pub fn is_exchanging(&self, cache_key: &str) -> bool {
        self.in_flight.contains_key(cache_key)
    }

    /// This request exchanges for `cache_key`: later ones park on it.
    pub fn start_exchange(&mut self, cache_key: String) {
        self.in_flight.insert(cache_key, Vec::new());
    }

    /// Parks request `id` on the exchange for `cache_key` (which the caller saw in flight).
    pub fn park(&mut self, cache_key: &str, id: u32, parked: Parked) {
        if let Some(waiting) = self.in_flight.get_mut(cache_key) {
            waiting.push(id);
            self.parked.insert(id, Slot::Waiting(parked));
        }
    }

    /// At a parked request's callback: the phase its exchange left it in, if it ended; else
    /// notes how much body has arrived (the wake-up decides with it).
    pub fn unpark(&mut self, id: u32, body: BodySeen) -> Option<(Phase, Head)> {
        match self.parked.get_mut(&id) {
            Some(Slot::Waiting(p)) => {
                p.body = body;
                None
            }
            Some(Slot::Woken { .. }) => match self.parked.remove(&id) {
                Some(Slot::Woken { phase, head }) => Some((phase, head)),
                _ => None,
            },
            None => None,
        }
    }

    /// The request ended while parked (or after it was woken).
    pub fn forget(&mut self, id: u32) {
        self.parked.remove(&id);
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty() && self.parked.is_empty()
    }

    #[cfg(test)]
    pub fn woken_phase(&self, id: u32) -> Option<&Phase> {
        match self.parked.get(&id) {
            Some(Slot::Woken { phase, .. }) => Some(phase),
            _ => None,
        }
    }
}

/// Ends the exchange for `cache_key`: each request parked on it goes on in its own context
/// (`go_on` resumes or refuses it, and returns the phase and head it ended in), then the host
/// returns to context `own`. No borrow of `parking` is held while `go_on` runs: a host call
/// there may end another request, whose drop forgets its own slot.
pub fn wake<H: Host>(
    h: &mut H,
    parking: &RefCell<Parking>,
    own: u32,
    cache_key: &str,
    mut go_on: impl FnMut(&mut H, u32, Parked) -> (Phase, Head),
) {
    let waiting = parking
        .borrow_mut()
        .in_flight
        .remove(cache_key)
        .unwrap_or_default();
    if waiting.is_empty() {
        return;
    }
    for id in waiting {
        let parked = match parking.borrow_mut().parked.remove(&id) {
            Some(Slot::Waiting(p)) => p,
            // The request ended while it waited.
            _ => continue,
        };
        if let Err(e) = h.set_effective_context(id) {
            log::warn!("parked request {id} is gone: {e:?}");
            continue;
        }
        let (phase, head) = go_on(h, id, parked);
        parking
            .borrow_mut()
            .parked
            .insert(id, Slot::Woken { phase, head });
    }
    if let Err(e) = h.set_effective_context(own) {
        log::warn!("cannot return to request {own}: {e:?}");
    }
}
