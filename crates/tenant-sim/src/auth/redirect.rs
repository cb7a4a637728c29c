//! Redirect URI rules (spec §1c) and building the answer to a redirect URI in the
//! three response modes (spec §1a).
//!
//! Registered set of the simulated app: every `http` or `https` URI on `localhost` or
//! `127.0.0.1`, any port, any path (Entra ignores the port for loopback; the simulator
//! also accepts any path so that any local client works without registration), plus the
//! URIs added with [`super::Auth::add_redirect_uri`] (exact, case-sensitive, port
//! ignored for loopback hosts). `[::1]` is refused, as Entra does not support it.

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use url::Url;

use super::pages;

/// How the code (or error) travels back to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

impl ResponseMode {
    pub(super) fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("query") => Some(Self::Query),
            Some("fragment") => Some(Self::Fragment),
            Some("form_post") => Some(Self::FormPost),
            Some(_) => None,
        }
    }
}

/// Characters Entra does not allow in a redirect URI (spec §1c).
const FORBIDDEN: &[char] = &['!', '$', '\'', '(', ')', ',', ';'];

/// Whether `uri` is a registered redirect URI of the simulated app; the parsed URL if so.
pub(super) fn registered(uri: &str, extra: &[String]) -> Option<Url> {
    if uri.len() > 256 || uri.contains(FORBIDDEN) {
        return None;
    }
    let url = Url::parse(uri).ok()?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    if is_loopback(&url) {
        return Some(url);
    }
    extra
        .iter()
        .any(|registered| same_uri(registered, &url))
        .then_some(url)
}

fn is_loopback(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
        && matches!(url.host_str(), Some("localhost" | "127.0.0.1"))
}

/// Exact match, except that loopback ports are ignored (spec §1c, RFC 8252).
fn same_uri(registered: &str, url: &Url) -> bool {
    let Ok(mut registered) = Url::parse(registered) else {
        return false;
    };
    if registered.scheme() != "https" && !is_loopback(&registered) {
        return false;
    }
    let mut candidate = url.clone();
    if is_loopback(&registered) {
        // Both set to no port: errors only for cannot-be-a-base URLs, which never match.
        if registered.set_port(None).is_err() || candidate.set_port(None).is_err() {
            return false;
        }
    }
    registered.as_str() == candidate.as_str()
}

/// Strips HTML tags from `state`, as Entra does (spec §1a, reply-url.md).
pub(super) fn strip_html(state: &str) -> String {
    let mut out = String::with_capacity(state.len());
    let mut in_tag = false;
    for c in state.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Sends `params` to `redirect` in `mode`: a 302 with query or fragment, or the
/// auto-submitting form Entra serves for `form_post`.
pub(super) fn respond(redirect: &Url, mode: ResponseMode, params: &[(&str, &str)]) -> Response {
    let mut url = redirect.clone();
    match mode {
        ResponseMode::Query => {
            if !params.is_empty() {
                let mut pairs = url.query_pairs_mut();
                for (name, value) in params {
                    pairs.append_pair(name, value);
                }
            }
        }
        ResponseMode::Fragment => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            url.set_fragment(Some(&fragment));
        }
        ResponseMode::FormPost => {
            return Html(pages::form_post(url.as_str(), params)).into_response();
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_accepted_on_any_port_and_path() {
        for uri in [
            "http://localhost:1234/callback",
            "http://127.0.0.1:50000/",
            "http://127.0.0.1",
            "https://localhost/auth/redirect?x=1",
        ] {
            assert!(registered(uri, &[]).is_some(), "{uri}");
        }
    }

    #[test]
    fn other_hosts_ipv6_fragments_and_forbidden_characters_are_refused() {
        for uri in [
            "https://evil.example/callback",
            "http://[::1]:8080/callback",
            "http://localhost/cb#frag",
            "http://localhost/cb;x",
            "http://localhost.evil.example/",
            "not a url",
        ] {
            assert!(registered(uri, &[]).is_none(), "{uri}");
        }
    }

    #[test]
    fn extra_uris_match_exactly_and_case_sensitively() {
        let extra = vec!["https://app.example/Callback".to_owned()];
        assert!(registered("https://app.example/Callback", &extra).is_some());
        assert!(registered("https://app.example/callback", &extra).is_none());
        assert!(registered("https://app.example:8443/Callback", &extra).is_none());
    }

    #[test]
    fn state_loses_html_tags() {
        assert_eq!(strip_html("ab<script>x</script>cd"), "abxcd");
    }
}
