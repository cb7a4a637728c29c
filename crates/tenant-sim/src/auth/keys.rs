//! The RS256 id-token signing key (made at start, published at `jwks_uri` in
//! Microsoft's JWK shape: `kty`, `use`, `kid`, `x5t`, `n`, `e`, `x5c`, `issuer`) and the
//! client certificates that may sign client assertions (spec §2c).

use std::fmt;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::AuthControlError;

/// The `x5t` thumbprint of a DER certificate: base64url (no padding) of its SHA-1 digest,
/// the thumbprint RFC 7517 §4.8 names for JWKs and JWT headers. SHA-1 here names a
/// certificate and guards nothing, hence aws-lc-rs's legacy-use-only algorithm.
pub(super) fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der))
}

/// The simulator's id-token signing key and its self-signed certificate.
pub(super) struct SigningKey {
    encoding: EncodingKey,
    kid: String,
    n: String,
    e: String,
    x5c: String,
    certificate_pem: String,
}

/// The process-wide signing key: made once, shared by every simulated tenant in the
/// process (as Microsoft's signing keys are shared by all tenants of a cloud), because
/// making a 2048-bit RSA key costs far more than starting a simulator.
static SHARED: OnceLock<Arc<SigningKey>> = OnceLock::new();

impl SigningKey {
    /// The process-wide key, made on first use.
    pub(super) fn shared() -> Result<Arc<Self>, String> {
        if let Some(key) = SHARED.get() {
            return Ok(Arc::clone(key));
        }
        let key = Arc::new(Self::generate()?);
        // Another thread may have won the race; either key is as good.
        Ok(Arc::clone(SHARED.get_or_init(|| key)))
    }

    /// A fresh 2048-bit RSA key (aws-lc-rs through rcgen) and a certificate for `x5c`.
    pub(super) fn generate() -> Result<Self, String> {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
            .map_err(|error| format!("cannot generate the RSA signing key: {error}"))?;
        let encoding = EncodingKey::from_rsa_pem(key_pair.serialize_pem().as_bytes())
            .map_err(|error| format!("cannot load the RSA signing key: {error}"))?;
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)
            .map_err(|error| format!("cannot read the RSA public key: {error}"))?;
        let AlgorithmParameters::RSA(rsa) = jwk.algorithm else {
            return Err("the signing key is not an RSA key".into());
        };
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|error| format!("cannot make the signing certificate: {error}"))?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "accounts.accesscontrol.windows.net",
        );
        let certificate = params
            .self_signed(&key_pair)
            .map_err(|error| format!("cannot sign the signing certificate: {error}"))?;
        let der = certificate.der().as_ref();
        // Microsoft's `kid` equals the certificate's `x5t` (id-token-header-v1.json).
        let kid = x5t(der);
        Ok(Self {
            encoding,
            kid,
            n: rsa.n,
            e: rsa.e,
            x5c: STANDARD.encode(der),
            certificate_pem: certificate.pem(),
        })
    }

    pub(super) fn kid(&self) -> &str {
        &self.kid
    }

    pub(super) fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The key as a JWK in Microsoft's `keys` document.
    pub(super) fn jwk(&self, issuer: &str) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": self.n,
            "e": self.e,
            "x5c": [self.x5c],
            "issuer": issuer,
        })
    }

    /// Signs `claims` as a compact JWT with header `typ`, `alg` RS256 and `kid`
    /// (id-token-header-v2.json).
    pub(super) fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|error| format!("cannot sign the id token: {error}"))
    }

    /// The public key, for tests that check signatures.
    #[cfg(test)]
    pub(super) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_rsa_components(&self.n, &self.e).expect("own key components")
    }
}

/// A certificate registered for `private_key_jwt` client authentication.
#[derive(Clone)]
pub(super) struct ClientCertificate {
    key: DecodingKey,
    x5t: String,
    x5t_s256: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.x5t)
            .field("x5t_s256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

impl ClientCertificate {
    pub(super) fn from_pem(pem: &str) -> Result<Self, AuthControlError> {
        let invalid = |why: &str| AuthControlError::InvalidCertificate(why.to_owned());
        let body = pem
            .split("-----BEGIN CERTIFICATE-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
            .ok_or_else(|| invalid("no CERTIFICATE block"))?;
        let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD
            .decode(body)
            .map_err(|_| invalid("the CERTIFICATE block is not base64"))?;
        let key = DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|error| AuthControlError::InvalidCertificate(error.to_string()))?;
        Ok(Self {
            key,
            x5t: x5t(&der),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
        })
    }
}

/// Checks a client assertion (spec §2c): PS256 with `x5t#S256` or RS256 with `x5t`
/// naming a registered certificate, signed by it, `iss` = `sub` = client id, `aud` one
/// of the token endpoint URLs, not expired.
pub(super) fn verify_assertion(
    assertion: &str,
    certificates: &[ClientCertificate],
    client_id: &str,
    audiences: &[String],
) -> Result<(), String> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|error| error.to_string())?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(format!("unsupported alg {:?}", header.alg));
    }
    let certificate = certificates
        .iter()
        .find(|certificate| {
            header.x5t_s256.as_deref() == Some(certificate.x5t_s256.as_str())
                || header.x5t.as_deref() == Some(certificate.x5t.as_str())
        })
        .ok_or("no registered certificate has this thumbprint")?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(audiences);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    jsonwebtoken::decode::<Value>(assertion, &certificate.key, &validation)
        .map(|_| ())
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn sha1_hex(data: &[u8]) -> String {
        digest(&SHA1_FOR_LEGACY_USE_ONLY, data)
            .as_ref()
            .iter()
            .fold(String::new(), |mut out, byte| {
                use std::fmt::Write as _;
                let _ = write!(out, "{byte:02x}");
                out
            })
    }

    #[test]
    fn sha1_matches_the_fips_test_vectors() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            sha1_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            sha1_hex(&vec![b'a'; 1_000_000]),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn x5t_is_the_base64url_sha1_of_the_certificate() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d
        let expected = URL_SAFE_NO_PAD.encode([
            0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
            0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d,
        ]);
        assert_eq!(super::x5t(b"abc"), expected);
        assert_eq!(super::x5t(b"abc"), "qZk-NkcGgWq6PiVxeFDCbJzQ2J0");
    }
}
