//! Virtual time shared by the simulator and whoever else needs "now" in a test.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;

/// A clock that only moves when told to, so a 65-second call completes instantly.
///
/// Cloning shares the same instant; hand a clone to the gateway so handlers and the
/// simulator agree on "now".
#[derive(Clone, Debug)]
pub struct VirtualClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl VirtualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    pub fn now(&self) -> OffsetDateTime {
        *self.lock()
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.lock();
        *now += by;
    }

    pub fn set(&self, to: OffsetDateTime) {
        *self.lock() = to;
    }

    /// Moves to `to` unless that would go backwards (someone else may have moved the
    /// clock past a queued event).
    pub(crate) fn advance_to(&self, to: OffsetDateTime) -> OffsetDateTime {
        let mut now = self.lock();
        if to > *now {
            *now = to;
        }
        *now
    }

    fn lock(&self) -> MutexGuard<'_, OffsetDateTime> {
        // A panic elsewhere cannot leave an OffsetDateTime half-written.
        self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for VirtualClock {
    /// The real current time, truncated to the second (Twilio's timestamps have no
    /// sub-second part, and whole seconds keep durations exact).
    fn default() -> Self {
        let now = OffsetDateTime::now_utc();
        Self::new(now.replace_nanosecond(0).unwrap_or(now))
    }
}

/// `at + by`, saturating instead of panicking: durations come from webhooks and
/// scripts, and an absurd `<Pause length>` must not bring the simulator down.
pub(crate) fn later(at: OffsetDateTime, by: Duration) -> OffsetDateTime {
    time::Duration::try_from(by)
        .ok()
        .and_then(|by| at.checked_add(by))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}
