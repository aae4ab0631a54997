//! `make up`: the local stack in the foreground until Ctrl-C — a table and secret in the
//! emulator, the Twilio simulator (unless TWILIO_API_BASE_URL is set) and the gateway on
//! 127.0.0.1:${GATEWAY_PORT:-3000}. The simulator's clock follows the wall clock; a call
//! placed with `make call` runs ahead of it (virtual time), and the clock then waits for the
//! wall clock to catch up rather than going back. `PROXY_NUMBERS` (comma-separated) are
//! added to the pool at start, through the API as `POST /v1/numbers` would. Every variable of
//! the README's configuration table in the environment reaches the functions
//! (`EVENT_CALLBACK_URL` included: plain http to a loopback address is allowed), and
//! `CALLBACK_SIGNING_KEY` becomes the secret's `callback_signing_key` (default: the
//! documented test key, `local-callback-signing-key-not-a-secret`).

use std::time::Duration;

use tsunagu_tests::stack::{Options, REGION, Stack};

#[tokio::main]
async fn main() {
    tsunagu::telemetry::logs::init();
    let options = Options::from_make_up_environment(std::env::vars());
    let stack = match Stack::start(options).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("local stack failed to start: {e}");
            std::process::exit(1);
        }
    };
    for number in std::env::var("PROXY_NUMBERS")
        .unwrap_or_default()
        .split(',')
    {
        let number = number.trim();
        if !number.is_empty() {
            stack.add_proxy_number(number).await;
        }
    }
    if let Some(sim) = stack.sim.clone() {
        // Wall-clock pacing, in whole seconds as Twilio's timestamps are.
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = time::OffsetDateTime::now_utc();
                sim.run_to(now.replace_nanosecond(0).unwrap_or(now)).await;
            }
        });
    }
    let emulator = tsunagu_tests::stack::emulator_url().unwrap_or_default();
    println!("gateway    {}  (GET /healthz answers 200)", stack.url);
    println!("emulator   {emulator}");
    println!("table      {}", stack.table);
    println!("secret     {}", stack.app.config.twilio_secret_id);
    match &stack.app.config.event_callback_url {
        Some(url) => println!("events     {url}  (signed with the secret's callback_signing_key)"),
        None => println!("events     off  (set EVENT_CALLBACK_URL to receive them)"),
    }
    match &stack.sim {
        Some(sim) => println!(
            "twilio     {}  (simulator; account {})",
            sim.base_url(),
            tsunagu_tests::stack::ACCOUNT_SID
        ),
        None => println!("twilio     {}", stack.app.config.twilio_api_base_url),
    }
    println!("for the AWS CLI (v1 or v2), in another shell:");
    println!("  export AWS_REGION={REGION} AWS_DEFAULT_REGION={REGION}");
    println!("  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test");
    println!(
        "  export AWS_ENDPOINT_URL={emulator} AWS_ENDPOINT_URL_LAMBDA={}",
        stack.url
    );
    println!("ready: every route of template.yaml is served; Ctrl-C stops everything");
    let _ = tokio::signal::ctrl_c().await;
    println!("stopping");
}
