//! Admin-consent link and callback (spec §1b).

mod common;

use common::{CLIENT_ID, REDIRECT, fixture_redirect, query};
use entra_auth::secrecy::ExposeSecret as _;
use entra_auth::{AdminConsent, AuthError, Authority, CallbackParams, Cloud, EntraClient};

fn client(cloud: Cloud) -> EntraClient {
    EntraClient::builder(CLIENT_ID)
        .cloud(cloud)
        .redirect_uri(REDIRECT)
        .build()
        .unwrap()
}

#[test]
fn admin_consent_request_names_tenant_default_scope_redirect_and_state() {
    let tenant = Authority::parse("contoso.onmicrosoft.com").unwrap();
    let request = client(Cloud::China).admin_consent_request(&tenant).unwrap();
    let url = request.url();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        "https://login.partner.microsoftonline.cn/contoso.onmicrosoft.com/v2.0/adminconsent"
    );
    let params = query(url);
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(
        params["scope"],
        "https://microsoftgraph.chinacloudapi.cn/.default"
    );
    assert_eq!(params["redirect_uri"], REDIRECT);
    assert_eq!(params["state"], request.state().expose_secret());
    assert_eq!(params["state"].len(), 43);
    assert_eq!(params.len(), 4);
}

#[test]
fn admin_consent_is_refused_for_common() {
    let error = client(Cloud::Global)
        .admin_consent_request(&Authority::common())
        .unwrap_err();
    assert!(error.is_configuration());
}

#[test]
fn documented_success_callback_gives_only_a_claimed_tenant() {
    let client = client(Cloud::Global);
    let request = client
        .admin_consent_request(&Authority::organizations())
        .unwrap();
    // The documented redirect (fixture) with our state in place of its 12345.
    let redirect = fixture_redirect("adminconsent-redirect.txt").replace(
        "state=12345",
        &format!("state={}", request.state().expose_secret()),
    );
    let callback = CallbackParams::from_redirect_url(&redirect).unwrap();
    let consent = request.complete(&callback).unwrap();
    assert_eq!(
        consent.claimed_tenant(),
        Some("aaaabbbb-0000-cccc-1111-dddd2222eeee")
    );
    assert_eq!(
        consent.scopes(),
        &[
            "https://graph.microsoft.com/Calendars.Read".to_owned(),
            "https://graph.microsoft.com/Mail.Send".to_owned()
        ]
    );
}

#[test]
fn admin_consent_callback_with_another_state_is_refused() {
    let client = client(Cloud::Global);
    let request = client
        .admin_consent_request(&Authority::organizations())
        .unwrap();
    let callback =
        CallbackParams::from_redirect_url(&fixture_redirect("adminconsent-redirect.txt")).unwrap();
    assert!(matches!(
        request.complete(&callback),
        Err(AuthError::StateMismatch)
    ));
}

#[test]
fn documented_error_callbacks_are_declined_even_with_admin_consent_true() {
    // v2-admin-consent.md: error=consent_required alongside admin_consent=True.
    let callback =
        CallbackParams::from_redirect_url(&fixture_redirect("adminconsent-error-redirect.txt"))
            .unwrap();
    let error = AdminConsent::from_callback(&callback).unwrap_err();
    let AuthError::AuthorizationDeclined(entra) = &error else {
        panic!("expected AuthorizationDeclined, got {error:?}");
    };
    assert_eq!(entra.error(), "consent_required");
    assert_eq!(entra.error_codes(), &[65004]);
    assert!(
        entra
            .description()
            .unwrap()
            .starts_with("AADSTS65004: The resource owner")
    );

    // client-credentials page: error=permission_denied without admin_consent or state.
    let callback = CallbackParams::from_redirect_url(&fixture_redirect(
        "adminconsent-client-credentials-error-redirect.txt",
    ))
    .unwrap();
    assert!(matches!(
        AdminConsent::from_callback(&callback),
        Err(AuthError::AuthorizationDeclined(_))
    ));
}

#[test]
fn client_credentials_success_callback_without_scope_is_accepted() {
    // Its documented state is the doubled "state=12345".
    let callback = CallbackParams::from_redirect_url(&fixture_redirect(
        "adminconsent-client-credentials-redirect.txt",
    ))
    .unwrap();
    assert_eq!(callback.state(), Some("state=12345"));
    let consent = AdminConsent::from_callback(&callback).unwrap();
    assert_eq!(
        consent.claimed_tenant(),
        Some("aaaabbbb-0000-cccc-1111-dddd2222eeee")
    );
    assert!(consent.scopes().is_empty());
}

#[test]
fn callback_without_admin_consent_true_is_invalid() {
    let callback = CallbackParams::from_query("admin_consent=False&tenant=x").unwrap();
    assert!(matches!(
        AdminConsent::from_callback(&callback),
        Err(AuthError::InvalidCallback(_))
    ));
}
