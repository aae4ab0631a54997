//! `make invoke EVENT=events/extension.json`: runs one event through its function's
//! binary behind the test tree's Lambda Runtime API stand-in, with `local.env`'s
//! environment (the stack `make up` runs; `make seed` first), and prints the answer. No
//! Docker, no cargo-lambda. `MOTO_PORT` and `SIMULATOR_PORT`, when set, override the
//! file's endpoints, as for `make up`. The function's init time (exec to its first poll
//! of the runtime API) goes to stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tsunagu_tests::runtime_api::{self, Outcome, RuntimeApi};

fn fail(message: String) -> ! {
    eprintln!("make invoke: {message}");
    std::process::exit(1);
}

fn read_env_file(path: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[tokio::main]
async fn main() {
    let event_arg = std::env::args()
        .nth(1)
        .unwrap_or_else(|| fail("usage: tsunagu-invoke events/<name>.json".into()));
    let event_path = PathBuf::from(&event_arg);
    let stem = event_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let function = runtime_api::function_of_event(&stem)
        .unwrap_or_else(|| fail(format!("{event_arg}: no function owns this event")));
    let event: serde_json::Value = std::fs::read_to_string(&event_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|e| fail(format!("{event_arg}: {e}")));

    let env_file = std::env::var("ENV_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local.env"));
    let mut env = read_env_file(&env_file);
    let mut set = |name: &str, value: String| {
        env.retain(|(n, _)| n != name);
        env.push((name.to_owned(), value));
    };
    if let Ok(port) = std::env::var("MOTO_PORT") {
        set("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
    }
    if let Ok(port) = std::env::var("SIMULATOR_PORT") {
        set("TWILIO_API_BASE_URL", format!("http://127.0.0.1:{port}"));
    }
    let region = env
        .iter()
        .find(|(n, _)| n == "AWS_REGION")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "ap-northeast-1".into());

    let binary = match std::env::var("BIN_DIR") {
        Ok(dir) => PathBuf::from(dir).join(function),
        Err(_) => runtime_api::function_binary(function).unwrap_or_else(|e| fail(e)),
    };
    let timeout = Duration::from_secs(if function == "expiry-warning" {
        300
    } else {
        10
    });
    let api = RuntimeApi::start(function, &region, timeout)
        .await
        .unwrap_or_else(|e| fail(format!("runtime API: {e}")));
    let started = Instant::now();
    let mut process = runtime_api::spawn(&binary, &api, &env)
        .unwrap_or_else(|e| fail(format!("{}: {e}", binary.display())));
    let ready = tokio::select! {
        at = api.first_poll() => at,
        status = process.wait() => fail(format!("{function} exited before polling: {status:?}")),
    };
    eprintln!(
        "{function}: init {:.1} ms",
        (ready - started).as_secs_f64() * 1000.0
    );
    let outcome = api.invoke(&event).await.unwrap_or_else(|e| fail(e));
    let _ = process.kill().await;
    match outcome {
        Outcome::Response(bytes) => println!("{}", String::from_utf8_lossy(&bytes)),
        other => fail(format!("{function} failed: {other:?}")),
    }
}
