//! Tsunagu: masked two-party voice calls on Twilio Programmable Voice, for Japan.
//!
//! Layers (docs/ARCHITECTURE.md): entry points (`handlers`, the functions' mains) → edge
//! adapters (`api` for /v1, `webhooks` for /twilio, `scheduled` for the sweep's event) →
//! the `domain` (rules over ports) → `adapters` implementing the ports with the DynamoDB
//! `store` and the `twilio` REST client. Pure value modules (`model`, `phone`, `pricing`,
//! `pool`, `twiml`, `signature`, `clock`, `ids`) sit below them all. Read docs/DESIGN.md for
//! the flows, invariants and data model.

pub mod adapters;
pub mod api;
pub mod app;
pub mod budget;
pub mod callback;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod events;
pub mod handlers;
pub mod ids;
pub mod model;
pub mod phone;
pub mod pool;
pub mod pricing;
pub mod problem;
pub mod scheduled;
pub mod scheduler;
pub mod secrets;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod twilio;
pub mod twiml;
pub mod web;
pub mod webhooks;

pub use app::App;
