//! `make seed`: restores, on the stack `make up` runs, the sessions, numbers and live call
//! that `events/*.json` refer to (see `tsunagu_tests::seed`). Run it with the same
//! `GATEWAY_PORT`, `MOTO_PORT` and `TABLE_NAME` as `make up`; run it again before each
//! event to start from the same state.

use tsunagu_tests::seed::{self, Target};

#[tokio::main]
async fn main() {
    let gateway_port = std::env::var("GATEWAY_PORT").unwrap_or_else(|_| "3000".into());
    let moto_port = std::env::var("MOTO_PORT").unwrap_or_else(|_| "5000".into());
    // SAFETY of set_var: single-threaded here, before the SDK reads the environment.
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        unsafe { std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{moto_port}")) };
    }
    let aws = match tsunagu_tests::stack::emulator_aws_config().await {
        Ok(aws) => aws,
        Err(e) => {
            eprintln!("make seed: {e}");
            std::process::exit(1);
        }
    };
    let target = Target {
        gateway_url: format!("http://127.0.0.1:{gateway_port}"),
        aws,
        table: std::env::var("TABLE_NAME").unwrap_or_else(|_| "tsunagu".into()),
    };
    match seed::seed(&target).await {
        Ok(report) => {
            println!(
                "seeded table {}: sessions {} (live call, deadline {}), {} (no call), {} (ends in a day) and {} (one participant); pool {}, {}, {}",
                target.table,
                seed::LIVE_SESSION,
                tsunagu::clock::iso(seed::DEADLINE),
                seed::QUIET_SESSION,
                seed::EXPIRING_SESSION,
                seed::HALF_SESSION,
                seed::P1,
                seed::P2,
                seed::P3
            );
            if !report.closed.is_empty() {
                println!("closed first: {}", report.closed.join(", "));
            }
        }
        Err(e) => {
            eprintln!("make seed: {e}");
            std::process::exit(1);
        }
    }
}
