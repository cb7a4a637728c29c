//! Authorization URL, PKCE, pending authorization, and national clouds (spec §1a, §6).

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{CLIENT_ID, REDIRECT, query};
use entra_auth::secrecy::ExposeSecret as _;
use entra_auth::{
    Authority, Cloud, EntraClient, PENDING_AUTHORIZATION_LIFETIME, PendingAuthorization, Prompt,
    ResponseMode, TenantId,
};
use sha2::{Digest as _, Sha256};

/// A field of the serialized pending authorization (which holds its secrets).
fn field(pending: &PendingAuthorization, name: &str) -> String {
    serde_json::to_value(pending).unwrap()[name]
        .as_str()
        .unwrap()
        .to_owned()
}

fn client(cloud: Cloud) -> EntraClient {
    EntraClient::builder(CLIENT_ID)
        .cloud(cloud)
        .redirect_uri(REDIRECT)
        .build()
        .unwrap()
}

#[test]
fn authorize_url_carries_every_parameter_and_an_s256_challenge_of_the_verifier() {
    let client = client(Cloud::Global);
    let request = client
        .authorization_request()
        .prompt(Prompt::Consent)
        .login_hint("admin@contoso.com")
        .domain_hint("contoso.com")
        .response_mode(ResponseMode::FormPost)
        .build()
        .unwrap();
    let url = request.url();
    assert_eq!(url.scheme(), "https");
    assert_eq!(url.host_str(), Some("login.microsoftonline.com"));
    assert_eq!(url.path(), "/organizations/oauth2/v2.0/authorize");

    let params = query(url);
    let pending = request.pending();
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["redirect_uri"], REDIRECT);
    assert_eq!(
        params["scope"],
        "openid profile offline_access https://graph.microsoft.com/User.Read.All https://graph.microsoft.com/Group.Read.All"
    );
    assert_eq!(params["prompt"], "consent");
    assert_eq!(params["login_hint"], "admin@contoso.com");
    assert_eq!(params["domain_hint"], "contoso.com");
    assert_eq!(params["response_mode"], "form_post");
    assert_eq!(params["state"], pending.state().expose_secret());
    assert_eq!(params["nonce"], field(pending, "nonce"));
    assert_eq!(params["code_challenge_method"], "S256");
    let expected_challenge =
        URL_SAFE_NO_PAD.encode(Sha256::digest(field(pending, "pkce_verifier").as_bytes()));
    assert_eq!(params["code_challenge"], expected_challenge);
    // 256 random bits each, base64url.
    assert_eq!(params["state"].len(), 43);
    assert_eq!(params["nonce"].len(), 43);
    assert_eq!(field(pending, "pkce_verifier").len(), 43);
    assert_eq!(pending.redirect_uri().as_str(), REDIRECT);
    assert_eq!(pending.authority(), &Authority::organizations());
}

#[test]
fn each_request_has_fresh_state_nonce_and_verifier() {
    let client = client(Cloud::Global);
    let first = client.authorization_request().build().unwrap();
    let second = client.authorization_request().build().unwrap();
    assert_ne!(
        first.pending().state().expose_secret(),
        second.pending().state().expose_secret()
    );
    assert_ne!(
        field(first.pending(), "nonce"),
        field(second.pending(), "nonce")
    );
    assert_ne!(
        field(first.pending(), "pkce_verifier"),
        field(second.pending(), "pkce_verifier")
    );
}

#[test]
fn login_hint_with_select_account_is_refused() {
    let error = client(Cloud::Global)
        .authorization_request()
        .prompt(Prompt::SelectAccount)
        .login_hint("a@b.c")
        .build()
        .unwrap_err();
    assert!(error.is_configuration(), "{error}");
}

#[test]
fn authorization_without_redirect_uri_is_a_configuration_error() {
    let client = EntraClient::builder(CLIENT_ID).build().unwrap();
    assert!(
        client
            .authorization_request()
            .build()
            .unwrap_err()
            .is_configuration()
    );
}

#[test]
fn pending_authorization_round_trips_through_json_and_expires_after_ten_minutes() {
    let client = client(Cloud::Global);
    let request = client
        .authorization_request()
        .authority(Authority::tenant(&common::tenant()))
        .build()
        .unwrap();
    let pending = request.pending();
    let json = serde_json::to_string(pending).unwrap();
    let back: PendingAuthorization = serde_json::from_str(&json).unwrap();
    assert_eq!(
        back.state().expose_secret(),
        pending.state().expose_secret()
    );
    assert_eq!(
        field(&back, "pkce_verifier"),
        field(pending, "pkce_verifier")
    );
    assert_eq!(back.authority().as_str(), common::TENANT);
    assert_eq!(back.scopes(), pending.scopes());
    assert_eq!(back.created_at(), pending.created_at());
    assert_eq!(
        back.expires_at() - back.created_at(),
        time::Duration::try_from(PENDING_AUTHORIZATION_LIFETIME).unwrap()
    );
    assert_eq!(PENDING_AUTHORIZATION_LIFETIME.as_secs(), 600);
}

/// Spec §6: login host, Graph root (scope prefix), token endpoint and issuer per cloud.
#[test]
fn every_national_cloud_uses_its_login_host_and_graph_scope_prefix() {
    let tenant = TenantId::parse(common::TENANT).unwrap();
    let cases = [
        (
            Cloud::Global,
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
        ),
        (
            Cloud::UsGovernment,
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
        ),
        (
            Cloud::UsGovernmentDod,
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
        ),
        (
            Cloud::China,
            "https://login.partner.microsoftonline.cn",
            "https://microsoftgraph.chinacloudapi.cn",
        ),
        (
            Cloud::custom("http://127.0.0.1:8400/entra", "http://127.0.0.1:8401").unwrap(),
            "http://127.0.0.1:8400/entra",
            "http://127.0.0.1:8401",
        ),
    ];
    for (cloud, login, graph) in cases {
        let client = client(cloud.clone());
        let url = client
            .authorization_request()
            .build()
            .unwrap()
            .url()
            .clone();
        assert!(
            url.as_str()
                .starts_with(&format!("{login}/organizations/oauth2/v2.0/authorize?")),
            "{url}"
        );
        let scope = query(&url)["scope"].clone();
        assert_eq!(
            scope,
            format!("openid profile offline_access {graph}/User.Read.All {graph}/Group.Read.All")
        );
        assert_eq!(
            cloud.token_endpoint(&Authority::tenant(&tenant)).as_str(),
            format!("{login}/{}/oauth2/v2.0/token", common::TENANT)
        );
        assert_eq!(
            cloud
                .device_code_endpoint(&Authority::organizations())
                .as_str(),
            format!("{login}/organizations/oauth2/v2.0/devicecode")
        );
        assert_eq!(
            cloud.issuer(&tenant),
            format!("{login}/{}/v2.0", common::TENANT)
        );
        assert_eq!(cloud.graph_root(), graph);
        let consent = client.admin_consent_link(&Authority::organizations());
        assert!(
            consent
                .as_str()
                .starts_with(&format!("{login}/organizations/v2.0/adminconsent?"))
        );
        assert_eq!(query(&consent)["scope"], format!("{graph}/.default"));
    }
}

#[test]
fn explicit_scopes_are_qualified_for_the_cloud() {
    let client = client(Cloud::UsGovernment);
    let url = client
        .authorization_request()
        .scopes([
            "openid",
            "offline_access",
            "User.Read",
            "https://other.example/x",
        ])
        .build()
        .unwrap()
        .url()
        .clone();
    assert_eq!(
        query(&url)["scope"],
        "openid offline_access https://graph.microsoft.us/User.Read https://other.example/x"
    );
}
