//! The README's local walk, run as printed against `make up`: every ```` ```sh walk ````
//! block of README.md, in order, through `sh`, on a stack started as `make up` starts it
//! (`scripts/with-moto.sh` and the `tsunagu-local` binary, on free ports). The output each
//! command prints is compared with the ```` ```text ```` block that follows it in the README:
//! JSON values field by field (any SID stands for any SID of its kind, any timestamp for any
//! timestamp, `…` inside a string for anything), other lines as text (`…` for anything, clock
//! times and SIDs as any). The README's examples are thus the real outputs, and cannot drift.
//!
//! The commands are run with the environment `make up` tells the reader to export, with
//! `localhost:3000`, `127.0.0.1:3000` and `127.0.0.1:5000` pointed at the test's ports, and
//! with `make call` running the already built binary (`TSUNAGU_CALL`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// One ```` ```sh walk ```` block and the output the README prints after it.
#[derive(Debug)]
struct Example {
    line: usize,
    command: String,
    expected: Option<String>,
}

fn examples(readme: &str) -> Vec<Example> {
    let lines: Vec<&str> = readme.lines().collect();
    let block = |start: usize| -> (String, usize) {
        let mut end = start + 1;
        while end < lines.len() && lines[end].trim_end() != "```" {
            end += 1;
        }
        (lines[start + 1..end].join("\n"), end)
    };
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() == "```sh walk" {
            let (command, end) = block(i);
            let mut next = end + 1;
            while next < lines.len() && lines[next].trim().is_empty() {
                next += 1;
            }
            let expected =
                (next < lines.len() && lines[next].trim_end() == "```text").then(|| block(next).0);
            found.push(Example {
                line: i + 1,
                command,
                expected,
            });
            i = end;
        }
        i += 1;
    }
    found
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

/// `make up`, started as the Makefile starts it, stopped (its whole process group) on drop.
struct Up {
    child: tokio::process::Child,
    gateway_port: u16,
    moto_port: u16,
    /// The `export` lines it printed, as (name, value).
    exports: Vec<(String, String)>,
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group: with-moto.sh, the emulator and tsunagu-local.
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status();
        }
    }
}

async fn make_up() -> Up {
    let (gateway_port, moto_port) = (free_port(), free_port());
    let root = repo_root();
    std::fs::create_dir_all(root.join(".stack")).expect(".stack/");
    let log_path = root.join(".stack/readme-walk-up.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let mut child = tokio::process::Command::new("scripts/with-moto.sh")
        .arg(env!("CARGO_BIN_EXE_tsunagu-local"))
        .current_dir(&root)
        .env("GATEWAY_PORT", gateway_port.to_string())
        .env("MOTO_PORT", moto_port.to_string())
        // A free port: a `make up` on the default one must not make the walk fail.
        .env("SIMULATOR_PORT", "0")
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("scripts/with-moto.sh starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut exports = Vec::new();
    // Bounded, so that a stack that never comes up fails the test instead of hanging it.
    let ready = tokio::time::timeout(Duration::from_secs(300), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(assignments) = line.trim().strip_prefix("export ") {
                for assignment in assignments.split_whitespace() {
                    if let Some((name, value)) = assignment.split_once('=') {
                        exports.push((name.to_owned(), value.to_owned()));
                    }
                }
            }
            if line.starts_with("ready:") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        ready,
        Ok(true),
        "make up did not print its ready line; see {}",
        log_path.display()
    );
    // Keep draining its output so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up {
        child,
        gateway_port,
        moto_port,
        exports,
    }
}

impl Up {
    fn localise(&self, text: &str) -> String {
        text.replace(
            "localhost:3000",
            &format!("localhost:{}", self.gateway_port),
        )
        .replace(
            "127.0.0.1:3000",
            &format!("127.0.0.1:{}", self.gateway_port),
        )
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{}", self.moto_port))
    }

    fn as_documented(&self, text: &str) -> String {
        text.replace(
            &format!("localhost:{}", self.gateway_port),
            "localhost:3000",
        )
        .replace(
            &format!("127.0.0.1:{}", self.gateway_port),
            "127.0.0.1:3000",
        )
        .replace(&format!("127.0.0.1:{}", self.moto_port), "127.0.0.1:5000")
    }

    async fn run(&self, command: &str) -> (bool, String, String) {
        let root = repo_root();
        let path = format!(
            "{}:{}",
            root.join(".venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(self.localise(command))
            .current_dir(&root)
            .env_remove("AWS_ENDPOINT_URL")
            // Under `make test`, a nested make would print "Entering directory" lines.
            .env_remove("MAKELEVEL")
            .env_remove("MAKEFLAGS")
            .env_remove("MFLAGS")
            .envs(self.exports.iter().cloned())
            .env("GATEWAY_PORT", self.gateway_port.to_string())
            .env("TSUNAGU_CALL", env!("CARGO_BIN_EXE_tsunagu-call"))
            .env("PATH", path)
            .output()
            .await
            .expect("sh runs");
        (
            output.status.success(),
            self.as_documented(&String::from_utf8_lossy(&output.stdout)),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// Every JSON value in `text`, if it is nothing but JSON values.
fn json_values(text: &str) -> Option<Vec<Value>> {
    let values: Result<Vec<Value>, _> = serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect();
    values.ok().filter(|v| !v.is_empty())
}

/// `KC` + 32 hex digits, and the like.
fn is_sid(s: &str) -> bool {
    s.len() == 34
        && s.is_ascii()
        && s[..2].bytes().all(|b| b.is_ascii_uppercase())
        && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// `2026-11-24T20:30:00Z`.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
        && s.chars().filter(char::is_ascii_digit).count() == 14
}

/// `…` in `pattern` stands for any text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len()
        || !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn json_matches(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    let differ = || Err(format!("{at}: README {expected}, got {actual}"));
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => {
            let same_kind = (is_sid(e) && is_sid(a) && e[..2] == a[..2])
                || (is_timestamp(e) && is_timestamp(a));
            let (en, an) = (normalise_line(e), normalise_line(a));
            if e == a || same_kind || glob(e, a) || glob(&en, &an) {
                Ok(())
            } else {
                differ()
            }
        }
        // A `"…": "…"` member: the README shows only some of the fields.
        (Value::Object(e), Value::Object(a)) => {
            let some = e.contains_key("…");
            let mut ek: Vec<&String> = e.keys().filter(|k| *k != "…").collect();
            let mut ak: Vec<&String> = a.keys().filter(|k| !some || e.contains_key(*k)).collect();
            ek.sort();
            ak.sort();
            if ek != ak {
                return Err(format!("{at}: README has fields {ek:?}, got {ak:?}"));
            }
            ek.iter()
                .try_for_each(|k| json_matches(&e[*k], &a[*k], &format!("{at}.{k}")))
        }
        // In any order: a list's order is not what the examples are about.
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return differ();
            }
            let mut unused: Vec<&Value> = a.iter().collect();
            for (i, item) in e.iter().enumerate() {
                let path = format!("{at}[{i}]");
                match unused
                    .iter()
                    .position(|candidate| json_matches(item, candidate, &path).is_ok())
                {
                    Some(found) => {
                        unused.remove(found);
                    }
                    None => {
                        let closest = unused.first().map(|c| json_matches(item, c, &path));
                        return Err(closest
                            .and_then(Result::err)
                            .unwrap_or_else(|| format!("{path}: README {item}, not found")));
                    }
                }
            }
            Ok(())
        }
        _ if expected == actual => Ok(()),
        _ => differ(),
    }
}

/// Clock times as `hh:mm:ss`, SIDs (whole, or the timeline's first ten characters) as
/// `XX…` and long hex names (a room's) as `…`, so that a line pasted from a real run matches
/// any other run.
fn normalise_line(line: &str) -> String {
    let chars: Vec<char> = line.trim_end().chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_alphanumeric() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        let is_time = run.len() == 2
            && run.bytes().all(|b| b.is_ascii_digit())
            && chars.get(i) == Some(&':')
            && chars.len() >= i + 6
            && chars[i + 1..i + 3].iter().all(char::is_ascii_digit)
            && chars[i + 3] == ':'
            && chars[i + 4..i + 6].iter().all(char::is_ascii_digit);
        if is_time {
            out.push_str("hh:mm:ss");
            i += 6;
        } else if run.len() >= 10
            && run[..2].bytes().all(|b| b.is_ascii_uppercase())
            && run[2..].bytes().all(|b| b.is_ascii_hexdigit())
        {
            out.push_str(&run[..2]);
            out.push('…');
        } else if run.len() >= 16 && run.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push('…');
        } else {
            out.push_str(&run);
        }
    }
    out
}

fn output_matches(expected: &str, actual: &str) -> Result<(), String> {
    if let (Some(e), Some(a)) = (json_values(expected), json_values(actual)) {
        if e.len() != a.len() {
            return Err(format!(
                "README prints {} JSON values, got {}",
                e.len(),
                a.len()
            ));
        }
        return e
            .iter()
            .zip(&a)
            .enumerate()
            .try_for_each(|(i, (e, a))| json_matches(e, a, &format!("value {}", i + 1)));
    }
    let e: Vec<String> = expected.lines().map(normalise_line).collect();
    let a: Vec<String> = actual.lines().map(normalise_line).collect();
    if e.len() != a.len() {
        return Err(format!("README prints {} lines, got {}", e.len(), a.len()));
    }
    e.iter().zip(&a).try_for_each(|(e, a)| {
        if glob(e, a) {
            Ok(())
        } else {
            Err(format!("README line\n  {e}\ngot\n  {a}"))
        }
    })
}

#[tokio::test]
async fn the_readme_local_walk_runs_as_printed() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let walk = examples(&readme);
    assert!(
        walk.len() >= 6,
        "the README's walk has {} examples",
        walk.len()
    );
    let up = make_up().await;
    for example in &walk {
        let (ok, stdout, stderr) = up.run(&example.command).await;
        let place = format!("README.md line {}: {}", example.line, example.command);
        assert!(ok, "{place}\nfailed:\n{stdout}{stderr}");
        if let Some(expected) = &example.expected
            && let Err(difference) = output_matches(expected, &stdout)
        {
            panic!("{place}\n{difference}\nwhole output:\n{stdout}");
        }
    }
    let _ = std::fs::remove_file(repo_root().join("out.json"));
}

#[test]
fn the_comparison_tells_real_differences_from_ids_and_times() {
    let e = r#"{"sid":"KC6f000000000000000000000000000000","at":"2026-11-24T20:30:00Z","n":2,"u":"/v1/sessions/KC…/x"}
201"#;
    let a = r#"{"sid":"KCffffffffffffffffffffffffffffffff","at":"2027-01-01T00:00:00Z","n":2,"u":"/v1/sessions/KC12/x"} 201"#;
    assert_eq!(output_matches(e, a), Ok(()));
    assert!(output_matches(e, &a.replace("\"n\":2", "\"n\":3")).is_err());
    assert!(output_matches(e, &a.replace(" 201", " 202")).is_err());
    assert!(output_matches(e, &a.replace("KCff", "KPff")).is_err());
    assert!(output_matches(e, &a.replace(",\"n\":2", "")).is_err());
    let some = r#"{"n":2,"…":"…"} 201"#;
    assert_eq!(output_matches(some, a), Ok(()));
    assert!(output_matches(r#"{"n":3,"…":"…"} 201"#, a).is_err());
    assert!(output_matches(r#"{"m":2,"…":"…"} 201"#, a).is_err());
    let list_e = r#"[{"a":1},{"a":2}]"#;
    assert_eq!(output_matches(list_e, r#"[{"a":2},{"a":1}]"#), Ok(()));
    assert!(output_matches(list_e, r#"[{"a":2},{"a":2}]"#).is_err());

    let text_e = "  20:30:00 CA52aa0000 joined \"tsunagu-e338c493d49607bbbddf5bc4\": \"お待ちください。\"\ncall CA… completed, 68 s (localhost:3000/v1/sessions/KC6f000000000000000000000000000000/x)";
    let text_a = "  09:01:02 CA1234abcd joined \"tsunagu-0123456789abcdef01234567\": \"お待ちください。\"\ncall CAfe0ed80a7cad4856849170d7691f089c completed, 68 s (localhost:3000/v1/sessions/KC12345678901234567890123456789012/x)";
    assert_eq!(output_matches(text_e, text_a), Ok(()));
    assert!(output_matches(text_e, &text_a.replace("68 s", "67 s")).is_err());
    assert!(output_matches(text_e, &text_a.replace("お待ち", "お呼び")).is_err());
    assert!(output_matches(text_e, &text_a.replace("joined", "left")).is_err());
}
