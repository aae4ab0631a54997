//! A TCP relay in front of a service that a test can cut, to take one dependency away from
//! one stack without stopping it for the tests running beside it (the emulator is shared).
//! Once cut, live connections are dropped and new ones are accepted and closed at once, as
//! a crashed endpoint behind a load balancer would; those are counted.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

pub struct Relay {
    /// `http://127.0.0.1:<port>`: point a client here instead of at the service.
    pub url: String,
    cut: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.drop_live();
    }
}

impl Relay {
    /// Relays to `target` (`http://host:port`).
    pub async fn start(target: &str) -> Result<Relay, String> {
        let upstream = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        let url = format!(
            "http://127.0.0.1:{}",
            listener.local_addr().map_err(|e| e.to_string())?.port()
        );
        let cut = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let task = {
            let (cut, refused, live) = (cut.clone(), refused.clone(), live.clone());
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(inbound);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let conn = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    live.lock().unwrap().push(conn.abort_handle());
                }
            })
        };
        Ok(Relay {
            url,
            cut,
            refused,
            live,
            task,
        })
    }

    /// From now on the service is gone: live connections drop, new ones close at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.drop_live();
    }

    /// Connections closed unanswered since the cut.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn drop_live(&self) {
        for conn in self.live.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}
