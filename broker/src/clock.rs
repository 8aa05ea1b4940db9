//! The wall clock, behind a trait so the grants' refresh and expiry can be tested at any time.

/// Unix seconds, now.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

/// The system's clock: the only place the broker reads the time of day.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// A clock the tests set by hand.
#[cfg(test)]
pub struct FixedClock(pub std::sync::atomic::AtomicU64);

#[cfg(test)]
impl FixedClock {
    pub fn at(t: u64) -> FixedClock {
        FixedClock(std::sync::atomic::AtomicU64::new(t))
    }
    pub fn set(&self, t: u64) {
        self.0.store(t, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for FixedClock {
    fn now(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}
