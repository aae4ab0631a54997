//! Tsunagu: masked two-party voice calls on Twilio Programmable Voice, for Japan.
//!
//! Every Lambda function is a thin `main` over [`handlers`]; all logic lives here.
//! Read docs/DESIGN.md for the flows, invariants and data model; module names say what
//! each part is.

pub mod api;
pub mod app;
pub mod budget;
pub mod clock;
pub mod config;
pub mod expiry;
pub mod handlers;
pub mod ids;
pub mod logging;
pub mod model;
pub mod phone;
pub mod pool;
pub mod pricing;
pub mod problem;
pub mod secrets;
pub mod sessions;
pub mod signature;
pub mod store;
pub mod twilio;
pub mod twiml;
pub mod vcall;
pub mod web;
pub mod webhooks;

pub use app::App;
