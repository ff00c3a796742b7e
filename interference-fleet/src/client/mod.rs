//! The agent's client: one method per controller call, each a single attempt with
//! bounded timeouts, and [`FleetClient::retrying`] to repeat a call with jittered
//! exponential backoff that honours `Retry-After`.
//!
//! Plain HTTP (no TLS in this build): put the controller behind a TLS-terminating proxy,
//! or enable reqwest's rustls feature when the fleet needs it end to end.

mod backoff;
mod error;

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::debug;

pub use backoff::{parse_retry_after, Backoff, RetryPolicy};
pub use error::ClientError;

use crate::routes;
use crate::wire::{
    sha256_hex, BundleManifest, DesiredState, Envelope, ErrorBody, Heartbeat, HeartbeatAck,
    IngestAck, IngestBatch, PlacementRequest, Register, Registered, Release, ReleaseOutcome,
    Released, Reservation,
};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `http://controller:7070` (no trailing slash needed).
    pub base_url: String,
    /// The host's token (`interference-controller hosts tokens create`).
    pub token: String,
    pub connect_timeout: Duration,
    /// Whole request, answer included; a long poll gets `long_poll` on top.
    pub request_timeout: Duration,
    /// How long the controller may hold a desired-state poll.
    pub long_poll: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            token: token.into(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(15),
            long_poll: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FleetClient {
    http: reqwest::Client,
    config: ClientConfig,
    base: String,
}

impl FleetClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(ClientError::Config(format!(
                "controller URL {base:?} must start with http:// (this build has no TLS)"
            )));
        }
        if config.token.is_empty() {
            return Err(ClientError::Config("the host token is empty".into()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(Self { http, config, base })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Announce the host (capacity, CPU model, QEMU version); at start-up.
    pub async fn register(&self, body: &Register) -> Result<Registered, ClientError> {
        self.post(routes::REGISTER, body).await
    }

    pub async fn heartbeat(&self, body: &Heartbeat) -> Result<HeartbeatAck, ClientError> {
        self.post(routes::HEARTBEAT, body).await
    }

    /// One batch; the answer arrives only after the controller committed it. An error
    /// means "not known to be stored": resend the same batch (same `seq`, same items).
    pub async fn ingest(&self, batch: &IngestBatch) -> Result<IngestAck, ClientError> {
        self.post(routes::INGEST, batch).await
    }

    /// Long poll: the desired state when its ETag differs from `etag`, None when it did
    /// not change within [`ClientConfig::long_poll`].
    pub async fn desired(&self, etag: Option<&str>) -> Result<Option<DesiredState>, ClientError> {
        let url = format!(
            "{}{}?wait_ms={}",
            self.base,
            routes::DESIRED,
            self.config.long_poll.as_millis()
        );
        let mut request = self
            .http
            .get(&url)
            .header(AUTHORIZATION, self.bearer())
            .timeout(self.config.long_poll + self.config.request_timeout);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, format!("\"{etag}\""));
        }
        let response = request
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let response = check(&url, response).await?;
        let header_etag = etag_of(response.headers());
        let state: DesiredState = decode_envelope(&url, response).await?;
        if let Some(h) = header_etag {
            if h != state.etag {
                debug!(header = %h, body = %state.etag, "desired state ETag header differs from body");
            }
        }
        Ok(Some(state))
    }

    /// Ask for a migration target with room for the VM. `no_target` (409) when none
    /// fits; 429 with `Retry-After` when the fleet's concurrent-migration cap is reached.
    pub async fn place(&self, request: &PlacementRequest) -> Result<Reservation, ClientError> {
        self.post(routes::PLACEMENTS, request).await
    }

    /// End a reservation: the VM migrated (room stays taken), or it did not (room given
    /// back). Idempotent.
    pub async fn release(
        &self,
        reservation_id: &str,
        outcome: ReleaseOutcome,
    ) -> Result<Released, ClientError> {
        self.post(&routes::release(reservation_id), &Release { outcome })
            .await
    }

    /// A bundle's manifest, checked against its address.
    pub async fn model_manifest(&self, sha256: &str) -> Result<BundleManifest, ClientError> {
        let bytes = self.model_manifest_bytes(sha256).await?;
        let url = format!("{}{}", self.base, routes::model_manifest(sha256));
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            message: e.to_string(),
        })
    }

    /// A bundle's manifest as stored (the bytes its address is the sha256 of), checked
    /// against that address: what an agent keeps on disk to verify it again later.
    pub async fn model_manifest_bytes(&self, sha256: &str) -> Result<Vec<u8>, ClientError> {
        self.get_verified("model manifest", &routes::model_manifest(sha256), sha256)
            .await
    }

    /// A bundle file, checked against its sha256.
    pub async fn blob(&self, sha256: &str) -> Result<Vec<u8>, ClientError> {
        self.get_verified("bundle file", &routes::blob(sha256), sha256)
            .await
    }

    /// Repeat `call` while it fails with a retryable error, waiting with jittered
    /// exponential backoff (at least `Retry-After` when the controller sends one), until
    /// it succeeds or the policy gives up.
    pub async fn retrying<T, F, Fut>(
        &self,
        what: &'static str,
        policy: RetryPolicy,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let started = Instant::now();
        let mut backoff = Backoff::new(policy);
        loop {
            let error = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let attempts = backoff.failures() + 1;
            let delay = backoff.next_delay(error.retry_after());
            let out_of_attempts = policy.max_attempts.is_some_and(|m| attempts >= m);
            let out_of_time = policy
                .max_elapsed
                .is_some_and(|m| started.elapsed() + delay > m);
            if !error.is_retryable() {
                return Err(error);
            }
            if out_of_attempts || out_of_time {
                return Err(ClientError::GaveUp {
                    what,
                    attempts,
                    elapsed: started.elapsed(),
                    last: Box::new(error),
                });
            }
            debug!(what, attempts, ?delay, %error, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// [`Self::ingest`] until acknowledged (the agent's replay loop after an outage).
    pub async fn ingest_until_acked(&self, batch: &IngestBatch) -> Result<IngestAck, ClientError> {
        self.retrying("ingest", self.config.retry, || self.ingest(batch))
            .await
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.config.token)
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .header(AUTHORIZATION, self.bearer())
            .json(&Envelope::new(body))
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        let response = check(&url, response).await?;
        decode_envelope(&url, response).await
    }

    async fn get_verified(
        &self,
        what: &'static str,
        path: &str,
        sha256: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .header(AUTHORIZATION, self.bearer())
            .send()
            .await
            .map_err(|source| transport(&url, source))?;
        let response = check(&url, response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|source| transport(&url, source))?;
        let got = sha256_hex(&bytes);
        if got != sha256 {
            return Err(ClientError::ShaMismatch {
                what,
                expected: sha256.to_owned(),
                got,
            });
        }
        Ok(bytes.to_vec())
    }
}

fn transport(url: &str, source: reqwest::Error) -> ClientError {
    ClientError::Transport {
        url: url.to_owned(),
        source,
    }
}

fn etag_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start_matches("W/").trim_matches('"').to_owned())
}

/// A success passes; anything else becomes [`ClientError::Status`] with the
/// controller's error body and `Retry-After`.
async fn check(url: &str, response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let text = response.text().await.unwrap_or_default();
    let body: ErrorBody = serde_json::from_str(&text).unwrap_or_else(|_| ErrorBody {
        code: status
            .canonical_reason()
            .unwrap_or("error")
            .to_lowercase()
            .replace(' ', "_"),
        message: text.chars().take(500).collect(),
        fields: Vec::new(),
    });
    Err(ClientError::Status {
        url: url.to_owned(),
        status: status.as_u16(),
        code: body.code,
        message: body.message,
        fields: body.fields,
        retry_after,
    })
}

async fn decode_envelope<R: DeserializeOwned>(
    url: &str,
    response: reqwest::Response,
) -> Result<R, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|source| transport(url, source))?;
    let envelope: Envelope<R> =
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    Ok(envelope.open()?)
}
