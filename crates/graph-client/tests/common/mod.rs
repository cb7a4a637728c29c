//! Shared helpers for the wiremock tests.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use graph_client::secrecy::{ExposeSecret, SecretString};
use graph_client::{GraphClient, GraphClientBuilder, TokenError, TokenProvider};
use wiremock::MockServer;

/// Gives `token-1`, `token-2`, ... and records which tokens were reported rejected.
#[derive(Default)]
pub struct CountingTokens {
    calls: AtomicUsize,
    /// When each token was asked for, on tokio's (paused) clock: the client asks once per
    /// attempt, right before sending, so these are the attempts' instants.
    asked_at: Mutex<Vec<tokio::time::Instant>>,
    issued: AtomicUsize,
    rejected: Mutex<Vec<String>>,
    current: Mutex<Option<String>>,
}

impl CountingTokens {
    /// How many times the client asked for a token.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The waits between consecutive attempts (see `asked_at`).
    pub fn waits(&self) -> Vec<std::time::Duration> {
        let at = self.asked_at.lock().unwrap();
        at.windows(2).map(|w| w[1] - w[0]).collect()
    }

    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TokenProvider for CountingTokens {
    async fn access_token(&self) -> Result<SecretString, TokenError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.asked_at
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        let mut current = self.current.lock().unwrap();
        if current.is_none() {
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            *current = Some(format!("token-{n}"));
        }
        Ok(SecretString::from(current.clone().unwrap()))
    }

    async fn rejected(&self, token: &SecretString) {
        self.rejected
            .lock()
            .unwrap()
            .push(token.expose_secret().to_owned());
        let mut current = self.current.lock().unwrap();
        if current.as_deref() == Some(token.expose_secret()) {
            *current = None;
        }
    }
}

pub fn base(server: &MockServer) -> String {
    format!("{}/v1.0", server.uri())
}

/// A builder against the mock server, without a request timeout: on paused tokio time
/// the clock jumps to the next timer while the test waits for the loopback server, so a
/// timeout timer (or the pool's idle timer) would fire at once.
pub fn builder(server: &MockServer, tokens: Arc<dyn TokenProvider>) -> GraphClientBuilder {
    GraphClient::builder(tokens)
        .base_url(base(server))
        .request_timeout(None)
        .pool_idle_timeout(None)
}

pub fn client(server: &MockServer) -> (GraphClient, Arc<CountingTokens>) {
    let tokens = Arc::new(CountingTokens::default());
    let client = builder(server, tokens.clone()).build().unwrap();
    (client, tokens)
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A Graph error body.
pub fn graph_error(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({"error": {"code": code, "message": message, "innerError": {"request-id": "req-1", "date": "2024-01-01T00:00:00"}}})
}

/// A log writer for a `tracing_subscriber::fmt()` subscriber that keeps what was written.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
