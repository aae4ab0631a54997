//! In-memory fakes of the domain's ports (store, calls, timers), for fast unit tests of its rules. They keep the
//! conditions the rules rely on (a close only of an open session, a warning claimed once, a
//! lease held by one) and let a test script failures; the DynamoDB and Twilio adapters are
//! tested against the emulator and the simulator instead.

mod calls;
mod store;
mod timers;

pub use calls::{CallRequest, FakeCalls};
pub use store::MemoryStore;
pub use timers::FakeTimers;

use std::sync::Mutex;

use crate::clock::Clock;
use crate::domain::ports::{Ctx, Intercept, Route, Settings};
use crate::model::{Interaction, TwilioDirection};
use crate::pricing::Yen;

/// A clock stopped at one instant.
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now(&self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp(self.0).unwrap()
    }
}

/// The platform's intercept: lets every call through unless told to refuse them; records
/// the CallSids it was asked about.
#[derive(Default)]
pub struct FakeIntercept {
    pub refuse: bool,
    asked: Mutex<Vec<String>>,
}

impl FakeIntercept {
    pub fn refusing() -> Self {
        Self {
            refuse: true,
            ..Self::default()
        }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Intercept for FakeIntercept {
    async fn allows(&self, _route: &Route, call_sid: &str) -> bool {
        self.asked.lock().unwrap().push(call_sid.to_owned());
        !self.refuse
    }
}

pub const SETTINGS: Settings = Settings {
    retention_seconds: 90 * 86_400,
    dial_timeout_seconds: 30,
    // Rates::default(), which is not a const fn.
    rates: crate::pricing::Rates {
        inbound: Yen::from_milli(1_000),
        outbound_mobile: Yen::from_milli(16_200),
        outbound_landline: Yen::from_milli(5_400),
        outbound_ip: None,
        outbound_toll_free: None,
        outbound_other: None,
        outbound_special_service: None,
        outbound_foreign: None,
        conference: Yen::from_milli(300),
    },
};

/// A world of fakes for one test.
pub struct World {
    pub store: MemoryStore,
    pub calls: FakeCalls,
    pub timers: FakeTimers,
    pub clock: FixedClock,
}

impl World {
    pub fn at(now: i64) -> Self {
        Self {
            store: MemoryStore::default(),
            calls: FakeCalls::default(),
            timers: FakeTimers::default(),
            clock: FixedClock(now),
        }
    }

    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            calls: &self.calls,
            timers: &self.timers,
            clock: &self.clock,
            settings: SETTINGS,
        }
    }
}

/// A leg of `session_sid` in `status`, Twilio direction `twilio_direction`.
pub fn leg(
    session_sid: &str,
    call_sid: &str,
    parent: Option<&str>,
    status: crate::model::CallStatus,
    updated: i64,
) -> Interaction {
    Interaction {
        sid: format!("KI{call_sid}"),
        session_sid: session_sid.to_owned(),
        call_sid: call_sid.to_owned(),
        parent_call_sid: parent.map(str::to_owned),
        direction: crate::pricing::Direction::Outbound,
        twilio_direction: if parent.is_some() {
            TwilioDirection::OutboundDial
        } else {
            TwilioDirection::Inbound
        },
        from_masked: "+8190****5678".into(),
        to_masked: "+8180****5432".into(),
        from_participant_sid: None,
        to_participant_sid: None,
        callee_class: crate::phone::NumberClass::Mobile,
        status,
        duration: 0,
        billed_minutes: 0,
        cost_milli_yen: 0,
        date_created: updated,
        date_updated: updated,
        date_ended: None,
        recording: Default::default(),
    }
}
