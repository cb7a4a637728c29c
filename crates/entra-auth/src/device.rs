//! The device code flow (spec §3): for a CLI or a machine without a browser.
//!
//! Done on this crate's HTTP client directly rather than through `oauth2`'s device flow,
//! whose polling loop reads the system clock (not `tokio::time`) and whose fixed error
//! type drops Entra's `error_codes`, `trace_id` and `correlation_id`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::client::{EntraClient, after};
use crate::cloud::Authority;
use crate::credentials::expose;
use crate::error::AuthError;
use crate::grant::Grant;
use crate::token::EntraTokenResponse;

/// The device-code grant type (spec §3).
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// `slow_down` adds 5 seconds to the interval (RFC 8628 §3.5; MSAL, spec §3).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Defaults when Entra omits them: 5 s interval (MSAL), 900 s lifetime (Entra docs).
const DEFAULT_INTERVAL: u64 = 5;
const DEFAULT_EXPIRES_IN: u64 = 900;
/// Upper bound for Entra's `interval` and `expires_in` (it sends 5 and 900): larger values
/// from the network would overflow `Instant`/`OffsetDateTime` arithmetic and panic.
const MAX_DEVICE_SECONDS: u64 = 24 * 3600;

#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn get(self) -> Option<u64> {
        match self {
            Self::Number(number) => Some(number),
            // "Some IdP returns string" (MSAL, spec §3).
            Self::Text(text) => text.trim().parse().ok(),
        }
    }
}

/// The device-code endpoint's answer (spec §3), before the defaults and bounds of
/// [`DeviceAuthorization::from_response`].
#[derive(Deserialize)]
pub(crate) struct DeviceCodeResponse {
    device_code: SecretString,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    interval: Option<Seconds>,
    #[serde(default)]
    expires_in: Option<Seconds>,
}

/// A started device-code sign-in: show [`message`](Self::message) (or the user code and
/// verification URI) to the user, then poll with
/// [`EntraClient::poll_device_code`]. The device code itself is secret.
pub struct DeviceAuthorization {
    device_code: SecretString,
    user_code: String,
    verification_uri: String,
    message: String,
    interval: Duration,
    expires_in: Duration,
    expires_at: OffsetDateTime,
    started: Instant,
    authority: Authority,
    scopes: Vec<String>,
}

impl DeviceAuthorization {
    /// The code the user types at the verification URI.
    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    /// Where the user signs in (`https://microsoft.com/devicelogin`).
    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// Entra's instruction text for the user.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The polling interval Entra asked for.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long the code is valid.
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// When the code stops being valid.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
}

impl DeviceAuthorization {
    /// The sign-in Entra's answer starts, as of `now` (the client's clock; polling counts
    /// from this moment): the defaults for what Entra left out, and `interval` and
    /// `expires_in` bounded, since a huge value from the network would overflow the
    /// polling's `Instant` arithmetic and panic; a missing or blank `message` is made
    /// from the user code and the verification URI. Separate from the request so that the
    /// fuzz targets run exactly this on any answer.
    pub(crate) fn from_response(
        response: DeviceCodeResponse,
        now: OffsetDateTime,
        authority: Authority,
        scopes: Vec<String>,
    ) -> Self {
        let interval = response
            .interval
            .and_then(Seconds::get)
            .unwrap_or(DEFAULT_INTERVAL)
            .clamp(1, MAX_DEVICE_SECONDS);
        let expires_in = response
            .expires_in
            .and_then(Seconds::get)
            .unwrap_or(DEFAULT_EXPIRES_IN)
            .min(MAX_DEVICE_SECONDS);
        // A blank `message` would show the user nothing to do: the code and URI say it.
        let message = response
            .message
            .filter(|message| !message.trim().is_empty())
            .unwrap_or_else(|| {
                format!(
                    "To sign in, open {} and enter the code {}.",
                    response.verification_uri, response.user_code
                )
            });
        Self {
            device_code: response.device_code,
            user_code: response.user_code,
            verification_uri: response.verification_uri,
            message,
            interval: Duration::from_secs(interval),
            expires_in: Duration::from_secs(expires_in),
            expires_at: after(now, Duration::from_secs(expires_in)),
            started: Instant::now(),
            authority,
            scopes,
        }
    }
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"[REDACTED]")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("interval", &self.interval)
            .field("expires_at", &self.expires_at)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl EntraClient {
    /// Starts a device-code sign-in at `authority` with the client's scopes.
    ///
    /// # Errors
    /// The endpoint's errors as [`AuthError`] (a confidential app without
    /// `allowPublicClient` gets a configuration error, spec §3).
    pub async fn start_device_code(
        &self,
        authority: &Authority,
    ) -> Result<DeviceAuthorization, AuthError> {
        let scopes = self.qualified_scopes(None);
        let endpoint = self.inner.cloud.device_code_endpoint(authority);
        let params = [
            ("client_id", self.client_id().to_owned()),
            ("scope", scopes.join(" ")),
        ];
        let response = match self
            .post_form::<DeviceCodeResponse>(&endpoint, &params)
            .await?
        {
            Ok(response) => response,
            Err(boxed) => {
                let (error, retry_after) = *boxed;
                return Err(AuthError::from_token_endpoint(error, retry_after));
            }
        };
        Ok(DeviceAuthorization::from_response(
            response,
            self.now(),
            authority.clone(),
            scopes,
        ))
    }

    /// Polls until the user signs in, declines, or the code expires.
    ///
    /// The first poll starts `interval` after the code was issued and each next one
    /// `interval` after the previous one started, so it never polls faster than asked; `slow_down` adds 5 s for the rest of the flow. Dropping
    /// the future cancels it (nothing is left half-done); see also
    /// [`poll_device_code_until`](Self::poll_device_code_until).
    ///
    /// # Errors
    /// [`AuthError::DeviceCodeDeclined`], [`AuthError::DeviceCodeExpired`],
    /// [`AuthError::BadVerificationCode`], other token-endpoint errors (including
    /// [`AuthError::Throttled`] when Entra asked to wait), and the id token and scope
    /// checks of a sign-in.
    pub async fn poll_device_code(&self, device: &DeviceAuthorization) -> Result<Grant, AuthError> {
        let endpoint = self.inner.cloud.token_endpoint(&device.authority);
        let deadline = device.started + device.expires_in;
        let mut interval = device.interval;
        // The first poll waits `interval` after the code was issued; each next one starts
        // `interval` after the previous one started (RFC 8628 §3.5: the interval between
        // polling requests), however long that request took.
        let mut last_poll = device.started;
        loop {
            let next_poll = last_poll + interval;
            if next_poll > deadline {
                tokio::time::sleep_until(deadline).await;
                return Err(AuthError::DeviceCodeExpired(None));
            }
            tokio::time::sleep_until(next_poll).await;
            last_poll = Instant::now();

            let mut params = vec![
                ("grant_type", DEVICE_CODE_GRANT.to_owned()),
                ("client_id", self.client_id().to_owned()),
                ("device_code", expose(&device.device_code)),
            ];
            if let Some(claims) = self.claims_param(None)? {
                params.push(("claims", claims));
            }
            for (name, value) in self.inner.credential.form_params(
                self.client_id(),
                endpoint.as_str(),
                self.now(),
            )? {
                params.push((name, expose(&value)));
            }
            match self
                .post_form::<EntraTokenResponse>(&endpoint, &params)
                .await?
            {
                Ok(response) => {
                    return self
                        .grant_from(
                            response.into_parts(&endpoint)?,
                            &device.scopes,
                            None,
                            &device.authority,
                        )
                        .await;
                }
                Err(boxed) => {
                    let (error, retry_after) = *boxed;
                    match error.error() {
                        "authorization_pending" => {}
                        "slow_down" => {
                            interval += SLOW_DOWN_STEP;
                            tracing::debug!(interval_seconds = interval.as_secs(), "slow_down");
                        }
                        "authorization_declined" | "access_denied" => {
                            return Err(AuthError::DeviceCodeDeclined(Box::new(error)));
                        }
                        "expired_token" => {
                            return Err(AuthError::DeviceCodeExpired(Some(Box::new(error))));
                        }
                        "bad_verification_code" => {
                            return Err(AuthError::BadVerificationCode(Box::new(error)));
                        }
                        _ => return Err(AuthError::from_token_endpoint(error, retry_after)),
                    }
                }
            }
        }
    }

    /// Polls like [`poll_device_code`](Self::poll_device_code) until `cancel` completes,
    /// then stops with [`AuthError::Cancelled`].
    ///
    /// # Errors
    /// As [`poll_device_code`](Self::poll_device_code), and [`AuthError::Cancelled`].
    pub async fn poll_device_code_until<C>(
        &self,
        device: &DeviceAuthorization,
        cancel: C,
    ) -> Result<Grant, AuthError>
    where
        C: Future<Output = ()>,
    {
        tokio::select! {
            result = self.poll_device_code(device) => result,
            () = cancel => Err(AuthError::Cancelled),
        }
    }
}
