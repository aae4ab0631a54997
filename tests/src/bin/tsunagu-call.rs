//! `make call`: a phone calls a proxy number on the running `make up` stack, and the other
//! party's phone rings, answers (or is busy, doesn't answer, can't be reached), talks and
//! hangs up. Prints what each phone heard and saw, then where to read the call log.
//!
//!   tsunagu-call --from 090-1234-5678 --to 050-3123-4567 [--talk 30] [--answer-after 3]
//!                [--callee answer|busy|no-answer|fail] [--verbose]
//!
//! The gateway is 127.0.0.1:${GATEWAY_PORT:-3000}. The call runs in the stack's virtual time.

use serde_json::{Value, json};

const USAGE: &str = "usage: tsunagu-call --from PHONE --to PROXY [--talk SECONDS] \
[--answer-after SECONDS] [--callee answer|busy|no-answer|fail] [--verbose]";

fn parse_args(args: &[String]) -> Result<Value, String> {
    let mut request = json!({});
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if flag == "--verbose" {
            request["verbose"] = json!(true);
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let seconds = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} takes whole seconds, not {value:?}"))
        };
        match flag {
            "--from" => request["from"] = json!(value),
            "--to" => request["to"] = json!(value),
            "--talk" => request["talk"] = json!(seconds()?),
            "--answer-after" => request["answer_after"] = json!(seconds()?),
            "--callee" => request["callee"] = json!(value.to_lowercase()),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
        i += 2;
    }
    if request.get("from").is_none() || request.get("to").is_none() {
        return Err(format!("--from and --to are required\n{USAGE}"));
    }
    Ok(request)
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let request = parse_args(&args)?;
    let port = std::env::var("GATEWAY_PORT").unwrap_or_else(|_| "3000".into());
    let gateway = format!("http://127.0.0.1:{port}");
    // reqwest is built without a crypto provider; the gateway is plain HTTP anyway.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{gateway}/_local/calls"))
        .json(&request)
        .send()
        .await
        .map_err(|e| format!("{gateway} did not answer ({e}): is `make up` running?"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))?;
    if !status.is_success() {
        return Err(body["message"]
            .as_str()
            .unwrap_or("the call was refused")
            .to_owned());
    }
    let text = |key: &str| body[key].as_str().unwrap_or("").to_owned();
    println!(
        "{} calls {}{}",
        request["from"].as_str().unwrap_or(""),
        request["to"].as_str().unwrap_or(""),
        match body["session_sid"].as_str() {
            Some(sid) => format!(" (session {sid})"),
            None => " (no open session routes this caller on this number)".into(),
        }
    );
    for line in body["timeline"].as_array().into_iter().flatten() {
        println!("  {}", line.as_str().unwrap_or(""));
    }
    println!(
        "call {} {}, {} s",
        text("call_sid"),
        text("status"),
        body["duration"]
    );
    if let Some(sid) = body["session_sid"].as_str() {
        println!("call log: curl -s localhost:{port}/v1/sessions/{sid}/interactions");
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(message) = run().await {
        eprintln!("{message}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_become_the_request() {
        let request = parse_args(&args(&[
            "--from",
            "090-1234-5678",
            "--to",
            "050-3123-4567",
            "--talk",
            "65",
            "--callee",
            "BUSY",
            "--verbose",
        ]))
        .unwrap();
        assert_eq!(request["talk"], 65);
        assert_eq!(request["callee"], "busy");
        assert_eq!(request["verbose"], true);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse_args(&args(&["--from", "090-1234-5678"])).is_err());
        assert!(parse_args(&args(&["--from", "a", "--to", "b", "--talk", "x"])).is_err());
        assert!(parse_args(&args(&["--from", "a", "--to", "b", "--talk", ""])).is_err());
        assert!(parse_args(&args(&["--frm", "a"])).is_err());
    }
}
