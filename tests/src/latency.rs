//! A TCP proxy in front of the emulator that holds every request back for a fixed delay and
//! counts requests per operation: the emulator answers on the same machine in well under a
//! millisecond of network time, where DynamoDB is a few milliseconds away. For benches only;
//! tests stay on the emulator itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Requests seen, by operation (the `X-Amz-Target` after its last dot: `Query`, `GetItem`).
pub type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

pub struct LatencyProxy {
    /// `http://127.0.0.1:<port>`: point the SDK here instead of at the emulator.
    pub url: String,
    counts: Counts,
    /// Microseconds the emulator took, summed over requests: from a request's forwarding to
    /// the first byte of its answer (one request at a time per connection: HTTP/1.1).
    served_micros: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LatencyProxy {
    /// Proxies `listener`'s connections to `target` (`http://host:port`), each request
    /// forwarded `delay` after it arrived. The listener is bound by the caller, so its
    /// address can be known (and put in the environment) before any runtime starts.
    pub fn start(listener: std::net::TcpListener, target: &str, delay: Duration) -> LatencyProxy {
        let upstream = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().expect("a bound listener").port()
        );
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        let counts = Counts::default();
        let served_micros = Arc::new(AtomicU64::new(0));
        let task = {
            let (counts, served) = (counts.clone(), served_micros.clone());
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let (upstream, counts, served) =
                        (upstream.clone(), counts.clone(), served.clone());
                    tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&upstream).await {
                            relay(inbound, outbound, delay, counts, served).await;
                        }
                    });
                }
            })
        };
        LatencyProxy {
            url,
            counts,
            served_micros,
            task,
        }
    }

    /// The requests counted so far, and zero from now on.
    pub fn take_counts(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap())
    }

    /// The emulator's time so far (see `served_micros`), and zero from now on.
    pub fn take_served(&self) -> Duration {
        Duration::from_micros(self.served_micros.swap(0, Ordering::SeqCst))
    }
}

async fn relay(
    inbound: TcpStream,
    outbound: TcpStream,
    delay: Duration,
    counts: Counts,
    served: Arc<AtomicU64>,
) {
    let sent_at: Arc<Mutex<Option<std::time::Instant>>> = Arc::default();
    let answered = sent_at.clone();
    let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // One X-Amz-Target per request: the SDK writes a request's head in one write.
            let ops = operations(&buf[..n]);
            if !ops.is_empty() {
                {
                    let mut counts = counts.lock().unwrap();
                    for op in ops {
                        *counts.entry(op).or_default() += 1;
                    }
                }
                tokio::time::sleep(delay).await;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            let mut sent = sent_at.lock().unwrap();
            if sent.is_none() {
                *sent = Some(std::time::Instant::now());
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(sent) = answered.lock().unwrap().take() {
                served.fetch_add(sent.elapsed().as_micros() as u64, Ordering::SeqCst);
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    futures::future::join(up, down).await;
}

/// The operations named by the `X-Amz-Target` headers in `chunk`.
fn operations(chunk: &[u8]) -> Vec<String> {
    const HEADER: &[u8] = b"x-amz-target:";
    let lower = chunk.to_ascii_lowercase();
    let mut ops = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].windows(HEADER.len()).position(|w| w == HEADER) {
        let start = at + i + HEADER.len();
        let end = chunk[start..]
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .map_or(chunk.len(), |e| start + e);
        let value = String::from_utf8_lossy(&chunk[start..end]);
        let op = value.trim().rsplit('.').next().unwrap_or("").to_owned();
        ops.push(op);
        at = end;
    }
    ops
}

#[cfg(test)]
mod tests {
    #[test]
    fn operations_are_read_from_the_target_header() {
        let chunk = b"POST / HTTP/1.1\r\nx-amz-target: DynamoDB_20120810.Query\r\n\r\n{}\
                      POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n\r\n";
        assert_eq!(super::operations(chunk), ["Query", "GetItem"]);
        assert!(super::operations(b"HTTP/1.1 200 OK\r\n\r\n").is_empty());
    }
}

#[cfg(test)]
mod budget {
    use yaml_rust2::YamlLoader;

    /// The sweep's time budget leaves a minute of `expiry-warning`'s timeout for the visits
    /// in flight and the report: a budget raised past it, or a timeout lowered, fails here.
    #[test]
    fn the_sweeps_budget_fits_the_functions_timeout_with_a_minute_to_spare() {
        let text = std::fs::read_to_string(crate::template::default_path()).unwrap();
        let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
        let timeout = doc["Resources"]["ExpiryWarningFunction"]["Properties"]["Timeout"]
            .as_i64()
            .expect("expiry-warning has its own Timeout");
        let budget = tsunagu::domain::expiry::TIME_BUDGET.as_secs() as i64;
        assert!(
            budget + 60 <= timeout,
            "budget {budget} s, timeout {timeout} s"
        );
    }
}
