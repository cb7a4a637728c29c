//! Custom clouds: plain http to the login host only on loopback (as graph-client's base
//! URL), however the cloud was made.

use entra_auth::url::Url;
use entra_auth::{AuthError, Cloud, EntraClient};

const CLIENT_ID: &str = "6cb04018-a3f5-46a7-b995-940c78f5aef3";
const CLEAR_TEXT: &str = "invalid configuration: login url uses http to a non-loopback host: \
                          the client secret, codes and tokens would travel in clear text";

fn build(cloud: Cloud) -> Result<EntraClient, AuthError> {
    EntraClient::builder(CLIENT_ID)
        .cloud(cloud)
        .redirect_uri("http://localhost:8400/callback")
        .build()
}

#[test]
fn custom_refuses_http_to_a_login_host_off_loopback() {
    let error =
        Cloud::custom("http://login.example.com", "https://graph.microsoft.com").unwrap_err();
    assert!(error.is_configuration());
    assert_eq!(error.to_string(), CLEAR_TEXT);
}

#[test]
fn custom_takes_http_on_loopback_and_https_anywhere() {
    for (login, expected) in [
        ("http://127.0.0.1:8400", "http://127.0.0.1:8400"),
        ("http://localhost:8400/entra", "http://localhost:8400/entra"),
        ("http://[::1]:8400", "http://[::1]:8400"),
        ("https://login.example.com", "https://login.example.com"),
    ] {
        let cloud = Cloud::custom(login, "https://graph.microsoft.com").unwrap();
        assert_eq!(cloud.login_base(), expected);
        assert!(build(cloud).is_ok(), "{login}");
    }
}

#[test]
fn build_refuses_an_http_custom_cloud_made_without_custom() {
    // `Cloud::Custom`'s fields are public and the enum is deserializable: `build()` checks
    // again.
    let literal = Cloud::Custom {
        login: Url::parse("http://login.example.com").unwrap(),
        graph: Url::parse("https://graph.microsoft.com").unwrap(),
    };
    let deserialized: Cloud = serde_json::from_str(
        r#"{"Custom":{"login":"http://10.1.2.3:8400/","graph":"https://graph.microsoft.com/"}}"#,
    )
    .unwrap();
    for cloud in [literal, deserialized] {
        let error = build(cloud).unwrap_err();
        assert!(matches!(error, AuthError::InvalidConfiguration(_)));
        assert_eq!(error.to_string(), CLEAR_TEXT);
    }
}
