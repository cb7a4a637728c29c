//! How the app proves itself at the token endpoint: not at all (public client), a client
//! secret, or a certificate's client-assertion JWT (spec §2a, §2c).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::error::AuthError;

/// `client_assertion_type` for a JWT client assertion (spec §2a).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Lifetime of a client assertion: "5-10 minutes after nbf at most", MSAL uses 600 s (§2c).
const ASSERTION_LIFETIME_SECONDS: i64 = 600;

/// The app's credential at the token endpoint.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum ClientCredential {
    /// A public client (native or CLI app): no secret. Required for device code unless the
    /// app is confidential (spec §3).
    #[default]
    Public,
    /// A client secret, sent in the form body (`client_secret_post`).
    Secret(SecretString),
    /// A certificate: each token request carries a fresh client-assertion JWT.
    Certificate(CertificateCredential),
}

impl ClientCredential {
    /// A client secret.
    pub fn secret(secret: impl Into<String>) -> Self {
        Self::Secret(SecretString::from(secret.into()))
    }

    /// The form parameters that authenticate the app, besides `client_id`.
    pub(crate) fn form_params(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<(&'static str, SecretString)>, AuthError> {
        Ok(match self {
            Self::Public => Vec::new(),
            Self::Secret(secret) => vec![("client_secret", secret.clone())],
            Self::Certificate(certificate) => vec![
                ("client_assertion_type", SecretString::from(JWT_BEARER)),
                (
                    "client_assertion",
                    certificate.assertion(client_id, token_endpoint, now)?,
                ),
            ],
        })
    }
}

impl fmt::Debug for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("Public"),
            Self::Secret(_) => f.write_str("Secret([REDACTED])"),
            Self::Certificate(certificate) => write!(f, "Certificate({certificate:?})"),
        }
    }
}

impl fmt::Display for ClientCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("public client"),
            Self::Secret(_) => f.write_str("client secret [REDACTED]"),
            Self::Certificate(certificate) => write!(f, "{certificate}"),
        }
    }
}

/// A certificate and its RSA private key, for client assertions signed PS256 with the
/// `x5t#S256` thumbprint, as the current Entra docs describe (spec §2c).
#[derive(Clone)]
pub struct CertificateCredential {
    key: EncodingKey,
    thumbprint_sha256: String,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl CertificateCredential {
    /// From a PEM certificate (`-----BEGIN CERTIFICATE-----`) and a PEM RSA private key
    /// (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] when either cannot be read or the key cannot
    /// sign.
    pub fn from_pem(certificate_pem: &[u8], private_key_pem: &[u8]) -> Result<Self, AuthError> {
        let der = certificate_der_from_pem(certificate_pem)?;
        Self::from_der(&der, private_key_pem)
    }

    /// From a DER certificate and a PEM RSA private key.
    ///
    /// # Errors
    /// [`AuthError::InvalidConfiguration`] when the key cannot be read or cannot sign.
    pub fn from_der(certificate_der: &[u8], private_key_pem: &[u8]) -> Result<Self, AuthError> {
        if certificate_der.is_empty() {
            return Err(AuthError::InvalidConfiguration(
                "certificate is empty".to_owned(),
            ));
        }
        let key = EncodingKey::from_rsa_pem(private_key_pem).map_err(|error| {
            AuthError::InvalidConfiguration(format!("cannot read the RSA private key: {error}"))
        })?;
        let credential = Self {
            key,
            thumbprint_sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(certificate_der)),
        };
        // Sign once now so that a key that cannot sign fails at configuration time.
        credential.assertion("check", "check", OffsetDateTime::UNIX_EPOCH)?;
        Ok(credential)
    }

    /// The base64url SHA-256 thumbprint of the certificate (the `x5t#S256` header).
    pub fn thumbprint_sha256(&self) -> &str {
        &self.thumbprint_sha256
    }

    /// A client assertion for one token request: `aud` = token endpoint, `iss` = `sub` =
    /// client id, a fresh `jti`, `nbf` = `iat` = now, `exp` = now + 10 minutes (spec §2c).
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: OffsetDateTime,
    ) -> Result<SecretString, AuthError> {
        let mut header = Header::new(Algorithm::PS256);
        header.typ = Some("JWT".to_owned());
        header.x5t_s256 = Some(self.thumbprint_sha256.clone());
        let now = now.unix_timestamp();
        let claims = AssertionClaims {
            aud: token_endpoint,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECONDS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|error| {
                AuthError::InvalidConfiguration(format!(
                    "cannot sign the client assertion: {error}"
                ))
            })
    }
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("thumbprint_sha256", &self.thumbprint_sha256)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl fmt::Display for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "certificate {} [key REDACTED]", self.thumbprint_sha256)
    }
}

/// The DER bytes of the first `CERTIFICATE` block of a PEM file.
fn certificate_der_from_pem(pem: &[u8]) -> Result<Vec<u8>, AuthError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let invalid = |what: &str| AuthError::InvalidConfiguration(format!("certificate PEM: {what}"));
    let text = std::str::from_utf8(pem).map_err(|_| invalid("not UTF-8"))?;
    let start = text
        .find(BEGIN)
        .ok_or_else(|| invalid("no CERTIFICATE block"))?
        + BEGIN.len();
    let length = text[start..]
        .find(END)
        .ok_or_else(|| invalid("unterminated CERTIFICATE block"))?;
    let body: String = text[start..start + length]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|_| invalid("invalid base64"))?;
    if der.is_empty() {
        return Err(invalid("empty CERTIFICATE block"));
    }
    Ok(der)
}

/// Exposes a secret for the form body (the one place it goes on the wire).
pub(crate) fn expose(secret: &SecretString) -> String {
    secret.expose_secret().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_certificate_is_decoded_from_its_block() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            certificate_der_from_pem(pem.as_bytes()).unwrap(),
            vec![0, 1, 2, 3]
        );
        assert!(certificate_der_from_pem(b"nothing").is_err());
    }

    #[test]
    fn unreadable_key_is_a_configuration_error() {
        let error = CertificateCredential::from_der(&[1, 2, 3], b"not a key").unwrap_err();
        assert!(error.is_configuration());
    }
}
