//! The end-to-end tests: the whole local stack (tests/src/stack.rs) driven through the
//! gateway, the simulator and the emulator. One test binary with a module per subject, so
//! the stack is linked once rather than once per file; run one subject with
//! `cargo test -p tsunagu-tests --test e2e calls::`.

mod common;

mod api;
mod budget;
mod calls;
mod events;
mod events_out;
mod expiry;
mod iam;
mod readme;
mod recording;
mod resources;
mod store;
mod telemetry;
mod unreachable;
mod vcalls;
