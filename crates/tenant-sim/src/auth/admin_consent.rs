//! `GET /{tenant}/v2.0/adminconsent` (spec §1b): an administrator consents for the
//! whole tenant; the app gets `admin_consent=True&tenant=…&scope=…&state=…` (no code),
//! or `admin_consent=True&error=…&error_description=…&state=…`.
//!
//! The simulated administrator answers at once in every mode: it consents, except in
//! `UserDeclines` (AADSTS65004, as Microsoft's error sample) and `AdminApprovalRequired`
//! (the person is not an administrator: AADSTS90094). `MissingOneScope` grants all but
//! the last Graph scope.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::authorize::{admin_approval_required, checked_client, checked_redirect, error_page};
use super::errors::{Diagnostics, EntraError};
use super::redirect::{self, ResponseMode};
use super::request::Params;
use super::scopes::ScopeSet;
use super::{Auth, ConsentMode, TenantSegment};

/// `GET /{tenant}/v2.0/adminconsent`.
pub(super) async fn admin_consent(
    State(auth): State<Arc<Auth>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let diagnostics = Diagnostics::new(&headers, auth.clock.wall());
    let params = Params::from_query(query.as_deref());
    let segment = match checked_client(&auth, &tenant, &params) {
        Ok(segment) => segment,
        Err(error) => return error_page(&error, &diagnostics),
    };
    if segment == TenantSegment::Common {
        // "Do not use common" (spec §1b); 90130 is Entra's "not supported over /common".
        let error = EntraError::new(
            "invalid_request",
            90_130,
            "Application is not supported over the /common or /consumers endpoints. Please use \
             the /organizations or tenant-specific endpoint.",
        );
        return error_page(&error, &diagnostics);
    }
    let (_, redirect) = match checked_redirect(&auth, &params) {
        Ok(checked) => checked,
        Err(error) => return error_page(&error, &diagnostics),
    };
    let state = params.get("state").map(redirect::strip_html);
    let answer_error = |error: EntraError| {
        let description = error.description(&diagnostics);
        let mut pairs = vec![
            ("admin_consent", "True"),
            ("error", error.error),
            ("error_description", description.as_str()),
        ];
        if let Some(state) = state.as_deref() {
            pairs.push(("state", state));
        }
        redirect::respond(&redirect, ResponseMode::Query, &pairs)
    };
    let scopes = match params
        .get("scope")
        .ok_or_else(|| EntraError::missing_parameter("scope"))
        .and_then(|scope| ScopeSet::parse(scope, &auth.config.graph_resource))
    {
        Ok(scopes) => scopes,
        Err(error) => return answer_error(error),
    };
    // On `organizations`, tenant 0's admin is the one who answers.
    let consenting = segment.home().unwrap_or(0);
    let mode = auth.consent_mode(consenting);
    let granted = match mode {
        ConsentMode::UserDeclines => {
            return answer_error(EntraError::new(
                "consent_required",
                65_004,
                "The resource owner or authorization server denied the request.",
            ));
        }
        ConsentMode::AdminApprovalRequired => {
            return answer_error(admin_approval_required(&scopes.admin_only()));
        }
        ConsentMode::MissingOneScope => scopes.without_last_graph(),
        _ => scopes,
    };
    auth.grants().consent_for_tenant(consenting, &granted.graph);
    let scope = granted.prefixed_graph(&auth.config.graph_resource);
    let mut pairs = vec![
        ("admin_consent", "True"),
        ("tenant", auth.tenant_id(consenting)),
        ("scope", scope.as_str()),
    ];
    if let Some(state) = state.as_deref() {
        pairs.push(("state", state));
    }
    redirect::respond(&redirect, ResponseMode::Query, &pairs)
}
