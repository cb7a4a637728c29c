//! The `claims` request parameter: the client capability `cp1` (continuous access
//! evaluation) deep-merged with a caller's or a claims challenge's claims (spec §7).

use serde_json::{Map, Value};

use crate::error::AuthError;

/// The largest claims request accepted, in bytes of JSON text. A claims challenge is a few
/// hundred bytes; the cap keeps a hostile challenge from growing every request.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;

/// Nesting deeper than this is not a claims request (Entra's are three levels deep); the
/// limit keeps recursion over network input bounded.
const MAX_CLAIMS_DEPTH: usize = 16;

/// The claims that declare client capability `cp1`: "Your application receives claims
/// challenges from popular services like Microsoft Graph only if it declares its client
/// capabilities" [claims-challenge.md].
fn cp1() -> Value {
    serde_json::json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
}

/// Parses a claims request: JSON text of an object, at most [`MAX_CLAIMS_BYTES`].
pub(crate) fn parse(claims: &str) -> Result<Map<String, Value>, AuthError> {
    let invalid = |detail: String| AuthError::InvalidClaims { detail };
    if claims.len() > MAX_CLAIMS_BYTES {
        return Err(invalid(format!(
            "{} bytes, more than the {MAX_CLAIMS_BYTES} accepted",
            claims.len()
        )));
    }
    let value: Value = serde_json::from_str(claims).map_err(|error| {
        invalid(format!(
            "not JSON ({})",
            crate::http::json_error_summary(&error)
        ))
    })?;
    if depth(&value) > MAX_CLAIMS_DEPTH {
        return Err(invalid(format!(
            "nested deeper than {MAX_CLAIMS_DEPTH} levels"
        )));
    }
    match value {
        Value::Object(map) => Ok(map),
        other => Err(invalid(format!("a JSON {}, not an object", kind(&other)))),
    }
}

/// The `claims` parameter to send: `extra` (a caller's or a challenge's claims) with
/// `cp1` merged in when `declare_cp1`; `None` when that leaves nothing to ask for.
///
/// Objects merge member by member, arrays (such as `xms_cc.values`) are united keeping
/// order; where both sides hold a different scalar, `extra` wins (cp1 holds none).
pub(crate) fn merged(declare_cp1: bool, extra: Option<&str>) -> Result<Option<String>, AuthError> {
    let mut claims = extra.map(parse).transpose()?.unwrap_or_default();
    if declare_cp1 && let Value::Object(cp1) = cp1() {
        merge_into(&mut claims, cp1, "")?;
    }
    if claims.is_empty() {
        return Ok(None);
    }
    Ok(Some(Value::Object(claims).to_string()))
}

/// Merges `overlay` into `base`; `path` names the member for errors.
fn merge_into(
    base: &mut Map<String, Value>,
    overlay: Map<String, Value>,
    path: &str,
) -> Result<(), AuthError> {
    for (name, value) in overlay {
        let member = format!("{path}/{name}");
        match (base.get_mut(&name), value) {
            (None, value) => {
                base.insert(name, value);
            }
            (Some(Value::Object(base)), Value::Object(overlay)) => {
                merge_into(base, overlay, &member)?;
            }
            (Some(Value::Array(base)), Value::Array(overlay)) => {
                for item in overlay {
                    if !base.contains(&item) {
                        base.push(item);
                    }
                }
            }
            (Some(existing), value) if kind(existing) == kind(&value) => {}
            (Some(existing), value) => {
                return Err(AuthError::InvalidClaims {
                    detail: format!(
                        "{member} is a JSON {} where a {} is needed",
                        kind(existing),
                        kind(&value)
                    ),
                });
            }
        }
    }
    Ok(())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn depth(value: &Value) -> usize {
    // Iterative, so a deeply nested hostile value cannot overflow the stack here.
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((value, level)) = pending.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|item| (item, level + 1))),
            Value::Object(members) => {
                pending.extend(members.values().map(|member| (member, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn cp1_alone_is_the_documented_declaration() {
        let claims = merged(true, None).unwrap().unwrap();
        assert_eq!(
            value(&claims),
            json!({"access_token": {"xms_cc": {"values": ["cp1"]}}})
        );
        assert_eq!(merged(false, None).unwrap(), None);
    }

    #[test]
    fn challenge_claims_are_deep_merged_with_cp1() {
        let challenge = r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#;
        let claims = merged(true, Some(challenge)).unwrap().unwrap();
        assert_eq!(
            value(&claims),
            json!({"access_token": {
                "nbf": {"essential": true, "value": "1604106651"},
                "xms_cc": {"values": ["cp1"]},
            }})
        );
        // Without cp1 the challenge goes as it is.
        assert_eq!(
            value(&merged(false, Some(challenge)).unwrap().unwrap()),
            value(challenge)
        );
    }

    #[test]
    fn existing_client_capabilities_are_united_with_cp1() {
        let claims = r#"{"access_token":{"xms_cc":{"values":["cp2","cp1"]}},"id_token":{"acrs":{"essential":true,"value":"c1"}}}"#;
        assert_eq!(
            value(&merged(true, Some(claims)).unwrap().unwrap()),
            value(claims)
        );
        let claims = r#"{"access_token":{"xms_cc":{"values":["cp2"]}}}"#;
        assert_eq!(
            value(&merged(true, Some(claims)).unwrap().unwrap()),
            json!({"access_token": {"xms_cc": {"values": ["cp2", "cp1"]}}})
        );
    }

    #[test]
    fn claims_that_are_not_an_object_are_a_typed_error() {
        for bad in [
            "",
            "[]",
            "\"cp1\"",
            "42",
            "null",
            "{",
            r#"{"access_token":"x"}"#,
            r#"{"access_token":{"xms_cc":{"values":"cp1"}}}"#,
        ] {
            let error = merged(true, Some(bad)).unwrap_err();
            assert!(
                matches!(error, AuthError::InvalidClaims { .. }),
                "{bad}: {error:?}"
            );
        }
        // `access_token` as a string is fine without cp1: there is nothing to merge.
        assert!(merged(false, Some(r#"{"access_token":"x"}"#)).is_ok());
    }

    #[test]
    fn oversized_and_deeply_nested_claims_are_refused() {
        let big = format!(
            r#"{{"access_token":{{"x":"{}"}}}}"#,
            "a".repeat(MAX_CLAIMS_BYTES)
        );
        let error = merged(true, Some(&big)).unwrap_err();
        assert!(error.to_string().contains("16384"), "{error}");
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(40),
            "1".to_owned() + &"}".repeat(40)
        );
        assert!(merged(true, Some(&deep)).is_err());
    }

    #[test]
    fn an_empty_object_without_cp1_sends_no_claims() {
        assert_eq!(merged(false, Some("{}")).unwrap(), None);
    }
}
