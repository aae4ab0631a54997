//! Cold start of each function binary, as docs/PERFORMANCE.md reports it: the time from
//! exec to the binary's first poll of the Runtime API (`GET …/invocation/next`), i.e. its
//! init, measured against the test tree's Runtime API stand-in. Nothing on the path to the
//! first poll does I/O (the warm-up runs beside it, `app::warm_up`), so no stack is needed.
//!
//!     cargo run -p tsunagu-tests --bin tsunagu-coldstart -- <binary dir> [runs]
//!
//! Prints, per function found there, the median, minimum and maximum over `runs` (default
//! 21) starts, and the binary's size.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tsunagu_tests::runtime_api::{self, RuntimeApi};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| runtime_api::binary_dir().display().to_string()),
    );
    let runs: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(21);
    // What local.env gives a function; the values are never contacted during init.
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("TABLE_NAME", "tsunagu"),
        ("TWILIO_SECRET_ID", "tsunagu/twilio/tsunagu"),
        (
            "PUBLIC_BASE_URL",
            "https://abc123defg.execute-api.ap-northeast-1.amazonaws.com",
        ),
        ("TWILIO_API_BASE_URL", "http://127.0.0.1:9"),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    println!("| function | size (bytes) | init median | min | max |");
    println!("|---|---|---|---|---|");
    let mut functions: Vec<&str> = tsunagu::handlers::HTTP_FUNCTIONS
        .iter()
        .chain(tsunagu::handlers::EVENT_FUNCTIONS)
        .copied()
        .collect();
    functions.sort();
    for function in functions {
        let binary = dir.join(function);
        let Ok(meta) = std::fs::metadata(&binary) else {
            // A build of some functions only (`cargo build --release -p …`).
            println!("| {function} | not built | | | |");
            continue;
        };
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let api = RuntimeApi::start(function, "ap-northeast-1", Duration::from_secs(10))
                .await
                .expect("runtime API");
            let started = Instant::now();
            let mut process = runtime_api::spawn(&binary, &api, &env).expect("spawn");
            let ready = tokio::select! {
                at = api.first_poll() => at,
                status = process.wait() => {
                    eprintln!("{function} exited before polling: {status:?}");
                    std::process::exit(1);
                }
            };
            times.push(ready - started);
            let _ = process.kill().await;
        }
        times.sort();
        let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        println!(
            "| {function} | {} | {} | {} | {} |",
            meta.len(),
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
}
