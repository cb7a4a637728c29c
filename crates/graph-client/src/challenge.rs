//! Claims challenges (continuous access evaluation, spec 7): [`ClaimsChallenge`], parsed
//! from a response's `WWW-Authenticate` headers.
//!
//! Microsoft's format ([claims challenges](https://learn.microsoft.com/entra/identity-platform/claims-challenge)):
//! `HTTP 401; WWW-Authenticate: Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="<base64 JSON>"`.
//! Graph may also answer 403 with `error="insufficient_claims"` (spec 7, `G:concepts/errors.md`).
//! The header grammar is RFC 9110 section 11.6.1: several headers, several challenges per
//! header, parameters in any order, values as tokens or quoted strings with `\` escapes.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use secrecy::{ExposeSecret, SecretString};

use crate::client::GraphClient;
use crate::error::{GraphError, ServiceError};

/// The largest decoded `claims` JSON accepted, in bytes; a larger one is no usable
/// challenge. Microsoft's claims requests are a few hundred bytes.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;

/// A claims challenge from Microsoft Graph: the token sent is not enough (revoked by
/// continuous access evaluation, or short of a Conditional Access requirement) and a new
/// one must be requested with [`claims`](Self::claims) (spec 7).
///
/// The client hands it to
/// [`TokenProvider::claims_challenge`](crate::TokenProvider::claims_challenge) and retries
/// once with a new token; if Graph challenges again it is in
/// [`GraphError::ClaimsChallenge`], for the reconnect's authorize request to carry the
/// claims. It holds no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsChallenge {
    status: u16,
    error: String,
    claims: String,
    authorization_uri: Option<String>,
    realm: Option<String>,
}

impl ClaimsChallenge {
    /// The claims challenge in a response's `WWW-Authenticate` headers, if it holds a
    /// usable one: status 401 or 403, a `Bearer` challenge (scheme in any case) with
    /// `error="insufficient_claims"` and a `claims` parameter that decodes (base64,
    /// standard or URL-safe, padded or not; or plain JSON, as MSAL.NET accepts) to a JSON
    /// object of at most [`MAX_CLAIMS_BYTES`].
    ///
    /// Anything else (no such challenge, a malformed header, bad base64, JSON that is not
    /// an object, a parameter given twice) is `None`: the response is then an ordinary
    /// 401 or 403. Header values that are not UTF-8 are skipped. Never panics, whatever
    /// the input.
    pub fn from_headers(status: u16, headers: &http::HeaderMap) -> Option<Self> {
        Self::from_header_values(
            status,
            headers
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|value| std::str::from_utf8(value.as_bytes()).ok()),
        )
    }

    /// [`from_headers`](Self::from_headers) over the `WWW-Authenticate` values as text,
    /// e.g. those of a `$batch` item's `headers`.
    pub fn from_header_values<'a>(
        status: u16,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Option<Self> {
        if !matches!(status, 401 | 403) {
            return None;
        }
        let mut challenges = Vec::new();
        for value in values {
            challenges.clear();
            parse_challenges(value, &mut challenges);
            if let Some(found) = challenges
                .iter()
                .find_map(|challenge| Self::from_challenge(status, challenge))
            {
                return Some(found);
            }
        }
        None
    }

    fn from_challenge(status: u16, challenge: &Challenge<'_>) -> Option<Self> {
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        // RFC 9110: a parameter name occurs once per challenge; two `claims` are ambiguous.
        for (index, (name, _)) in challenge.params.iter().enumerate() {
            if challenge.params[..index]
                .iter()
                .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
            {
                return None;
            }
        }
        let param = |wanted: &str| {
            challenge
                .params
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
                .map(|(_, value)| value.as_str())
        };
        // The error must be insufficient_claims, and claims is then required (claims-challenge.md,
        // header table; MSAL.NET's GetClaimChallengeFromResponseHeaders looks for the same).
        let error = param("error").filter(|e| e.eq_ignore_ascii_case("insufficient_claims"))?;
        let claims = decode_claims(param("claims")?)?;
        Some(Self {
            status,
            error: error.to_owned(),
            claims,
            authorization_uri: param("authorization_uri").map(str::to_owned),
            realm: param("realm").map(str::to_owned),
        })
    }

    /// The HTTP status of the challenge: 401, or 403 for Conditional Access.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The `error` parameter, e.g. `insufficient_claims`.
    pub fn error(&self) -> &str {
        &self.error
    }

    /// The decoded claims request, a JSON object, e.g.
    /// `{"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}`: send it as
    /// the `claims` of the refresh (merged with the client capabilities) and, if a new
    /// sign-in is needed, of the authorize request (spec 7).
    pub fn claims(&self) -> &str {
        &self.claims
    }

    /// The `authorization_uri` parameter: where an interactive sign-in can satisfy the claims.
    pub fn authorization_uri(&self) -> Option<&str> {
        self.authorization_uri.as_deref()
    }

    /// The `realm` parameter (a tenant, or empty for the common endpoint).
    pub fn realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }
}

impl std::fmt::Display for ClaimsChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} claims {}", self.status, self.error, self.claims)
    }
}

/// A challenge already answered in one request (or one `$batch` call): the token it
/// challenged must never be sent again, and a second challenge is the typed error.
#[derive(Clone)]
pub(crate) struct Challenged {
    pub(crate) token: SecretString,
    pub(crate) challenge: ClaimsChallenge,
    pub(crate) error: Box<ServiceError>,
}

impl Challenged {
    pub(crate) fn into_error(self) -> GraphError {
        GraphError::ClaimsChallenge {
            challenge: Box::new(self.challenge),
            error: self.error,
        }
    }
}

impl GraphClient {
    /// The provider's token for the next attempt of a request, never the token a claims
    /// challenge of it was about (spec 7, step 5: do not retry blindly with the same
    /// token): a provider that cannot refresh gives it back, and only a new sign-in helps.
    pub(crate) async fn token_after(
        &self,
        challenged: Option<&Challenged>,
    ) -> Result<SecretString, GraphError> {
        let token = self.inner.tokens.access_token().await.map_err(|e| {
            GraphError::Token(match challenged {
                Some(c) => e.with_challenge(&c.challenge),
                None => e,
            })
        })?;
        if let Some(c) = challenged
            && c.token.expose_secret() == token.expose_secret()
        {
            return Err(c.clone().into_error());
        }
        Ok(token)
    }

    /// Answers a claims challenge of a response sent with `sent_with`. `Ok` means "send
    /// again": the first challenge goes to the provider and is kept in `challenged`; one
    /// about the token already reported needs nothing more. A challenge of a newer token
    /// is [`GraphError::ClaimsChallenge`]: a refresh did not meet the claims. A provider
    /// failing is [`GraphError::Token`] carrying the challenge.
    pub(crate) async fn answer_challenge(
        &self,
        challenged: &mut Option<Challenged>,
        sent_with: &SecretString,
        challenge: ClaimsChallenge,
        error: Box<ServiceError>,
    ) -> Result<(), GraphError> {
        match challenged {
            None => {
                tracing::debug!(
                    status = challenge.status(),
                    "claims challenge, asking the token provider for a new token"
                );
                self.inner
                    .tokens
                    .claims_challenge(sent_with, &challenge)
                    .await
                    .map_err(|e| GraphError::Token(e.with_challenge(&challenge)))?;
                *challenged = Some(Challenged {
                    token: sent_with.clone(),
                    challenge,
                    error,
                });
                Ok(())
            }
            Some(c) if c.token.expose_secret() == sent_with.expose_secret() => Ok(()),
            Some(_) => Err(GraphError::ClaimsChallenge {
                challenge: Box::new(challenge),
                error,
            }),
        }
    }
}

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The decoded `claims` JSON text, if it is a JSON object within the size cap.
fn decode_claims(value: &str) -> Option<String> {
    let value = value.trim();
    let json = if value.starts_with('{') {
        // Plain JSON: MSAL.NET's WwwAuthenticateParameters accepts it undecoded too.
        value.as_bytes().to_vec()
    } else {
        if value.len() > MAX_CLAIMS_BYTES.div_ceil(3) * 4 {
            return None;
        }
        let engine = if value.contains(['-', '_']) {
            &URL_SAFE
        } else {
            &STANDARD
        };
        engine.decode(value).ok()?
    };
    if json.len() > MAX_CLAIMS_BYTES {
        return None;
    }
    let json = String::from_utf8(json).ok()?;
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&json).ok()?;
    Some(json)
}

/// One challenge of a `WWW-Authenticate` value: its scheme and its parameters as given.
struct Challenge<'a> {
    scheme: &'a str,
    params: Vec<(&'a str, String)>,
}

/// Appends the challenges of one header value (RFC 9110 11.6.1):
///
/// ```text
/// WWW-Authenticate = #challenge
/// challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
/// auth-param  = token BWS "=" BWS ( token / quoted-string )
/// ```
///
/// Challenges and parameters are both separated by commas: a token followed by `=` is a
/// parameter of the current challenge, any other token begins the next challenge. On a
/// syntax error the challenge being read is dropped and the rest of the value ignored; the
/// challenges before it stand.
fn parse_challenges<'a>(value: &'a str, out: &mut Vec<Challenge<'a>>) {
    let mut cursor = Cursor { text: value, at: 0 };
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            return;
        }
        let Some(scheme) = cursor.token() else {
            return;
        };
        let mut challenge = Challenge {
            scheme,
            params: Vec::new(),
        };
        cursor.skip_spaces();
        if cursor.token68() {
            // `Negotiate abc==`: a credential blob, no parameters (not a claims challenge).
            out.push(challenge);
            continue;
        }
        loop {
            cursor.skip_separators();
            if cursor.at_end() {
                break;
            }
            let mark = cursor.at;
            let Some(name) = cursor.token() else {
                return;
            };
            cursor.skip_spaces();
            if !cursor.eat(b'=') {
                // Not a parameter: the next challenge's scheme.
                cursor.at = mark;
                break;
            }
            cursor.skip_spaces();
            let parsed = if cursor.peek() == Some(b'"') {
                cursor.quoted_string()
            } else {
                // Leniently, an unquoted value runs to the next comma or space, so that an
                // unquoted base64 `claims=ab+/c=` (not a `token`) still reads, and an empty
                // one (`realm=,`) is empty.
                Some(cursor.unquoted_value().to_owned())
            };
            let Some(parsed) = parsed else {
                return;
            };
            challenge.params.push((name, parsed));
            cursor.skip_spaces();
            if !cursor.at_end() && cursor.peek() != Some(b',') {
                return;
            }
        }
        out.push(challenge);
    }
}

struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn at_end(&self) -> bool {
        self.at >= self.text.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.at;
        while self.peek().is_some_and(&keep) {
            self.at += 1;
        }
        // Only ASCII bytes are ever skipped, so both ends are on character boundaries.
        self.text.get(start..self.at).unwrap_or_default()
    }

    fn skip_spaces(&mut self) {
        self.skip_while(|b| b == b' ' || b == b'\t');
    }

    /// Whitespace and commas: list separators, with empty list elements allowed (RFC 9110 5.6.1).
    fn skip_separators(&mut self) {
        self.skip_while(|b| matches!(b, b' ' | b'\t' | b','));
    }

    /// A `token` (RFC 9110 5.6.2), or `None` if there is none here.
    fn token(&mut self) -> Option<&'a str> {
        let token = self.skip_while(is_tchar);
        (!token.is_empty()).then_some(token)
    }

    /// An unquoted parameter value: visible characters up to a comma, space or quote.
    fn unquoted_value(&mut self) -> &'a str {
        self.skip_while(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
    }

    /// A `token68` running to the end of this challenge (a comma or the end), consumed
    /// only if it is one: `realm="x"` and `error=x` are parameters, not token68s.
    fn token68(&mut self) -> bool {
        let start = self.at;
        let body = self.skip_while(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        self.skip_while(|b| b == b'=');
        self.skip_spaces();
        if !body.is_empty() && (self.at_end() || self.peek() == Some(b',')) {
            return true;
        }
        self.at = start;
        false
    }

    /// A `quoted-string` with its `\` escapes removed (RFC 9110 5.6.4); `None` if it is
    /// unterminated or holds a control character.
    fn quoted_string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let byte = self.peek()?;
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let escaped = self
                        .peek()
                        .filter(|b| *b == b'\t' || !b.is_ascii_control())?;
                    self.at += 1;
                    out.push(escaped);
                }
                b'\t' => out.push(byte),
                _ if byte.is_ascii_control() => return None,
                _ => out.push(byte),
            }
        }
    }
}

fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's example (claims-challenge.md; MSAL.NET extract-authentication-parameters.md).
    const DOCUMENTED: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=""#;
    const DOCUMENTED_CLAIMS: &str =
        r#"{"access_token":{"nbf":{"essential":true, "value":"1604106651"}}}"#;
    const CLAIMS_B64: &str =
        "eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=";

    fn parse(status: u16, values: &[&str]) -> Option<ClaimsChallenge> {
        ClaimsChallenge::from_header_values(status, values.iter().copied())
    }

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    #[test]
    fn documented_example_is_parsed_and_decoded() {
        let challenge = parse(401, &[DOCUMENTED]).unwrap();
        assert_eq!(challenge.status(), 401);
        assert_eq!(challenge.error(), "insufficient_claims");
        assert_eq!(challenge.claims(), DOCUMENTED_CLAIMS);
        assert_eq!(
            challenge.authorization_uri(),
            Some("https://login.microsoftonline.com/common/oauth2/authorize")
        );
        assert_eq!(challenge.realm(), Some(""));
    }

    #[test]
    fn documented_example_is_found_in_a_header_map() {
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(r#"Basic realm="x""#),
        );
        headers.append(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(DOCUMENTED),
        );
        let challenge = ClaimsChallenge::from_headers(401, &headers).unwrap();
        assert_eq!(challenge.claims(), DOCUMENTED_CLAIMS);
        assert!(ClaimsChallenge::from_headers(401, &http::HeaderMap::new()).is_none());
    }

    #[test]
    fn forbidden_with_insufficient_claims_is_a_challenge_other_statuses_are_not() {
        assert_eq!(parse(403, &[DOCUMENTED]).unwrap().status(), 403);
        for status in [200, 400, 404, 429, 500] {
            assert!(parse(status, &[DOCUMENTED]).is_none(), "{status}");
        }
    }

    #[test]
    fn parameters_in_any_order_any_case_and_unquoted() {
        let value = format!(
            "bearer CLAIMS={CLAIMS_B64} ,Error=Insufficient_Claims,realm=\"contoso.com\"  ,  authorization_uri=\"https://login.microsoftonline.com/contoso.com/oauth2/authorize\""
        );
        let challenge = parse(401, &[&value]).unwrap();
        assert_eq!(challenge.claims(), DOCUMENTED_CLAIMS);
        assert_eq!(challenge.error(), "Insufficient_Claims");
        assert_eq!(challenge.realm(), Some("contoso.com"));
    }

    #[test]
    fn several_challenges_in_one_header_and_across_headers() {
        let pop_first = format!(
            r#"PoP nonce="abc", Bearer error="insufficient_claims", claims="{CLAIMS_B64}""#
        );
        assert_eq!(
            parse(401, &[&pop_first]).unwrap().claims(),
            DOCUMENTED_CLAIMS
        );
        let bearer_first = format!(
            r#"Bearer error="insufficient_claims", claims="{CLAIMS_B64}", PoP nonce="abc""#
        );
        assert_eq!(
            parse(401, &[&bearer_first]).unwrap().claims(),
            DOCUMENTED_CLAIMS
        );
        let token68 = format!(
            r#"Negotiate abc+/==, Basic, Bearer claims="{CLAIMS_B64}", error=insufficient_claims"#
        );
        assert_eq!(parse(401, &[&token68]).unwrap().claims(), DOCUMENTED_CLAIMS);
        // A Bearer challenge without claims, then the claims challenge in another header.
        let plain = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#;
        assert_eq!(
            parse(401, &[plain, DOCUMENTED]).unwrap().claims(),
            DOCUMENTED_CLAIMS
        );
        assert!(parse(401, &[plain]).is_none());
    }

    #[test]
    fn quoted_strings_keep_escaped_quotes_commas_and_backslashes() {
        let claims = r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
        let value = format!(
            r#"Bearer realm="a \"quoted\", realm\\", error="insufficient_\claims", claims="{}""#,
            b64(claims)
        );
        let challenge = parse(401, &[&value]).unwrap();
        assert_eq!(challenge.realm(), Some(r#"a "quoted", realm\"#));
        assert_eq!(challenge.error(), "insufficient_claims");
        assert_eq!(challenge.claims(), claims);
    }

    #[test]
    fn claims_in_url_safe_unpadded_and_plain_json_forms() {
        // This JSON encodes with `+`/`/` in the standard alphabet, `-`/`_` in the URL-safe one.
        let json = r#"{"a":"??>>?"}"#;
        let standard = b64(json);
        assert!(standard.contains(['+', '/']), "{standard}");
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let unpadded = standard.trim_end_matches('=').to_owned();
        for encoded in [standard, url_safe, unpadded] {
            let value = format!(r#"Bearer error="insufficient_claims", claims="{encoded}""#);
            assert_eq!(parse(401, &[&value]).unwrap().claims(), json, "{encoded}");
        }
        let plain = r#"Bearer error="insufficient_claims", claims="{\"access_token\":{}}""#;
        assert_eq!(
            parse(401, &[plain]).unwrap().claims(),
            r#"{"access_token":{}}"#
        );
    }

    #[test]
    fn unusable_challenges_are_none() {
        let array = b64("[1,2]");
        let string = b64(r#""text""#);
        let not_json = b64("{not json");
        let not_utf8 = base64::engine::general_purpose::STANDARD.encode([0x7b, 0xff, 0x7d]);
        let oversized = b64(&format!(r#"{{"a":"{}"}}"#, "x".repeat(MAX_CLAIMS_BYTES)));
        let cases = [
            // missing claims, missing or other error
            r#"Bearer error="insufficient_claims""#.to_owned(),
            format!(r#"Bearer claims="{CLAIMS_B64}""#),
            format!(r#"Bearer error="invalid_token", claims="{CLAIMS_B64}""#),
            // another scheme
            format!(r#"PoP error="insufficient_claims", claims="{CLAIMS_B64}""#),
            // bad base64, not an object, not JSON, not UTF-8, too large
            r#"Bearer error="insufficient_claims", claims="!!not base64!!""#.to_owned(),
            r#"Bearer error="insufficient_claims", claims="eyJh+-_/""#.to_owned(),
            format!(r#"Bearer error="insufficient_claims", claims="{array}""#),
            format!(r#"Bearer error="insufficient_claims", claims="{string}""#),
            format!(r#"Bearer error="insufficient_claims", claims="{not_json}""#),
            format!(r#"Bearer error="insufficient_claims", claims="{not_utf8}""#),
            format!(r#"Bearer error="insufficient_claims", claims="{oversized}""#),
            r#"Bearer error="insufficient_claims", claims="""#.to_owned(),
            // a parameter twice
            format!(
                r#"Bearer error="insufficient_claims", claims="{CLAIMS_B64}", claims="{CLAIMS_B64}""#
            ),
            // syntax errors: unterminated quote, control character, garbage after a value
            format!(r#"Bearer error="insufficient_claims", claims="{CLAIMS_B64}"#),
            format!("Bearer error=\"insufficient\u{1}_claims\", claims=\"{CLAIMS_B64}\""),
            format!(r#"Bearer error="insufficient_claims" x, claims="{CLAIMS_B64}""#),
            format!(r#"Bearer error="insufficient_claims", claims="{CLAIMS_B64}" junk"#),
            String::new(),
            ",,, ,".to_owned(),
            "=".to_owned(),
        ];
        for case in &cases {
            assert!(parse(401, &[case]).is_none(), "{case}");
        }
    }

    #[test]
    fn claims_at_the_size_limit_are_accepted() {
        let filler = "x".repeat(MAX_CLAIMS_BYTES - r#"{"a":""}"#.len());
        let json = format!(r#"{{"a":"{filler}"}}"#);
        assert_eq!(json.len(), MAX_CLAIMS_BYTES);
        let value = format!(
            r#"Bearer error="insufficient_claims", claims="{}""#,
            b64(&json)
        );
        assert_eq!(parse(401, &[&value]).unwrap().claims(), json);
    }

    #[test]
    fn hostile_inputs_never_panic() {
        // Every prefix and every single-byte corruption of the documented header, and
        // some pathological shapes: none may panic (a fuzz target can call the same).
        let doc = DOCUMENTED.as_bytes();
        for end in 0..=doc.len() {
            let _ = parse(401, &[std::str::from_utf8(&doc[..end]).unwrap()]);
        }
        for index in 0..doc.len() {
            for replacement in [b'"', b'\\', b',', b'=', b' ', 0x7f, b'\t'] {
                let mut corrupted = doc.to_vec();
                corrupted[index] = replacement;
                let _ = parse(401, &[std::str::from_utf8(&corrupted).unwrap()]);
            }
        }
        for odd in [
            "\"".repeat(1000),
            "\\".repeat(1000),
            "Bearer ".repeat(1000),
            "a=".repeat(1000),
            "Bearer x=\"\\".to_owned(),
            "Bearer é=\"ü\", error=\"insufficient_claims\"".to_owned(),
            format!("Bearer claims=\"{}\"", "A".repeat(100_000)),
        ] {
            let _ = parse(401, &[&odd]);
        }
    }
}
