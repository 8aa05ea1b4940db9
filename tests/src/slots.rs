//! How many tests run processes at once: the integration tests are one binary, so without a
//! bound every area's tests could start their Envoys, brokers and servers together.

use std::cell::RefCell;
use std::sync::{Condvar, Mutex};

static TAKEN: Mutex<usize> = Mutex::new(0);
static FREED: Condvar = Condvar::new();

/// A taken slot, given back when the test's thread ends (it lives in a thread-local).
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut taken) = TAKEN.lock() {
            *taken = taken.saturating_sub(1);
            FREED.notify_one();
        }
    }
}

thread_local! {
    static HELD: RefCell<Option<Slot>> = const { RefCell::new(None) };
}

/// Tests that may run processes at the same time: `SCOPEGATE_IT_SLOTS`, else one per core
/// (what the 30 binaries ran before: one file at a time, its tests on libtest's threads).
pub fn limit() -> usize {
    std::env::var("SCOPEGATE_IT_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
}

/// Takes a slot for the calling test, once, waiting while all are taken; the slot is held
/// until the test's thread ends, pass or fail. Only libtest's test threads take one (named
/// `module::test`): threads a test spawns run under its slot, and the bench driver (the main
/// thread) has no tests to bound.
pub fn hold() {
    let is_test = std::thread::current()
        .name()
        .is_some_and(|n| n.contains("::"));
    if !is_test {
        return;
    }
    HELD.with(|held| {
        if held.borrow().is_some() {
            return;
        }
        let limit = limit();
        let Ok(mut taken) = TAKEN.lock() else { return };
        while *taken >= limit {
            taken = match FREED.wait(taken) {
                Ok(t) => t,
                Err(_) => return,
            };
        }
        *taken += 1;
        *held.borrow_mut() = Some(Slot);
    });
}
