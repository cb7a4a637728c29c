//! Every public secret-holding type formats with `{:?}` and `{}` without its secrets; the
//! public futures are `Send`.

mod common;

use std::sync::Arc;

use common::{MemoryStore, REDIRECT, builder, claims, mint, token_body};
use entra_auth::secrecy::{ExposeSecret as _, SecretString};
use entra_auth::{
    AccessToken, AdminConsentRequest, Authority, AuthorizationRequest, CallbackParams,
    CertificateCredential, ClientCredential, DeviceAuthorization, EntraClient, EntraClientBuilder,
    Grant, PendingAuthorization, RefreshedToken, StoredRefreshToken, TokenSession, TokenVersion,
};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const SECRETS: [&str; 6] = [
    "SECRET-ACCESS",
    "SECRET-REFRESH",
    "SECRET-CODE",
    "SECRET-CLIENT",
    "SECRET-DEVICE",
    "SECRET-ROTATED",
];

fn assert_redacted(name: &str, debug: &str, display: &str, extra: &[String]) {
    for secret in SECRETS
        .iter()
        .map(|s| (*s).to_owned())
        .chain(extra.iter().cloned())
    {
        assert!(
            !debug.contains(&secret),
            "{name} Debug shows {secret}: {debug}"
        );
        assert!(
            !display.contains(&secret),
            "{name} Display shows {secret}: {display}"
        );
    }
    assert!(!display.is_empty(), "{name} Display is empty");
}

macro_rules! check {
    ($value:expr, $extra:expr) => {{
        let value = &$value;
        assert_redacted(
            stringify!($value),
            &format!("{value:?}"),
            &format!("{value}"),
            $extra,
        );
    }};
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one walk through every secret-holding type"
)]
async fn no_public_type_shows_a_secret_in_debug_or_display() {
    let server = common::entra().await;
    let client: EntraClient = builder(&server)
        .credential(ClientCredential::secret("SECRET-CLIENT"))
        .build()
        .unwrap();
    let builder_value: EntraClientBuilder =
        builder(&server).credential(ClientCredential::secret("SECRET-CLIENT"));

    let request: AuthorizationRequest = client.authorization_request().build().unwrap();
    let serialized = serde_json::to_value(request.pending()).unwrap();
    let pending_secrets: Vec<String> = ["state", "nonce", "pkce_verifier"]
        .iter()
        .map(|name| serialized[name].as_str().unwrap().to_owned())
        .collect();
    let pending: PendingAuthorization = request.pending().clone();

    let id_token = mint(&claims(&server, Some(&pending_secrets[1])));
    let body = token_body(
        "SECRET-ACCESS",
        Some("SECRET-REFRESH"),
        Some(&id_token),
        &common::granted_default_scopes(),
    );
    Mock::given(method("POST"))
        .and(path("/organizations/oauth2/v2.0/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let callback: CallbackParams = CallbackParams::from_redirect_url(&format!(
        "{REDIRECT}?code=SECRET-CODE&state={}",
        pending_secrets[0]
    ))
    .unwrap();
    let grant: Grant = client
        .complete_authorization(&pending, &callback)
        .await
        .unwrap();
    let access: AccessToken = grant.access_token().clone();

    Mock::given(method("POST"))
        .and(path(format!("/{}/oauth2/v2.0/token", common::TENANT)))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(
            "SECRET-ACCESS",
            Some("SECRET-ROTATED"),
            None,
            "x",
        )))
        .mount(&server)
        .await;
    let refreshed: RefreshedToken = client
        .refresh(grant.tenant_id(), grant.refresh_token())
        .await
        .unwrap();

    Mock::given(method("POST"))
        .and(path("/organizations/oauth2/v2.0/devicecode"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "device_code": "SECRET-DEVICE",
            "user_code": "ABCD",
            "verification_uri": "https://microsoft.com/devicelogin",
            "expires_in": 900,
            "interval": 5,
            "message": "enter ABCD",
        })))
        .mount(&server)
        .await;
    let device: DeviceAuthorization = client
        .start_device_code(&Authority::organizations())
        .await
        .unwrap();

    let consent: AdminConsentRequest = client
        .admin_consent_request(&Authority::organizations())
        .unwrap();
    let consent_state = vec![consent.state().expose_secret().to_owned()];

    let key = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["redaction".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let key_pem = key.serialize_pem();
    let key_body: Vec<String> = key_pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    let certificate_credential: CertificateCredential =
        CertificateCredential::from_pem(certificate.pem().as_bytes(), key_pem.as_bytes()).unwrap();
    let credential = ClientCredential::Certificate(certificate_credential.clone());
    let secret_credential = ClientCredential::secret("SECRET-CLIENT");

    let stored =
        StoredRefreshToken::new(SecretString::from("SECRET-REFRESH"), TokenVersion::new(3));
    let session: TokenSession = TokenSession::builder(
        client.clone(),
        grant.tenant_id().clone(),
        MemoryStore::with("SECRET-REFRESH", 1),
    )
    .grant(grant.clone())
    .build()
    .unwrap();

    check!(client, &[]);
    check!(builder_value, &[]);
    check!(request, &pending_secrets);
    check!(pending, &pending_secrets);
    check!(callback, &pending_secrets);
    let mut grant_extra = pending_secrets.clone();
    grant_extra.push(id_token.clone());
    check!(grant, &grant_extra);
    check!(access, &[]);
    check!(refreshed, &[]);
    check!(device, &[]);
    check!(consent, &consent_state);
    check!(certificate_credential, &key_body);
    check!(credential, &key_body);
    check!(secret_credential, &[]);
    check!(stored, &[]);
    check!(session, &[]);
    // The secrets are really there (the checks above are not vacuous).
    assert_eq!(grant.refresh_token().expose_secret(), "SECRET-REFRESH");
    assert_eq!(refreshed.refresh_token().expose_secret(), "SECRET-ROTATED");
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn public_futures_are_send() {
    let client = EntraClient::builder(common::CLIENT_ID)
        .redirect_uri(REDIRECT)
        .build()
        .unwrap();
    let request = client.authorization_request().build().unwrap();
    let callback = CallbackParams::from_query("code=c&state=s").unwrap();
    let refresh_token = SecretString::from("x");
    let tenant = common::tenant();
    let session = TokenSession::builder(
        client.clone(),
        tenant.clone(),
        Arc::new(MemoryStore::default()),
    )
    .build()
    .unwrap();
    let organizations = Authority::organizations();
    assert_send(&client.complete_authorization(request.pending(), &callback));
    assert_send(&client.refresh(&tenant, &refresh_token));
    assert_send(&client.start_device_code(&organizations));
    assert_send(&session.access_token());
    assert_send(&session.claims_challenge(&refresh_token, "{}"));
    assert_send(&client.refresh_with_claims(&tenant, &refresh_token, "{}"));
}
