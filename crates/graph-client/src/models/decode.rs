//! Decoding a model without `#[serde(flatten)]`: `deserialize_model!` writes a visitor
//! that decodes each property the model names straight into its field and keeps every
//! other property in `extra`.
//!
//! `flatten` made serde buffer each object through its generic `Content` tree to find the
//! unknown keys, then decode the fields from that tree: every user of a listing paid for
//! two passes and a tree of small allocations (issue 14 measured the listing at 1.2-1.5x a
//! plain struct of the same fields).

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use time::OffsetDateTime;

/// A JSON object key, borrowed from the body unless it holds escapes.
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(key) => key,
            Self::Owned(key) => key,
        }
    }

    pub(crate) fn into_string(self) -> String {
        match self {
            Self::Borrowed(key) => key.to_owned(),
            Self::Owned(key) => key,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a property name")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(key))
            }

            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(key))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// How a field's value is decoded, named in `deserialize_model!`.
pub(crate) mod field {
    use super::{Deserialize, MapAccess, OffsetDateTime, Timestamp};

    /// The value as the field's type (`Option<T>` takes `null` as `None`).
    pub(crate) fn value<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
        map: &mut A,
    ) -> Result<T, A::Error> {
        map.next_value()
    }

    /// A list, `null` as empty ("limited information" objects carry null, spec 8b).
    pub(crate) fn list<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
        map: &mut A,
    ) -> Result<Vec<T>, A::Error> {
        Ok(map.next_value::<Option<Vec<T>>>()?.unwrap_or_default())
    }

    /// A Graph timestamp, `null` as `None`.
    pub(crate) fn time<'de, A: MapAccess<'de>>(
        map: &mut A,
    ) -> Result<Option<OffsetDateTime>, A::Error> {
        map.next_value::<Timestamp>().map(|t| t.0)
    }
}

struct Timestamp(Option<OffsetDateTime>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::timestamp::deserialize(deserializer).map(Timestamp)
    }
}

/// `impl Deserialize` for a model with `Default` and an `extra` map:
/// `deserialize_model!(User, "a user", { "id" => id: value, ... })`. A property named
/// twice keeps its last value.
macro_rules! deserialize_model {
    ($model:ty, $expecting:literal, { $($name:literal => $field:ident : $how:ident),* $(,)? }) => {
        impl<'de> serde::Deserialize<'de> for $model {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct ModelVisitor;

                impl<'de> serde::de::Visitor<'de> for ModelVisitor {
                    type Value = $model;

                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        let mut model = <$model>::default();
                        while let Some(key) = map.next_key::<$crate::models::decode::Key<'de>>()? {
                            match key.as_str() {
                                $($name => model.$field = $crate::models::decode::field::$how(&mut map)?,)*
                                _ => {
                                    let value = map.next_value::<serde_json::Value>()?;
                                    model.extra.insert(key.into_string(), value);
                                }
                            }
                        }
                        Ok(model)
                    }
                }

                deserializer.deserialize_map(ModelVisitor)
            }
        }
    };
}

pub(crate) use deserialize_model;

#[cfg(test)]
mod tests {
    use crate::{Group, User};

    #[test]
    fn named_properties_fill_fields_and_the_rest_lands_in_extra() {
        let user: User = serde_json::from_str(
            r##"{"@odata.type":"#microsoft.graph.user","id":"u1","displayName":"Adele Vance",
                "businessPhones":null,"otherMails":["a@x.test"],
                "createdDateTime":"2017-07-31T18:56:16Z","employeeHireDate":null,
                "extension_abc_costCenter":"CC-7","signInActivity":{"lastSignInDateTime":null}}"##,
        )
        .unwrap();
        assert_eq!(user.id.as_ref().map(crate::ObjectId::as_str), Some("u1"));
        assert_eq!(user.display_name.as_deref(), Some("Adele Vance"));
        assert!(user.business_phones.is_empty(), "null list is empty");
        assert_eq!(user.other_mails, ["a@x.test"]);
        assert_eq!(
            user.created_date_time
                .map(time::OffsetDateTime::unix_timestamp),
            Some(1_501_527_376)
        );
        assert_eq!(user.employee_hire_date, None);
        let mut extra: Vec<&str> = user.extra.keys().map(String::as_str).collect();
        extra.sort_unstable();
        assert_eq!(
            extra,
            ["@odata.type", "extension_abc_costCenter", "signInActivity"]
        );
        assert_eq!(user.extra["extension_abc_costCenter"], "CC-7");
    }

    #[test]
    fn escaped_keys_are_matched_like_plain_ones() {
        // serde_json hands a key with an escape over as an owned string, not borrowed.
        let group: Group =
            serde_json::from_str(r#"{"id":"g1","display\u004eame":"Sales","x\u0079":1}"#).unwrap();
        assert_eq!(group.display_name.as_deref(), Some("Sales"));
        assert_eq!(group.extra["xy"], 1);
    }

    #[test]
    fn decoding_from_a_value_and_back_round_trips() {
        let text = r#"{"id":"u1","mail":"a@x.test","proxyAddresses":["SMTP:a@x.test"],"x":true}"#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let user: User = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(serde_json::to_value(&user).unwrap(), value);
    }

    #[test]
    fn a_wrong_type_is_an_error_naming_the_field() {
        let mut deserializer =
            serde_json::Deserializer::from_str(r#"{"id":"u1","accountEnabled":"yes"}"#);
        let error = serde_path_to_error::deserialize::<_, User>(&mut deserializer).unwrap_err();
        assert_eq!(error.path().to_string(), "accountEnabled");
        assert!(
            serde_json::from_str::<User>("[1]").is_err(),
            "not an object"
        );
    }
}
