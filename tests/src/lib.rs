//! Tsunagu's local stack and test kit: the Twilio Voice simulator, the gateway that serves
//! `template.yaml`'s routes to the real handlers, and the stack that wires them to the
//! emulator. Used by the end-to-end tests, `make demo` and `make up`.

pub mod console;
pub mod contract;
pub mod control;
pub mod event_sources;
pub mod gateway;
pub mod iam;
pub mod latency;
pub mod receiver;
pub mod relay;
pub mod runtime_api;
pub mod seed;
pub mod simulator;
pub mod stack;
pub mod template;
pub mod timers;
