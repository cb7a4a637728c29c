//! Typed Graph models: [`User`], [`Group`], [`DirectoryObject`] and their ids.

pub(crate) mod decode;
pub(crate) mod directory_object;
pub(crate) mod group;
pub(crate) mod user;

use serde::{Deserialize, Deserializer, Serialize};

/// A directory object id. Graph documents GUIDs, but its own samples hold ids that are not
/// valid GUIDs (fixtures SOURCES.md), so ids are opaque strings, never parsed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(String);

impl ObjectId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectId({:?})", self.0)
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ObjectId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl From<String> for ObjectId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

/// Why delta reported an object or member as removed (spec 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovedReason {
    /// Soft-deleted (restorable from deleted items), or no longer in scope.
    Changed,
    /// Permanently deleted.
    Deleted,
}

/// The `@removed` marker of a delta item: `{"reason": "changed" | "deleted"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed(pub(crate) RemovedReason);

impl Serialize for Removed {
    /// As Graph sends it, so that a decoded delta item encodes back to itself (found by
    /// the fuzz target `graph_users_page`: the marker was dropped on encoding).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire {
            reason: &'static str,
        }
        let reason = match self.0 {
            RemovedReason::Deleted => "deleted",
            RemovedReason::Changed => "changed",
        };
        Wire { reason }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Removed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            reason: Option<String>,
        }
        let wire = Wire::deserialize(deserializer)?;
        // Only "deleted" means permanent; anything else (including a reason Microsoft may
        // add later) is treated as the restorable "changed" (spec 9).
        let reason = match wire.reason.as_deref() {
            Some(r) if r.eq_ignore_ascii_case("deleted") => RemovedReason::Deleted,
            _ => RemovedReason::Changed,
        };
        Ok(Self(reason))
    }
}

/// Graph timestamps (`2017-07-31T18:56:16Z`) as `time::OffsetDateTime`, `null` as `None`.
pub(crate) mod timestamp {
    use serde::{Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    struct Visitor;

    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<OffsetDateTime>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an RFC 3339 timestamp or null")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            // Parsed straight from the borrowed text: no allocation per timestamp.
            OffsetDateTime::parse(text, &Rfc3339)
                .map(Some)
                .map_err(|_| E::custom("expected an RFC 3339 timestamp"))
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_str(self)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        deserializer.deserialize_option(Visitor)
    }

    #[expect(
        clippy::ref_option,
        reason = "serde's serialize_with passes &Option<T>"
    )]
    pub(crate) fn serialize<S: Serializer>(
        value: &Option<OffsetDateTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => {
                let text = v.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
                serializer.serialize_some(&text)
            }
            None => serializer.serialize_none(),
        }
    }
}
