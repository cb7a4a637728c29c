//! OIDC discovery in Microsoft's shape (`openid-configuration.json`; spec
//! §5a): `{tenantid}` literally in `issuer` for `organizations` and `common`, the real
//! tenant id otherwise; the signing key at `jwks_uri`; MSAL's instance discovery; and a
//! `logout` endpoint as the document names one.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use url::Url;

use super::errors::{Diagnostics, EntraError};
use super::redirect::{self, ResponseMode};
use super::request::Params;
use super::{Auth, TenantSegment, pages};

/// The `{tenant}` segment the document's endpoints carry and its `issuer`.
fn tenant_names(auth: &Auth, segment: &str) -> Option<(String, String)> {
    let base = auth.login_base();
    match auth.resolve_tenant(segment)? {
        TenantSegment::Organizations | TenantSegment::Common => Some((
            segment.to_ascii_lowercase(),
            format!("{base}/{{tenantid}}/v2.0"),
        )),
        TenantSegment::Tenant(index) => {
            Some((auth.tenant_id(index).to_owned(), auth.issuer(index)))
        }
    }
}

fn not_found(auth: &Auth, segment: &str, headers: &HeaderMap) -> Response {
    let diagnostics = Diagnostics::new(headers, auth.clock.wall());
    EntraError::tenant_not_found(segment).into_json_response(&diagnostics, auth.login_base())
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`.
pub(super) async fn openid_configuration(
    State(auth): State<Arc<Auth>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((tenant, issuer)) = tenant_names(&auth, &segment) else {
        return not_found(&auth, &segment, &headers);
    };
    let base = auth.login_base();
    let graph = auth.config.graph_resource.trim_end_matches('/');
    let graph_host = Url::parse(graph)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "graph.microsoft.com".to_owned());
    let region: Value = match auth.resolve_tenant(&segment) {
        Some(TenantSegment::Tenant(_)) => "NA".into(),
        _ => Value::Null,
    };
    Json(json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": issuer,
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{graph}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name",
            "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username",
            "name", "tid", "ver", "at_hash", "c_hash", "email"
        ],
        "kerberos_endpoint": format!("{base}/{tenant}/kerberos"),
        "tenant_region_scope": region,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": graph_host,
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the id-token signing key.
pub(super) async fn keys(
    State(auth): State<Arc<Auth>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((_, issuer)) = tenant_names(&auth, &segment) else {
        return not_found(&auth, &segment, &headers);
    };
    Json(json!({ "keys": [auth.key.jwk(&issuer)] })).into_response()
}

/// `GET /common/discovery/instance`: MSAL's authority validation, answered for this
/// login host so MSAL can be pointed at the simulator.
pub(super) async fn instance(
    State(auth): State<Arc<Auth>>,
    RawQuery(query): RawQuery,
) -> Json<Value> {
    let params = Params::from_query(query.as_deref());
    let base = auth.login_base();
    let host = Url::parse(base)
        .ok()
        .and_then(|url| {
            url.host_str().map(|host| match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
        })
        .unwrap_or_default();
    let tenant = params
        .get("authorization_endpoint")
        .and_then(|endpoint| Url::parse(endpoint).ok())
        .and_then(|url| {
            url.path_segments()
                .and_then(|mut segments| segments.next().map(str::to_owned))
        })
        .unwrap_or_else(|| "organizations".to_owned());
    Json(json!({
        "tenant_discovery_endpoint": format!("{base}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{
            "preferred_network": host,
            "preferred_cache": host,
            "aliases": [host],
        }],
    }))
}

/// `GET /{tenant}/oauth2/v2.0/logout`: back to a registered `post_logout_redirect_uri`,
/// else a "signed out" page. The simulator keeps no browser session to end.
pub(super) async fn logout(State(auth): State<Arc<Auth>>, RawQuery(query): RawQuery) -> Response {
    let params = Params::from_query(query.as_deref());
    let extra = auth.settings().extra_redirect_uris.clone();
    let target = params
        .get("post_logout_redirect_uri")
        .and_then(|uri| redirect::registered(uri, &extra));
    match target {
        Some(url) => {
            let state: Vec<(&str, &str)> = params
                .get("state")
                .map(|state| ("state", state))
                .into_iter()
                .collect();
            redirect::respond(&url, ResponseMode::Query, &state)
        }
        None => Html(pages::signed_out()).into_response(),
    }
}
