//! The real `chat-server` binary as a child process, for what needs a
//! process: SIGKILL, and reading exactly what it logs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

pub struct ChildServer {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line it wrote to stderr so far.
    logs: Arc<Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts the binary on port 0 and reads the address it logs.
    pub async fn start(database: &Path) -> Self {
        Self::start_with(database, &[], "info").await
    }

    /// Starts the binary with extra flags and a `RUST_LOG` filter.
    pub async fn start_with(database: &Path, args: &[&str], log_filter: &str) -> Self {
        let database_url = format!("sqlite://{}", database.display());
        let mut all = vec!["--database-url", &database_url];
        all.extend_from_slice(args);
        Self::start_with_args(&all, log_filter).await
    }

    /// Starts the binary on port 0 with exactly these flags besides.
    pub async fn start_with_args(args: &[&str], log_filter: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", log_filter)
            // Several servers run at once: no fixed metrics port; and the
            // crash tests send as fast as they can.
            .env("CHAT_METRICS_LISTEN", "off")
            .env("CHAT_SEND_RATE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting chat-server");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let next = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
            let Ok(Ok(Some(line))) = next else {
                // Whatever it said before it stopped (or hung) is the
                // diagnosis: show it, not just that the address is missing.
                let said = logs.lock().unwrap().join("\n");
                let status = child.try_wait().ok().flatten();
                panic!(
                    "the server did not log its address ({}; exit status {status:?}); \
                     its stderr so far:\n{said}",
                    match next {
                        Err(_) => "nothing for 30 s".to_owned(),
                        Ok(Err(e)) => format!("reading its stderr failed: {e}"),
                        Ok(Ok(_)) => "its stderr closed".to_owned(),
                    }
                );
            };
            logs.lock().unwrap().push(line.clone());
            if let Some(rest) = line.split("address=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                break addr.trim_matches('"').parse().unwrap();
            }
            if let Some(rest) = line.split("\"address\":\"").nth(1) {
                break rest.split('"').next().unwrap().parse().unwrap();
            }
        };
        // Keep reading, so the server never blocks on a full pipe.
        let collected = Arc::clone(&logs);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                collected.lock().unwrap().push(line);
            }
        });
        Self { child, addr, logs }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server with SIGTERM and returns everything it logged.
    pub async fn stop_and_read_logs(mut self) -> Vec<String> {
        let pid = self.child.id().expect("a running child");
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops on SIGTERM")
            .expect("waiting for the server");
        // Let the reader take the last lines.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.logs.lock().unwrap().clone()
    }
}
