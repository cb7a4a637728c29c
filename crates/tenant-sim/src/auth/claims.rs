//! The `claims` request parameter of `/authorize`, `/devicecode` and `/token` (spec §7):
//! a JSON object whose `access_token.xms_cc.values` declares client capabilities, and
//! whose other members answer a claims challenge (`access_token.nbf`, `acrs`, ...).

use serde_json::Value;

use super::errors::EntraError;

/// What the simulator reads from a `claims` parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ClaimsRequest {
    /// `access_token.xms_cc.values` holds `cp1`: the client handles claims challenges
    /// and gets CAE tokens.
    pub(super) cp1: bool,
    /// Members besides `xms_cc` under `access_token` (such as the `nbf` of a
    /// challenge): the client is answering a claims challenge.
    pub(super) answers_challenge: bool,
}

impl ClaimsRequest {
    /// Parses the parameter; `None` when it is absent.
    ///
    /// # Errors
    /// `invalid_request` when it is not a JSON object.
    pub(super) fn parse(raw: Option<&str>) -> Result<Option<Self>, EntraError> {
        let Some(raw) = raw else {
            return Ok(None);
        };
        let value: Value = serde_json::from_str(raw).map_err(|_| malformed_claims())?;
        let Value::Object(top) = &value else {
            return Err(malformed_claims());
        };
        let access_token = top.get("access_token").and_then(Value::as_object);
        let cp1 = access_token
            .and_then(|token| token.get("xms_cc"))
            .and_then(|cc| cc.get("values"))
            .is_some_and(declares_cp1);
        let answers_challenge =
            access_token.is_some_and(|token| token.keys().any(|key| key != "xms_cc"));
        Ok(Some(Self {
            cp1,
            answers_challenge,
        }))
    }
}

/// "The values aren't case-sensitive and unordered" [E:claims-challenge.md]. An array of
/// strings as documented, or (leniently) one string, as some clients send.
fn declares_cp1(values: &Value) -> bool {
    match values {
        Value::Array(values) => values
            .iter()
            .filter_map(Value::as_str)
            .any(|value| value.eq_ignore_ascii_case("cp1")),
        Value::String(value) => value.eq_ignore_ascii_case("cp1"),
        _ => false,
    }
}

/// A `claims` value that is not a JSON object. The AADSTS code Entra uses here is
/// UNCONFIRMED: 90004 is the reference's `InvalidRequestFormat`.
fn malformed_claims() -> EntraError {
    EntraError::new(
        "invalid_request",
        90_004,
        "InvalidRequestFormat: The 'claims' parameter is not a valid JSON object.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> ClaimsRequest {
        ClaimsRequest::parse(Some(raw))
            .unwrap_or_else(|e| panic!("{raw}: {e:?}"))
            .unwrap_or_else(|| panic!("{raw}: absent"))
    }

    #[test]
    fn cp1_is_read_from_xms_cc_values_in_any_case_and_alongside_other_claims() {
        assert!(parsed(r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#).cp1);
        assert!(parsed(r#"{"access_token":{"xms_cc":{"values":["foo","CP1"]}}}"#).cp1);
        assert!(parsed(r#"{"access_token":{"xms_cc":{"values":"cp1"}}}"#).cp1);
        let merged = parsed(
            r#"{"access_token":{"xms_cc":{"values":["cp1"]},"nbf":{"essential":true,"value":"1604106651"}}}"#,
        );
        assert!(merged.cp1);
        assert!(merged.answers_challenge);
        let plain = parsed(r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#);
        assert!(!plain.answers_challenge);
    }

    #[test]
    fn claims_without_cp1_do_not_declare_it() {
        let challenge = parsed(r#"{"access_token":{"nbf":{"essential":true,"value":"1"}}}"#);
        assert!(!challenge.cp1);
        assert!(challenge.answers_challenge);
        assert!(!parsed(r#"{"id_token":{"xms_cc":{"values":["cp1"]}}}"#).cp1);
        assert!(!parsed(r#"{"access_token":{"xms_cc":{"values":["cp2"]}}}"#).cp1);
        assert!(!parsed("{}").cp1);
        assert_eq!(ClaimsRequest::parse(None), Ok(None));
    }

    #[test]
    fn malformed_claims_are_invalid_request() {
        for raw in ["{", "[]", "\"cp1\"", "null", "{\"access_token\":", "cp1"] {
            let error = ClaimsRequest::parse(Some(raw)).expect_err(raw);
            assert_eq!(error.error, "invalid_request", "{raw}");
            assert_eq!(error.code, 90_004, "{raw}");
        }
    }
}
