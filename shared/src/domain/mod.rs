//! The domain: what Tsunagu does with sessions and calls, as rules over its ports — the
//! session store, Twilio's call control, the live call's timers and the platform's intercept
//! (`ports`). No HTTP, Lambda or SDK types: the edge (`api`, `webhooks`, `scheduled`) parses
//! requests and maps `DomainError` to answers; `adapters` wires the ports to DynamoDB,
//! Twilio's REST API, EventBridge Scheduler and the intercept URL.
//!
//! - `admission`: a masked call comes in — dial the other party, call them into a timed
//!   call's room, or tell the caller why not;
//! - `sessions`: allocating proxy numbers (I1), reading, closing (I3) and extending;
//! - `participants`: adding (I1) and removing participants after creation;
//! - `vcall`: V字発信, ringing both parties, and hanging a half-placed call up again;
//! - `deadline`: a live call's effective deadline (its time limit, its cost cap);
//! - `due`: when a session next needs the sweep;
//! - `timers`: the live call's exact timers (warning, 20-s notice, end), set, moved, removed;
//! - `extension`: the answer to the warning (press 1 to extend);
//! - `legs`: what happens when a call leg ends or leaves the room;
//! - `expiry`: the sweep's decisions — warn once per deadline (I4), end calls at their
//!   deadline, close expired sessions; and the same steps when a timer fires.

pub mod admission;
pub mod deadline;
pub mod due;
pub mod error;
pub mod expiry;
pub mod extension;
pub mod legs;
pub mod participants;
pub mod ports;
pub mod sessions;
pub mod timers;
pub mod vcall;

#[cfg(test)]
pub(crate) mod fakes;

pub use error::DomainError;
pub use ports::Ctx;
