//! `make up`: the local stack in the foreground until Ctrl-C — a table and secret in the
//! emulator, the Twilio simulator (unless TWILIO_API_BASE_URL is set) and the gateway on
//! 127.0.0.1:${GATEWAY_PORT:-3000}. The simulator's clock follows real time here.

use std::time::{Duration, Instant};

use tsunagu_tests::stack::{Options, Stack};

#[tokio::main]
async fn main() {
    tsunagu::logging::init();
    let port = std::env::var("GATEWAY_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let options = Options {
        gateway_port: port,
        // Fixed, so local.env can name it for `cargo lambda watch`.
        simulator_port: std::env::var("SIMULATOR_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3001),
        table_name: Some(std::env::var("TABLE_NAME").unwrap_or_else(|_| "tsunagu".into())),
        twilio_api_base_url: std::env::var("TWILIO_API_BASE_URL").ok(),
        account_sid: std::env::var("TWILIO_ACCOUNT_SID").ok(),
        auth_token: std::env::var("TWILIO_AUTH_TOKEN").ok(),
        ..Options::default()
    };
    let stack = match Stack::start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local stack failed to start: {e}");
            std::process::exit(1);
        }
    };
    if let Some(sim) = stack.sim.clone() {
        // Real-time pacing: advance the virtual clock by the wall-clock time that passed.
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = Instant::now();
                sim.advance(now - last).await;
                last = now;
            }
        });
    }
    println!("gateway    {}  (GET /healthz answers 200)", stack.url);
    println!(
        "emulator   {}  (table {})",
        tsunagu_tests::stack::emulator_url().unwrap_or_default(),
        stack.table
    );
    match &stack.sim {
        Some(sim) => println!(
            "twilio     {}  (simulator; account {})",
            sim.base_url(),
            tsunagu_tests::stack::ACCOUNT_SID
        ),
        None => println!("twilio     {}", stack.app.config.twilio_api_base_url),
    }
    println!("ready: every route of template.yaml is served; Ctrl-C stops everything");
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping");
}
