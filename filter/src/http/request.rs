//! One request's state between Envoy's callbacks: its phase and what the earlier ones learnt.

use crate::host::{Envoy, Host};
use crate::listing::Watch;
use crate::phase::{BodySeen, Head, Phase};
use crate::worker::Worker;
use scopegate_core::policy::ServerId;
use std::rc::Rc;

/// `D` is the host a dropped request uses to refuse the requests parked on its exchange
/// (Envoy in the `.wasm`, the fake in tests).
pub struct Request<D: Host + Default = Envoy> {
    pub(super) worker: Option<Rc<Worker>>,
    /// Envoy's id for this stream (the hold watch and parking answer it from other contexts).
    pub(super) id: u32,
    pub(super) phase: Phase,
    pub(super) head: Head,
    pub(super) body: BodySeen,
    /// Set when an allowed request holds listing calls whose response may need filtering.
    pub(super) listing: Option<Watch>,
    /// The governed server, once known (for the audit record of an internal failure).
    pub(super) server: Option<ServerId>,
    /// The host's clock, read once when the headers arrive (seconds since the epoch).
    pub(super) now: u64,
    host: std::marker::PhantomData<D>,
}

impl<D: Host + Default> Request<D> {
    pub fn new(worker: Option<Rc<Worker>>, id: u32) -> Request<D> {
        Request {
            worker,
            id,
            phase: Phase::Start,
            head: Head::default(),
            body: BodySeen::default(),
            listing: None,
            server: None,
            now: 0,
            host: std::marker::PhantomData,
        }
    }

    /// Where it stands now; the phase is left `Start`, so dropping this copy changes nothing.
    pub(super) fn settle(&mut self) -> (Phase, Head) {
        let phase = std::mem::replace(&mut self.phase, Phase::Start);
        (phase, std::mem::take(&mut self.head))
    }

    /// A parked request takes the phase its exchange left it in, or tells its parking slot how
    /// much body has arrived.
    pub(super) fn unpark(&mut self, worker: &Worker) {
        if !matches!(self.phase, Phase::AwaitingExchange) {
            return;
        }
        let woken = worker.parking.borrow_mut().unpark(self.id, self.body);
        if let Some((phase, head)) = woken {
            self.phase = phase;
            self.head = head;
        }
    }
}

/// Lets a paused request go on.
pub(super) fn resume(h: &mut impl Host) {
    if let Err(e) = h.resume() {
        log::error!("cannot resume request: {e:?}");
    }
}
