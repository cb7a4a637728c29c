//! Id token claim checks (spec §5a) and the identity it carries.
//!
//! The claims: `aud` = client id (and `azp` = client id when present, required when `aud`
//! is an array), `iss` = `{login}/{tid}/v2.0`, `nonce`, `exp`/`nbf` with a small skew,
//! `tid` and `oid` GUIDs. The signature is checked before, in `signing_keys`, for a custom
//! cloud; for the Microsoft clouds the token came straight from their token endpoint over
//! TLS in answer to this client's own request (`OpenID` Connect Core 3.1.3.7, item 6).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;

use crate::cloud::{Cloud, ObjectId, TenantId, is_guid};
use crate::error::IdTokenError;

/// Base64url that accepts both padded and unpadded segments (the documented v1 sample
/// token ends its payload with `=`, fixture `id-token-v1-sample.jwt`).
pub(crate) const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Who signed in: the stable key of a connection is (`tenant_id`, `object_id`); the names
/// are for display only (spec §5a).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Identity {
    /// `tid`: the tenant the user signed in to.
    pub tenant_id: TenantId,
    /// `oid`: the user's object id in that tenant (Graph `user.id`).
    pub object_id: ObjectId,
    /// `preferred_username`: mutable, display and hints only.
    pub preferred_username: Option<String>,
    /// `name`: display only.
    pub name: Option<String>,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in tenant {}", self.object_id, self.tenant_id)?;
        if let Some(username) = &self.preferred_username {
            write!(f, " ({username})")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    aud: Option<Audience>,
    azp: Option<String>,
    iss: Option<String>,
    tid: Option<String>,
    oid: Option<String>,
    nonce: Option<String>,
    exp: Option<i64>,
    nbf: Option<i64>,
    preferred_username: Option<String>,
    name: Option<String>,
}

/// What an id token must show.
pub(crate) struct Expectations<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) cloud: &'a Cloud,
    /// `None` for flows without a nonce (device code).
    pub(crate) nonce: Option<&'a SecretString>,
    /// Set when the authority named a tenant by id.
    pub(crate) tenant: Option<&'a TenantId>,
    pub(crate) now: OffsetDateTime,
    pub(crate) skew: Duration,
}

/// Decodes and checks an id token, returning the identity.
pub(crate) fn validate(
    token: &SecretString,
    expect: &Expectations<'_>,
) -> Result<Identity, IdTokenError> {
    let mut segments = token.expose_secret().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(IdTokenError::Malformed("not three dot-separated segments"));
    };
    let bytes = LENIENT_URL_SAFE
        .decode(payload)
        .map_err(|_| IdTokenError::Malformed("payload is not base64url"))?;
    // RFC 7519 §7.2, step 10: the payload must be a completely valid JSON object. Decoded
    // straight into `Claims`, the members it does not read would be skipped unchecked
    // (serde_json skips a string without checking its UTF-8 or its `\u` escapes), so the
    // whole payload is read as JSON first; `Claims` then refuses repeated members.
    let malformed = IdTokenError::Malformed("payload is not a JSON claims object");
    if !matches!(
        serde_json::from_slice::<serde_json::Value>(&bytes),
        Ok(serde_json::Value::Object(_))
    ) {
        return Err(malformed);
    }
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| malformed)?;

    let (audiences, several) = match claims.aud {
        Some(Audience::One(aud)) => (vec![aud], false),
        Some(Audience::Many(auds)) => (auds, true),
        None => return Err(IdTokenError::MissingClaim("aud")),
    };
    if !audiences
        .iter()
        .any(|aud| aud.eq_ignore_ascii_case(expect.client_id))
    {
        return Err(IdTokenError::WrongAudience { actual: audiences });
    }
    // OpenID Connect Core 3.1.3.7, items 4 and 5: with an `aud` array the authorized
    // party must be present, and when present it must be this client.
    match claims.azp {
        Some(azp) if !azp.eq_ignore_ascii_case(expect.client_id) => {
            return Err(IdTokenError::WrongAuthorizedParty { actual: azp });
        }
        None if several => return Err(IdTokenError::MissingClaim("azp")),
        _ => {}
    }

    let tid = claims.tid.ok_or(IdTokenError::MissingClaim("tid"))?;
    let tenant = TenantId::parse(&tid).map_err(|_| IdTokenError::NotAGuid("tid"))?;
    let issuer = claims.iss.ok_or(IdTokenError::MissingClaim("iss"))?;
    let expected_issuer = expect.cloud.issuer(&tenant);
    if issuer != expected_issuer {
        return Err(IdTokenError::WrongIssuer {
            expected: expected_issuer,
            actual: issuer,
        });
    }
    if let Some(expected) = expect.tenant
        && *expected != tenant
    {
        return Err(IdTokenError::WrongTenant {
            expected: expected.to_string(),
            actual: tenant.to_string(),
        });
    }

    if let Some(nonce) = expect.nonce {
        let matches = claims.nonce.as_deref().is_some_and(|actual| {
            bool::from(actual.as_bytes().ct_eq(nonce.expose_secret().as_bytes()))
        });
        if !matches {
            return Err(IdTokenError::NonceMismatch);
        }
    }

    let now = expect.now.unix_timestamp();
    let skew = i64::try_from(expect.skew.as_secs()).unwrap_or(i64::MAX);
    let exp = claims.exp.ok_or(IdTokenError::MissingClaim("exp"))?;
    if now.saturating_sub(skew) >= exp {
        return Err(IdTokenError::Expired(exp));
    }
    if let Some(nbf) = claims.nbf
        && now.saturating_add(skew) < nbf
    {
        return Err(IdTokenError::NotYetValid(nbf));
    }

    // `oid` is a GUID, Graph's `user.id` (spec §5a), and half of a connection's key.
    let oid = claims.oid.ok_or(IdTokenError::MissingClaim("oid"))?;
    if !is_guid(&oid) {
        return Err(IdTokenError::NotAGuid("oid"));
    }
    Ok(Identity {
        tenant_id: tenant,
        object_id: ObjectId::new(oid),
        preferred_username: claims.preferred_username,
        name: claims.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented v2.0 sample id token (fixture `id-token-v2-sample.jwt`).
    const SAMPLE: &str = include_str!("../tests/fixtures/identity/id-token-v2-sample.jwt");
    /// Its `iat`/`nbf`.
    const SAMPLE_ISSUED: i64 = 1_536_274_711;

    fn expectations(nonce: &SecretString, now: i64) -> Expectations<'_> {
        Expectations {
            client_id: "6cb04018-a3f5-46a7-b995-940c78f5aef3",
            cloud: &Cloud::Global,
            nonce: Some(nonce),
            tenant: None,
            now: OffsetDateTime::from_unix_timestamp(now).unwrap(),
            skew: Duration::from_secs(300),
        }
    }

    #[test]
    fn documented_v2_sample_yields_its_identity() {
        let nonce = SecretString::from("123523");
        let identity = validate(
            &SecretString::from(SAMPLE.trim()),
            &expectations(&nonce, SAMPLE_ISSUED + 60),
        )
        .unwrap();
        assert_eq!(
            identity.tenant_id.as_str(),
            "9122040d-6c67-4c5b-b112-36a304b66dad"
        );
        assert_eq!(
            identity.object_id.as_str(),
            "00000000-0000-0000-66f3-3332eca7ea81"
        );
        assert_eq!(
            identity.preferred_username.as_deref(),
            Some("AbeLi@microsoft.com")
        );
        assert_eq!(identity.name.as_deref(), Some("Abe Lincoln"));
    }

    #[test]
    fn documented_v1_sample_is_refused_for_its_v1_issuer() {
        let token = include_str!("../tests/fixtures/identity/id-token-v1-sample.jwt");
        let nonce = SecretString::from("123523");
        let mut expect = expectations(&nonce, 1_536_275_124 + 60);
        expect.client_id = "b14a7505-96e9-4927-91e8-0601d0fc9caa";
        let error = validate(&SecretString::from(token.trim()), &expect).unwrap_err();
        assert_eq!(
            error,
            IdTokenError::WrongIssuer {
                expected:
                    "https://login.microsoftonline.com/fa15d692-e9c7-4460-a743-29f2956fd429/v2.0"
                        .into(),
                actual: "https://sts.windows.net/fa15d692-e9c7-4460-a743-29f2956fd429/".into(),
            }
        );
    }

    #[test]
    fn skew_allows_a_token_just_expired_and_refuses_beyond() {
        let nonce = SecretString::from("123523");
        let token = SecretString::from(SAMPLE.trim());
        let exp = 1_536_361_411;
        assert!(validate(&token, &expectations(&nonce, exp + 299)).is_ok());
        assert_eq!(
            validate(&token, &expectations(&nonce, exp + 300)).unwrap_err(),
            IdTokenError::Expired(exp)
        );
        assert_eq!(
            validate(&token, &expectations(&nonce, SAMPLE_ISSUED - 301)).unwrap_err(),
            IdTokenError::NotYetValid(SAMPLE_ISSUED)
        );
    }

    /// The documented v2.0 sample's claims (fixture `id-token-claims-v2.json`) changed by
    /// `edit`, as an (unsigned) compact JWT.
    fn sample_with(edit: impl FnOnce(&mut serde_json::Value)) -> SecretString {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value = serde_json::from_str(include_str!(
            "../tests/fixtures/identity/id-token-claims-v2.json"
        ))
        .unwrap();
        edit(&mut claims);
        let header = include_str!("../tests/fixtures/identity/id-token-header-v2.json");
        SecretString::from(format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(header.trim()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        ))
    }

    const CLIENT: &str = "6cb04018-a3f5-46a7-b995-940c78f5aef3";
    const OTHER: &str = "11112222-bbbb-3333-cccc-4444dddd5555";

    #[test]
    fn azp_must_be_this_client_when_aud_is_an_array() {
        let nonce = SecretString::from("123523");
        let expect = expectations(&nonce, SAMPLE_ISSUED + 60);
        let check = |edit: fn(&mut serde_json::Value)| validate(&sample_with(edit), &expect);

        // The sample as published (one `aud`, no `azp`) passes through this path too.
        assert!(check(|_| {}).is_ok());
        assert_eq!(
            check(|claims| claims["aud"] = serde_json::json!([CLIENT, OTHER])).unwrap_err(),
            IdTokenError::MissingClaim("azp")
        );
        assert_eq!(
            check(|claims| {
                claims["aud"] = serde_json::json!([CLIENT, OTHER]);
                claims["azp"] = OTHER.into();
            })
            .unwrap_err(),
            IdTokenError::WrongAuthorizedParty {
                actual: OTHER.into()
            }
        );
        let identity = check(|claims| {
            claims["aud"] = serde_json::json!([OTHER, CLIENT]);
            claims["azp"] = CLIENT.to_uppercase().into();
        })
        .unwrap();
        assert_eq!(
            identity.object_id.as_str(),
            "00000000-0000-0000-66f3-3332eca7ea81"
        );
        // An `azp` naming another app is refused with a single `aud` as well.
        assert_eq!(
            check(|claims| claims["azp"] = OTHER.into()).unwrap_err(),
            IdTokenError::WrongAuthorizedParty {
                actual: OTHER.into()
            }
        );
    }

    #[test]
    fn oid_and_tid_must_be_guids() {
        let nonce = SecretString::from("123523");
        let expect = expectations(&nonce, SAMPLE_ISSUED + 60);
        for oid in [
            "",
            "admin",
            "00000000-0000-0000-66f3-3332eca7ea8",
            "{00000000-0000-0000-66f3-3332eca7ea81}",
            "00000000-0000-0000-66f3-3332eca7ea81/../x",
        ] {
            let token = sample_with(|claims| claims["oid"] = oid.into());
            assert_eq!(
                validate(&token, &expect).unwrap_err(),
                IdTokenError::NotAGuid("oid"),
                "{oid:?}"
            );
        }
        let token = sample_with(|claims| claims["tid"] = "contoso.onmicrosoft.com".into());
        assert_eq!(
            validate(&token, &expect).unwrap_err(),
            IdTokenError::NotAGuid("tid")
        );
    }

    #[test]
    fn a_payload_that_is_not_valid_json_is_refused_even_in_members_not_read() {
        // Found by fuzz/ (entra_id_token, corpus crash-4d19c476…): a claim this crate does
        // not read holding bytes that are not UTF-8 (or a lone surrogate escape) was
        // skipped unchecked, so a payload that is no JSON at all was accepted.
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let nonce = SecretString::from("123523");
        let expect = expectations(&nonce, SAMPLE_ISSUED + 60);
        let claims = include_str!("../tests/fixtures/identity/id-token-claims-v2.json").trim();
        let with = |member: &[u8]| {
            let mut payload = claims.as_bytes()[..claims.len() - 1].to_vec();
            payload.push(b',');
            payload.extend_from_slice(member);
            payload.push(b'}');
            SecretString::from(format!(
                "{}.{}.c2lnbmF0dXJl",
                URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"RS256","kid":"k"}"#),
                URL_SAFE_NO_PAD.encode(payload)
            ))
        };
        assert!(validate(&with(br#""x":"ok""#), &expect).is_ok());
        for member in [
            &b"\"$preferred_username\":\"AbeLi@mic\xff\xff\xff\xffft.com\""[..],
            br#""x":"\ud800""#,
            br#""x":["\udfff"]"#,
        ] {
            assert_eq!(
                validate(&with(member), &expect),
                Err(IdTokenError::Malformed(
                    "payload is not a JSON claims object"
                )),
                "{}",
                String::from_utf8_lossy(member)
            );
        }
        // Repeated members stay refused.
        let repeated = with(br#""oid":"00000000-0000-0000-66f3-3332eca7ea81""#);
        assert!(validate(&repeated, &expect).is_err());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let nonce = SecretString::from("n");
        for token in ["", "a.b", "a.!!!.c", "a.bm90IGpzb24.c", "a.b.c.d"] {
            assert!(matches!(
                validate(&SecretString::from(token), &expectations(&nonce, 0)),
                Err(IdTokenError::Malformed(_))
            ));
        }
    }
}
